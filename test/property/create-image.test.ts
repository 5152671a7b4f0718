import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import {
  adminGet, assertAlive, clip, runs, sendChecked, startHarness, type ApiResponse, type Harness,
} from './api-invariants.ts';
import {
  CONTAINER_FORMATS, DISK_FORMATS, READ_ONLY, RESERVED, accept, anyJson, customEntries, customName, nested,
  loneSurrogate, notString, objectOf, shortText, text255, tooLong, uuid, type Body,
} from './glance-schema.ts';

/**
 * Generated create bodies (POST /v2/images) thrown at a real site. The oracle is Glance's image
 * schema as described in shared/glance/API-NOTES.md §1.2/§1.5, written out here independently of
 * src/: base attributes, read-only and reserved names, string-valued custom properties.
 */

/** A body Glance accepts from an administrator. */
const validBody = fc.tuple(
  fc.record({
    id: uuid,
    name: fc.option(text255, { nil: null }),
    visibility: fc.constantFrom('private', 'shared', 'community', 'public'),
    protected: fc.boolean(),
    os_hidden: fc.boolean(),
    disk_format: fc.option(fc.constantFrom(...DISK_FORMATS), { nil: null }),
    container_format: fc.option(fc.constantFrom(...CONTAINER_FORMATS), { nil: null }),
    min_disk: fc.oneof(fc.nat(100), fc.maxSafeNat()),
    min_ram: fc.oneof(fc.nat(100), fc.maxSafeNat()),
    owner: fc.option(text255, { nil: null }),
    tags: fc.array(fc.oneof(shortText, fc.constantFrom('a', 'b', 'a')), { maxLength: 8 }),
    kernel_id: fc.uuid(),
    ramdisk_id: fc.uuid(),
    cinder_encryption_key_deletion_policy: fc.constantFrom('on_image_deletion', 'do_not_delete'),
  }, { requiredKeys: [] }),
  customEntries,
).map(([base, custom]) => objectOf([...Object.entries(base), ...custom]));

/** One thing that makes a body invalid, and the status Glance answers it with. */
type Fault = { key: string; value: unknown; status: number };

const faults: fc.Arbitrary<Fault> = fc.oneof(
  fc.record({ key: fc.constantFrom('name', 'owner'), value: fc.oneof(notString.filter((v) => v !== null), tooLong, nested), status: fc.constant(400) }),
  fc.record({ key: fc.constant('visibility'), value: fc.oneof(fc.constantFrom('Public', 'all', '', ' private', null, true, 1), anyJson.filter((v) => !['private', 'shared', 'community', 'public'].includes(v as string))), status: fc.constant(400) }),
  fc.record({ key: fc.constantFrom('protected', 'os_hidden'), value: fc.oneof(fc.constantFrom('true', 'false', 1, 0, null, 'True', []), notString.filter((v) => typeof v !== 'boolean')), status: fc.constant(400) }),
  fc.record({ key: fc.constantFrom('disk_format', 'container_format'), value: fc.oneof(fc.constantFrom('RAW', 'Bare', '', 'qcow3', 7, true, [], {}), shortText.filter((s) => !DISK_FORMATS.includes(s) && !CONTAINER_FORMATS.includes(s))), status: fc.constant(400) }),
  fc.record({ key: fc.constantFrom('min_disk', 'min_ram'), value: fc.constantFrom(-1, -0.5, 1.5, '1', '0', null, true, 2 ** 53, 1e300, -(2 ** 63), [], {}), status: fc.constant(400) }),
  fc.record({ key: fc.constant('tags'), value: fc.oneof(fc.constantFrom('a', 'a,b', null, 1, {}, true), fc.array(notString, { minLength: 1, maxLength: 3 }), tooLong.map((s) => ['ok', s]), nested.filter((v) => !Array.isArray(v) || v.length > 0)), status: fc.constant(400) }),
  fc.record({ key: fc.constant('id'), value: fc.oneof(fc.constantFrom('', 'not-a-uuid', '../../etc/passwd', '{12345678-1234-1234-1234-123456789012}', '123456781234123412341234567890120', null, 1, []), shortText, fc.uuid().map((u) => u.replaceAll('-', ''))), status: fc.constant(400) }),
  fc.record({ key: fc.constantFrom(...READ_ONLY), value: anyJson, status: fc.constant(403) }),
  fc.record({ key: fc.oneof(fc.constantFrom(...RESERVED), shortText.map((s) => `os_glance${s}`)), value: anyJson, status: fc.constant(403) }),
  fc.record({ key: customName, value: fc.oneof(notString, nested), status: fc.constant(400) }),
  fc.record({ key: fc.constantFrom('kernel_id', 'ramdisk_id'), value: fc.oneof(fc.constantFrom('not-a-uuid', '', 5, true, {}), shortText), status: fc.constant(400) }),
  fc.record({ key: fc.constant('cinder_encryption_key_deletion_policy'), value: fc.oneof(fc.constantFrom('sometimes', '', null, 1)), status: fc.constant(400) }),
  fc.record({ key: fc.oneof(fc.constant(''), tooLong), value: shortText, status: fc.constant(400) }),
  // Lone surrogates: legal JSON, not Unicode; the UTF-8 catalog cannot keep them.
  fc.record({ key: fc.constantFrom('name', 'owner', 'os_distro'), value: loneSurrogate, status: fc.constant(400) }),
  fc.record({ key: fc.constant('tags'), value: fc.tuple(loneSurrogate, loneSurrogate).map(([a, b]) => [a, b]), status: fc.constant(400) }),
  fc.record({ key: fc.oneof(loneSurrogate, loneSurrogate.map((s) => `hw_${s}`)), value: shortText, status: fc.constant(400) }),
);

