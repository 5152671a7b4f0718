import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import type { WorkClaims } from '../../src/core/ports.ts';

export interface WorkClaimsHandle {
  claims: WorkClaims;
  cleanup(): Promise<void>;
}

const ALIVE = 60_000;

/** The contract of the `WorkClaims` port (src/core/ports.ts), run against one adapter. */
export function workClaimsConformance(name: string, open: () => Promise<WorkClaimsHandle>): void {
  const withClaims = (fn: (claims: WorkClaims) => Promise<void>) => async () => {
    const handle = await open();
    try {
      await fn(handle.claims);
    } finally {
      await handle.cleanup();
    }
  };

  describe(`WorkClaims conformance: ${name}`, () => {
    it('a claim is held by one node that is alive: again by it, not by another, until released', withClaims(async (claims) => {
      await claims.nodeSeen('a', 'central');
      await claims.nodeSeen('b', 'central');
      assert.equal(await claims.isClaimed('task', 't1', ALIVE), false);
      assert.equal(await claims.claim('task', 't1', 'a', ALIVE), true);
      assert.equal(await claims.claim('task', 't1', 'a', ALIVE), true, 'claiming again what one holds');
      assert.equal(await claims.claim('task', 't1', 'b', ALIVE), false, 'held by a node that is alive');
      assert.equal(await claims.claim('upload', 't1', 'b', ALIVE), true, 'another kind of work with the same id is other work');
      assert.equal(await claims.isClaimed('task', 't1', ALIVE), true);
      await claims.release('task', 't1', 'b');
      assert.equal(await claims.isClaimed('task', 't1', ALIVE), true, 'only its holder releases a claim');
      await claims.release('task', 't1', 'a');
      assert.equal(await claims.isClaimed('task', 't1', ALIVE), false);
      assert.equal(await claims.claim('task', 't1', 'b', ALIVE), true);
    }));

    it('the work of a node not seen within deadAfterMs, or forgotten, is free', withClaims(async (claims) => {
      await claims.nodeSeen('a', 'central');
      assert.equal(await claims.claim('task', 't1', 'a', ALIVE), true);
      assert.equal(await claims.claim('task', 't2', 'a', ALIVE), true);
      await sleep(50);
      await claims.nodeSeen('b', 'central');
      assert.equal(await claims.isClaimed('task', 't1', 20), false, 'a was last seen more than 20 ms ago');
      assert.equal(await claims.claim('task', 't1', 'b', 20), true);
      assert.equal(await claims.claim('task', 't1', 'a', ALIVE), false, 'b holds it now, and is alive');
      assert.equal(await claims.claim('task', 't2', 'b', ALIVE), false);
      await claims.forgetOtherNodes('b');
      assert.equal(await claims.claim('task', 't2', 'b', ALIVE), true, 'a forgotten: its work is free');
      assert.equal(await claims.isClaimed('upload', 'never', ALIVE), false);
    }));

    it('of nodes claiming the same free work at once, exactly one gets it', withClaims(async (claims) => {
      const nodes = Array.from({ length: 8 }, (_, i) => `n${i}`);
      for (const n of nodes) await claims.nodeSeen(n, 'central');
      const got = await Promise.all(nodes.map((n) => claims.claim('task', 'contended', n, ALIVE)));
      assert.equal(got.filter(Boolean).length, 1, JSON.stringify(got));
    }));

    it('rejects every call made with an aborted signal', withClaims(async (claims) => {
      const signal = AbortSignal.abort();
      await assert.rejects(claims.nodeSeen('a', 'central', { signal }), { name: 'AbortError' });
      await assert.rejects(claims.claim('task', 't', 'a', ALIVE, { signal }), { name: 'AbortError' });
      await assert.rejects(claims.release('task', 't', 'a', { signal }), { name: 'AbortError' });
      await assert.rejects(claims.isClaimed('task', 't', ALIVE, { signal }), { name: 'AbortError' });
      await assert.rejects(claims.forgetOtherNodes('a', { signal }), { name: 'AbortError' });
    }));
  });
}
