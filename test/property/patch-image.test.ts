import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import {
  adminGet, assertAlive, clip, createImage, runs, sendChecked, startHarness, uploadBytes, type Harness,
} from './api-invariants.ts';
import {
  BASE, CONTAINER_FORMATS, DISK_FORMATS, READ_ONLY, RESERVED, TYPED_CUSTOM, accept, anyJson, customName, nested,
  loneSurrogate, objectOf, pointer, shortText, text255, tooLong, type Body,
} from './glance-schema.ts';

/**
 * Generated PATCH documents (PATCH /v2/images/{id}) in both media types — random operations,
 * paths (escapes, nested paths, /locations, empty), values — sent by generated callers to images
 * in various states. Invariants: no 5xx, Glance-shaped errors, nothing changed by a rejected
 * patch; and an accepted patch did exactly what its operations say, to the keys they name only.
 */

const V21 = 'application/openstack-images-v2.1-json-patch';
const V20 = 'application/openstack-images-v2.0-json-patch';
const EXISTING = ['color', 'a/b', 'm~n', 'x~1y'];

type Caller = { name: string; headers: Record<string, string>; admin: boolean; project?: string; writer: boolean };
const CALLERS: Caller[] = [
  { name: 'admin', headers: {}, admin: true, writer: true },
  { name: 'p1 member', headers: { 'x-project-id': 'p1' }, admin: false, project: 'p1', writer: true },
  { name: 'p1 reader', headers: { 'x-project-id': 'p1', 'x-roles': 'reader' }, admin: false, project: 'p1', writer: false },
  { name: 'p1 _member_', headers: { 'x-project-id': 'p1', 'x-roles': 'reader,_member_' }, admin: false, project: 'p1', writer: true },
  { name: 'p2 member', headers: { 'x-project-id': 'p2', 'x-roles': 'member' }, admin: false, project: 'p2', writer: true },
  { name: 'p1 admin', headers: { 'x-project-id': 'p1', 'x-roles': 'admin' }, admin: true, project: 'p1', writer: true },
];

function validValue(key: string): fc.Arbitrary<unknown> {
  switch (key) {
    case 'name': case 'owner': return fc.option(text255, { nil: null });
    case 'visibility': return fc.constantFrom('private', 'shared', 'community', 'public');
    case 'protected': case 'os_hidden': return fc.boolean();
    case 'disk_format': return fc.option(fc.constantFrom(...DISK_FORMATS), { nil: null });
    case 'container_format': return fc.option(fc.constantFrom(...CONTAINER_FORMATS), { nil: null });
    case 'min_disk': case 'min_ram': return fc.oneof(fc.nat(64), fc.maxSafeNat());
    case 'tags': return fc.array(fc.oneof(shortText, fc.constant('t1')), { maxLength: 5 });
    case 'kernel_id': case 'ramdisk_id': return fc.oneof(fc.uuid(), fc.constant(null));
    case 'cinder_encryption_key_deletion_policy': return fc.constantFrom('on_image_deletion', 'do_not_delete');
    default: return shortText;
  }
}

const key = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...BASE) },
  { weight: 3, arbitrary: fc.constantFrom(...EXISTING) },
  { weight: 2, arbitrary: customName },
  { weight: 1, arbitrary: fc.constantFrom(...READ_ONLY, 'id') },
  { weight: 1, arbitrary: fc.oneof(fc.constantFrom(...RESERVED), shortText.map((s) => `os_glance${s}`)) },
  { weight: 1, arbitrary: fc.constantFrom(...TYPED_CUSTOM) },
  { weight: 1, arbitrary: fc.oneof(fc.constant(''), tooLong, loneSurrogate) },
);

const weirdPath = fc.oneof(
  fc.constantFrom('', '/', 'name', '/name/x', '/locations', '/locations/0', '/locations/-', '/~', '/~2', '/a~', '//',
    '/name/', '/tags/0', '/properties/color', '/~01', '/%7E', '/ name', '/a~1b~0c', '/../name'),
  shortText,
  shortText.map((s) => `/${s}`),
  fc.constantFrom(1, null, [], {}, true, { toString: {} }, { valueOf: 1, toString: 'x' }, [[]]),
);

