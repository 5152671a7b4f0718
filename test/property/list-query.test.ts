import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import {
  assertAlive, clip, createImage, runs, sendChecked, startHarness, uploadBytes, type ApiResponse, type Harness,
} from './api-invariants.ts';
import { accept, shortText, type Body } from './glance-schema.ts';

/**
 * Generated query strings for GET /v2/images (known and unknown names, filters, sort, limit,
 * marker, in:/gt: operators, unicode, raw and broken percent-encoding) from generated callers.
 * A list never changes the catalog; it answers 200 or 400; what it lists is what the caller may
 * see, honours the filters whose meaning is settled, fits the limit, and pages without repeats.
 */

type Caller = { name: string; headers: Record<string, string> };
const CALLERS: Caller[] = [
  { name: 'admin', headers: {} },
  { name: 'p1 member', headers: { 'x-project-id': 'p1' } },
  { name: 'p1 reader', headers: { 'x-project-id': 'p1', 'x-roles': 'reader' } },
  { name: 'p2 member', headers: { 'x-project-id': 'p2', 'x-roles': 'member' } },
  { name: 'p3 member', headers: { 'x-project-id': 'p3' } },
  { name: 'no project', headers: { 'x-roles': 'member' } },
];

const NAMES = ['alpha', 'beta', 'with,comma', 'with "quote"', 'ünïcödé 😀', '', 'a%20b', 'x'.repeat(255)];
const TAGS = ['t1', 't2', 'a,b', '😀', 'sp ace'];
const CUSTOM = ['color', 'hw_disk_bus', 'os_distro'];
const SORT_KEYS = ['name', 'status', 'container_format', 'disk_format', 'size', 'id', 'created_at', 'updated_at'];

const iso = fc.date({ min: new Date('1999-01-01T00:00:00Z'), max: new Date('2100-01-01T00:00:00Z'), noInvalidDate: true })
  .map((d) => d.toISOString());

function valuesFor(name: string, ids: () => string[]): fc.Arbitrary<string> {
  const junk = fc.oneof(shortText, fc.constantFrom('', ' ', 'null', 'None', '-1', 'true', 'in:', 'gt:', 'eq:', ':'));
  const known = ((): fc.Arbitrary<string> => {
    switch (name) {
      case 'limit': return fc.oneof(fc.constantFrom('0', '1', '2', '3', '-1', '1000', '1001', '99999999999999999999', '1.5', 'abc', ' 5', '0x10', '1e3'), fc.nat(50).map(String));
      case 'marker': return fc.oneof(fc.nat(60).map((i) => ids()[i % Math.max(1, ids().length)] ?? ''), fc.uuid(), fc.constantFrom('not-a-uuid', '../../etc'));
      case 'sort': return fc.array(fc.tuple(fc.constantFrom(...SORT_KEYS, 'owner', ''), fc.constantFrom('', ':asc', ':desc', ':up', ':asc:x')), { minLength: 1, maxLength: 3 })
        .map((parts) => parts.map(([k, d]) => `${k}${d}`).join(','));
      case 'sort_key': return fc.constantFrom(...SORT_KEYS, 'owner', 'tags', '');
      case 'sort_dir': return fc.constantFrom('asc', 'desc', 'ASC', 'up', '');
      case 'visibility': return fc.constantFrom('public', 'private', 'shared', 'community', 'all', 'Public', '');
      case 'member_status': return fc.constantFrom('pending', 'accepted', 'rejected', 'all', 'ACCEPTED', '');
      case 'os_hidden': case 'protected': return fc.constantFrom('true', 'false', 'True', 'FALSE', '1', 'yes', '');
      case 'size_min': case 'size_max': case 'min_disk': case 'min_ram': case 'size': case 'virtual_size':
        return fc.oneof(fc.nat(20).map(String), fc.constantFrom('-1', '1.5', 'abc', '99999999999999999999', ''));
      case 'created_at': case 'updated_at':
        return fc.tuple(fc.constantFrom('', 'gt:', 'gte:', 'lt:', 'lte:', 'eq:', 'neq:', 'in:', 'xx:'), fc.oneof(iso, fc.constantFrom('2020-13-45', 'yesterday', '2020-01-01', '9999-12-31T23:59:59Z', '+275760-09-13T00:00:00Z', '2020-01-01T00:00:00+25:00')))
          .map(([op, t]) => `${op}${t}`);
      case 'name': return fc.oneof(fc.constantFrom(...NAMES), fc.array(fc.constantFrom(...NAMES.map((n) => (n.includes(',') || n.includes('"') ? `"${n.replaceAll('"', '\\"')}"` : n))), { minLength: 1, maxLength: 3 }).map((ns) => `in:${ns.join(',')}`));
      case 'id': return fc.oneof(fc.nat(60).map((i) => ids()[i % Math.max(1, ids().length)] ?? ''), fc.array(fc.uuid(), { maxLength: 3 }).map((us) => `in:${us.join(',')}`));
      case 'status': return fc.constantFrom('queued', 'active', 'in:queued,active', 'in:', 'deleted', 'killed');
      case 'disk_format': case 'container_format': return fc.constantFrom('raw', 'qcow2', 'bare', 'in:raw,qcow2', 'in:"raw"', 'RAW');
      case 'owner': return fc.constantFrom('p1', 'p2', 'p3', '', 'None');
      case 'tag': return fc.constantFrom(...TAGS, '');
      case 'color': case 'hw_disk_bus': case 'os_distro': return fc.constantFrom('red', 'blue', 'virtio', 'ubuntu', '');
      default: return junk;
    }
  })();
  return fc.oneof({ weight: 5, arbitrary: known }, { weight: 1, arbitrary: junk });
}

