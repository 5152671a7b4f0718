import assert from 'node:assert/strict';
import { mkdir, rm } from 'node:fs/promises';
import { DatabaseSync } from 'node:sqlite';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { FaultProxy } from '../../test-support/fault-proxy.ts';
import { chromiumMissing } from '../helpers/clients.ts';
import { bytesOf } from '../helpers/glance-client.ts';
import { eventually, loopbackTarget, stopProcess } from '../helpers/multi-site.ts';
import { REPO_ROOT, spawnServe, tempDir, type ServeProcess } from '../helpers/site.ts';

const skip = await chromiumMissing();
const PASSWORD = 'dashboard secret';
const HEARTBEAT_SECONDS = 2;
const EDGE_ENV = {
  OUTPOST_AUTH: 'keystone', OUTPOST_PARENT_TIMEOUT_MS: '1500', OUTPOST_FEED_WAIT_SECONDS: '2', OUTPOST_STORAGE_SYNC: 'false',
  OUTPOST_HEARTBEAT_SECONDS: String(HEARTBEAT_SECONDS),
};
const SCREENSHOTS = join(REPO_ROOT, 'docs', 'screenshots');

/**
 * The dashboard in Debian's Chromium (headless, driven by playwright-core) against a demo region
 * with Keystone authentication — central, two edges, a far edge behind the first, each its own
 * process, each edge behind a FaultProxy: log in, the site tree, an image reaching "held" in the
 * fleet matrix, an edge cut off and marked so, a pin from the image page. Each page's screenshot is
 * saved under docs/screenshots/ (the README shows them).
 */
