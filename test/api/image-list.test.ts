import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import {
  ADMIN, bytesOf, call, createActiveImage, createImage, expectStatus, ids, listImages, patchImage, project, sleep,
  type ApiResponse, type Identity, type ImageJson, type ImageList,
} from '../helpers/glance-client.ts';
import { startTestSite, type TestSite } from '../helpers/site.ts';

const JSON_ACCEPT = { accept: 'application/json' };

describe('GET /v2/images', () => {
  let site: TestSite;
  before(async () => { site = await startTestSite(); });
  after(async () => { await site.close(); });

  /** Expects a 400 for the query; returns the message. */
  async function badQuery(query: string, as: Identity = ADMIN): Promise<string> {
    const res = await call<{ message: string }>(site, 'GET', `/v2/images?${query}`, { as, headers: JSON_ACCEPT });
    assert.equal(res.status, 400, `?${query}: ${res.status} ${res.text}`);
    return res.body.message.replace(/<br \/><br \/>\n\n\n$/, '');
  }

  describe('filters', () => {
    // Fixtures, all with the custom property set=fx so that other tests' images never match.
    const p1 = project('p-list-1');
    const p2 = project('p-list-2');
    const p3 = project('p-list-3');
    const img: Record<string, ImageJson> = {};
    const fx = (body: Record<string, unknown>) => ({ set: 'fx', ...body });

    /** Names of the fixtures a query returns, as a sorted list of fixture letters. */
    async function letters(query: string, as: Identity = ADMIN): Promise<string[]> {
      const list = await listImages(site, `set=fx${query === '' ? '' : `&${query}`}`, as);
      const byId = new Map(Object.entries(img).map(([k, v]) => [v.id, k]));
      return list.images.map((i) => byId.get(i.id) ?? `?${i.name}`).sort();
    }

    before(async () => {
      img.a = await createActiveImage(site, bytesOf(1000, 1),
        fx({ name: 'alpha', tags: ['red', 'blue'], os_distro: 'debian', visibility: 'private' }), p1);
      img.b = await createActiveImage(site, bytesOf(3000, 2),
        fx({ name: 'beta', disk_format: 'qcow2', tags: ['red'], os_distro: 'ubuntu', visibility: 'shared' }), p1);
      img.c = await createImage(site, fx({ name: 'gamma', disk_format: 'iso', container_format: 'bare', tags: ['blue'], visibility: 'community' }), p2);
      img.d = await createImage(site, fx({ name: 'delta,comma', visibility: 'public', protected: true }));
      img.e = await createImage(site, fx({ name: 'epsilon', visibility: 'public', os_hidden: true }));
      img.f = await createActiveImage(site, bytesOf(2000, 3),
        fx({ name: 'alpha', disk_format: 'vhd', container_format: 'ovf', visibility: 'private' }), p2);
      await sleep(1100);
      img.g = await createImage(site, fx({ name: 'late', visibility: 'public' }));
      await sleep(1100);
      const touched = await patchImage(site, img.b.id, [{ op: 'add', path: '/touched', value: 'yes' }], { as: p1 });
      expectStatus(touched, 200);
      img.b = touched.body;
      expectStatus(await call(site, 'POST', `/v2/images/${img.b.id}/members`, { as: p1, json: { member: 'p-list-3' } }), 200);
    });

    it('by default an admin sees every image but hidden ones and community images of other projects', async () => {
      assert.deepEqual(await letters(''), ['a', 'b', 'd', 'f', 'g']);
      assert.deepEqual(await letters('visibility=all'), ['a', 'b', 'c', 'd', 'f', 'g']);
    });

    it('name (exact, also with the eq: operator)', async () => {
      assert.deepEqual(await letters('name=alpha'), ['a', 'f']);
      assert.deepEqual(await letters('name=eq:alpha'), ['a', 'f']);
      assert.deepEqual(await letters('name=alp'), []);
      assert.deepEqual(await letters(`name=${encodeURIComponent('delta,comma')}`), ['d']);
    });

    it('an unknown operator on name answers 400', async () => {
      await badQuery('name=like:alpha');
    });

    it('status', async () => {
      assert.deepEqual(await letters('status=active'), ['a', 'b', 'f']);
      assert.deepEqual(await letters('status=queued&visibility=all'), ['c', 'd', 'g']);
      assert.deepEqual(await letters('status=deactivated'), []);
    });

    it('visibility', async () => {
      assert.deepEqual(await letters('visibility=private'), ['a', 'f']);
      assert.deepEqual(await letters('visibility=public'), ['d', 'g']);
      assert.deepEqual(await letters('visibility=community'), ['c']);
      assert.deepEqual(await letters('visibility=shared'), ['b']);
      await badQuery('visibility=everyone');
    });

    it('owner', async () => {
      assert.deepEqual(await letters('owner=p-list-1'), ['a', 'b']);
      assert.deepEqual(await letters('owner=p-list-2'), ['f']);
      assert.deepEqual(await letters('owner=p-list-2&visibility=all'), ['c', 'f']);
      assert.deepEqual(await letters('owner=nobody'), []);
    });

    it('tag, repeatable with AND semantics', async () => {
      assert.deepEqual(await letters('tag=red'), ['a', 'b']);
      assert.deepEqual(await letters('tag=red&tag=blue'), ['a']);
      assert.deepEqual(await letters('tag=blue&visibility=all'), ['a', 'c']);
      assert.deepEqual(await letters('tag=red&tag=green'), []);
    });

    it('custom properties and other base attributes (exact match)', async () => {
      assert.deepEqual(await letters('os_distro=debian'), ['a']);
      assert.deepEqual(await letters('os_distro=ubuntu&touched=yes'), ['b']);
      assert.deepEqual(await letters('os_distro=arch'), []);
      assert.deepEqual(await letters('disk_format=raw'), ['a']);
      assert.deepEqual(await letters('container_format=ovf'), ['f']);
      assert.deepEqual(await letters(`checksum=${img.f.checksum}`), ['f']);
      assert.deepEqual(await letters(`id=${img.g.id}`), ['g']);
    });

    it('size_min and size_max (inclusive)', async () => {
      assert.deepEqual(await letters('size_min=1500'), ['b', 'f']);
      assert.deepEqual(await letters('size_max=1500'), ['a']);
      assert.deepEqual(await letters('size_min=1500&size_max=2500'), ['f']);
      assert.deepEqual(await letters('size_min=2000&size_max=2000'), ['f']);
      assert.deepEqual(await letters('size_min=1000&size_max=3000'), ['a', 'b', 'f']);
      await badQuery('size_min=big');
      await badQuery('size_max=1.5');
    });

    it('the in: operator, with a quoted value containing a comma', async () => {
      assert.deepEqual(await letters('name=in:alpha,beta'), ['a', 'b', 'f']);
      assert.deepEqual(await letters(`name=${encodeURIComponent('in:"delta,comma",gamma')}&visibility=all`), ['c', 'd']);
      assert.deepEqual(await letters(`name=${encodeURIComponent('in:delta,comma')}`), [], 'unquoted, the comma splits');
      assert.deepEqual(await letters('status=in:active,queued'), ['a', 'b', 'd', 'f', 'g']);
      assert.deepEqual(await letters('disk_format=in:raw,qcow2'), ['a', 'b']);
      assert.deepEqual(await letters('container_format=in:ovf'), ['f']);
      assert.deepEqual(await letters(`id=in:${img.a.id},${img.c.id}&visibility=all`), ['a', 'c']);
    });

    it('os_hidden: hidden images only on request', async () => {
      assert.deepEqual(await letters('os_hidden=true'), ['e']);
      assert.deepEqual(await letters('os_hidden=false'), ['a', 'b', 'd', 'f', 'g']);
      assert.deepEqual(await letters('os_hidden=True'), ['e']);
      assert.equal(await badQuery('os_hidden=maybe'), "Invalid value 'maybe' for 'os_hidden' filter. Valid values are 'true' or 'false'.");
    });

    it('protected', async () => {
      assert.deepEqual(await letters('protected=true'), ['d']);
      assert.deepEqual(await letters('protected=false'), ['a', 'b', 'f', 'g']);
      assert.equal(await badQuery('protected=yes'), "Invalid value 'yes' for 'protected' filter. Valid values are 'true' or 'false'.");
      // Unlike os_hidden, Glance does not lower-case protected.
      await badQuery('protected=True');
    });

    it('created_at with gt, gte, eq, neq, lt, lte (at the seconds the API shows)', async () => {
      const t = encodeURIComponent(img.g.created_at);
      assert.deepEqual(await letters(`created_at=gte:${t}`), ['g']);
      assert.deepEqual(await letters(`created_at=gt:${t}`), []);
      assert.deepEqual(await letters(`created_at=eq:${t}`), ['g']);
      assert.deepEqual(await letters(`created_at=${t}`), ['g']);
      assert.deepEqual(await letters(`created_at=neq:${t}`), ['a', 'b', 'd', 'f']);
      assert.deepEqual(await letters(`created_at=lt:${t}`), ['a', 'b', 'd', 'f']);
      assert.deepEqual(await letters(`created_at=lte:${t}`), ['a', 'b', 'd', 'f', 'g']);
      assert.deepEqual(await letters('created_at=gt:2000-01-01T00:00:00Z'), ['a', 'b', 'd', 'f', 'g']);
      assert.deepEqual(await letters('created_at=lt:2000-01-01T00:00:00Z'), []);
      await badQuery('created_at=gt:yesterday');
    });

    it('updated_at with the same operators', async () => {
      const t = encodeURIComponent(img.b.updated_at);
      assert.deepEqual(await letters(`updated_at=gte:${t}`), ['b']);
      assert.deepEqual(await letters(`updated_at=eq:${t}`), ['b']);
      assert.deepEqual(await letters(`updated_at=lt:${t}`), ['a', 'd', 'f', 'g']);
      assert.deepEqual(await letters(`updated_at=neq:${t}`), ['a', 'd', 'f', 'g']);
      assert.deepEqual(await letters(`updated_at=lte:${t}`), ['a', 'b', 'd', 'f', 'g']);
      assert.deepEqual(await letters(`updated_at=gt:${t}`), []);
    });

    it('changes-since is gone in v2 (400)', async () => {
      await badQuery('changes-since=2020-01-01T00:00:00Z');
    });

    it('a project sees public images, its own (community too), and shared images it accepted', async () => {
      assert.deepEqual(await letters('', p1), ['a', 'b', 'd', 'g']);
      assert.deepEqual(await letters('', p2), ['c', 'd', 'f', 'g']);
      assert.deepEqual(await letters('', p3), ['d', 'g']);
      assert.deepEqual(await letters('visibility=all', p3), ['c', 'd', 'g']);
      assert.deepEqual(await letters('visibility=private', p3), []);
    });

    it('member_status selects shared images by the caller\'s membership status', async () => {
      assert.deepEqual(await letters('member_status=pending', p3), ['b', 'd', 'g']);
      assert.deepEqual(await letters('member_status=pending&visibility=shared', p3), ['b']);
      assert.deepEqual(await letters('member_status=accepted&visibility=shared', p3), []);
      assert.deepEqual(await letters('member_status=all&visibility=shared', p3), ['b']);
      assert.deepEqual(await letters('member_status=rejected&visibility=shared', p3), []);
      // The owner's own shared image is listed whatever the member status asked.
      assert.deepEqual(await letters('member_status=rejected&visibility=shared', p1), ['b']);
      await badQuery('member_status=maybe', p3);
    });
  });

  describe('sorting', () => {
    // Images with set=sort: names with a tie and a null, sizes with a tie and nulls.
    const img: Record<string, ImageJson> = {};
    const q = (query: string) => `set=sort&${query}`;

    before(async () => {
      // A few ms apart, so that creation order is the created_at order.
      img.a = await createActiveImage(site, bytesOf(100, 4), { set: 'sort', name: 'mango' });
      await sleep(5);
      img.b = await createActiveImage(site, bytesOf(300, 5), { set: 'sort', name: 'apple' });
      await sleep(5);
      img.c = await createActiveImage(site, bytesOf(200, 6), { set: 'sort', name: 'mango' });
      await sleep(5);
      img.d = await createImage(site, { set: 'sort', name: 'zucchini' });
      await sleep(5);
      img.e = await createImage(site, { set: 'sort' });
    });

    const order = async (query: string) => {
      const byId = new Map(Object.entries(img).map(([k, v]) => [v.id, k]));
      return ids(await listImages(site, q(query))).map((id) => byId.get(id));
    };

    it('defaults to newest first', async () => {
      assert.deepEqual(await order(''), ['e', 'd', 'c', 'b', 'a']);
    });

    it('sort_dir alone reverses the default order', async () => {
      assert.deepEqual(await order('sort_dir=asc'), ['a', 'b', 'c', 'd', 'e']);
      assert.deepEqual(await order('sort_key=created_at&sort_dir=asc'), ['a', 'b', 'c', 'd', 'e']);
    });

    it('sort_key / sort_dir; with one direction given, ties are broken in that direction too', async () => {
      assert.deepEqual(await order('sort_key=name&sort_dir=asc'), ['e', 'b', 'a', 'c', 'd']);
      assert.deepEqual(await order('sort_key=name'), ['d', 'c', 'a', 'b', 'e']);
      assert.deepEqual(await order('sort_key=name&sort_dir=desc'), ['d', 'c', 'a', 'b', 'e']);
    });

    it('repeated sort_key / sort_dir pair up', async () => {
      assert.deepEqual(await order('sort_key=name&sort_key=size&sort_dir=asc&sort_dir=desc'), ['e', 'b', 'c', 'a', 'd']);
      assert.deepEqual(await order('sort_key=size&sort_key=name&sort_dir=desc&sort_dir=asc'), ['b', 'c', 'a', 'e', 'd']);
      // One direction applies to every key.
      assert.deepEqual(await order('sort_key=name&sort_key=size&sort_dir=asc'), ['e', 'b', 'a', 'c', 'd']);
    });

    it('sort=key:dir,key:dir', async () => {
      assert.deepEqual(await order('sort=name:asc'), ['e', 'b', 'a', 'c', 'd']);
      assert.deepEqual(await order(`sort=${encodeURIComponent('name:asc,size:desc')}`), ['e', 'b', 'c', 'a', 'd']);
      assert.deepEqual(await order('sort=name:asc,size:desc'), ['e', 'b', 'c', 'a', 'd']);
      assert.deepEqual((await order('sort=size')).slice(0, 3), ['b', 'c', 'a'], 'without a direction, desc');
    });

    it('mixing sort with sort_key or sort_dir answers 400', async () => {
      await badQuery(q('sort=name:asc&sort_key=name'));
      await badQuery(q('sort=name:asc&sort_dir=asc'));
    });

    it('an unknown sort key or direction answers 400', async () => {
      for (const query of ['sort_key=owner', 'sort_key=bogus', 'sort=bogus:asc', 'sort=name:up', 'sort_dir=sideways',
        'sort_key=name&sort_key=size&sort_dir=asc&sort_dir=desc&sort_dir=asc']) {
        await badQuery(q(query));
      }
      assert.match(await badQuery(q('sort_key=bogus')), /sort key/i);
    });
  });

  describe('limit and marker', () => {
    it('limit=abc answers 400 "limit param must be an integer" (samples/error-400-limit.http)', async () => {
      assert.equal(await badQuery('limit=abc'), 'limit param must be an integer');
    });

    it('a negative or fractional limit answers 400', async () => {
      await badQuery('limit=-1');
      await badQuery('limit=1.5');
    });

    it('an unknown marker answers 400 (samples/error-400-bad-uuid-marker.http)', async () => {
      assert.equal(await badQuery('marker=nope'), 'No image found with ID nope');
      const missing = randomUUID();
      assert.equal(await badQuery(`marker=${missing}`), `No image found with ID ${missing}`);
    });

    it('a marker the caller cannot see answers 400', async () => {
      const hidden = await createImage(site, { name: 'marker-private', visibility: 'private' }, project('p-marker-a'));
      await badQuery(`marker=${hidden.id}`, project('p-marker-b'));
      expectStatus(await call(site, 'GET', `/v2/images?marker=${hidden.id}`, { as: project('p-marker-a') }), 200);
    });

    it('limit=0 answers an empty page', async () => {
      const list = await listImages(site, 'limit=0');
      assert.deepEqual(list.images, []);
      assert.equal(list.next, undefined);
    });
  });

  describe('pagination', () => {
    const made: ImageJson[] = [];
    before(async () => {
      const names = ['p1', 'p2', 'p2', null, 'p5', 'p6', null];
      for (const [i, name] of names.entries()) {
        made.push(i % 3 === 0
          ? await createActiveImage(site, bytesOf(100 + (i % 2) * 50, 20 + i), { set: 'page', name })
          : await createImage(site, { set: 'page', name }));
      }
    });

    /** Follows `next` from `start`; returns every page. */
    async function walk(start: string): Promise<ImageList[]> {
      const pages: ImageList[] = [];
      let path: string | undefined = start;
      while (path !== undefined) {
        assert.ok(pages.length < 20, 'pagination does not end');
        const res: ApiResponse<ImageList> = await call<ImageList>(site, 'GET', path);
        expectStatus(res, 200);
        pages.push(res.body);
        path = res.body.next;
      }
      return pages;
    }

    it('the body has images, first, schema, and next only when the page is full (samples/image-list.json)', async () => {
      const list = await listImages(site, 'set=page&limit=2');
      assert.deepEqual(Object.keys(list).sort(), ['first', 'images', 'next', 'schema']);
      assert.equal(list.schema, '/v2/schemas/images');
      assert.equal(list.first, '/v2/images?set=page&limit=2');
      assert.equal(list.next, `/v2/images?set=page&limit=2&marker=${list.images[1].id}`);
      const all = await listImages(site, 'set=page');
      assert.deepEqual(Object.keys(all).sort(), ['first', 'images', 'schema']);
      assert.equal(all.first, '/v2/images?set=page');
      const bare = await listImages(site);
      assert.equal(bare.first, '/v2/images');
    });

    for (const [what, query] of [
      ['the default order', 'set=page&limit=3'],
      ['sort_key=name&sort_dir=asc (ties and nulls)', 'set=page&sort_key=name&sort_dir=asc&limit=2'],
      ['sort=name:desc,size:asc', `set=page&sort=${encodeURIComponent('name:desc,size:asc')}&limit=2`],
      ['sort_key=size (nulls)', 'set=page&sort_key=size&limit=3'],
      ['limit=1', 'set=page&limit=1'],
    ] as const) {
      it(`following next links visits every image exactly once, in order (${what})`, async () => {
        const full = ids(await listImages(site, query.replace(/&limit=\d+/, '&limit=100')));
        assert.equal(full.length, made.length);
        const pages = await walk(`/v2/images?${query}`);
        const seen = pages.flatMap(ids);
        assert.deepEqual(seen, full);
        assert.equal(new Set(seen).size, made.length);
        const limit = Number(/limit=(\d+)/.exec(query)![1]);
        for (const [i, page] of pages.entries()) {
          assert.ok(!page.first.includes('marker='), `first has no marker: ${page.first}`);
          assert.equal(page.first, `/v2/images?${new URLSearchParams(query).toString()}`);
          if (i < pages.length - 1) {
            assert.equal(page.images.length, limit);
            assert.ok(page.next!.endsWith(`marker=${page.images[page.images.length - 1].id}`), page.next);
          } else {
            assert.equal(page.next, undefined);
          }
        }
        if (made.length % limit !== 0) assert.equal(pages[pages.length - 1].images.length, made.length % limit);
      });
    }

    it('a page that ends exactly at the last image still has next, and the page after it is empty', async () => {
      const page = await listImages(site, `set=page&limit=${made.length}`);
      assert.equal(page.images.length, made.length);
      assert.ok(page.next !== undefined);
      const after = await call<ImageList>(site, 'GET', page.next);
      expectStatus(after, 200);
      assert.deepEqual(after.body.images, []);
      assert.equal(after.body.next, undefined);
    });

    it('a marker is honoured without limit', async () => {
      const full = ids(await listImages(site, 'set=page'));
      assert.deepEqual(ids(await listImages(site, `set=page&marker=${full[2]}`)), full.slice(3));
    });

    it('a marker combines with sort_key=id and limit', async () => {
      const full = ids(await listImages(site, 'set=page&sort_key=id&sort_dir=asc'));
      assert.deepEqual(ids(await listImages(site, `set=page&sort_key=id&sort_dir=asc&marker=${full[3]}&limit=2`)), full.slice(4, 6));
    });
  });
});
