import type { FileHandle } from 'node:fs/promises';
import { PayloadTooLargeError } from '../core/errors.ts';

/**
 * Writes `length` bytes of `buffer` from `offset` at `position`, however many write() calls it
 * takes. A write to a regular file may write less than asked when the file system fills up; the
 * next one then fails with the reason (ENOSPC: "no space left on device"), which is what the
 * caller and the operator need to see rather than a count of bytes: it is thrown as Glance's
 * 413 (see storageFull).
 */
export async function writeAll(file: FileHandle, buffer: Uint8Array, offset: number, length: number, position: number): Promise<void> {
  for (let done = 0; done < length;) {
    let bytesWritten: number;
    try {
      ({ bytesWritten } = await file.write(buffer, offset + done, length - done, position + done));
    } catch (error) {
      throw storageFull(error) ?? error;
    }
    if (bytesWritten === 0) throw new Error(`nothing could be written at byte ${position + done} of the file (${length - done} bytes left to write)`);
    done += bytesWritten;
  }
}

/**
 * A full file system (ENOSPC) or an exhausted disk quota (EDQUOT) as Glance says it: 413 "Image
 * storage media is full: <the store's error>" (glance_store's StorageFull, which Glance's upload
 * answers with HTTPRequestEntityTooLarge).
 */
function storageFull(error: unknown): PayloadTooLargeError | undefined {
  const code = (error as NodeJS.ErrnoException).code;
  if (code !== 'ENOSPC' && code !== 'EDQUOT') return undefined;
  return new PayloadTooLargeError(`Image storage media is full: ${(error as Error).message}`);
}