interface GenOp {
  op: string;
  key: string;
  value: unknown;
  path?: unknown;
  withValue: boolean;
  extra: [string, unknown][];
}

const genOp: fc.Arbitrary<GenOp> = fc.record({
  op: fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom('add', 'remove', 'replace') },
    { weight: 1, arbitrary: fc.constantFrom('test', 'move', 'copy', 'Add', '', 'REPLACE', 'add ') },
  ),
  kv: key.chain((k) => fc.tuple(fc.constant(k), fc.oneof({ weight: 4, arbitrary: validValue(k) }, { weight: 1, arbitrary: fc.oneof(anyJson, nested, loneSurrogate, loneSurrogate.map((x) => [x])) }))),
  path: fc.option(weirdPath, { freq: 8, nil: undefined }),
  withValue: fc.oneof({ weight: 6, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
  extra: fc.array(fc.tuple(fc.oneof(shortText, fc.constantFrom('add', 'remove', 'replace', 'op', 'path', 'value', 'from')), anyJson), { maxLength: 1 }),
}).map(({ op, kv: [k, value], path, withValue, extra }) => ({ op, key: k, value, path, withValue, extra }));

function render(op: GenOp, dialect: 'v2.0' | 'v2.1'): Body {
  const path = op.path === undefined ? pointer(op.key) : op.path;
  const entries: [string, unknown][] = dialect === 'v2.1' ? [['op', op.op], ['path', path]] : [[op.op, path]];
  if (op.withValue && op.op !== 'remove') entries.push(['value', op.value]);
  return objectOf([...entries, ...op.extra]);
}

const document = fc.oneof(
  { weight: 8, arbitrary: fc.array(genOp, { maxLength: 4 }).map((ops) => ({ ops })) },
  { weight: 1, arbitrary: fc.oneof(anyJson, nested).filter((v) => !Array.isArray(v)).map((junk) => ({ junk: JSON.stringify(junk) })) },
  { weight: 1, arbitrary: fc.oneof(
    fc.constantFrom('[', '[{"op": "add", "path": "/name", "value": }]', "[{'op': 'add'}]", '', 'null', '[1, 2]', '[[]]', '[null]', `[${'['.repeat(50_000)}${']'.repeat(50_000)}]`),
    fc.array(anyJson, { maxLength: 3 }).map((a) => JSON.stringify(a)),
  ).map((text) => ({ junk: text })) },
);

const contentType = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(V21, V20) },
  { weight: 1, arbitrary: fc.constantFrom(`${V21}; charset=UTF-8`, V21.toUpperCase(), 'application/json', 'application/json-patch+json',
    'text/plain', 'application/openstack-images-v2.2-json-patch', '', ';;', undefined) },
);

/** The key a JSON pointer names (for pointers the server accepted). */
function keyOf(path: string): string {
  return path.slice(1).replaceAll('~1', '/').replaceAll('~0', '~');
}

function normalised(k: string, v: unknown): unknown {
  if (k === 'tags') return [...new Set(v as string[])];
  if ((k === 'kernel_id' || k === 'ramdisk_id') && v === null) return '';
  return v;
}

