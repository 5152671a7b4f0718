import { createHash, type Hash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';

/**
 * Hashing thread of WorkerHasherFactory: keeps one running hash per stream id and acknowledges
 * every batch, so the event loop never spends its time in md5/sha512.
 */
export type HashRequest =
  | { type: 'start'; id: number; algorithm: string }
  | { type: 'data'; id: number; buffer: SharedArrayBuffer; offset: number; length: number }
  | { type: 'end'; id: number }
  | { type: 'abort'; id: number };
export type HashReply = { type: 'ack'; id: number; length: number } | { type: 'digest'; id: number; hex: string };

function serve(port: NonNullable<typeof parentPort>): void {
  const hashes = new Map<number, Hash>();
  port.on('message', (m: HashRequest) => {
  switch (m.type) {
    case 'start':
      hashes.set(m.id, createHash(m.algorithm));
      break;
    case 'data':
      hashes.get(m.id)?.update(new Uint8Array(m.buffer, m.offset, m.length));
      port.postMessage({ type: 'ack', id: m.id, length: m.length } satisfies HashReply);
      break;
    case 'end':
      port.postMessage({ type: 'digest', id: m.id, hex: hashes.get(m.id)?.digest('hex') ?? '' } satisfies HashReply);
      hashes.delete(m.id);
      break;
    case 'abort':
      hashes.delete(m.id);
      break;
  }
  });
}

serve(parentPort!);
