import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { ConflictError, ImageNotFoundError, NotFoundError } from '../../src/core/errors.ts';
import type { Image, ImageMember, MemberStatus, Visibility } from '../../src/core/image.ts';
import type { PolicyRecord } from '../../src/core/placement-policy.ts';
import type { ImportTask, Task } from '../../src/core/task.ts';
import {
  SORT_KEYS, type Catalog, type Change, type ImageListQuery, type ListScope, type SortDir, type SortKey,
} from '../../src/core/ports.ts';

/** A freshly opened, empty catalog and how to dispose of it. */
export interface CatalogHandle {
  catalog: Catalog;
  /** Closes the catalog and removes what `open` created. */
  cleanup(): Promise<void>;
}

export interface ConformanceOptions {
  /** Skip the whole suite with this message (e.g. "PostgreSQL tests need TEST_PG_URL"). */
  skip?: string;
}

const ADMIN_ALL: ListScope = { admin: true, projectId: null, visibility: 'all', memberStatus: 'all' };

/**
 * The contract of the `Catalog` port (src/core/ports.ts), run against one adapter. Every test
 * opens its own empty catalog with `open`, so adapters need no reset operation.
 */
export function catalogConformance(name: string, open: () => Promise<CatalogHandle>, options: ConformanceOptions = {}): void {
  let counter = 0;
  /** A full image record; successive calls get increasing created_at/updated_at. */
  const makeImage = (overrides: Partial<Image> = {}): Image => {
    const n = counter++;
    const at = new Date(Date.UTC(2024, 0, 1) + n * 1000).toISOString();
    return {
      id: randomUUID(), name: `image-${n}`, status: 'queued', visibility: 'shared', protected: false, os_hidden: false,
      checksum: null, os_hash_algo: null, os_hash_value: null, size: null, virtual_size: null, disk_format: null,
      container_format: null, min_disk: 0, min_ram: 0, owner: null, created_at: at, updated_at: at, tags: [],
      properties: {}, locations: [], ...overrides,
    };
  };
  const makeMember = (imageId: string, memberId: string, status: MemberStatus = 'pending'): ImageMember => {
    const at = new Date(Date.UTC(2024, 5, 1) + counter++ * 1000).toISOString();
    return { image_id: imageId, member_id: memberId, status, created_at: at, updated_at: at };
  };
  const query = (overrides: Partial<ImageListQuery> = {}): ImageListQuery => ({
    scope: ADMIN_ALL, base: {}, properties: {}, tags: [], sort: [{ key: 'created_at', dir: 'desc' }, { key: 'id', dir: 'desc' }],
    limit: 1000, ...overrides,
  });
  const withCatalog = (fn: (catalog: Catalog) => Promise<void>) => async () => {
    const handle = await open();
    try {
      await fn(handle.catalog);
    } finally {
      await handle.cleanup();
    }
  };
  const allChanges = (catalog: Catalog): Promise<Change[]> => catalog.changesSince(0, Number.MAX_SAFE_INTEGER);
  const lastSeq = async (catalog: Catalog): Promise<number> => (await allChanges(catalog)).at(-1)?.seq ?? 0;
  /** Runs `fn`, which must reject with `errorClass`, and checks that the change log did not grow. */
  const rejectsWithoutChange = async (catalog: Catalog, fn: () => Promise<unknown>, errorClass: new (...args: never[]) => Error) => {
    const before = await allChanges(catalog);
    await assert.rejects(fn(), errorClass);
    assert.deepEqual(await allChanges(catalog), before, 'a failed mutation must not append to the change log');
  };
  const ids = (images: Image[]) => images.map((i) => i.id).sort();
  const idsOf = (...images: Image[]) => images.map((i) => i.id).sort();

  describe(`Catalog conformance: ${name}`, { skip: options.skip }, () => {
    describe('createImage / getImage', () => {
      it('round-trips every field (properties, tag order, location order, large sizes, booleans)', withCatalog(async (catalog) => {
        const full = makeImage({
          name: 'ubuntu ünïcødé 🚀', status: 'active', visibility: 'public', protected: true, os_hidden: true,
          checksum: 'd41d8cd98f00b204e9800998ecf8427e', os_hash_algo: 'sha512', os_hash_value: 'ab'.repeat(64),
          size: 5 * 2 ** 40 + 3, virtual_size: 2 ** 50, disk_format: 'qcow2', container_format: 'bare', min_disk: 20,
          min_ram: 2048, owner: randomUUID(), created_at: '2024-03-04T05:06:07.089Z', updated_at: '2024-03-05T06:07:08.910Z',
          tags: ['zeta', 'alpha', 'Mid dle', 'ünï'],
          properties: { os_distro: 'ubuntu', 'hw:cpu_policy': 'dedicated', empty: '', os_glance_importing_to_stores: 'a,b', long: 'x'.repeat(5000), constructor: 'c' },
          locations: [
            { store: 'site-b', url: 'file:///b/x' }, { store: 'site-a', url: 'file:///a/x' }, { store: 'central', url: 's3://bucket/x' },
          ],
        });
        // A property named like an Object.prototype member is an ordinary property.
        Object.defineProperty(full.properties, '__proto__', { value: 'p', enumerable: true, writable: true, configurable: true });
        const minimal = makeImage({ name: null });
        await catalog.createImage(full);
        await catalog.createImage(minimal);
        assert.deepEqual(await catalog.getImage(full.id), full);
        assert.deepEqual(await catalog.getImage(minimal.id), minimal);
      }));

      it('returns undefined for an unknown id', withCatalog(async (catalog) => {
        assert.equal(await catalog.getImage(randomUUID()), undefined);
      }));

      it('returns copies: changing a returned or passed record does not change the stored one', withCatalog(async (catalog) => {
        const image = makeImage({ tags: ['a'], properties: { p: '1' } });
        const expected = structuredClone(image);
        await catalog.createImage(image);
        image.tags.push('mutated');
        image.properties.p = 'mutated';
        const got = (await catalog.getImage(image.id))!;
        got.tags.push('again');
        got.name = 'again';
        assert.deepEqual(await catalog.getImage(image.id), expected);
      }));

      it('rejects a duplicate id with ConflictError, keeping the original and the change log', withCatalog(async (catalog) => {
        const image = makeImage({ tags: ['t'] });
        await catalog.createImage(image);
        await rejectsWithoutChange(catalog, () => catalog.createImage(makeImage({ id: image.id, name: 'other' })), ConflictError);
        assert.deepEqual(await catalog.getImage(image.id), image);
      }));

      it('concurrent creates of one id (two nodes): exactly one lands, every other gets ConflictError, one change', withCatalog(async (catalog) => {
        const id = randomUUID();
        const outcomes = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => catalog.createImage(makeImage({ id, name: `racer-${i}` }))));
        const landed = outcomes.filter((o) => o.status === 'fulfilled');
        assert.equal(landed.length, 1, JSON.stringify(outcomes.map((o) => o.status === 'rejected' ? String(o.reason) : 'ok')));
        for (const o of outcomes) if (o.status === 'rejected') assert.ok(o.reason instanceof ConflictError, String(o.reason));
        assert.deepEqual((await allChanges(catalog)).map((c) => [c.entity, c.id]), [['image', id]]);
      }));

      it('rejects the id of a deleted image with ConflictError (ids are never reused)', withCatalog(async (catalog) => {
        const image = makeImage();
        await catalog.createImage(image);
        await catalog.deleteImage(image.id);
        await rejectsWithoutChange(catalog, () => catalog.createImage(makeImage({ id: image.id })), ConflictError);
        assert.equal(await catalog.getImage(image.id), undefined);
      }));
    });

    describe('updateImage', () => {
      it('replaces every field and returns the stored record', withCatalog(async (catalog) => {
        const image = makeImage({
          tags: ['a', 'b', 'c'], properties: { keep: '1', drop: '2' }, locations: [{ store: 's1', url: 'file:///1' }],
        });
        await catalog.createImage(image);
        let seen: Image | undefined;
        const next: Image = {
          ...image, name: 'renamed', status: 'active', visibility: 'community', protected: true, os_hidden: true,
          checksum: 'c'.repeat(32), os_hash_algo: 'sha512', os_hash_value: 'f'.repeat(128), size: 2 ** 33, virtual_size: 2 ** 34,
          disk_format: 'raw', container_format: 'ova', min_disk: 1, min_ram: 2, owner: 'p1', updated_at: '2025-01-01T00:00:00.000Z',
          tags: ['c', 'new', 'a'], properties: { keep: '1', added: 'x' },
          locations: [{ store: 's2', url: 'file:///2' }, { store: 's1', url: 'file:///1' }],
        };
        const returned = await catalog.updateImage(image.id, (current) => { seen = current; return next; });
        assert.deepEqual(seen, image, 'mutate receives the current record');
        assert.deepEqual(returned, next);
        assert.deepEqual(await catalog.getImage(image.id), next);
      }));

      it('accepts a mutate that changes the record it was given in place', withCatalog(async (catalog) => {
        const image = makeImage({ tags: ['a'] });
        await catalog.createImage(image);
        const returned = await catalog.updateImage(image.id, (current) => {
          current.tags.push('b');
          current.properties.x = 'y';
          current.name = 'in place';
          return current;
        });
        const expected = { ...image, tags: ['a', 'b'], properties: { x: 'y' }, name: 'in place' };
        assert.deepEqual(returned, expected);
        assert.deepEqual(await catalog.getImage(image.id), expected);
      }));

      it('leaves the record and the change log unchanged when mutate throws (even after changing its argument)', withCatalog(async (catalog) => {
        const image = makeImage({ tags: ['a'], properties: { p: '1' }, locations: [{ store: 's', url: 'file:///s' }] });
        await catalog.createImage(image);
        class Veto extends Error {}
        await rejectsWithoutChange(catalog, () => catalog.updateImage(image.id, (current) => {
          current.tags.push('b');
          current.properties.p = '2';
          current.locations = [];
          current.status = 'active';
          throw new Veto('no');
        }), Veto);
        assert.deepEqual(await catalog.getImage(image.id), image);
      }));

      it('raises ImageNotFoundError for a missing or deleted id without calling mutate', withCatalog(async (catalog) => {
        const deleted = makeImage();
        await catalog.createImage(deleted);
        await catalog.deleteImage(deleted.id);
        let called = false;
        const mutate = (current: Image) => { called = true; return current; };
        await rejectsWithoutChange(catalog, () => catalog.updateImage(randomUUID(), mutate), ImageNotFoundError);
        await rejectsWithoutChange(catalog, () => catalog.updateImage(deleted.id, mutate), ImageNotFoundError);
        assert.equal(called, false);
      }));

      it('loses no concurrent update: 20 concurrent tag additions all land', withCatalog(async (catalog) => {
        const image = makeImage();
        await catalog.createImage(image);
        const since = await lastSeq(catalog);
        const tags = Array.from({ length: 20 }, (_, i) => `tag-${i}`);
        await Promise.all(tags.map((tag) => catalog.updateImage(image.id, (current) => ({ ...current, tags: [...current.tags, tag] }))));
        const stored = (await catalog.getImage(image.id))!;
        assert.deepEqual([...stored.tags].sort(), [...tags].sort());
        assert.equal(stored.tags.length, 20);
        const changes = await catalog.changesSince(since, 1000);
        assert.equal(changes.length, 20, 'one change per update');
        assert.deepEqual(changes.at(-1)!.body, stored);
      }));

      it('loses no concurrent read-modify-write of a property (counter reaches 20)', withCatalog(async (catalog) => {
        const image = makeImage({ properties: { counter: '0' } });
        await catalog.createImage(image);
        await Promise.all(Array.from({ length: 20 }, () => catalog.updateImage(image.id, (current) => ({
          ...current, properties: { ...current.properties, counter: String(Number(current.properties.counter) + 1) },
        }))));
        assert.equal((await catalog.getImage(image.id))!.properties.counter, '20');
      }));
    });

    describe('deleteImage', () => {
      it('hides the image, drops its members, and a second delete raises ImageNotFoundError', withCatalog(async (catalog) => {
        const image = makeImage({ tags: ['t'], properties: { p: 'v' }, locations: [{ store: 's', url: 'file:///s' }] });
        const other = makeImage();
        await catalog.createImage(image);
        await catalog.createImage(other);
        await catalog.addMember(makeMember(image.id, 'project-a'));
        await catalog.addMember(makeMember(image.id, 'project-b', 'accepted'));
        await catalog.addMember(makeMember(other.id, 'project-a'));
        await catalog.deleteImage(image.id);
        assert.equal(await catalog.getImage(image.id), undefined);
        assert.deepEqual(await catalog.listMembers(image.id), []);
        assert.equal(await catalog.getMember(image.id, 'project-a'), undefined);
        assert.deepEqual(ids(await catalog.listImages(query())), idsOf(other));
        assert.deepEqual(ids(await catalog.listImages(query({ tags: ['t'] }))), []);
        assert.deepEqual(ids(await catalog.listImages(query({ properties: { p: 'v' } }))), []);
        assert.equal((await catalog.listMembers(other.id)).length, 1, 'members of other images stay');
        await rejectsWithoutChange(catalog, () => catalog.deleteImage(image.id), ImageNotFoundError);
        await rejectsWithoutChange(catalog, () => catalog.deleteImage(randomUUID()), ImageNotFoundError);
      }));
    });

    describe('members', () => {
      it('adds, gets, lists, updates and removes members', withCatalog(async (catalog) => {
        const image = makeImage();
        const other = makeImage();
        await catalog.createImage(image);
        await catalog.createImage(other);
        const a = makeMember(image.id, 'project-a');
        const b = makeMember(image.id, 'project-b', 'accepted');
        await catalog.addMember(a);
        await catalog.addMember(b);
        await catalog.addMember(makeMember(other.id, 'project-c'));
        assert.deepEqual(await catalog.getMember(image.id, 'project-a'), a);
        assert.equal(await catalog.getMember(image.id, 'project-c'), undefined);
        assert.equal(await catalog.getMember(randomUUID(), 'project-a'), undefined);
        const byMember = (ms: ImageMember[]) => [...ms].sort((x, y) => (x.member_id < y.member_id ? -1 : 1));
        assert.deepEqual(byMember(await catalog.listMembers(image.id)), [a, b]);
        assert.deepEqual(await catalog.listMembers(randomUUID()), []);

        const accepted: ImageMember = { ...a, status: 'accepted', updated_at: '2030-01-01T00:00:00.000Z' };
        await catalog.updateMember(accepted);
        assert.deepEqual(await catalog.getMember(image.id, 'project-a'), accepted);
        assert.deepEqual(await catalog.getMember(image.id, 'project-b'), b, 'other members unchanged');

        await catalog.removeMember(image.id, 'project-a');
        assert.equal(await catalog.getMember(image.id, 'project-a'), undefined);
        assert.deepEqual(await catalog.listMembers(image.id), [b]);
        assert.equal((await catalog.listMembers(other.id)).length, 1);
      }));

      it('rejects a duplicate member with ConflictError, keeping the original and the change log', withCatalog(async (catalog) => {
        const image = makeImage();
        await catalog.createImage(image);
        const a = makeMember(image.id, 'project-a');
        await catalog.addMember(a);
        await rejectsWithoutChange(catalog, () => catalog.addMember({ ...makeMember(image.id, 'project-a'), status: 'accepted' }), ConflictError);
        assert.deepEqual(await catalog.getMember(image.id, 'project-a'), a);
      }));

      it('rejects a member of a missing or deleted image with ImageNotFoundError', withCatalog(async (catalog) => {
        const deleted = makeImage();
        await catalog.createImage(deleted);
        await catalog.deleteImage(deleted.id);
        await rejectsWithoutChange(catalog, () => catalog.addMember(makeMember(randomUUID(), 'project-a')), ImageNotFoundError);
        await rejectsWithoutChange(catalog, () => catalog.addMember(makeMember(deleted.id, 'project-a')), ImageNotFoundError);
        assert.deepEqual(await catalog.listMembers(deleted.id), []);
      }));

      it('raises NotFoundError when updating or removing a member that does not exist', withCatalog(async (catalog) => {
        const image = makeImage();
        await catalog.createImage(image);
        await rejectsWithoutChange(catalog, () => catalog.updateMember(makeMember(image.id, 'nobody', 'accepted')), NotFoundError);
        await rejectsWithoutChange(catalog, () => catalog.removeMember(image.id, 'nobody'), NotFoundError);
        assert.equal(await catalog.getMember(image.id, 'nobody'), undefined);
      }));
    });

    describe('listImages: visibility scope', () => {
      const P = 'project-p';
      const Q = 'project-q';
      const setup = async (catalog: Catalog) => {
        const img = (visibility: Visibility, owner: string | null) => makeImage({ visibility, owner });
        const f = {
          pubQ: img('public', Q), pubP: img('public', P), commQ: img('community', Q), commP: img('community', P),
          privP: img('private', P), privQ: img('private', Q), sharedP: img('shared', P), sharedQAccepted: img('shared', Q),
          sharedQPending: img('shared', Q), sharedQRejected: img('shared', Q), sharedQOther: img('shared', Q),
          sharedQNone: img('shared', Q), privNoOwner: img('private', null), deletedPub: img('public', Q),
        };
        for (const image of Object.values(f)) await catalog.createImage(image);
        await catalog.addMember(makeMember(f.sharedQAccepted.id, P, 'accepted'));
        await catalog.addMember(makeMember(f.sharedQPending.id, P, 'pending'));
        await catalog.addMember(makeMember(f.sharedQRejected.id, P, 'rejected'));
        await catalog.addMember(makeMember(f.sharedQOther.id, 'project-r', 'accepted'));
        await catalog.addMember(makeMember(f.sharedP.id, Q, 'accepted'));
        await catalog.deleteImage(f.deletedPub.id);
        const { deletedPub: _gone, ...live } = f;
        return { f, live: Object.values(live) };
      };
      const list = (catalog: Catalog, scope: ListScope) => catalog.listImages(query({ scope })).then(ids);

      it('non-admin: default scope is public + own + shared with me (member status), never others\' community', withCatalog(async (catalog) => {
        const { f } = await setup(catalog);
        const user = (memberStatus: ListScope['memberStatus']): ListScope => ({ admin: false, projectId: P, memberStatus });
        const base = [f.pubQ, f.pubP, f.commP, f.privP, f.sharedP];
        assert.deepEqual(await list(catalog, user('accepted')), idsOf(...base, f.sharedQAccepted));
        assert.deepEqual(await list(catalog, user('pending')), idsOf(...base, f.sharedQPending));
        assert.deepEqual(await list(catalog, user('rejected')), idsOf(...base, f.sharedQRejected));
        assert.deepEqual(await list(catalog, user('all')), idsOf(...base, f.sharedQAccepted, f.sharedQPending, f.sharedQRejected));
      }));

      it('non-admin: each visibility filter', withCatalog(async (catalog) => {
        const { f } = await setup(catalog);
        const user = (visibility: ListScope['visibility'], memberStatus: ListScope['memberStatus'] = 'accepted'): ListScope =>
          ({ admin: false, projectId: P, visibility, memberStatus });
        assert.deepEqual(await list(catalog, user('public')), idsOf(f.pubQ, f.pubP));
        assert.deepEqual(await list(catalog, user('community')), idsOf(f.commQ, f.commP));
        assert.deepEqual(await list(catalog, user('private')), idsOf(f.privP));
        assert.deepEqual(await list(catalog, user('shared')), idsOf(f.sharedP, f.sharedQAccepted));
        assert.deepEqual(await list(catalog, user('shared', 'pending')), idsOf(f.sharedP, f.sharedQPending));
        assert.deepEqual(await list(catalog, user('shared', 'all')),
          idsOf(f.sharedP, f.sharedQAccepted, f.sharedQPending, f.sharedQRejected));
        assert.deepEqual(await list(catalog, user('all')),
          idsOf(f.pubQ, f.pubP, f.commQ, f.commP, f.privP, f.sharedP, f.sharedQAccepted));
      }));

      it('non-admin without a project sees public images (and community ones when asked)', withCatalog(async (catalog) => {
        const { f } = await setup(catalog);
        const anon = (visibility?: ListScope['visibility']): ListScope => ({ admin: false, projectId: null, visibility, memberStatus: 'all' });
        assert.deepEqual(await list(catalog, anon()), idsOf(f.pubQ, f.pubP));
        assert.deepEqual(await list(catalog, anon('all')), idsOf(f.pubQ, f.pubP, f.commQ, f.commP));
        assert.deepEqual(await list(catalog, anon('community')), idsOf(f.commQ, f.commP));
        assert.deepEqual(await list(catalog, anon('private')), []);
        assert.deepEqual(await list(catalog, anon('shared')), []);
      }));

      it('admin sees every live image but others\' community ones by default, narrowed by a visibility filter', withCatalog(async (catalog) => {
        const { f, live } = await setup(catalog);
        const admin = (visibility?: ListScope['visibility']): ListScope => ({ admin: true, projectId: P, visibility, memberStatus: 'accepted' });
        // glance.db.sqlalchemy.api._image_get_all: without a visibility, community images only when owned — admins too.
        assert.deepEqual(await list(catalog, admin()), ids(live.filter((i) => i !== f.commQ)));
        assert.deepEqual(await list(catalog, { admin: true, projectId: null, memberStatus: 'accepted' }),
          ids(live.filter((i) => i.visibility !== 'community')));
        assert.deepEqual(await list(catalog, admin('all')), ids(live));
        assert.deepEqual(await list(catalog, admin('public')), idsOf(f.pubQ, f.pubP));
        assert.deepEqual(await list(catalog, admin('community')), idsOf(f.commQ, f.commP));
        assert.deepEqual(await list(catalog, admin('private')), idsOf(f.privP, f.privQ, f.privNoOwner));
        assert.deepEqual(await list(catalog, admin('shared')),
          idsOf(f.sharedP, f.sharedQAccepted, f.sharedQPending, f.sharedQRejected, f.sharedQOther, f.sharedQNone));
      }));
    });

    describe('listImages: filters', () => {
      const setup = async (catalog: Catalog) => {
        const f = [
          makeImage({ name: 'alpha', status: 'active', disk_format: 'raw', container_format: 'bare', owner: 'o1', size: 100, virtual_size: 1000, min_disk: 1, min_ram: 512, checksum: 'c1', os_hash_value: 'h1', protected: true, tags: ['x', 'y'], properties: { os_distro: 'ubuntu', arch: 'x86_64' } }),
          makeImage({ name: 'beta', status: 'queued', disk_format: 'qcow2', container_format: 'bare', owner: 'o2', size: null, min_disk: 0, tags: ['x'], properties: { os_distro: 'debian', arch: 'x86_64' } }),
          makeImage({ name: 'gamma', status: 'active', disk_format: 'qcow2', container_format: 'ovf', owner: 'o1', size: 2 ** 40, virtual_size: 2 ** 41, min_disk: 10, min_ram: 0, checksum: 'c3', os_hash_value: 'h3', os_hidden: true, tags: ['y', 'z'], properties: { os_distro: 'ubuntu', arch: 'aarch64' } }),
          makeImage({ name: 'with, comma', status: 'deactivated', disk_format: null, container_format: null, owner: null, size: 0, tags: [], properties: { arch: 'x86_64', other: 'ubuntu' } }),
          makeImage({ name: null, status: 'saving', disk_format: 'iso', container_format: 'bare', owner: 'o2', size: 100, min_ram: 512, tags: ['X'], properties: { os_distro: 'Ubuntu' } }),
          makeImage({ name: 'alpha', status: 'killed', disk_format: 'raw', container_format: 'docker', owner: 'o3', size: 5000, protected: true, os_hidden: true, tags: ['x', 'y', 'z'], properties: {} }),
        ];
        for (const image of f) await catalog.createImage(image);
        // Distinct updated_at values, out of created_at order.
        for (const [i, image] of f.entries()) {
          f[i] = await catalog.updateImage(image.id, (c) => ({ ...c, updated_at: new Date(Date.UTC(2025, 0, 1) + (7 - i) * 60_000).toISOString() }));
        }
        return f;
      };
      const check = async (catalog: Catalog, all: Image[], q: Partial<ImageListQuery>, predicate: (i: Image) => boolean, label: string) => {
        const expected = ids(all.filter(predicate));
        assert.deepEqual(ids(await catalog.listImages(query(q))), expected, label);
      };

      it('filters on base attributes by exact value (strings, numbers, booleans)', withCatalog(async (catalog) => {
        const all = await setup(catalog);
        const cases: [keyof ImageListQuery['base'] & keyof Image, string][] = [
          ['id', all[2].id], ['name', 'alpha'], ['name', 'with, comma'], ['status', 'active'], ['container_format', 'bare'],
          ['disk_format', 'qcow2'], ['owner', 'o1'], ['checksum', 'c3'], ['os_hash_value', 'h1'], ['min_disk', '10'],
          ['min_ram', '512'], ['size', '100'], ['size', String(2 ** 40)], ['size', '0'], ['virtual_size', '1000'],
          ['protected', 'true'], ['protected', 'false'], ['os_hidden', 'true'], ['os_hidden', 'false'], ['name', 'nothing'],
        ];
        for (const [attr, value] of cases) {
          await check(catalog, all, { base: { [attr]: { kind: 'eq', value } } }, (i) => String(i[attr]) === value, `${attr}=${value}`);
        }
      }));

      it('filters with in: lists and combines base filters with AND', withCatalog(async (catalog) => {
        const all = await setup(catalog);
        await check(catalog, all, { base: { name: { kind: 'in', values: ['alpha', 'with, comma', 'missing'] } } },
          (i) => ['alpha', 'with, comma'].includes(i.name!), 'name in');
        await check(catalog, all, { base: { status: { kind: 'in', values: ['active', 'queued'] } } },
          (i) => ['active', 'queued'].includes(i.status), 'status in');
        await check(catalog, all, { base: { id: { kind: 'in', values: [all[0].id, all[3].id] } } },
          (i) => i.id === all[0].id || i.id === all[3].id, 'id in');
        await check(catalog, all, { base: { disk_format: { kind: 'in', values: ['raw', 'iso'] }, container_format: { kind: 'in', values: ['bare'] } } },
          (i) => ['raw', 'iso'].includes(i.disk_format!) && i.container_format === 'bare', 'disk_format in AND container_format in');
        await check(catalog, all, { base: { status: { kind: 'eq', value: 'active' }, os_hidden: { kind: 'eq', value: 'false' }, owner: { kind: 'eq', value: 'o1' } } },
          (i) => i.status === 'active' && !i.os_hidden && i.owner === 'o1', 'status AND os_hidden AND owner');
      }));

      it('compares created_at and updated_at with gt/gte/eq/neq/lt/lte', withCatalog(async (catalog) => {
        const all = await setup(catalog);
        const ops = {
          gt: (a: string, b: string) => a > b, gte: (a: string, b: string) => a >= b, eq: (a: string, b: string) => a === b,
          neq: (a: string, b: string) => a !== b, lt: (a: string, b: string) => a < b, lte: (a: string, b: string) => a <= b,
        } as const;
        for (const attr of ['created_at', 'updated_at'] as const) {
          const pivot = all[2][attr];
          for (const [op, fn] of Object.entries(ops) as [keyof typeof ops, (a: string, b: string) => boolean][]) {
            await check(catalog, all, { base: { [attr]: { kind: 'compare', op, value: pivot } } }, (i) => fn(i[attr], pivot), `${attr} ${op}`);
          }
        }
        await check(catalog, all, {
          base: {
            created_at: { kind: 'compare', op: 'gte', value: all[1].created_at },
            updated_at: { kind: 'compare', op: 'gt', value: all[4].updated_at },
          },
        }, (i) => i.created_at >= all[1].created_at && i.updated_at > all[4].updated_at, 'created_at gte AND updated_at gt');
      }));

      it('filters on properties and tags (all must match, exact and case-sensitive)', withCatalog(async (catalog) => {
        const all = await setup(catalog);
        await check(catalog, all, { properties: { os_distro: 'ubuntu' } }, (i) => i.properties.os_distro === 'ubuntu', 'os_distro');
        await check(catalog, all, { properties: { os_distro: 'ubuntu', arch: 'x86_64' } },
          (i) => i.properties.os_distro === 'ubuntu' && i.properties.arch === 'x86_64', 'two properties');
        await check(catalog, all, { properties: { missing: 'ubuntu' } }, () => false, 'unknown property');
        await check(catalog, all, { tags: ['x'] }, (i) => i.tags.includes('x'), 'tag x');
        await check(catalog, all, { tags: ['x', 'y'] }, (i) => i.tags.includes('x') && i.tags.includes('y'), 'tags x AND y');
        await check(catalog, all, { tags: ['x', 'y', 'z'] }, (i) => ['x', 'y', 'z'].every((t) => i.tags.includes(t)), 'three tags');
        await check(catalog, all, { tags: ['nope'] }, () => false, 'unknown tag');
        await check(catalog, all, { tags: ['y'], properties: { os_distro: 'ubuntu' }, base: { status: { kind: 'eq', value: 'active' } } },
          (i) => i.tags.includes('y') && i.properties.os_distro === 'ubuntu' && i.status === 'active', 'tag AND property AND base');
      }));

      it('filters on a size range (inclusive; images without a size never match)', withCatalog(async (catalog) => {
        const all = await setup(catalog);
        const inRange = (min?: number, max?: number) => (i: Image) =>
          i.size !== null && (min === undefined || i.size >= min) && (max === undefined || i.size <= max);
        for (const [min, max] of [[100, undefined], [undefined, 100], [100, 5000], [0, 0], [101, 4999], [0, undefined], [2 ** 40, 2 ** 40]] as const) {
          await check(catalog, all, { sizeMin: min, sizeMax: max }, inRange(min, max), `size ${min}..${max}`);
        }
      }));

      it('returns nothing for limit 0 and at most `limit` images otherwise', withCatalog(async (catalog) => {
        const all = await setup(catalog);
        assert.deepEqual(await catalog.listImages(query({ limit: 0 })), []);
        const two = await catalog.listImages(query({ limit: 2 }));
        const full = await catalog.listImages(query());
        assert.equal(full.length, all.length);
        assert.deepEqual(two, full.slice(0, 2));
      }));

      it('returns full records (tags, properties, locations) in listings', withCatalog(async (catalog) => {
        const all = await setup(catalog);
        const withLocations = await catalog.updateImage(all[0].id, (c) => ({
          ...c, locations: [
            { store: 'b', url: 'file:///b' }, { store: 'a', url: 'file:///a', metadata: { k: 'v', n: [1, { x: null }] } },
            // http(s) locations (the locations API) are in no store: several per image, by position.
            { store: '', url: 'http://example.com/2', metadata: { note: 'ünïcødé' } }, { store: '', url: 'http://example.com/1' },
          ],
        }));
        assert.deepEqual(await catalog.getImage(all[0].id), withLocations);
        const listed = await catalog.listImages(query());
        assert.deepEqual(listed.find((i) => i.id === all[0].id), withLocations);
        for (const image of all.slice(1)) assert.deepEqual(listed.find((i) => i.id === image.id), image);
      }));
    });

    describe('listImages: sorting and keyset pagination', () => {
      const setup = async (catalog: Catalog) => {
        const sameTime = '2024-02-02T02:02:02.222Z';
        const specs: Partial<Image>[] = [
          { name: 'delta', status: 'active', container_format: 'bare', disk_format: 'raw', size: 300 },
          { name: null, status: 'queued', container_format: null, disk_format: null, size: null },
          { name: 'alpha', status: 'active', container_format: 'ovf', disk_format: 'qcow2', size: 2 ** 40, created_at: sameTime },
          { name: 'charlie', status: 'killed', container_format: 'bare', disk_format: null, size: 0, created_at: sameTime },
          { name: 'alpha', status: 'saving', container_format: null, disk_format: 'iso', size: 300, created_at: sameTime },
          { name: null, status: 'active', container_format: 'docker', disk_format: 'raw', size: null },
          { name: 'bravo', status: 'deactivated', container_format: 'bare', disk_format: 'vmdk', size: 7 },
          { name: 'echo', status: 'queued', container_format: 'ova', disk_format: 'qcow2', size: 2 ** 33 },
          { name: 'alpha', status: 'active', container_format: 'bare', disk_format: 'raw', size: 300 },
          { name: 'zulu', status: 'uploading', container_format: null, disk_format: 'raw', size: 1 },
          { name: 'bravo', status: 'importing', container_format: 'ami', disk_format: 'ami', size: null },
          { name: '', status: 'pending_delete', container_format: 'ari', disk_format: '', size: 0 },
        ];
        const images: Image[] = [];
        for (const [i, spec] of specs.entries()) {
          const image = makeImage({ ...spec, updated_at: new Date(Date.UTC(2025, 0, 1) + ((i * 7) % specs.length) * 1000).toISOString() });
          if (spec.created_at !== undefined) image.created_at = spec.created_at;
          await catalog.createImage(image);
          images.push(image);
        }
        // A deleted image and one outside the scope never show up.
        const gone = makeImage({ name: 'alpha' });
        await catalog.createImage(gone);
        await catalog.deleteImage(gone.id);
        return images;
      };
      /** Glance completes every sort with created_at and id (desc), making the order total. */
      const completed = (key: SortKey, dir: SortDir) => {
        const sort = [{ key, dir }];
        if (key !== 'created_at') sort.push({ key: 'created_at', dir: 'desc' });
        if (key !== 'id') sort.push({ key: 'id', dir: 'desc' });
        return sort;
      };
      const comparator = (sort: { key: SortKey; dir: SortDir }[], nullsLow: boolean) => (a: Image, b: Image) => {
        for (const { key, dir } of sort) {
          const x = a[key];
          const y = b[key];
          let c = 0;
          if (x === null && y === null) c = 0;
          else if (x === null) c = nullsLow ? -1 : 1;
          else if (y === null) c = nullsLow ? 1 : -1;
          else c = x < y ? -1 : x > y ? 1 : 0;
          if (c !== 0) return dir === 'asc' ? c : -c;
        }
        return 0;
      };

      for (const key of SORT_KEYS) {
        it(`sorts on ${key} in both directions (NULLs at one consistent end) and pages through every image exactly once`, withCatalog(async (catalog) => {
          const images = await setup(catalog);
          let convention: boolean | undefined;
          for (const dir of ['asc', 'desc'] as const) {
            const sort = completed(key, dir);
            const actual = (await catalog.listImages(query({ sort }))).map((i) => i.id);
            const low = [...images].sort(comparator(sort, true)).map((i) => i.id);
            const high = [...images].sort(comparator(sort, false)).map((i) => i.id);
            const matches = [true, false].filter((nullsLow) => (nullsLow ? low : high).join() === actual.join());
            assert.ok(matches.length > 0, `order of ${key} ${dir}:\n actual ${actual.join(' ')}\n nulls low ${low.join(' ')}\n nulls high ${high.join(' ')}`);
            if (low.join() !== high.join()) {
              convention ??= matches[0];
              assert.ok(matches.includes(convention), `${key}: NULLs must sort as the lowest value in both directions, or as the highest in both`);
            }

            for (const pageSize of [1, 3, 4]) {
              const seen: string[] = [];
              let marker: Image | undefined;
              for (let guard = 0; guard < 100; guard++) {
                const page = await catalog.listImages(query({ sort, limit: pageSize, marker }));
                assert.ok(page.length <= pageSize);
                seen.push(...page.map((i) => i.id));
                if (page.length < pageSize) break;
                marker = page.at(-1);
              }
              assert.deepEqual(seen, actual, `pages of ${pageSize} by ${key} ${dir} give every image exactly once, in order`);
            }
          }
        }));
      }

      it('paginates within a scope and filters', withCatalog(async (catalog) => {
        const images = await setup(catalog);
        const q = { base: { status: { kind: 'in' as const, values: ['active', 'queued'] } }, sort: completed('name', 'asc') };
        const full = await catalog.listImages(query(q));
        assert.deepEqual(ids(full), ids(images.filter((i) => ['active', 'queued'].includes(i.status))));
        const seen: Image[] = [];
        let marker: Image | undefined;
        for (;;) {
          const page = await catalog.listImages(query({ ...q, limit: 2, marker }));
          seen.push(...page);
          if (page.length < 2) break;
          marker = page.at(-1);
        }
        assert.deepEqual(seen, full);
      }));

      it('starts after a marker whose sort values are NULL', withCatalog(async (catalog) => {
        const images = await setup(catalog);
        for (const key of ['name', 'size', 'disk_format', 'container_format'] as const) {
          for (const dir of ['asc', 'desc'] as const) {
            const sort = completed(key, dir);
            const full = await catalog.listImages(query({ sort }));
            const nullIndex = full.findIndex((i) => i[key] === null);
            assert.ok(nullIndex >= 0);
            const after = await catalog.listImages(query({ sort, marker: images.find((i) => i.id === full[nullIndex].id) }));
            assert.deepEqual(after.map((i) => i.id), full.slice(nullIndex + 1).map((i) => i.id), `after a NULL ${key} (${dir})`);
          }
        }
      }));
    });

    describe('tasks', () => {
      let taskCounter = 0;
      /** A full task record; successive calls get increasing created_at. */
      const makeTask = (overrides: Partial<ImportTask> = {}): ImportTask => {
        const n = taskCounter++;
        const at = new Date(Date.UTC(2025, 0, 1) + n * 1000).toISOString();
        const imageId = overrides.image_id ?? randomUUID();
        return {
          id: randomUUID(), type: 'api_image_import', status: 'pending', owner: 'project-a', image_id: imageId,
          request_id: `req-${randomUUID()}`, user_id: 'user-a',
          input: { image_id: imageId, import_req: { method: { name: 'copy-image' }, stores: ['s1', 's2'] }, backend: ['s1', 's2'] },
          result: null, message: '', expires_at: null, created_at: at, updated_at: at, ...overrides,
        };
      };
      const taskIds = (tasks: Task[]) => tasks.map((t) => t.id);

      it('round-trips every field; getTask is undefined for an unknown id', withCatalog(async (catalog) => {
        const full = makeTask({
          status: 'failure', owner: null, user_id: null, message: 'Copied 15 MiB — ünïcødé; then "failed"',
          input: {
            image_id: randomUUID(),
            import_req: {
              method: { name: 'glance-download', glance_region: 'RegionTwo', glance_image_id: randomUUID(), glance_service_interface: 'public' },
              all_stores: false, all_stores_must_succeed: false,
            },
            backend: ['site-b', 'central'],
          },
          result: { image_id: 'x', nested: { list: [1, 'two', null] } }, expires_at: '2025-01-03T00:00:00.000Z',
        });
        await catalog.createTask(full);
        assert.deepEqual(await catalog.getTask(full.id), full);
        const minimal = makeTask();
        await catalog.createTask(minimal);
        assert.deepEqual(await catalog.getTask(minimal.id), minimal);
        assert.equal(await catalog.getTask(randomUUID()), undefined);
      }));

      it('returns copies: changing a returned or passed record does not change the stored one', withCatalog(async (catalog) => {
        const task = makeTask();
        const kept = structuredClone(task);
        await catalog.createTask(task);
        task.message = 'changed after create';
        task.input.backend.push('s3');
        const got = (await catalog.getTask(kept.id))! as ImportTask;
        assert.deepEqual(got, kept);
        got.status = 'success';
        got.input.import_req.method.name = 'web-download';
        assert.deepEqual(await catalog.getTask(kept.id), kept);
      }));

      it('concurrent creates of one task id: exactly one lands, every other gets ConflictError', withCatalog(async (catalog) => {
        const id = randomUUID();
        const outcomes = await Promise.allSettled(Array.from({ length: 4 }, (_, i) => catalog.createTask(makeTask({ id, message: `racer-${i}` }))));
        assert.equal(outcomes.filter((o) => o.status === 'fulfilled').length, 1);
        for (const o of outcomes) if (o.status === 'rejected') assert.ok(o.reason instanceof ConflictError, String(o.reason));
      }));

      it('rejects a duplicate id, keeping the original and the change log', withCatalog(async (catalog) => {
        const task = makeTask();
        await catalog.createTask(task);
        const before = await allChanges(catalog);
        await assert.rejects(catalog.createTask({ ...task, message: 'second' }));
        assert.deepEqual(await allChanges(catalog), before);
        assert.deepEqual(await catalog.getTask(task.id), task);
      }));

      it('updateTask replaces the record and returns the stored one', withCatalog(async (catalog) => {
        const task = makeTask();
        await catalog.createTask(task);
        const next: Task = {
          ...task, status: 'success', message: 'Copied 1024 MiB', result: { image_id: task.image_id },
          expires_at: '2025-02-01T00:00:00.000Z', updated_at: '2025-01-31T00:00:00.000Z',
        };
        const returned = await catalog.updateTask(task.id, (current) => {
          assert.deepEqual(current, task, 'mutate receives the stored record');
          return next;
        });
        assert.deepEqual(returned, next);
        assert.deepEqual(await catalog.getTask(task.id), next);
        // A mutate that changes its argument in place works too.
        await catalog.updateTask(task.id, (current) => {
          current.message = 'in place';
          return current;
        });
        assert.equal((await catalog.getTask(task.id))?.message, 'in place');
      }));

      it('updateTask changes nothing when mutate throws, and raises NotFoundError for a missing id without calling mutate', withCatalog(async (catalog) => {
        const task = makeTask();
        await catalog.createTask(task);
        await rejectsWithoutChange(catalog, () => catalog.updateTask(task.id, (current) => {
          current.status = 'failure';
          current.message = 'half-changed';
          throw new RangeError('veto');
        }), RangeError);
        assert.deepEqual(await catalog.getTask(task.id), task);
        let called = false;
        await rejectsWithoutChange(catalog, () => catalog.updateTask(randomUUID(), (c) => { called = true; return c; }), NotFoundError);
        assert.equal(called, false);
      }));

      it('updateTask is atomic: 20 concurrent read-modify-writes all land', withCatalog(async (catalog) => {
        const task = makeTask({ message: '0' });
        await catalog.createTask(task);
        await Promise.all(Array.from({ length: 20 }, () => catalog.updateTask(task.id, (c) => ({ ...c, message: String(Number(c.message) + 1) }))));
        assert.equal((await catalog.getTask(task.id))?.message, '20');
        // A lock-style update: only one of many concurrent "take it if free" updates wins.
        let winners = 0;
        await Promise.all(Array.from({ length: 10 }, (_, i) => catalog.updateTask(task.id, (c) => {
          if (c.status !== 'pending') throw new ConflictError('taken');
          return { ...c, status: 'processing', message: `winner ${i}` };
        }).then(() => { winners++; }, (e) => { assert.ok(e instanceof ConflictError); })));
        assert.equal(winners, 1);
      }));

      it('listTasks filters on image, statuses and type, newest first by default', withCatalog(async (catalog) => {
        const imageA = randomUUID();
        const imageB = randomUUID();
        const a1 = makeTask({ image_id: imageA, status: 'success' });
        const b1 = makeTask({ image_id: imageB, status: 'processing' });
        const a2 = makeTask({ image_id: imageA, status: 'failure' });
        const a3 = makeTask({ image_id: imageA, status: 'processing' });
        for (const t of [a3, a1, b1, a2]) await catalog.createTask(t);
        assert.deepEqual(taskIds(await catalog.listTasks({ limit: 100 })), taskIds([a3, a2, b1, a1]));
        assert.deepEqual(taskIds(await catalog.listTasks({ imageId: imageA, limit: 100 })), taskIds([a3, a2, a1]));
        assert.deepEqual(taskIds(await catalog.listTasks({ imageId: randomUUID(), limit: 100 })), []);
        assert.deepEqual(taskIds(await catalog.listTasks({ statuses: ['processing'], limit: 100 })), taskIds([a3, b1]));
        assert.deepEqual(taskIds(await catalog.listTasks({ statuses: ['pending', 'processing', 'failure'], limit: 100 })), taskIds([a3, a2, b1]));
        assert.deepEqual(taskIds(await catalog.listTasks({ statuses: [], limit: 100 })), []);
        assert.deepEqual(taskIds(await catalog.listTasks({ imageId: imageA, statuses: ['processing'], limit: 100 })), taskIds([a3]));
        assert.deepEqual(taskIds(await catalog.listTasks({ type: 'api_image_import', limit: 100 })), taskIds([a3, a2, b1, a1]));
        assert.deepEqual(taskIds(await catalog.listTasks({ type: 'import', limit: 100 })), []);
        assert.deepEqual(taskIds(await catalog.listTasks({ limit: 2 })), taskIds([a3, a2]));
        assert.deepEqual(await catalog.listTasks({ limit: 0 }), []);
        // Full records.
        assert.deepEqual((await catalog.listTasks({ imageId: imageB, limit: 10 }))[0], b1);
      }));

      const TASK_SORT_KEYS = ['created_at', 'updated_at', 'id', 'status', 'type'] as const;
      const tiedCreatedAt = '2025-01-01T12:00:00.000Z';
      for (const key of TASK_SORT_KEYS) {
        it(`sorts on ${key} in both directions and pages with a marker through every task exactly once`, withCatalog(async (catalog) => {
          const statuses = ['pending', 'processing', 'success', 'failure'] as const;
          const tasks = Array.from({ length: 11 }, (_, i) => {
            const t = makeTask({ status: statuses[i % 4] });
            // Ties on updated_at (pairs) and on created_at (a few equal), so the tie-breaker matters.
            if (i >= 8) t.created_at = tiedCreatedAt;
            t.updated_at = new Date(Date.UTC(2025, 6, 1) + Math.floor(i / 2) * 60_000).toISOString();
            return t;
          });
          for (const t of [...tasks].reverse()) await catalog.createTask(t);
          for (const dir of ['asc', 'desc'] as const) {
            const all = await catalog.listTasks({ sortKey: key, sortDir: dir, limit: 1000 });
            assert.deepEqual(taskIds(all).sort(), taskIds(tasks).sort(), 'every task once');
            for (let i = 1; i < all.length; i++) {
              const [x, y] = [String(all[i - 1][key]), String(all[i][key])];
              assert.ok(dir === 'asc' ? x <= y : x >= y, `${key} ${dir}: ${x} then ${y}`);
            }
            for (const limit of [1, 2, 3, 5]) {
              const paged: Task[] = [];
              let marker: Task | undefined;
              for (let guard = 0; guard < 50; guard++) {
                const page = await catalog.listTasks({ sortKey: key, sortDir: dir, limit, marker });
                assert.ok(page.length <= limit);
                if (page.length === 0) break;
                paged.push(...page);
                marker = page.at(-1);
              }
              assert.deepEqual(taskIds(paged), taskIds(all), `${key} ${dir}, pages of ${limit}`);
            }
          }
        }));
      }

      it('paginates within filters', withCatalog(async (catalog) => {
        const imageId = randomUUID();
        const mine = Array.from({ length: 5 }, () => makeTask({ image_id: imageId }));
        const others = Array.from({ length: 4 }, () => makeTask());
        for (const t of [...mine, ...others]) await catalog.createTask(t);
        const first = await catalog.listTasks({ imageId, limit: 2 });
        const second = await catalog.listTasks({ imageId, limit: 2, marker: first.at(-1) });
        const third = await catalog.listTasks({ imageId, limit: 2, marker: second.at(-1) });
        assert.deepEqual(taskIds([...first, ...second, ...third]), taskIds([...mine].reverse()));
      }));

      it('appends one change per createTask and updateTask (entity task, the stored record as body), none on failure', withCatalog(async (catalog) => {
        const task = makeTask();
        await catalog.createTask(task);
        let changes = await allChanges(catalog);
        assert.equal(changes.length, 1);
        assert.deepEqual([changes[0].entity, changes[0].op, changes[0].id], ['task', 'upsert', task.id]);
        assert.deepEqual(changes[0].body, task);
        const seq = changes[0].seq;

        const updated = await catalog.updateTask(task.id, (c) => ({ ...c, status: 'processing', message: 'Copied 1 MiB' }));
        changes = await catalog.changesSince(seq, 100);
        assert.equal(changes.length, 1);
        assert.ok(changes[0].seq > seq);
        assert.deepEqual([changes[0].entity, changes[0].op, changes[0].id], ['task', 'upsert', task.id]);
        assert.deepEqual(changes[0].body, updated);
        assert.deepEqual(changes[0].body, await catalog.getTask(task.id));

        // History is kept: the first body is still the created task.
        await catalog.updateTask(task.id, (c) => ({ ...c, status: 'success' }));
        assert.deepEqual((await allChanges(catalog))[0].body, task);
        await rejectsWithoutChange(catalog, () => catalog.updateTask(task.id, () => { throw new RangeError('veto'); }), RangeError);
      }));

      it('rejects every task call made with an aborted signal, changing nothing', withCatalog(async (catalog) => {
        const task = makeTask();
        await catalog.createTask(task);
        const before = await allChanges(catalog);
        const opts = { signal: AbortSignal.abort() };
        const calls: [string, () => Promise<unknown>][] = [
          ['createTask', () => catalog.createTask(makeTask(), opts)],
          ['getTask', () => catalog.getTask(task.id, opts)],
          ['updateTask', () => catalog.updateTask(task.id, (c) => ({ ...c, status: 'failure' }), opts)],
          ['listTasks', () => catalog.listTasks({ limit: 10 }, opts)],
        ];
        for (const [label, call] of calls) await assert.rejects(call(), { name: 'AbortError' }, label);
        assert.deepEqual(await allChanges(catalog), before);
        assert.deepEqual(await catalog.getTask(task.id), task);
        assert.equal((await catalog.listTasks({ limit: 10 })).length, 1);
      }));
    });

    describe('placement policies', () => {
      const policy = (id: string, name: string, overrides: Partial<PolicyRecord> = {}): PolicyRecord => ({
        id, name, images: { tags: ['golden'], properties: { os_distro: 'ubuntu' }, visibility: 'public' }, sites: { labels: 'region=eu,tier!=far' },
        mode: 'replicate', priority: 70, created_at: '2024-06-01T00:00:00.000Z', updated_at: '2024-06-01T00:00:00.000Z', ...overrides,
      });
      it('upsert stores a policy as given and replaces it whole; list is by id; delete says whether there was one', withCatalog(async (catalog) => {
        const b = policy('b-policy', 'second', { sites: { ids: ['edge-1', 'edge-2'] }, mode: 'cache' });
        const a = policy('a-policy', 'first');
        await catalog.upsertPolicy(b);
        await catalog.upsertPolicy(a);
        assert.deepEqual(await catalog.getPolicy(b.id), b);
        assert.deepEqual(await catalog.listPolicies(), [a, b]);
        const a2 = { ...a, priority: 10, images: { tags: [], properties: {}, visibility: null }, updated_at: '2024-06-02T00:00:00.000Z' };
        await catalog.upsertPolicy(a2);
        assert.deepEqual(await catalog.getPolicy(a.id), a2);
        assert.equal(await catalog.deletePolicy(a.id), true);
        assert.equal(await catalog.deletePolicy(a.id), false);
        assert.equal(await catalog.getPolicy(a.id), undefined);
        assert.deepEqual(await catalog.listPolicies(), [b]);
        const changes = (await allChanges(catalog)).filter((c) => c.entity === 'policy').map((c) => [c.op, c.id]);
        assert.deepEqual(changes, [['upsert', b.id], ['upsert', a.id], ['upsert', a.id], ['delete', a.id]], 'each write is one change; a missing delete none');
      }));
      it('rejects every call made with an aborted signal, changing nothing', withCatalog(async (catalog) => {
        const p = policy('p', 'kept');
        await catalog.upsertPolicy(p);
        const opts = { signal: AbortSignal.abort() };
        await assert.rejects(catalog.upsertPolicy(policy('q', 'new'), opts), { name: 'AbortError' });
        await assert.rejects(catalog.deletePolicy(p.id, opts), { name: 'AbortError' });
        await assert.rejects(catalog.getPolicy(p.id, opts), { name: 'AbortError' });
        await assert.rejects(catalog.listPolicies(opts), { name: 'AbortError' });
        assert.deepEqual(await catalog.listPolicies(), [p]);
      }));
    });

    describe('imagesInStores', () => {
      it('returns the live images with a location in any of the stores, by id, hydrated', withCatalog(async (catalog) => {
        const loc = (store: string) => ({ store, url: `file:///${store}` });
        const a = makeImage({ status: 'active', locations: [loc('edge-1')] });
        const b = makeImage({ status: 'active', locations: [loc('central'), loc('edge-2')], tags: ['t'] });
        const c = makeImage({ status: 'active', locations: [loc('central')] });
        const gone = makeImage({ status: 'active', locations: [loc('edge-1')] });
        for (const i of [a, b, c, gone]) await catalog.createImage(i);
        await catalog.deleteImage(gone.id);
        const ids = (images: Image[]) => images.map((i) => i.id);
        assert.deepEqual(ids(await catalog.imagesInStores(['edge-1'])), [a.id]);
        assert.deepEqual(ids(await catalog.imagesInStores(['edge-1', 'edge-2'])), [a.id, b.id].sort());
        assert.deepEqual((await catalog.imagesInStores(['edge-2']))[0], b);
        assert.deepEqual(await catalog.imagesInStores([]), []);
        assert.deepEqual(await catalog.imagesInStores(['nowhere']), []);
      }));
    });

    describe('AbortSignal', () => {
      it('rejects every call made with an aborted signal, changing nothing', withCatalog(async (catalog) => {
        const image = makeImage();
        await catalog.createImage(image);
        await catalog.addMember(makeMember(image.id, 'project-a'));
        const before = await allChanges(catalog);
        const signal = AbortSignal.abort();
        const opts = { signal };
        const calls: [string, () => Promise<unknown>][] = [
          ['getImage', () => catalog.getImage(image.id, opts)],
          ['listImages', () => catalog.listImages(query(), opts)],
          ['createImage', () => catalog.createImage(makeImage(), opts)],
          ['updateImage', () => catalog.updateImage(image.id, (c) => ({ ...c, name: 'aborted' }), opts)],
          ['deleteImage', () => catalog.deleteImage(image.id, opts)],
          ['getMember', () => catalog.getMember(image.id, 'project-a', opts)],
          ['listMembers', () => catalog.listMembers(image.id, opts)],
          ['addMember', () => catalog.addMember(makeMember(image.id, 'project-b'), opts)],
          ['updateMember', () => catalog.updateMember(makeMember(image.id, 'project-a', 'accepted'), opts)],
          ['removeMember', () => catalog.removeMember(image.id, 'project-a', opts)],
          ['changesSince', () => catalog.changesSince(0, 10, opts)],
        ];
        for (const [label, call] of calls) await assert.rejects(call(), { name: 'AbortError' }, label);
        assert.deepEqual(await allChanges(catalog), before);
        assert.deepEqual(await catalog.getImage(image.id), image);
        assert.equal((await catalog.listMembers(image.id)).length, 1);
      }));
    });

    describe('change log', () => {
      it('appends exactly one change per mutation, with increasing seq and the stored record as body', withCatalog(async (catalog) => {
        assert.deepEqual(await allChanges(catalog), []);
        const expectOne = async (since: number, check: (c: Change) => void | Promise<void>) => {
          const changes = await catalog.changesSince(since, 1000);
          assert.equal(changes.length, 1, 'exactly one change per mutation');
          const [c] = changes;
          assert.ok(c.seq > since, 'seq increases');
          assert.ok(Number.isInteger(c.seq));
          assert.ok(!Number.isNaN(Date.parse(c.at)), `'at' is a timestamp: ${c.at}`);
          await check(c);
          return c.seq;
        };
        let seq = 0;
        const image = makeImage({ tags: ['b', 'a'], properties: { p: '1' }, locations: [{ store: 's', url: 'file:///s' }] });
        await catalog.createImage(image);
        seq = await expectOne(seq, async (c) => {
          assert.equal(c.entity, 'image');
          assert.equal(c.op, 'upsert');
          assert.equal(c.id, image.id);
          assert.deepEqual(c.body, await catalog.getImage(image.id));
        });

        const updated = await catalog.updateImage(image.id, (cur) => ({ ...cur, name: 'new', tags: ['a', 'c', 'b'], properties: {} }));
        seq = await expectOne(seq, async (c) => {
          assert.deepEqual([c.entity, c.op, c.id], ['image', 'upsert', image.id]);
          assert.deepEqual(c.body, updated);
          assert.deepEqual(c.body, await catalog.getImage(image.id));
        });

        const member = makeMember(image.id, 'project-a');
        await catalog.addMember(member);
        seq = await expectOne(seq, async (c) => {
          assert.deepEqual([c.entity, c.op], ['member', 'upsert']);
          assert.ok(c.id.includes(image.id) && c.id.includes('project-a'), `member change id names image and member: ${c.id}`);
          assert.deepEqual(c.body, await catalog.getMember(image.id, 'project-a'));
        });

        // The body is the stored member even when the caller passes a stale created_at.
        await catalog.updateMember({ ...member, status: 'accepted', updated_at: '2031-01-01T00:00:00.000Z', created_at: '1999-01-01T00:00:00.000Z' });
        seq = await expectOne(seq, async (c) => {
          assert.deepEqual([c.entity, c.op], ['member', 'upsert']);
          assert.ok(c.id.includes(image.id) && c.id.includes('project-a'));
          const stored = await catalog.getMember(image.id, 'project-a');
          assert.equal(stored?.status, 'accepted');
          assert.deepEqual(c.body, stored);
        });

        await catalog.removeMember(image.id, 'project-a');
        seq = await expectOne(seq, (c) => {
          assert.deepEqual([c.entity, c.op], ['member', 'delete']);
          assert.ok(c.id.includes(image.id) && c.id.includes('project-a'));
        });

        await catalog.deleteImage(image.id);
        seq = await expectOne(seq, (c) => {
          assert.deepEqual([c.entity, c.op, c.id], ['image', 'delete', image.id]);
        });
        assert.equal((await allChanges(catalog)).length, 6);
      }));

      it('keeps each change body as it was written (later updates do not rewrite history)', withCatalog(async (catalog) => {
        const image = makeImage({ tags: ['a'] });
        await catalog.createImage(image);
        const v2 = await catalog.updateImage(image.id, (c) => ({ ...c, tags: ['a', 'b'], name: 'v2' }));
        await catalog.updateImage(image.id, (c) => ({ ...c, tags: [], name: 'v3' }));
        const bodies = (await allChanges(catalog)).map((c) => c.body);
        assert.deepEqual(bodies.slice(0, 2), [image, v2]);
      }));

      it('appends nothing when a mutation fails', withCatalog(async (catalog) => {
        const image = makeImage();
        await catalog.createImage(image);
        await catalog.addMember(makeMember(image.id, 'project-a'));
        await rejectsWithoutChange(catalog, () => catalog.createImage(image), ConflictError);
        await rejectsWithoutChange(catalog, () => catalog.addMember(makeMember(image.id, 'project-a')), ConflictError);
        await rejectsWithoutChange(catalog, () => catalog.updateImage(image.id, () => { throw new RangeError('veto'); }), RangeError);
        await rejectsWithoutChange(catalog, () => catalog.updateImage(randomUUID(), (c) => c), ImageNotFoundError);
        await rejectsWithoutChange(catalog, () => catalog.deleteImage(randomUUID()), ImageNotFoundError);
      }));

      it('pages with changesSince(since, limit): oldest first, seq > since, at most limit', withCatalog(async (catalog) => {
        const images = Array.from({ length: 7 }, () => makeImage());
        for (const image of images) await catalog.createImage(image);
        for (const image of images.slice(0, 3)) await catalog.updateImage(image.id, (c) => ({ ...c, name: `${c.name}!` }));
        await catalog.deleteImage(images[6].id);
        const all = await allChanges(catalog);
        assert.equal(all.length, 11);
        for (let i = 1; i < all.length; i++) assert.ok(all[i].seq > all[i - 1].seq, 'strictly increasing seq');
        assert.deepEqual(all.slice(0, 7).map((c) => c.id), images.map((i) => i.id), 'oldest first');

        for (const limit of [1, 3, 4, 11, 50]) {
          const paged: Change[] = [];
          let since = 0;
          for (let guard = 0; guard < 50; guard++) {
            const page = await catalog.changesSince(since, limit);
            assert.ok(page.length <= limit);
            if (page.length === 0) break;
            paged.push(...page);
            since = page.at(-1)!.seq;
          }
          assert.deepEqual(paged, all, `pages of ${limit}`);
        }
        assert.deepEqual(await catalog.changesSince(all[4].seq, 2), all.slice(5, 7));
        assert.deepEqual(await catalog.changesSince(all.at(-1)!.seq, 10), []);
        assert.deepEqual(await catalog.changesSince(0, 0), []);
      }));
    });
  });
}