describe('PATCH /v2/images/{id} with generated documents', () => {
  let h: Harness;
  /** Images the generated requests aim at, by index (refilled when one is deleted). */
  const pool: string[] = [];

  async function makePool(): Promise<void> {
    const props = Object.fromEntries(EXISTING.map((k) => [k, `v-${k}`]));
    const queued = await createImage(h, { name: 'queued', ...props, tags: ['t1'], visibility: 'private' }, { 'x-project-id': 'p1' });
    const active = await createImage(h, { name: 'active', disk_format: 'raw', container_format: 'bare', visibility: 'shared', ...props }, { 'x-project-id': 'p1' });
    await uploadBytes(h, active.id as string, Buffer.from('some bytes'));
    const prot = await createImage(h, { name: 'protected', protected: true, visibility: 'public', owner: 'p1', ...props });
    const foreign = await createImage(h, { name: 'p2 private', visibility: 'private', ...props }, { 'x-project-id': 'p2' });
    const deactivated = await createImage(h, { name: 'deactivated', disk_format: 'qcow2', container_format: 'bare', owner: 'p1', ...props });
    await uploadBytes(h, deactivated.id as string, Buffer.from('QFI\xfb more bytes'));
    assert.equal((await h.send({ method: 'POST', path: `/v2/images/${deactivated.id}/actions/deactivate` })).status, 204);
    pool.splice(0, pool.length, ...[queued, active, prot, foreign, deactivated].map((i) => i.id as string));
  }

  before(async () => {
    h = await startHarness();
    await makePool();
  });
  after(async () => { await assertAlive(h); await h.close(); });

  const target = fc.oneof(
    { weight: 8, arbitrary: fc.nat(4).map((i) => ({ pool: i })) },
    { weight: 1, arbitrary: fc.oneof(
      fc.constantFrom('not-a-uuid', '%2e%2e%2f%2e%2e%2fetc', '00000000-0000-0000-0000-00000000000g', '..', '%00'),
      fc.uuid(),
      shortText.map(encodeURIComponent),
    ).map((id) => ({ id })) },
  );

  it('never fails, never changes anything when rejecting, and applies exactly what it accepts', async () => {
    await fc.assert(fc.asyncProperty(target, fc.constantFrom(...CALLERS), contentType, document, accept,
      async (t, caller, ct, doc, acc) => {
        const id = 'pool' in t ? pool[t.pool] : t.id;
        const dialect = ct === V20 ? 'v2.0' : 'v2.1';
        const body = 'ops' in doc ? JSON.stringify(doc.ops.map((o) => render(o, dialect))) : doc.junk;
        const headers: Record<string, string> = {
          ...caller.headers, ...(ct === undefined ? {} : { 'content-type': ct }), ...(acc === undefined ? {} : { accept: acc }),
        };
        const watch = 'pool' in t ? [id] : [];
        const before = 'pool' in t ? JSON.parse((await adminGet(h, id)).text) as Body : undefined;
        const res = await sendChecked(h, { method: 'PATCH', path: `/v2/images/${id}`, headers, body }, watch);
        const media = (ct ?? '').split(';')[0].trim().toLowerCase();
        if (media !== V21 && media !== V20) {
          assert.equal(res.status, 415, clip(res.text));
          assert.ok(String(res.headers['accept-patch']).includes(V21), 'Accept-Patch names the patch media types');
          return;
        }
        if (res.status !== 200) return;

        assert.ok(before !== undefined, `a patch of ${id} was accepted: ${clip(body)}`);
        assert.ok(caller.admin || (caller.writer && before.owner === caller.project),
          `${caller.name} patched an image owned by ${String(before.owner)}`);
        const shown = JSON.parse(res.text) as Body;
        const got = JSON.parse((await adminGet(h, id)).text) as Body;
        assert.deepEqual(got, shown, 'GET shows what PATCH answered');
        const expected = new Map<string, { present: boolean; value?: unknown }>();
        if (!('ops' in doc)) return; // a "junk" text that happens to be a valid patch, e.g. "[]"
        for (const op of doc.ops) {
          const k = keyOf(op.path === undefined ? pointer(op.key) : op.path as string);
          expected.set(k, op.op === 'remove' ? { present: false } : { present: true, value: normalised(k, op.value) });
        }
        for (const [k, e] of expected) {
          assert.equal(Object.hasOwn(got, k), e.present, `after the patch, ${JSON.stringify(k)} ${e.present ? 'is set' : 'is gone'}`);
          if (e.present) assert.deepEqual(got[k], e.value, `after the patch, ${JSON.stringify(k)}`);
        }
        for (const k of new Set([...Object.keys(before), ...Object.keys(got)])) {
          if (expected.has(k) || k === 'updated_at') continue;
          assert.deepEqual(got[k], before[k], `the patch left ${JSON.stringify(k)} alone`);
        }
      }), {
      ...runs(300),
      examples: [
        // A path naming a property through escapes: "/m~0n" is "m~n", "/x~01y" is "x~1y".
        [{ pool: 0 }, CALLERS[1], V21, { ops: [{ op: 'replace', key: 'm~n', value: 'new', withValue: true, extra: [] }, { op: 'remove', key: 'x~1y', value: '', withValue: true, extra: [] }] }, 'application/json'],
        // Regression: a non-string path whose "toString" is not a function broke the error message (500).
        [{ pool: 0 }, CALLERS[0], V20, { ops: [{ op: 'test', key: 'name', value: null, path: undefined, withValue: true, extra: [['add', { toString: {} }]] }] }, ''],
        [{ pool: 0 }, CALLERS[1], V21, { ops: [{ op: 'add', key: 'name', value: 'x', path: { toString: {} }, withValue: true, extra: [] }] }, 'application/json'],
        // Regression: a deeply nested value made the error message overflow the stack (500).
        [{ pool: 0 }, CALLERS[0], V20, { junk: `[{"replace": "/tags", "value": [${'['.repeat(100_000)}${']'.repeat(100_000)}]}]` }, 'application/json'],
        [{ pool: 0 }, CALLERS[0], V21, { junk: `[{"op": "add", "path": "/hw_x", "value": ${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}}]` }, 'text/html'],
      ],
    });
  });

  it('follows each dialect on custom properties: add, replace and remove against what exists', async () => {
    const name = fc.oneof(fc.constantFrom(...EXISTING), customName);
    const op = fc.record({ op: fc.constantFrom('add', 'remove', 'replace'), name, value: shortText });
    await fc.assert(fc.asyncProperty(fc.constantFrom('v2.0', 'v2.1'), fc.array(op, { minLength: 1, maxLength: 4 }), accept,
      async (dialect, ops, acc) => {
        const image = await createImage(h, Object.fromEntries(EXISTING.map((k) => [k, `v-${k}`])), { 'x-project-id': 'p1' });
        // The model: which custom properties exist, and the status the whole patch gets.
        const props = new Map(EXISTING.map((k) => [k, `v-${k}`]));
        let status = 200;
        for (const o of ops) {
          const exists = props.has(o.name);
          if (o.op === 'remove') {
            if (!exists) { status = 409; break; }
            props.delete(o.name);
          } else if (o.op === 'replace' && !exists) {
            status = 409; break;
          } else if (o.op === 'add' && exists && dialect === 'v2.0') {
            status = 409; break;
          } else {
            props.set(o.name, o.value);
          }
        }
        const doc = ops.map((o) => (dialect === 'v2.1'
          ? objectOf([['op', o.op], ['path', pointer(o.name)], ...(o.op === 'remove' ? [] : [['value', o.value] as [string, unknown]])])
          : objectOf([[o.op, pointer(o.name)], ...(o.op === 'remove' ? [] : [['value', o.value] as [string, unknown]])])));
        const res = await sendChecked(h, {
          method: 'PATCH', path: `/v2/images/${image.id}`,
          headers: { 'x-project-id': 'p1', 'content-type': dialect === 'v2.0' ? V20 : V21, ...(acc === undefined ? {} : { accept: acc }) },
          body: JSON.stringify(doc),
        }, [image.id as string]);
        assert.equal(res.status, status, `${dialect} ${clip(JSON.stringify(ops))} → ${clip(res.text)}`);
        const got = JSON.parse((await adminGet(h, image.id as string)).text) as Body;
        const shownCustom = Object.keys(got).filter((k) => !BASE.includes(k) && !READ_ONLY.includes(k) && k !== 'id');
        const expected = status === 200 ? props : new Map(EXISTING.map((k) => [k, `v-${k}`]));
        assert.deepEqual(new Map(shownCustom.map((k) => [k, got[k]])), expected);
      }), runs(120));
  });
});