function headersFor(acceptValue: string | undefined, extra: Record<string, string> = {}): Record<string, string> {
  return { 'content-type': 'application/json', ...(acceptValue === undefined ? {} : { accept: acceptValue }), ...extra };
}

/** What GET must show for a body Glance accepted (from an administrator without a project). */
function expectedView(body: Body): Body {
  const expected: Body = {
    name: null, visibility: 'shared', protected: false, os_hidden: false, disk_format: null, container_format: null,
    min_disk: 0, min_ram: 0, owner: null, tags: [], status: 'queued', size: null, virtual_size: null, checksum: null,
    os_hash_algo: null, os_hash_value: null,
  };
  for (const [k, v] of Object.entries(body)) {
    if (k === 'id') expected.id = (v as string).toLowerCase();
    else if (k === 'tags') expected.tags = [...new Set(v as string[])];
    else Object.defineProperty(expected, k, { value: v, enumerable: true, writable: true, configurable: true });
  }
  return expected;
}

function assertShows(view: Body, body: Body): void {
  const expected = expectedView(body);
  for (const [k, v] of Object.entries(expected)) {
    assert.ok(Object.hasOwn(view, k), `GET lacks ${JSON.stringify(k)}`);
    assert.deepEqual(view[k], v, `GET ${JSON.stringify(k)}`);
  }
  const known = new Set([...Object.keys(expected), ...READ_ONLY, 'id', 'tags']);
  const extra = Object.keys(view).filter((k) => !known.has(k));
  assert.deepEqual(extra, [], 'GET shows properties that were not sent');
}

