import type { FileHandle } from 'node:fs/promises';

/**
 * Writes `length` bytes of `buffer` from `offset` at `position`, however many write() calls it
 * takes. A write to a regular file may write less than asked when the file system fills up; the
 * next one then fails with the reason (ENOSPC: "no space left on device"), which is what the
 * caller and the operator need to see rather than a count of bytes.
 */
export async function writeAll(file: FileHandle, buffer: Uint8Array, offset: number, length: number, position: number): Promise<void> {
  for (let done = 0; done < length;) {
    const { bytesWritten } = await file.write(buffer, offset + done, length - done, position + done);
    if (bytesWritten === 0) throw new Error(`nothing could be written at byte ${position + done} of the file (${length - done} bytes left to write)`);
    done += bytesWritten;
  }
}
