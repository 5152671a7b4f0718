import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RoundRobinProxy } from '../../test-support/round-robin-proxy.ts';
import { bytesOf } from '../helpers/glance-client.ts';
import { download, eventually, loopbackTarget, stopProcess } from '../helpers/multi-site.ts';
import { createTestDatabase, postgresSkip } from '../helpers/postgres.ts';
import { createTestBucket, s3Skip, type TestBucket } from '../helpers/s3.ts';
import { spawnServe, tempDir, type ServeProcess } from '../helpers/site.ts';

const MiB = 1 << 20;
const sha512 = (b: Uint8Array) => createHash('sha512').update(b).digest('hex');

/**
 * Issue 14's production shape, with real processes: two central nodes sharing one PostgreSQL
 * catalog and one S3 bucket (Swift's s3api) behind a round-robin balancer; an edge on its own
 * directory below them, and an edge whose store is the same S3 server under a prefix of its own
 * (as an edge on the site's Ceph RGW would be) — each site chooses its store type.
 */
describe('S3 stores across sites: a central pair on one bucket, an edge on a directory, an edge on S3', { skip: postgresSkip || s3Skip || undefined, timeout: 300_000 }, () => {
  let work: string;
  let bucket: TestBucket;
  let database: { url: string; drop(): Promise<void> };
  const nodes: ServeProcess[] = [];
  let proxy: RoundRobinProxy;
  let dirEdge: ServeProcess;
  let s3Edge: ServeProcess;
  const s3Env = () => ({ AWS_ACCESS_KEY_ID: bucket.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: bucket.credentials.secretAccessKey, OUTPOST_STORAGE_SYNC: 'false' });
  const spec = (id: string, prefix: string) => `${id}=s3://${bucket.bucket}/${prefix}?endpoint=${bucket.endpoint}&region=us-east-1&path_style=true`;
  const api = async (url: string, method: string, path: string, json?: unknown) => {
    const res = await fetch(`${url}${path}`, {
      method, headers: { accept: 'application/json', ...(json === undefined ? {} : { 'content-type': 'application/json' }) }, body: json === undefined ? undefined : JSON.stringify(json),
    });
    const text = await res.text();
    return { status: res.status, body: text === '' ? undefined : JSON.parse(text) as any };
  };

  before(async () => {
    work = await tempDir('outpost-s3-sites-');
    bucket = await createTestBucket();
    database = await createTestDatabase();
    // One after the other: the first creates the schema.
    for (const n of [1, 2]) {
      nodes.push(await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, `node-${n}`), '--database-url', database.url,
        '--staging-path', join(work, 'staging'), '--store', spec('central', 'central')], s3Env()));
    }
    proxy = await RoundRobinProxy.start(nodes.map((node) => loopbackTarget(node.url)));
    const edgeEnv = { ...s3Env(), OUTPOST_FEED_WAIT_SECONDS: '2' };
    dirEdge = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'dir-edge'), '--role', 'edge', '--site', 'dir-edge', '--parent', proxy.url], edgeEnv);
    s3Edge = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 's3-edge'), '--role', 'edge', '--site', 's3-edge', '--parent', proxy.url,
      '--store', spec('s3-edge', 'edges/s3-edge')], edgeEnv);
  });
  after(async () => {
    for (const p of [s3Edge, dirEdge]) if (p !== undefined) await stopProcess(p);
    await proxy?.close();
    for (const node of nodes) await stopProcess(node);
    await database?.drop();
    await bucket?.remove();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('an upload through one central node lands in the bucket, verified; the other node serves it from there, and the edge on a directory caches it', async () => {
    const data = bytesOf(12 * MiB + 5, 71);
    const created = await api(nodes[0]!.url, 'POST', '/v2/images', { name: 'on-the-lake', disk_format: 'raw', container_format: 'bare', visibility: 'public' });
    assert.equal(created.status, 201);
    const put = await fetch(`${nodes[0]!.url}/v2/images/${created.body.id}/file`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: data });
    assert.equal(put.status, 204, await put.text());
    assert.deepEqual(await bucket.objects('central/'), [`central/${created.body.id}`]);
    assert.deepEqual(await bucket.uploads(), [], 'no multipart upload left behind');
    const fromOther = await download(nodes[1]!.url, created.body.id);
    assert.deepEqual([fromOther.status, fromOther.sha512], [200, sha512(data)]);
    await eventually('the directory edge has the image', 30_000, async () => (await api(dirEdge.url, 'GET', `/v2/images/${created.body.id}`)).body?.status === 'active');
    const atEdge = await download(dirEdge.url, created.body.id);
    assert.deepEqual([atEdge.status, atEdge.sha512], [200, sha512(data)]);
    await eventually('the directory edge keeps a verified copy', 30_000, async () =>
      ((await api(dirEdge.url, 'GET', '/v2/cache')).body.cached_images as { image_id: string }[]).some((c) => c.image_id === created.body.id));
  });

  it('an upload at the edge on S3 stays in its own prefix of the bucket; central, through either node, reads it from that edge', async () => {
    const data = bytesOf(7 * MiB + 3, 72);
    const created = await api(s3Edge.url, 'POST', '/v2/images', { name: 'snapshot-at-the-edge', disk_format: 'raw', container_format: 'bare' });
    assert.equal(created.status, 201);
    const put = await fetch(`${s3Edge.url}/v2/images/${created.body.id}/file`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: data });
    assert.equal(put.status, 204, await put.text());
    assert.deepEqual(await bucket.objects('edges/'), [`edges/s3-edge/${created.body.id}`]);
    assert.equal((await api(proxy.url, 'GET', `/v2/images/${created.body.id}`)).body.stores, 's3-edge');
    for (const node of nodes) {
      const got = await download(node.url, created.body.id);
      assert.deepEqual([got.status, got.sha512], [200, sha512(data)]);
    }
  });
});