const paramName = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('limit', 'marker', 'sort', 'sort_key', 'sort_dir', 'visibility', 'member_status',
    'os_hidden', 'protected', 'size_min', 'size_max', 'created_at', 'updated_at', 'name', 'id', 'status', 'disk_format',
    'container_format', 'owner', 'tag', 'min_disk', 'min_ram', 'size', 'virtual_size', 'checksum', 'os_hash_value', ...CUSTOM) },
  { weight: 1, arbitrary: fc.oneof(shortText, fc.constantFrom('changes-since', '__proto__', 'constructor', 'toString', '', 'a b', 'ñ', 'limit ', 'LIMIT', 'schema', 'self')) },
);

/** How a name or value travels in the query string. */
const encoding = fc.constantFrom('component', 'component', 'component', 'plus', 'raw-latin1', 'double');
function encode(s: string, how: string): string {
  switch (how) {
    case 'plus': return encodeURIComponent(s).replaceAll('%20', '+');
    case 'double': return encodeURIComponent(encodeURIComponent(s));
    case 'raw-latin1': return [...s].map((c) => (/^[\u0021-\u00ff]$/.test(c) && !'&=#%+'.includes(c) ? c : encodeURIComponent(c))).join('');
    default: return encodeURIComponent(s);
  }
}
/** Stray bytes in a query string: broken escapes, empty pairs, bare names. */
const garbage = fc.constantFrom('%', '%zz', '%E0%A4', '%C3', '%00', '&&', '=', '==x', 'a=b=c', '%FF%FE', ';', '%2', 'tag', 'limit');

