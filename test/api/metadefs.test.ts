import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { call, expectStatus, project } from '../helpers/glance-client.ts';
import { startTestSite, type TestSite } from '../helpers/site.ts';

/** Asks for errors in Glance's JSON shape, as openstacksdk does. */
const JSON_ERRORS = { accept: 'application/json' };
const ADMIN = project('p-admin', 'admin');
const ALICE = project('p-alice', 'reader,member');
const BOB = project('p-bob', 'reader,member');

/** A namespace as the API reference's "create namespace" example gives it (glance api-ref). */
const HYPERVISOR = {
  namespace: 'OS::Test::Hypervisor',
  display_name: 'Hypervisor Selection',
  description: 'Choose capabilities that should be provided by the Compute Host.',
  visibility: 'public',
  protected: true,
  resource_type_associations: [{ name: 'OS::Glance::Image', prefix: 'hw_' }],
  properties: {
    hypervisor_type: { title: 'Hypervisor Type', type: 'string', description: 'The hypervisor type.', enum: ['xen', 'qemu', 'kvm'] },
    vm_mode: { title: 'VM Mode', type: 'string', enum: ['hvm', 'xen'] },
  },
  objects: [{ name: 'CPU Limits', description: 'CPU limits', required: ['cpu_period'], properties: { cpu_period: { title: 'CPU Period', type: 'integer', minimum: 1000 } } }],
  tags: [{ name: 'fast' }, { name: 'secure' }],
};

const ISO_SECONDS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;