describe('POST /v2/images with generated bodies', () => {
  let h: Harness;
  const existing: string[] = [];
  const usedIds = new Set<string>();

  /** The body with its generated id replaced when an earlier run used it already (ids are never reused). */
  function unused(body: Body): Body {
    if (typeof body.id !== 'string') return body;
    if (!usedIds.has(body.id.toLowerCase())) {
      usedIds.add(body.id.toLowerCase());
      return body;
    }
    const fresh = randomUUID();
    usedIds.add(fresh);
    return objectOf(Object.entries(body).map(([k, v]) => [k, k === 'id' ? (body.id === (body.id as string).toUpperCase() ? fresh.toUpperCase() : fresh) : v]));
  }
  before(async () => { h = await startHarness(); });
  after(async () => { await assertAlive(h); await h.close(); });

  async function post(body: string | Buffer | undefined, headers: Record<string, string>): Promise<ApiResponse> {
    return sendChecked(h, { method: 'POST', path: '/v2/images', headers, body }, existing.slice(-2));
  }

  it('accepts every valid body and GET shows exactly what was sent', async () => {
    await fc.assert(fc.asyncProperty(validBody, accept, async (generated, acc) => {
      const body = unused(generated);
      const changes = h.changeCount();
      const res = await post(JSON.stringify(body), headersFor(acc));
      assert.equal(res.status, 201, `${clip(JSON.stringify(body))} → ${clip(res.text)}`);
      assert.equal(h.changeCount(), changes + 1, 'one create, one change-log row');
      const created = JSON.parse(res.text) as Body;
      existing.push(created.id as string);
      assert.equal(res.headers.location?.endsWith(`/v2/images/${created.id}`), true);
      const got = await adminGet(h, created.id as string);
      assert.equal(got.status, 200);
      const view = JSON.parse(got.text) as Body;
      assert.deepEqual(view, created, 'GET shows what POST answered');
      assertShows(view, body);
    }), {
      ...runs(150),
      examples: [
        // Regression: names of Object.prototype as custom properties were silently dropped.
        [objectOf([['constructor', 'x'], ['toString', 'y'], ['__proto__', 'z']]), 'application/json'],
        // Regression: 255 astral characters are 255 characters (510 UTF-16 units) for Glance.
        [objectOf([['name', '😀'.repeat(255)], ['tags', ['𝔘'.repeat(255)]], ['😀'.repeat(255), 'v']]), 'application/json'],
        [objectOf([['name', 'nul\u0000byte'], ['k\u0000', 'v\u0000']]), undefined],
      ],
    });
  });

  it('rejects a body with one invalid field with the status Glance gives, and changes nothing', async () => {
    await fc.assert(fc.asyncProperty(validBody, faults, accept, async (valid, fault, acc) => {
      const body = objectOf([...Object.entries(valid).filter(([k]) => k !== fault.key), [fault.key, fault.value]]);
      const res = await post(JSON.stringify(body), headersFor(acc));
      assert.equal(res.status, fault.status, `${clip(JSON.stringify(fault))} → ${res.status} ${clip(res.text)}`);
    }), runs(200));
  });

  it('rejects bodies with several invalid fields, and changes nothing', async () => {
    await fc.assert(fc.asyncProperty(validBody, fc.array(faults, { minLength: 2, maxLength: 4 }), accept, async (valid, fs, acc) => {
      const body = objectOf([...Object.entries(valid), ...fs.map((f) => [f.key, f.value] as const)]);
      const res = await post(JSON.stringify(body), headersFor(acc));
      assert.ok(res.status >= 400 && res.status < 500, `${clip(JSON.stringify(fs))} → ${res.status} ${clip(res.text)}`);
    }), runs(100));
  });

  it('enforces policy for non-admin callers: no public images, no foreign owners, readers cannot create', async () => {
    const project = fc.constantFrom('p1', 'p2', 'a-project', 'F00D');
    const ownerChoice = fc.constantFrom('absent', 'self', 'other', 'null');
    await fc.assert(fc.asyncProperty(validBody, project, fc.constantFrom('member', 'reader', 'MEMBER', 'member,reader', '_member_', ''), ownerChoice, accept,
      async (valid, p, roles, owner, acc) => {
        const entries = Object.entries(unused(valid)).filter(([k]) => k !== 'owner');
        if (owner !== 'absent') entries.push(['owner', owner === 'self' ? p : owner === 'null' ? null : `${p}-other`]);
        const body = objectOf(entries);
        const writer = roles.toLowerCase().split(',').some((r) => r === 'member' || r === '_member_') || roles === '';
        const res = await post(JSON.stringify(body), headersFor(acc, { 'x-project-id': p, ...(roles === '' ? {} : { 'x-roles': roles }) }));
        const forbidden = !writer || body.visibility === 'public' || (Object.hasOwn(body, 'owner') && body.owner !== p);
        if (forbidden) {
          assert.equal(res.status, 403, clip(res.text));
        } else {
          assert.equal(res.status, 201, clip(res.text));
          const created = JSON.parse(res.text) as Body;
          existing.push(created.id as string);
          assert.equal(created.owner, p);
        }
      }), runs(100));
  });

  it('rejects a second create with an id already used (also after delete), and changes nothing', async () => {
    await fc.assert(fc.asyncProperty(fc.boolean(), fc.boolean(), accept, async (upper, deleteFirst, acc) => {
      const first = JSON.parse((await post(JSON.stringify({ name: 'dup' }), headersFor('application/json'))).text) as Body;
      const id = first.id as string;
      if (deleteFirst) assert.equal((await h.send({ method: 'DELETE', path: `/v2/images/${id}` })).status, 204);
      const res = await sendChecked(h, {
        method: 'POST', path: '/v2/images', headers: headersFor(acc), body: JSON.stringify({ id: upper ? id.toUpperCase() : id }),
      }, [id]);
      assert.equal(res.status, 409, clip(res.text));
    }), runs(20));
  });

  it('rejects non-object bodies, malformed JSON and odd media types, and changes nothing', async () => {
    const json = (v: unknown) => JSON.stringify(v);
    const deep = fc.integer({ min: 1, max: 200_000 }).map((n) => `{"name": ${'['.repeat(n)}${']'.repeat(n)}}`);
    const deepCustom = fc.integer({ min: 1000, max: 200_000 }).map((n) => `{"hw_x": ${'{"a":'.repeat(n)}1${'}'.repeat(n)}}`);
    const deepId = fc.integer({ min: 1000, max: 200_000 }).map((n) => `{"id": ${'['.repeat(n)}${']'.repeat(n)}}`);
    const nonObject = fc.oneof(
      fc.constantFrom('null', 'true', '0', '"a string"', '[]', '[{}]', '""', ' ', ''),
      fc.jsonValue().filter((v) => v === null || typeof v !== 'object' || Array.isArray(v)).map(json),
    );
    const malformed = fc.oneof(
      fc.constantFrom('{', '{"name": }', "{'name': 'x'}", '{"name": "x",}', 'NaN', '{"a": undefined}', '\u0000', '{"name":"x"}garbage', '\ufeff{}'),
      validBody.map((b) => json(b)).chain((s) => fc.nat(Math.max(0, s.length - 2)).map((n) => s.slice(0, n + 1))),
      fc.string({ maxLength: 40 }).filter((s) => { try { JSON.parse(s); return false; } catch { return true; } }),
    );
    const huge = fc.constantFrom(
      `{"name": "${'x'.repeat(2 << 20)}"}`,
      `{"hw_a": "${'y'.repeat((1 << 20) - 10)}"}`,
    );
    const bodyText = fc.oneof(
      { weight: 3, arbitrary: nonObject },
      { weight: 3, arbitrary: malformed },
      { weight: 1, arbitrary: deep },
      { weight: 1, arbitrary: deepCustom },
      { weight: 1, arbitrary: deepId },
      { weight: 1, arbitrary: huge },
    );
    const contentType = fc.constantFrom(
      'application/json', 'application/json; charset=utf-8', 'APPLICATION/JSON', 'text/plain', 'application/octet-stream',
      'application/openstack-images-v2.1-json-patch', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x',
      'a/b/c', 'application/json; charset=latin1', ';;;', undefined,
    );
    await fc.assert(fc.asyncProperty(bodyText, contentType, accept, fc.boolean(), async (text, ct, acc, asBuffer) => {
      const headers: Record<string, string> = { ...(ct === undefined ? {} : { 'content-type': ct }), ...(acc === undefined ? {} : { accept: acc }) };
      const res = await post(asBuffer ? Buffer.from(text) : text, headers);
      assert.ok(res.status >= 400 && res.status < 500, `${ct} ${text.slice(0, 80)} → ${res.status} ${res.text.slice(0, 200)}`);
    }), {
      ...runs(150),
      examples: [
        // Regression: lone surrogates were accepted, stored as U+FFFD, and two of them collided (500).
        ['{"hw_\\udc00": "x", "hw_\\udc01": "y"}', 'application/json', 'application/json', false],
        ['{"tags": ["\\ud800", "\\ud801"]}', 'application/json', 'text/html', false],
        ['{"name": "a\\ud800b"}', 'application/json', undefined, false],
        // Regression: a deeply nested value made the error message itself overflow the stack (500).
        [`{"name": ${'['.repeat(100_000)}${']'.repeat(100_000)}}`, 'application/json', 'application/json', false],
        [`{"id": ${'['.repeat(100_000)}${']'.repeat(100_000)}}`, 'application/json', 'application/json', false],
        [`{"hw_x": ${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}}`, 'text/plain', undefined, true],
      ],
    });
  });

  it('closes, rather than stalls, a connection whose request body was abandoned half-read', async () => {
    // Regression: after a too-large body read as a stream (400), the keep-alive connection was
    // left holding the unread rest, and the next request on it hung until the keep-alive timeout.
    const within = <T>(p: Promise<T>) => Promise.race([p, new Promise<never>((_, reject) => { setTimeout(() => reject(new Error('stalled')), 10_000).unref(); })]);
    for (const ct of ['text/plain', 'application/octet-stream']) {
      const first = await within(post(`{"name": "${'x'.repeat(2 << 20)}"}`, { 'content-type': ct, accept: 'application/json' }));
      assert.equal(first.status, 400);
      const second = await within(post(`{"name": "${'y'.repeat((1 << 20) - 10)}"}`, { 'content-type': 'application/json', accept: 'application/json' }));
      assert.equal(second.status, 413);
    }
  });
});