describe('GET /v2/images with generated query strings', () => {
  let h: Harness;
  const ids: string[] = [];

  before(async () => {
    h = await startHarness();
    // A catalog with some of everything the filters look at.
    let n = 0;
    for (const owner of ['p1', 'p2', 'p3']) {
      for (const visibility of ['public', 'private', 'shared', 'community']) {
        for (const hidden of [false, true]) {
          const i = n++;
          const body: Body = {
            name: NAMES[i % NAMES.length], visibility, owner, os_hidden: hidden, protected: i % 5 === 0,
            tags: TAGS.filter((_, j) => (i + j) % 3 === 0), [CUSTOM[i % 3]]: ['red', 'blue', 'virtio', 'ubuntu'][i % 4],
            ...(i % 2 === 0 ? { disk_format: i % 4 === 0 ? 'raw' : 'qcow2', container_format: 'bare' } : {}),
            min_disk: i % 4, min_ram: i % 3,
          };
          const image = await createImage(h, body);
          ids.push(image.id as string);
          if (i % 3 === 0 && body.disk_format !== undefined) await uploadBytes(h, image.id as string, Buffer.alloc(i, 7));
          if (visibility === 'shared') {
            for (const [member, status] of [['p2', 'accepted'], ['p3', 'pending'], ['p1', 'rejected']]) {
              if (member === owner) continue;
              assert.equal((await h.send({ method: 'POST', path: `/v2/images/${image.id}/members`, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ member }) })).status, 200);
              if (status !== 'pending') {
                assert.equal((await h.send({ method: 'PUT', path: `/v2/images/${image.id}/members/${member}`, headers: { 'content-type': 'application/json', 'x-project-id': member }, body: JSON.stringify({ status }) })).status, 200);
              }
            }
          }
        }
      }
    }
  });
  after(async () => { await assertAlive(h); await h.close(); });

  const query = fc.array(
    fc.oneof(
      { weight: 12, arbitrary: paramName.chain((name) => fc.tuple(fc.constant(name), valuesFor(name, () => ids), encoding)).map(([name, value, how]) => ({ name, value, how })) },
      { weight: 1, arbitrary: garbage.map((g) => ({ raw: g })) },
    ),
    { maxLength: 6 },
  );

  function render(parts: ({ name: string; value: string; how: string } | { raw: string })[]): string {
    return parts.map((p) => ('raw' in p ? p.raw : `${encode(p.name, p.how)}=${encode(p.value, p.how)}`)).join('&');
  }

  /** The pairs the server sees when the encoding was the ordinary one (else undefined). */
  function plainPairs(parts: ({ name: string; value: string; how: string } | { raw: string })[]): [string, string][] | undefined {
    if (parts.some((p) => 'raw' in p || p.how !== 'component')) return undefined;
    return parts.map((p) => [(p as { name: string }).name, (p as { value: string }).value]);
  }

  it('answers 200 or 400, changes nothing, and lists only what the caller may see and the filters ask for', async () => {
    await fc.assert(fc.asyncProperty(query, fc.constantFrom(...CALLERS), accept, async (parts, caller, acc) => {
      const qs = render(parts);
      const headers = { ...caller.headers, ...(acc === undefined ? {} : { accept: acc }) };
      const changes = h.changeCount();
      const rows = h.catalogRows();
      const res = await sendChecked(h, { method: 'GET', path: `/v2/images${qs === '' ? '' : `?${qs}`}`, headers });
      assert.equal(h.changeCount(), changes, 'a list changed the change log');
      assert.deepEqual(h.catalogRows(), rows, 'a list changed the catalog');
      assert.ok(res.status === 200 || res.status === 400, `?${clip(qs)} → ${res.status} ${clip(res.text)}`);
      if (res.status !== 200) return;

      const body = JSON.parse(res.text) as { images: Body[]; first: string; schema: string; next?: string };
      if (process.env.FC_STATS !== undefined) h.statuses.set(`listed ${Math.min(body.images.length, 5)}`, (h.statuses.get(`listed ${Math.min(body.images.length, 5)}`) ?? 0) + 1);
      assert.ok(Array.isArray(body.images));
      assert.equal(body.schema, '/v2/schemas/images');
      assert.ok(body.first.startsWith('/v2/images'));
      if (body.next !== undefined) assert.ok(body.next.startsWith('/v2/images?') && body.next.includes('marker='));
      assert.equal(new Set(body.images.map((i) => i.id)).size, body.images.length, 'no image twice on a page');
      // Every listed image is one the caller may GET.
      for (const image of body.images) {
        const one = await h.send({ method: 'GET', path: `/v2/images/${image.id}`, headers: { ...caller.headers, accept: 'application/json' } });
        assert.equal(one.status, 200, `${caller.name} listed ${String(image.id)} (${String(image.visibility)}, owner ${String(image.owner)}) but cannot GET it`);
      }

      const pairs = plainPairs(parts);
      if (pairs === undefined) return;
      const last = (n: string) => pairs.filter(([k]) => k === n).at(-1)?.[1];
      const limit = last('limit');
      const effective = limit === undefined ? 25 : Math.min(Number(limit), 1000);
      assert.ok(body.images.length <= effective, `${body.images.length} images for limit ${limit}`);
      if (body.images.length < effective) assert.equal(body.next, undefined, 'a short page has no next link');
      if (last('os_hidden') === undefined) assert.ok(body.images.every((i) => i.os_hidden === false), 'hidden images only when asked');
      const visibility = last('visibility');
      if (visibility !== undefined && visibility !== 'all') assert.ok(body.images.every((i) => i.visibility === visibility), `visibility=${visibility}`);
      if (visibility === undefined && caller.name !== 'admin') {
        assert.ok(body.images.every((i) => i.visibility !== 'community' || i.owner === caller.headers['x-project-id']), "others' community images only with visibility=community|all");
      }
      for (const tag of pairs.filter(([k]) => k === 'tag').map(([, v]) => v)) {
        assert.ok(body.images.every((i) => (i.tags as string[]).includes(tag)), `tag=${tag}`);
      }
      for (const name of ['owner', ...CUSTOM]) {
        const v = last(name);
        if (v !== undefined) assert.ok(body.images.every((i) => i[name] === v), `${name}=${v}`);
      }
      const sizeMin = last('size_min');
      if (sizeMin !== undefined) assert.ok(body.images.every((i) => i.size !== null && (i.size as number) >= Number(sizeMin)), `size_min=${sizeMin}`);
      const sizeMax = last('size_max');
      if (sizeMax !== undefined) assert.ok(body.images.every((i) => i.size !== null && (i.size as number) <= Number(sizeMax)), `size_max=${sizeMax}`);
    }), runs(250));
  });

  it('pages through a listing by its next links without repeating or skipping an image', async () => {
    const sort = fc.oneof(
      fc.constant<[string, string][]>([]),
      fc.tuple(fc.constantFrom(...SORT_KEYS), fc.constantFrom('asc', 'desc')).map(([k, d]): [string, string][] => [['sort_key', k], ['sort_dir', d]]),
      fc.array(fc.tuple(fc.constantFrom(...SORT_KEYS), fc.constantFrom('asc', 'desc')), { minLength: 1, maxLength: 3 })
        .map((s): [string, string][] => [['sort', s.map(([k, d]) => `${k}:${d}`).join(',')]]),
    );
    const filters = fc.subarray<[string, string]>([['visibility', 'all'], ['os_hidden', 'true'], ['member_status', 'all'], ['tag', 't1'], ['disk_format', 'raw']]);
    await fc.assert(fc.asyncProperty(sort, filters, fc.integer({ min: 1, max: 7 }), fc.constantFrom(...CALLERS), async (s, f, limit, caller) => {
      const base: [string, string][] = [...s, ...f];
      const all = await h.send({ method: 'GET', path: `/v2/images?${new URLSearchParams([...base, ['limit', '1000']])}`, headers: caller.headers });
      assert.equal(all.status, 200, clip(all.text));
      const everything = (JSON.parse(all.text) as { images: Body[] }).images.map((i) => i.id);
      const seen: unknown[] = [];
      let path: string | undefined = `/v2/images?${new URLSearchParams([...base, ['limit', String(limit)]])}`;
      for (let pages = 0; path !== undefined; pages++) {
        assert.ok(pages <= everything.length + 1, 'paging does not end');
        const page: ApiResponse = await sendChecked(h, { method: 'GET', path, headers: caller.headers });
        assert.equal(page.status, 200, clip(page.text));
        const body = JSON.parse(page.text) as { images: Body[]; next?: string };
        seen.push(...body.images.map((i) => i.id));
        path = body.next;
      }
      assert.deepEqual(seen, everything, `pages of ${limit} give the same sequence as one page`);
    }), runs(60));
  });
});
