import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ChangeLog, IdentityStore, Replica } from '../../src/core/ports.ts';

export interface IdentityHandle {
  store: IdentityStore & ChangeLog & Replica & { changesSince(since: number, limit: number): Promise<{ entity: string; id: string; op: string }[]> };
  cleanup(): Promise<void>;
}

/** The contract of the `IdentityStore` port (src/core/ports.ts) with the replication ports, run against one adapter. */
export function identityStoreConformance(name: string, open: () => Promise<IdentityHandle>): void {
  const withStore = (fn: (store: IdentityHandle['store']) => Promise<void>) => async () => {
    const handle = await open();
    try {
      await fn(handle.store);
    } finally {
      await handle.cleanup();
    }
  };

  describe(`IdentityStore conformance: ${name}`, () => {
    it('keeps records per kind, replaces on put, deletes, and logs every change', withStore(async (store) => {
      const before = await store.lastSeq();
      await store.putIdentity({ kind: 'project', id: 'p1', body: { id: 'p1', name: 'one' } });
      await store.putIdentity({ kind: 'user', id: 'p1', body: { id: 'p1', name: 'a user with the same id' } });
      await store.putIdentity({ kind: 'project', id: 'p1', body: { id: 'p1', name: 'renamed' } });
      assert.deepEqual(await store.getIdentity('project', 'p1'), { id: 'p1', name: 'renamed' });
      assert.deepEqual((await store.listIdentity('user')).map((u) => u.name), ['a user with the same id']);
      assert.equal(await store.deleteIdentity('project', 'p1'), true);
      assert.equal(await store.deleteIdentity('project', 'p1'), false);
      assert.equal(await store.getIdentity('project', 'p1'), undefined);
      const changes = (await store.changesSince(before, 100)).map((c) => `${c.entity}/${c.id}/${c.op}`);
      assert.deepEqual(changes, ['project/p1/upsert', 'user/p1/upsert', 'project/p1/upsert', 'project/p1/delete']);
    }));

    it('identityVersion moves with every commit that touches identity records — a write or a replicated batch — and with nothing else', withStore(async (store) => {
      const v0 = store.identityVersion();
      await store.getIdentity('user', 'x');
      await store.listIdentity('user');
      await store.setSecret('s', 'v');
      assert.equal(store.identityVersion(), v0);
      await store.putIdentity({ kind: 'user', id: 'u', body: { id: 'u' } });
      const v1 = store.identityVersion();
      assert.notEqual(v1, v0);
      await store.deleteIdentity('user', 'u');
      const v2 = store.identityVersion();
      assert.notEqual(v2, v1);
      await store.apply([], 0);
      await store.apply([{ seq: 1, entity: 'site', id: 'edge-1', op: 'upsert', body: { id: 'edge-1' }, at: '' }], 1);
      assert.equal(store.identityVersion(), v2);
      await store.apply([{ seq: 2, entity: 'role', id: 'r', op: 'upsert', body: { id: 'r' }, at: '' }], 2);
      const v3 = store.identityVersion();
      assert.notEqual(v3, v2);
      await store.load(await store.snapshot());
      assert.notEqual(store.identityVersion(), v3);
    }));

    it('keeps secrets local: not in the change log, the snapshot or the digest', withStore(async (store) => {
      const before = await store.lastSeq();
      const digest = await store.digest();
      await store.setSecret('password:u1', 'hash');
      assert.equal(await store.getSecret('password:u1'), 'hash');
      assert.equal(await store.lastSeq(), before);
      assert.ok(!JSON.stringify(await store.snapshot()).includes('hash'));
      assert.deepEqual((await store.digest()).digests, digest.digests);
      await store.setSecret('password:u1', null);
      assert.equal(await store.getSecret('password:u1'), undefined);
    }));

    it('replicates: a snapshot carries the records, applying and loading reproduce them with the same digest', withStore(async (parent) => {
      await parent.putIdentity({ kind: 'role', id: 'r1', body: { id: 'r1', name: 'admin' } });
      await parent.putIdentity({ kind: 'signing_key', id: 'k1', body: { kid: 'k1', jwk: { kty: 'OKP' } } });
      const handle = await open();
      try {
        const replica = handle.store;
        await replica.putIdentity({ kind: 'role', id: 'stale', body: { id: 'stale' } });
        const snap = await parent.snapshot();
        await replica.load(snap);
        assert.deepEqual((await replica.digest()).digests.identity, (await parent.digest()).digests.identity);
        assert.equal(await replica.getIdentity('role', 'stale'), undefined);
        await replica.apply([
          { seq: snap.seq + 1, entity: 'revocation', id: 'a1', op: 'upsert', body: { audit_id: 'a1' }, at: '' },
          { seq: snap.seq + 2, entity: 'role', id: 'r1', op: 'delete', body: { id: 'r1' }, at: '' },
        ], snap.seq + 2);
        assert.deepEqual(await replica.getIdentity('revocation', 'a1'), { audit_id: 'a1' });
        assert.equal(await replica.getIdentity('role', 'r1'), undefined);
      } finally {
        await handle.cleanup();
      }
    }));
  });
}
