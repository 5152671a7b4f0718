import { createHash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import type { ChunkManifest } from '../core/chunk-manifest.ts';
import { ManifestBuilder } from './hashing/manifest-builder.ts';

/**
 * Hashing thread of WorkerHasherFactory: keeps one running hash per stream id (md5, sha512, or
 * the chunk manifest: `manifest`) and acknowledges every batch, so the event loop never spends
 * its time hashing.
 */
export type HashRequest =
  | { type: 'start'; id: number; algorithm: string }
  | { type: 'data'; id: number; buffer: SharedArrayBuffer; offset: number; length: number }
  | { type: 'end'; id: number }
  | { type: 'abort'; id: number };
export type HashReply = { type: 'ack'; id: number; length: number } | { type: 'digest'; id: number; value: string | ChunkManifest };

/** What a thread computes for one stream. */
interface Running {
  update(bytes: Uint8Array): void;
  result(): string | ChunkManifest;
}

function running(algorithm: string): Running {
  if (algorithm === 'manifest') {
    const builder = new ManifestBuilder();
    return { update: (b) => builder.update(b), result: () => builder.finish() };
  }
  const hash = createHash(algorithm);
  return { update: (b) => hash.update(b), result: () => hash.digest('hex') };
}

function serve(port: NonNullable<typeof parentPort>): void {
  const hashes = new Map<number, Running>();
  port.on('message', (m: HashRequest) => {
  switch (m.type) {
    case 'start':
      hashes.set(m.id, running(m.algorithm));
      break;
    case 'data':
      hashes.get(m.id)?.update(new Uint8Array(m.buffer, m.offset, m.length));
      port.postMessage({ type: 'ack', id: m.id, length: m.length } satisfies HashReply);
      break;
    case 'end':
      port.postMessage({ type: 'digest', id: m.id, value: hashes.get(m.id)?.result() ?? '' } satisfies HashReply);
      hashes.delete(m.id);
      break;
    case 'abort':
      hashes.delete(m.id);
      break;
  }
  });
}

serve(parentPort!);