describe('/v2/metadefs', () => {
  let site: TestSite;
  before(async () => { site = await startTestSite(); });
  after(async () => { await site?.close(); });

  it('creates a namespace with what it contains, and shows it as Glance does', async () => {
    const created = await call(site, 'POST', '/v2/metadefs/namespaces', { json: HYPERVISOR, as: ADMIN });
    expectStatus(created, 201);
    assert.equal(created.headers.get('location'), '/v2/metadefs/namespaces/OS::Test::Hypervisor');
    assert.equal(created.body.owner, 'p-admin', 'the owner defaults to the caller\'s project');
    assert.equal(created.body.self, '/v2/metadefs/namespaces/OS::Test::Hypervisor');
    assert.equal(created.body.schema, '/v2/schemas/metadefs/namespace');
    assert.match(created.body.created_at, ISO_SECONDS);

    const shown = await call(site, 'GET', '/v2/metadefs/namespaces/OS::Test::Hypervisor', { as: BOB });
    expectStatus(shown, 200);
    const ns = shown.body;
    assert.equal(ns.namespace, HYPERVISOR.namespace);
    assert.equal(ns.visibility, 'public');
    assert.equal(ns.protected, true);
    assert.deepEqual(ns.properties, HYPERVISOR.properties);
    assert.deepEqual(ns.tags, [{ name: 'fast' }, { name: 'secure' }]);
    assert.equal(ns.objects.length, 1);
    assert.equal(ns.objects[0].self, '/v2/metadefs/namespaces/OS::Test::Hypervisor/objects/CPU Limits');
    assert.deepEqual(ns.objects[0].properties, HYPERVISOR.objects[0].properties);
    assert.deepEqual(ns.resource_type_associations.map((a: any) => [a.name, a.prefix]), [['OS::Glance::Image', 'hw_']]);

    // ?resource_type= puts the association's prefix before every property name.
    const prefixed = await call(site, 'GET', '/v2/metadefs/namespaces/OS::Test::Hypervisor?resource_type=OS::Glance::Image');
    assert.deepEqual(Object.keys(prefixed.body.properties).sort(), ['hw_hypervisor_type', 'hw_vm_mode']);
    assert.deepEqual(prefixed.body.objects[0].required, ['hw_cpu_period']);
    assert.deepEqual(Object.keys(prefixed.body.objects[0].properties), ['hw_cpu_period']);

    const types = await call(site, 'GET', '/v2/metadefs/resource_types', { as: ALICE });
    expectStatus(types, 200);
    assert.ok(types.body.resource_types.some((t: any) => t.name === 'OS::Glance::Image'), 'an association creates its resource type');

    const dup = await call(site, 'POST', '/v2/metadefs/namespaces', { json: { namespace: HYPERVISOR.namespace }, as: ADMIN, headers: JSON_ERRORS });
    expectStatus(dup, 409);
    assert.match(dup.body.message, /namespace=OS::Test::Hypervisor already exists/);
  });

  it('hides a private namespace from other projects and lets only administrators write', async () => {
    const priv = await call(site, 'POST', '/v2/metadefs/namespaces', { json: { namespace: 'alice-private', owner: 'p-alice' }, as: ADMIN });
    expectStatus(priv, 201);
    assert.equal(priv.body.visibility, 'private', 'private by default');
    expectStatus(await call(site, 'GET', '/v2/metadefs/namespaces/alice-private', { as: ALICE }), 200);
    expectStatus(await call(site, 'GET', '/v2/metadefs/namespaces/alice-private', { as: BOB }), 404);
    const names = async (as: typeof ADMIN) => (await call(site, 'GET', '/v2/metadefs/namespaces?limit=100', { as })).body.namespaces.map((n: any) => n.namespace);
    assert.ok((await names(ALICE)).includes('alice-private'));
    assert.ok(!(await names(BOB)).includes('alice-private'));
    assert.ok((await names(BOB)).includes('OS::Test::Hypervisor'), 'a public namespace is listed for everyone');

    const denied = await call(site, 'POST', '/v2/metadefs/namespaces', { json: { namespace: 'by-alice' }, as: ALICE, headers: JSON_ERRORS });
    expectStatus(denied, 403);
    assert.match(denied.body.message, /^You are not authorized to complete add_metadef_namespace action\./);
    expectStatus(await call(site, 'POST', '/v2/metadefs/namespaces/alice-private/objects', { json: { name: 'o' }, as: ALICE }), 403);
    expectStatus(await call(site, 'DELETE', '/v2/metadefs/namespaces/alice-private', { as: BOB }), 404);
    expectStatus(await call(site, 'DELETE', '/v2/metadefs/namespaces/alice-private', { as: ADMIN }), 204);
    expectStatus(await call(site, 'GET', '/v2/metadefs/namespaces/alice-private', { as: ADMIN }), 404);
  });

  it('refuses bad bodies with Glance\'s 400 and 403, and changes nothing', async () => {
    const bad = async (path: string, json: unknown, status: number, message: RegExp, method = 'POST') => {
      const res = await call(site, method, path, { json, as: ADMIN, headers: JSON_ERRORS });
      expectStatus(res, status);
      assert.match(res.body.message, message);
    };
    await bad('/v2/metadefs/namespaces', { namespace: 'x'.repeat(81) }, 400, /does not match schema 'namespace'/);
    await bad('/v2/metadefs/namespaces', { display_name: 'no name' }, 400, /'namespace' is a required property/);
    await bad('/v2/metadefs/namespaces', { namespace: 'n', visibility: 'shared' }, 400, /does not match schema 'namespace'/);
    await bad('/v2/metadefs/namespaces', { namespace: 'n', created_at: '2020-01-01T00:00:00Z' }, 403, /^Attribute 'created_at' is read-only\./);
    await bad('/v2/metadefs/namespaces/OS::Test::Hypervisor/properties', { name: 'p', type: 'string' }, 400, /'title' is a required property/);
    await bad('/v2/metadefs/namespaces/OS::Test::Hypervisor/properties', { name: 'p', title: 'P', type: 'text' }, 400, /does not match schema 'property'/);
    await bad('/v2/metadefs/namespaces/OS::Test::Hypervisor/properties', { name: 'p', title: 'P', type: 'string', bogus: 1 }, 400, /Additional properties are not allowed \('bogus' was unexpected\)/);
    await bad('/v2/metadefs/namespaces/OS::Test::Hypervisor/tags', { tags: [{ name: 'a', extra: 1 }] }, 400, /does not match schema 'tags'/);
    const empty = await call(site, 'POST', '/v2/metadefs/namespaces', { as: ADMIN, headers: { ...JSON_ERRORS, 'content-type': 'application/json' } });
    expectStatus(empty, 400);
    assert.match(empty.body.message, /^Body expected in request\./);
    expectStatus(await call(site, 'GET', '/v2/metadefs/namespaces/n'), 404);
    const list = await call(site, 'GET', '/v2/metadefs/namespaces?sort_dir=sideways', { headers: JSON_ERRORS });
    expectStatus(list, 400);
    assert.match(list.body.message, /^Invalid sort direction: sideways/);
  });

  it('creates, shows, renames and deletes objects, properties and tags; a protected namespace keeps them', async () => {
    const base = '/v2/metadefs/namespaces/editable';
    expectStatus(await call(site, 'POST', '/v2/metadefs/namespaces', { json: { namespace: 'editable', visibility: 'public' }, as: ADMIN }), 201);

    const obj = await call(site, 'POST', `${base}/objects`, { json: { name: 'Disk QoS', properties: { iops: { title: 'IOPS', type: 'integer' } } }, as: ADMIN });
    expectStatus(obj, 201);
    assert.equal(obj.body.self, `${base}/objects/Disk QoS`);
    assert.equal(obj.body.schema, '/v2/schemas/metadefs/object');
    expectStatus(await call(site, 'POST', `${base}/objects`, { json: { name: 'Disk QoS' }, as: ADMIN }), 409);
    const renamed = await call(site, 'PUT', `${base}/objects/Disk%20QoS`, { json: { name: 'Disk QoS v2', description: 'd' }, as: ADMIN });
    expectStatus(renamed, 200);
    assert.equal(renamed.body.created_at, obj.body.created_at);
    assert.equal(renamed.body.properties, undefined, 'PUT replaces the object');
    expectStatus(await call(site, 'GET', `${base}/objects/Disk%20QoS`), 404);
    const objects = await call(site, 'GET', `${base}/objects`, { as: BOB });
    assert.deepEqual(objects.body.objects.map((o: any) => o.name), ['Disk QoS v2']);
    assert.equal(objects.body.schema, 'v2/schemas/metadefs/objects');

    const prop = await call(site, 'POST', `${base}/properties`, { json: { name: 'hw_rng', title: 'RNG', type: 'string', enum: ['virtio'], default: 'virtio' }, as: ADMIN });
    expectStatus(prop, 201);
    assert.deepEqual(prop.body, { default: 'virtio', enum: ['virtio'], name: 'hw_rng', title: 'RNG', type: 'string' });
    assert.deepEqual((await call(site, 'GET', `${base}/properties/hw_rng`)).body, prop.body);
    expectStatus(await call(site, 'POST', `${base}/properties`, { json: { name: 'hw_rng', title: 'RNG', type: 'string' }, as: ADMIN }), 409);
    const put = await call(site, 'PUT', `${base}/properties/hw_rng`, { json: { name: 'hw_rng_model', title: 'RNG model', type: 'string' }, as: ADMIN });
    expectStatus(put, 200);
    assert.deepEqual(Object.keys((await call(site, 'GET', `${base}/properties`)).body.properties), ['hw_rng_model']);

    const tag = await call(site, 'POST', `${base}/tags/Gold`, { as: ADMIN });
    expectStatus(tag, 201);
    assert.equal(tag.body.name, 'Gold');
    const dupTag = await call(site, 'POST', `${base}/tags/gold`, { as: ADMIN, headers: JSON_ERRORS });
    expectStatus(dupTag, 409);
    assert.match(dupTag.body.message, /case insensitive/);
    const replaced = await call(site, 'POST', `${base}/tags`, { json: { tags: [{ name: 'a' }, { name: 'b' }] }, as: ADMIN });
    expectStatus(replaced, 201);
    assert.deepEqual(replaced.body, { tags: [{ name: 'a' }, { name: 'b' }] });
    assert.deepEqual((await call(site, 'GET', `${base}/tags`)).body.tags.map((t: any) => t.name), ['a', 'b'], 'without X-Openstack-Append the tags are replaced');
    expectStatus(await call(site, 'POST', `${base}/tags`, { json: { tags: [{ name: 'c' }] }, as: ADMIN, headers: { 'x-openstack-append': 'true' } }), 201);
    assert.deepEqual((await call(site, 'GET', `${base}/tags`)).body.tags.map((t: any) => t.name), ['a', 'b', 'c']);
    expectStatus(await call(site, 'PUT', `${base}/tags/c`, { json: { name: 'd' }, as: ADMIN }), 200);
    expectStatus(await call(site, 'DELETE', `${base}/tags/a`, { as: ADMIN }), 204);
    assert.deepEqual((await call(site, 'GET', `${base}/tags`)).body.tags.map((t: any) => t.name), ['b', 'd']);

    const assoc = await call(site, 'POST', `${base}/resource_types`, { json: { name: 'OS::Nova::Flavor', prefix: 'hw:' }, as: ADMIN });
    expectStatus(assoc, 201);
    assert.equal(assoc.body.prefix, 'hw:');
    expectStatus(await call(site, 'POST', `${base}/resource_types`, { json: { name: 'OS::Nova::Flavor' }, as: ADMIN }), 409);
    assert.deepEqual((await call(site, 'GET', `${base}/resource_types`)).body.resource_type_associations.map((a: any) => a.name), ['OS::Nova::Flavor']);
    const byPrefix = await call(site, 'GET', `${base}/properties/hw:hw_rng_model?resource_type=OS::Nova::Flavor`);
    expectStatus(byPrefix, 200);
    assert.equal(byPrefix.body.name, 'hw_rng_model');
    const filtered = await call(site, 'GET', '/v2/metadefs/namespaces?resource_types=OS::Nova::Flavor');
    assert.deepEqual(filtered.body.namespaces.map((n: any) => n.namespace), ['editable']);

    // Protected: nothing in it may be deleted (403), until it is no longer protected.
    const protect = await call(site, 'PUT', base, { json: { namespace: 'editable', visibility: 'public', protected: true }, as: ADMIN });
    expectStatus(protect, 200);
    for (const path of [`${base}/objects/Disk%20QoS%20v2`, `${base}/properties/hw_rng_model`, `${base}/tags/b`, `${base}/resource_types/OS::Nova::Flavor`, `${base}/tags`, `${base}/objects`, base]) {
      const res = await call(site, 'DELETE', path, { as: ADMIN, headers: JSON_ERRORS });
      expectStatus(res, 403);
      assert.match(res.body.message, /is protected and cannot be deleted\./);
    }
    // PUT returns the optional fields to their defaults: not protected, private.
    const unprotect = await call(site, 'PUT', base, { json: { namespace: 'editable-2' }, as: ADMIN });
    expectStatus(unprotect, 200);
    assert.equal(unprotect.body.protected, false);
    assert.equal(unprotect.body.visibility, 'private');
    expectStatus(await call(site, 'GET', base), 404);
    const moved = await call(site, 'GET', '/v2/metadefs/namespaces/editable-2');
    assert.deepEqual(moved.body.tags, [{ name: 'b' }, { name: 'd' }], 'a rename keeps what the namespace contains');
    expectStatus(await call(site, 'DELETE', '/v2/metadefs/namespaces/editable-2/objects', { as: ADMIN }), 204);
    expectStatus(await call(site, 'DELETE', '/v2/metadefs/namespaces/editable-2/properties', { as: ADMIN }), 204);
    expectStatus(await call(site, 'DELETE', '/v2/metadefs/namespaces/editable-2/tags', { as: ADMIN }), 204);
    const emptied = (await call(site, 'GET', '/v2/metadefs/namespaces/editable-2')).body;
    assert.equal(emptied.objects, undefined);
    assert.equal(emptied.properties, undefined);
    assert.equal(emptied.tags, undefined);
    expectStatus(await call(site, 'DELETE', '/v2/metadefs/namespaces/editable-2', { as: ADMIN }), 204);
  });

  it('pages the namespace list with limit and marker', async () => {
    for (const n of ['page-a', 'page-b', 'page-c']) {
      expectStatus(await call(site, 'POST', '/v2/metadefs/namespaces', { json: { namespace: n, visibility: 'public' }, as: ADMIN }), 201);
    }
    const first = await call(site, 'GET', '/v2/metadefs/namespaces?sort_key=namespace&sort_dir=asc&limit=2&visibility=public');
    expectStatus(first, 200);
    assert.equal(first.body.schema, '/v2/schemas/metadefs/namespaces');
    assert.deepEqual(first.body.namespaces.map((n: any) => n.namespace), ['OS::Test::Hypervisor', 'page-a']);
    assert.equal(first.body.first, '/v2/metadefs/namespaces?sort_key=namespace&sort_dir=asc&limit=2&visibility=public');
    assert.equal(first.body.next, '/v2/metadefs/namespaces?sort_key=namespace&sort_dir=asc&limit=2&visibility=public&marker=page-a');
    const second = await call(site, 'GET', first.body.next);
    assert.deepEqual(second.body.namespaces.map((n: any) => n.namespace), ['page-b', 'page-c']);
    const third = await call(site, 'GET', second.body.next);
    assert.deepEqual(third.body.namespaces, []);
    assert.equal(third.body.next, undefined);
    expectStatus(await call(site, 'GET', '/v2/metadefs/namespaces?marker=no-such'), 404);
    // A marker the filters leave out still says where the page starts (its place in the sort order).
    expectStatus(await call(site, 'POST', '/v2/metadefs/namespaces', { json: { namespace: 'page-ab', visibility: 'private' }, as: ADMIN }), 201);
    const afterHidden = await call(site, 'GET', '/v2/metadefs/namespaces?sort_key=namespace&sort_dir=asc&visibility=public&marker=page-ab');
    assert.deepEqual(afterHidden.body.namespaces.map((n: any) => n.namespace), ['page-b', 'page-c']);
  });
});
