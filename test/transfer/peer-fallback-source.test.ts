import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NotFoundError, ServiceUnavailableError } from '../../src/core/errors.ts';
import type { ParentImageBytes, ParentImageSource } from '../../src/core/ports.ts';
import { PeerFallbackSource } from '../../src/transfer/peer-fallback-source.ts';

/** A source that answers with its name, or fails as told; it records who was asked. */
function source(name: string, asked: string[], fails?: () => Error): ParentImageSource & { distrusted: string[] } {
  const distrusted: string[] = [];
  return {
    distrusted,
    async open(): Promise<ParentImageBytes> {
      asked.push(name);
      if (fails !== undefined) throw fails();
      return { stream: (async function* () { yield Buffer.from(name); })(), from: name };
    },
    async manifest() {
      asked.push(`${name} manifest`);
      if (fails !== undefined) throw fails();
      return { from: name };
    },
    distrust(_image: string, from: string) {
      distrusted.push(from);
    },
  };
}

const away = () => new ServiceUnavailableError('The parent site could not be reached');
const none = () => new NotFoundError('No peer holds a verified copy');
const log = { info() {} };

describe('PeerFallbackSource', () => {
  it('asks the parent while it answers; a peer when the parent cannot be reached; peers first once the parent is known to be away', async () => {
    const asked: string[] = [];
    let reachable = true;
    const both = new PeerFallbackSource({ parent: source('parent', asked), peers: source('peer', asked), parentReachable: () => reachable, log });
    assert.equal((await both.open('i')).from, 'parent');
    const cut = new PeerFallbackSource({ parent: source('parent', asked, away), peers: source('peer', asked), parentReachable: () => reachable, log });
    assert.equal((await cut.open('i')).from, 'peer');
    assert.deepEqual(await cut.manifest('i'), { from: 'peer' });
    reachable = false;
    assert.equal((await cut.open('i')).from, 'peer');
    assert.deepEqual(asked, ['parent', 'parent', 'peer', 'parent manifest', 'peer manifest', 'peer']);
  });

  it('believes a parent that has no such image; reports the parent\'s error when no peer can help', async () => {
    const asked: string[] = [];
    const missing = new PeerFallbackSource({ parent: source('parent', asked, () => new NotFoundError('no image')), peers: source('peer', asked), parentReachable: () => true, log });
    await assert.rejects(missing.open('i'), /no image/);
    assert.deepEqual(asked, ['parent']);
    const nobody = new PeerFallbackSource({ parent: source('parent', [], away), peers: source('peer', [], none), parentReachable: () => true, log });
    await assert.rejects(nobody.open('i'), /parent site could not be reached/);
    const awayToo = new PeerFallbackSource({ parent: source('parent', [], away), peers: source('peer', [], none), parentReachable: () => false, log });
    await assert.rejects(awayToo.open('i'), /parent site could not be reached/);
  });

  it('asks the peers first while the parent answers once a peer was measured faster; a peer is tried once to be measured', async () => {
    let now = 0;
    const asked: string[] = [];
    /** 2 MiB that take `ms` to arrive (the clock moves as they are read), sent by `from`. */
    const timed = (name: string, ms: number, from?: string): ParentImageSource => ({
      async open() {
        asked.push(name);
        return { stream: (async function* () { now += ms; yield Buffer.alloc(2 << 20); })(), from };
      },
      async manifest() { return {}; },
    });
    const read = async (got: ParentImageBytes) => { for await (const _ of got.stream) { /* measured as read */ } };
    const src = new PeerFallbackSource({ parent: timed('parent', 2000), peers: timed('peer', 100, 'metro-b'), parentReachable: () => true, now: () => now, log });
    for (let i = 0; i < 4; i++) await read(await src.open('i'));
    assert.deepEqual(asked, ['parent', 'peer', 'peer', 'peer'], 'the parent (measured), the peer once to measure it, then the faster peer');
    // Rates older than 10 minutes are not believed: the parent again, and the peer is measured anew.
    now += 11 * 60_000;
    asked.length = 0;
    for (let i = 0; i < 3; i++) await read(await src.open('i'));
    assert.deepEqual(asked, ['parent', 'peer', 'peer']);
    // A peer no faster than the parent: tried once, then the parent stays first.
    const same = new PeerFallbackSource({ parent: timed('parent', 100), peers: timed('peer', 100, 'metro-b'), parentReachable: () => true, now: () => now, log });
    asked.length = 0;
    for (let i = 0; i < 4; i++) await read(await same.open('i'));
    assert.deepEqual(asked, ['parent', 'peer', 'parent', 'parent']);
  });

  it('passes a distrusted sender on to the peers', () => {
    const peers = source('peer', []);
    new PeerFallbackSource({ parent: source('parent', []), peers, parentReachable: () => true, log }).distrust('i', 'metro-b');
    assert.deepEqual(peers.distrusted, ['metro-b']);
  });
});
