import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MetadefNamespace } from '../../src/core/metadefs.ts';
import type { ChangeLog, MetadefStore } from '../../src/core/ports.ts';

export interface MetadefHandle {
  store: MetadefStore & Pick<ChangeLog, 'snapshot'> & { changesSince(since: number, limit: number): Promise<{ entity: string; id: string; op: string }[]> };
  cleanup(): Promise<void>;
}

const T = '2026-12-06T05:00:00.000Z';
const ns = (name: string, extra: Partial<MetadefNamespace> = {}): MetadefNamespace => ({
  namespace: name, visibility: 'public', protected: false, owner: 'p1', created_at: T, updated_at: T,
  resource_type_associations: [{ name: 'OS::Glance::Image', prefix: 'hw_', created_at: T, updated_at: T }],
  properties: { cpu: { title: 'CPU', type: 'integer', minimum: 1 } },
  objects: [{ name: 'Limits', properties: { q: { title: 'Q', type: 'string' } }, created_at: T, updated_at: T }],
  tags: [{ name: 'gold', created_at: T, updated_at: T }],
  ...extra,
});

/** The contract of the `MetadefStore` port (src/core/ports.ts), run against one adapter. */
export function metadefStoreConformance(name: string, open: () => Promise<MetadefHandle>): void {
  const withStore = (fn: (store: MetadefHandle['store']) => Promise<void>) => async () => {
    const handle = await open();
    try {
      await fn(handle.store);
    } finally {
      await handle.cleanup();
    }
  };

  describe(`MetadefStore conformance: ${name}`, () => {
    it('keeps a namespace whole as written; lists by name; an unknown one is undefined', withStore(async (store) => {
      assert.equal(await store.getMetadefNamespace('a'), undefined);
      assert.equal(await store.writeMetadefs((tx) => tx.createNamespace(ns('b'))), true);
      assert.equal(await store.writeMetadefs((tx) => tx.createNamespace(ns('a', { visibility: 'private' }))), true);
      assert.deepEqual(await store.getMetadefNamespace('b'), ns('b'));
      assert.deepEqual((await store.listMetadefNamespaces()).map((n) => n.namespace), ['a', 'b']);
      await assert.rejects(store.listMetadefNamespaces({ signal: AbortSignal.abort() }));
    }));

    it('createNamespace is false for a name in use and changes nothing; putNamespace replaces', withStore(async (store) => {
      await store.writeMetadefs((tx) => tx.createNamespace(ns('a')));
      assert.equal(await store.writeMetadefs((tx) => tx.createNamespace(ns('a', { protected: true }))), false);
      assert.equal((await store.getMetadefNamespace('a'))?.protected, false);
      await store.writeMetadefs((tx) => tx.putNamespace(ns('a', { tags: [] })));
      assert.deepEqual((await store.getMetadefNamespace('a'))?.tags, []);
    }));

    it('commits all a write did, or nothing when it throws', withStore(async (store) => {
      await store.writeMetadefs((tx) => tx.createNamespace(ns('old')));
      // A rename: the new name, the old one gone, in one transaction.
      await store.writeMetadefs(async (tx) => {
        const current = await tx.namespace('old');
        assert.ok(await tx.createNamespace({ ...current!, namespace: 'new' }));
        await tx.deleteNamespace('old');
        await tx.putResourceType({ name: 'OS::Nova::Flavor', protected: false, created_at: T, updated_at: T });
      });
      assert.deepEqual((await store.listMetadefNamespaces()).map((n) => n.namespace), ['new']);
      await assert.rejects(store.writeMetadefs(async (tx) => {
        await tx.deleteNamespace('new');
        await tx.putResourceType({ name: 'OS::Cinder::Volume', protected: true, created_at: T, updated_at: T });
        throw new Error('changed my mind');
      }), /changed my mind/);
      assert.deepEqual((await store.listMetadefNamespaces()).map((n) => n.namespace), ['new']);
      assert.deepEqual((await store.listMetadefResourceTypes()).map((r) => r.name), ['OS::Nova::Flavor']);
    }));

    it('reads inside a write see the write\'s own changes', withStore(async (store) => {
      await store.writeMetadefs(async (tx) => {
        assert.equal(await tx.namespace('x'), undefined);
        await tx.createNamespace(ns('x'));
        assert.equal((await tx.namespace('x'))?.namespace, 'x');
        await tx.putResourceType({ name: 'R', protected: true, created_at: T, updated_at: T });
        assert.equal((await tx.resourceType('R'))?.protected, true);
      });
    }));

    it('every write is a change in the log and in a snapshot, so that it replicates', withStore(async (store) => {
      const before = await store.snapshot();
      await store.writeMetadefs(async (tx) => {
        await tx.createNamespace(ns('n'));
        await tx.putResourceType({ name: 'OS::Glance::Image', protected: false, created_at: T, updated_at: T });
      });
      await store.writeMetadefs((tx) => tx.deleteNamespace('n'));
      await store.writeMetadefs((tx) => tx.createNamespace(ns('m')));
      const changes = (await store.changesSince(before.seq, 100)).map((c) => `${c.entity}:${c.id}:${c.op}`);
      assert.deepEqual(changes, [
        'metadef_namespace:n:upsert', 'metadef_resource_type:OS::Glance::Image:upsert', 'metadef_namespace:n:delete', 'metadef_namespace:m:upsert',
      ]);
      const snap = await store.snapshot();
      assert.deepEqual(snap.metadef_namespaces, [ns('m')]);
      assert.deepEqual(snap.metadef_resource_types?.map((r) => r.name), ['OS::Glance::Image']);
    }));
  });
}
