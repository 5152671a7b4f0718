/**
 * Format inspection for `virtual_size`, as Glance's format_inspector does at upload: a qcow2
 * header carries the virtual disk size (big-endian u64 at offset 24, after the "QFI\xfb" magic);
 * a raw image's virtual size is its size. Other formats are left unknown (null).
 */
export const HEADER_BYTES = 512;

export function inspectVirtualSize(diskFormat: string | null, head: Uint8Array, size: number): number | null {
  const isQcow2 = head.length >= 32 && head[0] === 0x51 && head[1] === 0x46 && head[2] === 0x49 && head[3] === 0xfb;
  if (isQcow2) {
    const v = new DataView(head.buffer, head.byteOffset, head.byteLength).getBigUint64(24);
    return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : null;
  }
  if (diskFormat === 'raw' || diskFormat === 'iso') return size;
  return null;
}