describe('dashboard in a real browser', { skip: process.env.TEST_SERVERS_REQUIRED === undefined ? skip : false, timeout: 240_000 }, () => {
  let work: string;
  let central: ServeProcess;
  const edges: ServeProcess[] = [];
  const wans: FaultProxy[] = [];
  let browser: Browser;
  let page: Page;
  let admin: string;

  const api = async (path: string, init: RequestInit = {}) => {
    const res = await fetch(`${central.url}${path}`, { ...init, headers: { accept: 'application/json', 'x-auth-token': admin, ...init.headers } });
    assert.ok(res.ok, `${path}: ${res.status} ${await res.clone().text()}`);
    return res.status === 204 ? undefined : res.json() as Promise<any>;
  };
  const shot = (name: string) => page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });

  before(async () => {
    work = await tempDir('outpost-e2e-dashboard-');
    central = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'central'), '--auth', 'keystone'],
      { OUTPOST_ADMIN_PASSWORD: PASSWORD, OUTPOST_STORAGE_SYNC: 'false' });
    const res = await fetch(`${central.url}/identity/v3/auth/tokens`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ auth: { identity: { methods: ['password'], password: { user: { name: 'admin', domain: { id: 'default' }, password: PASSWORD } } }, scope: { project: { name: 'admin', domain: { id: 'default' } } } } }),
    });
    admin = res.headers.get('x-subject-token')!;
    const credential = async (site: string) => (await api(`/outpost/v1/sites/${site}/credential`, { method: 'POST' })).token as string;
    const edge = async (site: string, parentUrl: string, labels: string[]) => {
      const wan = await FaultProxy.start({ target: loopbackTarget(parentUrl) });
      wans.push(wan);
      const p = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, site), '--role', 'edge', '--site', site, '--parent', wan.url, ...labels.flatMap((l) => ['--label', l])],
        { ...EDGE_ENV, OUTPOST_SITE_TOKEN: await credential(site) });
      edges.push(p);
      return p;
    };
    const edge1 = await edge('edge-1', central.url, ['region=eu']);
    await edge('edge-2', central.url, ['region=us']);
    await edge('far-1', edge1.url, ['region=eu', 'tier=far']);
    await eventually('every site registered', 60_000, async () => (await api('/outpost/v1/sites')).sites.length === 4);
    await mkdir(SCREENSHOTS, { recursive: true });
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  });
  after(async () => {
    await browser?.close();
    for (const p of [...edges].reverse()) await stopProcess(p);
    for (const w of wans) await w.close();
    if (central !== undefined) await stopProcess(central);
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('logs in with Keystone and shows the site tree of the region', async () => {
    await page.goto(`${central.url}/dashboard/`);
    await page.getByLabel('User').fill('admin');
    await page.getByLabel('Password').fill('not the password');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('alert').filter({ hasText: 'The user name or password is wrong.' }).waitFor();
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Log in' }).click();
    const rows = page.locator('table.sites tbody tr');
    await rows.nth(3).waitFor();
    // The tree: central, then each edge followed by its children.
    assert.deepEqual(await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-site'))), ['central', 'edge-1', 'far-1', 'edge-2']);
    await page.getByText('4 sites: 4 healthy').waitFor();
    assert.match(await page.locator('tr[data-site="far-1"]').innerText(), /region=eu/);
    await shot('sites');
  });

  it('on a phone-sized screen the page does not overflow sideways (the table scrolls in its box), and the pages are reached by keyboard', async () => {
    const phone = await browser.newPage({ viewport: { width: 390, height: 844 } });
    try {
      await phone.goto(`${central.url}/dashboard/`);
      await phone.evaluate((t) => sessionStorage.setItem('outpost-token', t), admin);
      await phone.reload();
      await phone.locator('table.sites tbody tr').nth(3).waitFor();
      // Evaluated in the page (a string: the browser's globals are not this file's).
      const { page: pageWidth, viewport, table, box } = await phone.evaluate<{ page: number; viewport: number; table: number; box: number }>(`({
        page: document.documentElement.scrollWidth, viewport: window.innerWidth,
        table: document.querySelector('table.sites').scrollWidth, box: document.querySelector('.scroll').clientWidth,
      })`);
      assert.ok(pageWidth <= viewport, `the page is ${pageWidth} px wide on a ${viewport} px screen`);
      assert.ok(table >= box, 'the table keeps its columns and scrolls inside its box');
      // Tab from the top reaches the navigation; Enter follows the link.
      for (let i = 0; i < 10 && !(await phone.evaluate<boolean>("document.activeElement?.textContent === 'Fleet'")); i++) await phone.keyboard.press('Tab');
      await phone.keyboard.press('Enter');
      await phone.locator('table.fleet').waitFor();
      assert.match(phone.url(), /#\/fleet$/);
    } finally {
      await phone.close();
    }
  });

  it('an image a policy places at an edge appears in the fleet matrix and reaches "held"', async () => {
    const image = await api('/v2/images', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'golden-disk', disk_format: 'raw', container_format: 'bare', tags: ['golden'] }) });
    await api(`/v2/images/${image.id}/file`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: bytesOf(2 * 1024 * 1024, 5) });
    await api('/outpost/v1/policies', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'golden-us', images: { tags: ['golden'] }, sites: { labels: 'region=us' }, mode: 'replicate', priority: 50 }),
    });
    await page.getByRole('link', { name: 'Fleet' }).click();
    const cell = page.locator(`tr[data-image="${image.id}"] td[data-site="edge-2"]`);
    await cell.filter({ hasText: 'held' }).waitFor({ timeout: 60_000 });
    assert.match(await page.locator(`tr[data-image="${image.id}"]`).innerText(), /golden-disk\s+100%/);
    await shot('fleet');

    // Filters: by site labels (the columns are the matching sites with a wanted copy), by tag, by policy.
    const columns = () => page.locator('table.fleet thead th').allInnerTexts();
    /** A text filter takes effect once the operator stops typing. */
    const filterBy = (label: string, value: string) => page.getByLabel(label).fill(value);
    await filterBy('Site labels', 'region=eu');
    await page.getByText('No copies wanted match the filters.').waitFor();
    const onlyEdge2 = () => eventually('the matrix shows edge-2 alone', 30_000, async () => (await columns()).join() === 'Image,Converged,edge-2');
    await filterBy('Site labels', 'region!=eu');
    await cell.filter({ hasText: 'held' }).waitFor();
    await onlyEdge2();
    await filterBy('Site labels', 'region in (eu');
    await page.getByRole('alert').filter({ hasText: 'site_labels' }).waitFor();
    await filterBy('Site labels', '');
    await filterBy('Tag', 'silver');
    await page.getByText('No copies wanted match the filters.').waitFor();
    await filterBy('Tag', 'golden');
    await cell.filter({ hasText: 'held' }).waitFor();
    await page.getByLabel('Policy').selectOption('golden-us');
    await onlyEdge2();
    await cell.filter({ hasText: 'held' }).waitFor();
    await filterBy('Tag', '');
    await page.getByLabel('Policy').selectOption('');
  });

  it('an edge cut off is marked so within a few heartbeat intervals, and healthy again once healed', async () => {
    await page.getByRole('link', { name: 'Sites' }).click();
    const edge2 = page.locator('tr[data-site="edge-2"]');
    await edge2.filter({ hasText: 'healthy' }).waitFor();
    // The copy the policy placed, in the site's holdings (one stored copy of 2 MiB).
    await edge2.filter({ hasText: '1 (2.1 MB)' }).waitFor({ timeout: 60_000 });
    // Its cache against its budget (cache_max_bytes, 10 GiB by default): nothing cached there yet.
    assert.match(await edge2.locator('td').nth(3).innerText(), /^0 \(0 B of 10\.7 GB, 0%\)$/);
    const t0 = Date.now();
    wans[1].blackhole();
    try {
      await edge2.filter({ hasText: 'cut off' }).waitFor({ timeout: 60_000 });
      const seconds = (Date.now() - t0) / 1000;
      // Cut off after 3 silent intervals, seen at the page's next poll (2 s), plus a heartbeat in flight.
      assert.ok(seconds <= 4 * HEARTBEAT_SECONDS + 4, `marked after ${seconds} s`);
      await page.getByText('1 cut off').waitFor();
      await shot('sites-cut-off');
    } finally {
      wans[1].pass();
    }
    await edge2.filter({ hasText: 'healthy' }).waitFor({ timeout: 60_000 });
  });

  it('pins an image at the far edge from the image page', async () => {
    const { images } = await api('/v2/images?name=golden-disk');
    await page.goto(`${central.url}/dashboard/#/images/${images[0].id}`);
    await page.getByRole('heading', { name: 'golden-disk' }).waitFor();
    // Its transfer to edge-2, as edge-2 reported it: all 2 MiB fetched over its link, nothing it held to reuse.
    const moved = page.locator('tr[data-transfer="edge-2"]');
    await moved.waitFor({ timeout: 60_000 });
    assert.match(await moved.innerText(), /edge-2\s+done\s+2\.1 MB\s+0 B/);
    await page.getByLabel('Site').selectOption('far-1');
    await page.getByRole('button', { name: 'Pin at site' }).click();
    await page.getByRole('status').filter({ hasText: 'pinned at far-1' }).waitFor();
    await page.locator('tr[data-held="far-1"]').filter({ hasText: 'pinned' }).waitFor({ timeout: 60_000 });
    await shot('image');
  });

  it('the transfers page shows what moved where in the region, and the repairs an audit made at an edge', async () => {
    const { images } = await api('/v2/images?name=golden-disk');
    const id = images[0].id as string;
    // edge-1's replica altered behind its back; its audit repairs it and reports the repair.
    await eventually('edge-1 has the image in its replica', 30_000, async () => {
      const db = new DatabaseSync(join(work, 'edge-1', 'catalog.sqlite'));
      try {
        return db.prepare('update images set name = ? where id = ?').run('tampered', id).changes === 1;
      } finally {
        db.close();
      }
    });
    const audit = await fetch(`${edges[0]!.url}/outpost/v1/audit`, { method: 'POST', headers: { accept: 'application/json', 'x-auth-token': admin } });
    const result = await audit.json() as { result: string; mismatched: string[] };
    assert.deepEqual([audit.status, result.result, result.mismatched], [200, 'repaired', ['images']]);
    await page.getByRole('link', { name: 'Transfers' }).click();
    await page.locator('li[data-repairs="edge-1"]').filter({ hasText: 'replica repaired 1× (images)' }).waitFor({ timeout: 60_000 });
    // The region's ended transfers, each with its site: edge-2's copy and far-1's pinned one.
    await page.locator(`tr[data-site="edge-2"][data-image="${id}"]`).filter({ hasText: 'done' }).waitFor({ timeout: 60_000 });
    await page.locator(`tr[data-site="far-1"][data-image="${id}"]`).filter({ hasText: 'done' }).waitFor({ timeout: 60_000 });
    await shot('transfers');
  });

  it('a project member logs in and sees the images their project may see, not another project\'s private ones; the fleet is for administrators', async () => {
    const json = (body: unknown) => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const project = (await api('/identity/v3/projects', json({ project: { name: 'demo', domain_id: 'default' } }))).project;
    const user = (await api('/identity/v3/users', json({ user: { name: 'alice', password: 'alice secret', domain_id: 'default', default_project_id: project.id } }))).user;
    const member = (await api('/identity/v3/roles?name=member')).roles[0];
    await api(`/identity/v3/projects/${project.id}/users/${user.id}/roles/${member.id}`, { method: 'PUT' });
    const secret = await api('/v2/images', json({ name: 'admin-private', visibility: 'private', disk_format: 'raw', container_format: 'bare' }));
    await api('/v2/images', json({ name: 'for-everyone', visibility: 'public', disk_format: 'raw', container_format: 'bare' }));
    const alice = await browser.newPage({ viewport: { width: 1280, height: 720 } });
    try {
      await alice.goto(`${central.url}/dashboard/`);
      await alice.getByLabel('User').fill('alice');
      await alice.getByLabel('Password').fill('alice secret');
      await alice.getByLabel('Project').fill('demo');
      await alice.getByRole('button', { name: 'Log in' }).click();
      await alice.getByRole('link', { name: 'Images' }).click();
      // Her own image, made through the API with her token, and the public one; not admin's private or shared ones.
      const token = await alice.evaluate<string>("sessionStorage.getItem('outpost-token')");
      const res = await fetch(`${central.url}/v2/images`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-auth-token': token }, body: JSON.stringify({ name: 'alice-disk' }) });
      assert.equal(res.status, 201);
      await alice.getByRole('link', { name: 'alice-disk' }).waitFor();
      await alice.getByRole('link', { name: 'for-everyone' }).waitFor();
      assert.equal(await alice.getByRole('link', { name: secret.name }).count(), 0);
      assert.equal(await alice.getByRole('link', { name: 'golden-disk' }).count(), 0, 'admin\'s shared image is not hers');
      await alice.getByRole('link', { name: 'Fleet' }).click();
      await alice.getByRole('alert').filter({ hasText: 'The fleet view is for administrators and sites.' }).waitFor();
      // Her image's page opens, though the transfer lists are for administrators.
      await alice.getByRole('link', { name: 'Images' }).click();
      await alice.getByRole('link', { name: 'alice-disk' }).click();
      await alice.getByRole('heading', { name: 'alice-disk' }).waitFor();
      await alice.getByText('No site has reported a transfer of this image lately.').waitFor();
      // At an edge, the Transfers page shows the refusal (403) as it is, rather than falling back
      // to the edge's own transfers as if central could not be reached.
      await alice.goto(`${edges[0]!.url}/dashboard/#/transfers`);
      await alice.evaluate((t) => sessionStorage.setItem('outpost-token', t), token);
      await alice.reload();
      await alice.getByRole('alert').filter({ hasText: /for (sites and administrators|administrators and sites)\./ }).waitFor();
      assert.equal(await alice.getByText('Central cannot be reached').count(), 0);
      await alice.goto(`${central.url}/dashboard/#/images`);
      // Her token revoked (as when it expires): the dashboard goes back to the login form.
      const revoked = await fetch(`${central.url}/identity/v3/auth/tokens`, { method: 'DELETE', headers: { 'x-auth-token': token, 'x-subject-token': token } });
      assert.equal(revoked.status, 204);
      await alice.getByRole('button', { name: 'Log in' }).waitFor();
    } finally {
      await alice.close();
    }
  });

  it('an edge\'s dashboard shows its subtree, and is read-only while the edge is cut off', async () => {
    const edge1 = edges[0]!;
    const { images } = await api('/v2/images?name=golden-disk');
    const at = await browser.newPage({ viewport: { width: 1280, height: 720 } });
    try {
      await at.goto(`${edge1.url}/dashboard/`);
      await at.evaluate((t) => sessionStorage.setItem('outpost-token', t), admin);
      await at.reload();
      const rows = at.locator('table.sites tbody tr');
      await rows.nth(1).waitFor();
      assert.deepEqual(await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-site'))), ['edge-1', 'far-1']);
      await at.getByText('2 sites: 2 healthy').waitFor();
      wans[0]!.blackhole();
      try {
        await at.getByRole('status').filter({ hasText: 'Cut off from its parent' }).waitFor({ timeout: 60_000 });
        await at.locator('tr[data-site="edge-1"]').filter({ hasText: 'cut off' }).waitFor();
        // The image page still answers from the edge's replica; its actions wait for the link.
        await at.goto(`${edge1.url}/dashboard/#/images/${images[0].id}`);
        await at.getByRole('heading', { name: 'golden-disk' }).waitFor();
        assert.equal(await at.getByRole('button', { name: 'Pin at site' }).isDisabled(), true);
        // What the edge itself moved it knows: the copy it fetched on the way to far-1.
        await at.locator('tr[data-transfer="edge-1"]').filter({ hasText: 'done' }).waitFor();
        assert.deepEqual(await at.getByLabel('Site').locator('option').allInnerTexts(), ['edge-1', 'far-1']);
        await at.screenshot({ path: join(SCREENSHOTS, 'edge-cut-off.png'), fullPage: true });
        // An image created at the edge meanwhile is there at once, marked as not yet at central.
        const made = await fetch(`${edge1.url}/v2/images`, {
          method: 'POST', headers: { 'content-type': 'application/json', 'x-auth-token': admin }, body: JSON.stringify({ name: 'made-while-cut-off' }),
        });
        assert.equal(made.status, 201);
        const madeId = (await made.json() as { id: string }).id;
        await at.goto(`${edge1.url}/dashboard/#/images`);
        await at.locator(`tr[data-image="${madeId}"]`).filter({ hasText: 'not yet at central' }).waitFor();
        // The fleet page there lists it (the region's matrix is central's, which cannot be reached now).
        await at.getByRole('link', { name: 'Fleet' }).click();
        await at.locator(`li[data-unsynced="${madeId}"]`).filter({ hasText: 'written at edge-1 while it was cut off' }).waitFor();
        await at.getByRole('alert').waitFor();
      } finally {
        wans[0]!.pass();
      }
      await at.getByRole('status').filter({ hasText: 'Cut off from its parent' }).waitFor({ state: 'detached', timeout: 60_000 });
      // Once the link is back the image reaches central, and the mark goes.
      await at.getByRole('link', { name: 'Images' }).click();
      await at.locator('tr', { hasText: 'made-while-cut-off' }).filter({ hasNotText: 'not yet at central' }).waitFor({ timeout: 60_000 });
      assert.equal((await api('/v2/images?name=made-while-cut-off')).images.length, 1);
      await at.goto(`${edge1.url}/dashboard/#/images/${images[0].id}`);
      await at.getByRole('heading', { name: 'golden-disk' }).waitFor();
      assert.equal(await at.getByRole('button', { name: 'Pin at site' }).isDisabled(), false);
    } finally {
      await at.close();
    }
  });

  it('a site that stops answering is said so, above what it said last', async () => {
    const edge2 = edges[1]!;
    const at = await browser.newPage({ viewport: { width: 1280, height: 720 } });
    try {
      await at.goto(`${edge2.url}/dashboard/`);
      await at.evaluate((t) => sessionStorage.setItem('outpost-token', t), admin);
      await at.reload();
      await at.getByRole('heading', { name: /edge-2/ }).waitFor();
      await stopProcess(edge2);
      await at.getByRole('alert').filter({ hasText: 'This site does not answer' }).waitFor({ timeout: 60_000 });
      assert.equal(await at.getByRole('heading', { name: /edge-2/ }).count(), 1, 'what it said last is still shown');
    } finally {
      await at.close();
    }
  });
});
