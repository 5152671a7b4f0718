import { BadRequestError, RangeNotSatisfiableError } from '../../core/errors.ts';
import type { ByteRange } from '../../core/image-service.ts';

/**
 * The byte range of a download request (glance/api/v2/image_data.py): a single
 * `Range: bytes=a-b`, `bytes=a-` or `bytes=-N`; several ranges → 400; a malformed one → 416.
 * The legacy request header `Content-Range: bytes a-b/size` is honoured too.
 */
export function parseRange(range: string | undefined, contentRange: string | undefined): ByteRange | undefined {
  if (range !== undefined) {
    const spec = range.trim();
    if (!spec.startsWith('bytes=')) throw new RangeNotSatisfiableError('The Range requested is not available.');
    const ranges = spec.slice(6).split(',');
    if (ranges.length > 1) throw new BadRequestError('Multiple ranges are not supported.');
    const m = /^\s*(\d*)-(\d*)\s*$/.exec(ranges[0]);
    if (m === null || (m[1] === '' && m[2] === '')) throw new RangeNotSatisfiableError('The Range requested is not available.');
    if (m[1] === '') return { kind: 'suffix', length: Number(m[2]) };
    const start = Number(m[1]);
    const end = m[2] === '' ? undefined : Number(m[2]);
    if (end !== undefined && end < start) throw new RangeNotSatisfiableError('The Range requested is not available.');
    return { kind: 'range', start, end };
  }
  if (contentRange !== undefined) {
    const m = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/.exec(contentRange);
    if (m === null || Number(m[2]) < Number(m[1])) throw new RangeNotSatisfiableError('The Range requested is not available.');
    return { kind: 'range', start: Number(m[1]), end: Number(m[2]) };
  }
  return undefined;
}
