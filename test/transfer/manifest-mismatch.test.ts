// A wrong chunk manifest from another site (issue 17's peers, central's holders): bytes that match
// every chunk of it but not the image as a whole. Real parts: ImageFills with a spool directory, a
// verifying store on the memory driver with the hashing threads, SiteImageSource asking real
// HTTP servers on loopback.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ChunkManifest } from '../../src/core/chunk-manifest.ts';
import { DataMismatchError } from '../../src/core/errors.ts';
import type { Image } from '../../src/core/image.ts';
import type { Catalog, ParentImageSource } from '../../src/core/ports.ts';
import { TrustedConnections } from '../../src/links/parent-client.ts';
import { MemoryBlobDriver } from '../../src/storage/drivers/memory-blob-driver.ts';
import { VerifyingBlobStore } from '../../src/storage/verifying-blob-store.ts';
import { WorkerHasherFactory } from '../../src/storage/worker-hasher.ts';
import { ImageFills } from '../../src/transfer/image-fills.ts';
import { PeerFallbackSource } from '../../src/transfer/peer-fallback-source.ts';
import { SiteImageSource } from '../../src/transfer/site-image-source.ts';
import { UrlLocationSource } from '../../src/transfer/url-location-source.ts';
import { bytesOf } from '../helpers/glance-client.ts';

const log = { info() {}, warn() {} };

function imageOf(id: string, data: Buffer): Image {
  return {
    id, name: id, status: 'active', visibility: 'public', protected: false, os_hidden: false,
    checksum: createHash('md5').update(data).digest('hex'), os_hash_algo: 'sha512', os_hash_value: createHash('sha512').update(data).digest('hex'),
    size: data.length, virtual_size: data.length, disk_format: 'raw', container_format: 'bare', min_disk: 0, min_ram: 0, owner: null,
    created_at: '2026-12-07T00:00:00Z', updated_at: '2026-12-07T00:00:00Z', tags: [], properties: {}, locations: [{ store: 'a', url: 'memory://a/x' }, { store: 'b', url: 'memory://b/x' }],
  };
}

describe('a chunk manifest that does not describe the image', () => {
  const hashers = new WorkerHasherFactory();
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'outpost-mismatch-'));
  });
  after(async () => {
    await hashers.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('ImageFills: bytes checked against the source\'s manifest but not the image\'s as a whole fail the fill, keep nothing, and say so once', async () => {
    const data = bytesOf(300_000, 61);
    const other = bytesOf(300_000, 62);
    const told: string[] = [];
    const manifest: ChunkManifest = { size: other.length, chunking: { algorithm: 'fastcdc', min: 65536, avg: 262144, max: 1048576 }, chunks: [] } as unknown as ChunkManifest;
    const source = (withManifest: boolean): ParentImageSource => ({
      manifest: async () => manifest,
      open: async () => ({ stream: (async function* () { yield other; })(), ...(withManifest ? { manifest } : {}) }),
    });
    for (const withManifest of [true, false]) {
      const fills = await ImageFills.create({ source: source(withManifest), spoolDir: join(dir, `spool-${withManifest}`), log, onManifestMismatch: (id) => told.push(id) });
      const blobs = new VerifyingBlobStore(new MemoryBlobDriver('cache'), hashers);
      const fill = fills.start(imageOf(`img-${withManifest}`, data), { blobs, key: 'k', manifest: false }, { committed: async () => undefined });
      await fill.ended;
      assert.equal(fill.state, 'failed');
      assert.ok(fill.error instanceof DataMismatchError, String(fill.error));
      assert.equal(await blobs.stat('k'), undefined, 'nothing kept');
      await fills.close();
    }
    assert.deepEqual(told, ['img-true'], 'said only of the bytes checked against a manifest');
  });

  it('SiteImageSource, through the peers and central\'s URL source: the site that sent the wrong manifest (or bad chunks) is not asked again for the image; the next one is', async () => {
    const asked: string[] = [];
    const servers: Server[] = [];
    const sites: { id: string; public_url: string; stores: string[] }[] = [];
    for (const id of ['site-a', 'site-b']) {
      const server = createServer((req, res) => {
        asked.push(`${id} ${req.url}`);
        res.writeHead(200, { 'content-type': 'application/json', 'x-openstack-request-id': 'req-1' }).end(JSON.stringify({ from: id }));
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      servers.push(server);
      sites.push({ id, public_url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, stores: [id === 'site-a' ? 'a' : 'b'] });
    }
    const image = imageOf('img', bytesOf(10, 63));
    const catalog = { getImage: async () => image, listSites: async () => sites } as unknown as Catalog;
    const connections = new TrustedConnections();
    try {
      const holders = () => new SiteImageSource({ catalog, self: 'edge', timeoutMs: 5000, connections });
      const noParent = async (): Promise<never> => { throw new Error('no parent'); };
      const chains: [string, ParentImageSource][] = [
        ['an edge\'s peers', new PeerFallbackSource({ parent: { open: noParent, manifest: noParent }, peers: holders(), parentReachable: () => false, log })],
        ['central\'s holders', new UrlLocationSource({ catalog, next: holders(), remote: undefined as never })],
      ];
      for (const [name, source] of chains) {
        asked.length = 0;
        assert.deepEqual(await source.manifest('img'), { from: 'site-a' }, name);
        source.manifestMismatched!('img');
        assert.deepEqual(await source.manifest('img'), { from: 'site-b' }, `${name}: site-a is not asked again`);
        assert.deepEqual(asked, ['site-a /outpost/v1/images/img/manifest', 'site-b /outpost/v1/images/img/manifest'], name);
      }
      // Bad chunks from a site, said to central's URL source, reach its holders too.
      const central = new UrlLocationSource({ catalog, next: holders(), remote: undefined as never });
      central.distrust('img', 'site-a');
      assert.deepEqual(await central.manifest('img'), { from: 'site-b' });
    } finally {
      await connections.close();
      for (const s of servers) await new Promise<void>((resolve) => s.close(() => resolve()));
    }
  });
});
