import { randomUUID } from 'node:crypto';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { copyFile, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect, type TLSSocket } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Agent, fetch as undiciFetch, type RequestInit as UndiciRequestInit } from 'undici';
import { openstackClientsMissing } from '../helpers/clients.ts';
import { bytesOf, call, createActiveImage, createImage, expectStatus, getImage, patchImage, upload, type ImageJson } from '../helpers/glance-client.ts';
import { eventually, stopProcess } from '../helpers/multi-site.ts';
import { spawnServe, tempDir, type ServeProcess, type TestSite } from '../helpers/site.ts';

const run = promisify(execFile);
const CHILD_ENV = { OUTPOST_PARENT_TIMEOUT_MS: '3000', OUTPOST_FEED_WAIT_SECONDS: '2', OUTPOST_STORAGE_SYNC: 'false' };
const sha512 = (b: Uint8Array) => createHash('sha512').update(b).digest('hex');

async function opensslMissing(): Promise<string | false> {
  try {
    await run('openssl', ['version']);
    return false;
  } catch {
    return 'needs openssl (apt-get install openssl) to make the test certificates';
  }
}
const skip = await opensslMissing();
const cliSkip = skip || await openstackClientsMissing();

/**
 * A CA, and two server certificates it signed for 127.0.0.1 (subjectAltName IP:127.0.0.1, serials
 * 1001 and 1002), made with openssl in `dir`.
 */
async function makeCertificates(dir: string): Promise<void> {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await run('openssl', ['req', '-x509', ...ec, '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.pem'), '-days', '2',
    '-subj', '/CN=Outpost test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  await writeFile(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
  for (const n of [1, 2]) {
    await run('openssl', ['req', '-new', ...ec, '-keyout', join(dir, `server${n}.key`), '-out', join(dir, `server${n}.csr`), '-subj', '/CN=127.0.0.1']);
    await run('openssl', ['x509', '-req', '-in', join(dir, `server${n}.csr`), '-CA', join(dir, 'ca.pem'), '-CAkey', join(dir, 'ca.key'),
      '-set_serial', String(1000 + n), '-days', '2', '-extfile', join(dir, 'server.ext'), '-out', join(dir, `server${n}.pem`)]);
  }
}

/** A site at an https URL, reached trusting only `ca`. */
function trustingSite(url: string, agent: Agent): TestSite {
  return {
    url, dataDir: '', close: async () => undefined,
    request: async (path, init) => undiciFetch(`${url}${path}`, { ...init, dispatcher: agent } as UndiciRequestInit) as unknown as Response,
  };
}

/** Opens a TLS connection to `url`'s port trusting `ca`; resolves once the handshake is done. */
function tlsConnect(url: string, ca: Buffer): Promise<TLSSocket> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port), ca }, () => resolve(socket));
    socket.once('error', reject);
  });
}

async function peerFingerprint(url: string, ca: Buffer): Promise<string> {
  const socket = await tlsConnect(url, ca);
  const fingerprint = socket.getPeerCertificate().fingerprint256;
  socket.end();
  return fingerprint;
}

/** One HTTP/1.1 request over an open TLS connection; resolves with the status line. */
function statusOver(socket: TLSSocket, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    socket.on('data', (d) => {
      text += String(d);
      if (text.includes('\r\n')) resolve(text.slice(0, text.indexOf('\r\n')));
    });
    socket.once('error', reject);
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
  });
}

/**
 * TLS between sites, each its own `outpost serve` process: central serves https with a
 * certificate made by openssl now; an edge trusts it through --parent-ca and does everything an
 * edge does over it; an edge that does not trust it refuses to talk to it (and says why); SIGHUP
 * makes central serve a renewed certificate to new connections while the old ones go on.
 */
describe('TLS: https sites, a verified parent link, certificate reload on SIGHUP', { skip, timeout: 180_000 }, () => {
  let work: string;
  let ca: Buffer;
  let agent: Agent;
  const procs: ServeProcess[] = [];
  let central: ServeProcess;
  let edge: ServeProcess;
  let centralSite: TestSite;
  let edgeSite: TestSite;

  before(async () => {
    work = await tempDir('outpost-e2e-tls-');
    await makeCertificates(work);
    ca = await readFile(join(work, 'ca.pem'));
    agent = new Agent({ connect: { ca } });
    // Central serves the files at cert.pem / key.pem, which the SIGHUP test replaces.
    await copyFile(join(work, 'server1.pem'), join(work, 'cert.pem'));
    await copyFile(join(work, 'server1.key'), join(work, 'key.pem'));
    central = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'central'), '--role', 'central',
      '--tls-cert', join(work, 'cert.pem'), '--tls-key', join(work, 'key.pem'), '--sites-ca', join(work, 'ca.pem')], { OUTPOST_STORAGE_SYNC: 'false' });
    procs.push(central);
    // The edge serves https too (the same certificate names 127.0.0.1), so central reads its uploads over TLS.
    edge = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'edge'), '--role', 'edge', '--site', 'edge-1',
      '--parent', central.url, '--parent-ca', join(work, 'ca.pem'),
      '--tls-cert', join(work, 'server1.pem'), '--tls-key', join(work, 'server1.key')], CHILD_ENV);
    procs.push(edge);
    centralSite = trustingSite(central.url, agent);
    edgeSite = trustingSite(edge.url, agent);
  });
  after(async () => {
    for (const p of [...procs].reverse()) await stopProcess(p);
    await agent?.close();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('central and the edge serve https; their registrations carry https URLs; plain http gets no answer', async () => {
    assert.match(central.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.match(edge.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    await eventually('edge-1 registered at central', 30_000, async () => {
      const sites = (await call<{ sites: { id: string; public_url: string }[] }>(centralSite, 'GET', '/outpost/v1/sites')).body.sites;
      return sites.some((s) => s.id === 'edge-1');
    });
    const sites = (await call<{ sites: { id: string; public_url: string }[] }>(centralSite, 'GET', '/outpost/v1/sites')).body.sites;
    assert.deepEqual(sites.map((s) => [s.id, s.public_url]).sort(), [['central', central.url], ['edge-1', edge.url]]);
    const versions = await call<{ versions: { links: { href: string }[] }[] }>(centralSite, 'GET', '/versions');
    assert.ok(versions.body.versions[0].links[0].href.startsWith(`${central.url}/`), versions.text);
    await assert.rejects(fetch(central.url.replace('https:', 'http:') + '/outpost/v1/status'));
  });

  it('the edge follows the feed over TLS, pulls an image through its cache, and forwards writes', async () => {
    const data = bytesOf(3 * 1024 * 1024 + 7, 71);
    const image = await createActiveImage(centralSite, data, { name: 'over-tls' });
    await eventually('the image reached the edge', 30_000, async () => {
      const res = await call<ImageJson>(edgeSite, 'GET', `/v2/images/${image.id}`);
      return res.status === 200 && res.body.status === 'active';
    });
    const res = await edgeSite.request(`/v2/images/${image.id}/file`);
    assert.equal(res.status, 200);
    assert.equal(sha512(new Uint8Array(await res.arrayBuffer())), sha512(data));
    // The client has the last byte once it is verified, a moment before the copy is committed.
    await eventually('the edge keeps the copy', 30_000, async () => (await call<{ cached_images: { image_id: string }[] }>(edgeSite, 'GET', '/v2/cache')).body.cached_images
      .map((c) => c.image_id).join() === image.id);
    // A write at the edge goes to central over the same link, and is seen at the edge at once.
    expectStatus(await patchImage(edgeSite, image.id, [{ op: 'add', path: '/via', value: 'tls' }]), 200);
    assert.equal((await getImage(centralSite, image.id)).via, 'tls');
  });

  it('an upload at the edge is recorded at central, which reads the bytes from the edge over TLS (sites_ca)', async () => {
    const data = bytesOf(256 * 1024 + 3, 72);
    const image = await createImage(edgeSite, { name: 'uploaded-at-edge', disk_format: 'raw', container_format: 'bare' });
    expectStatus(await upload(edgeSite, image.id, data), 204);
    assert.equal((await getImage(centralSite, image.id)).stores, 'edge-1');
    const res = await centralSite.request(`/v2/images/${image.id}/file`);
    assert.equal(res.status, 200);
    assert.equal(sha512(new Uint8Array(await res.arrayBuffer())), sha512(data));
  });

  it('an edge that does not trust the parent\'s certificate refuses to talk to it, says why, and does not fall back to http', async () => {
    const untrusting = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'untrusting'), '--role', 'edge', '--site', 'edge-2',
      '--parent', central.url], CHILD_ENV);
    procs.push(untrusting);
    await eventually('the edge logs the certificate problem', 30_000, async () => /TLS certificate of https:\/\/127\.0\.0\.1:\d+ was not accepted/.test(untrusting.output()));
    const line = untrusting.output().split('\n').find((l) => l.includes('was not accepted'))!;
    assert.match(line, /self-signed certificate in certificate chain|unable to get local issuer certificate|unable to verify/);
    assert.match(line, /parent_ca/);
    // Nothing crossed: no registration, no replica, and a write is refused naming the certificate.
    const sites = (await call<{ sites: { id: string }[] }>(centralSite, 'GET', '/outpost/v1/sites')).body.sites;
    assert.ok(!sites.some((s) => s.id === 'edge-2'), 'the untrusting edge did not register');
    assert.deepEqual(((await (await fetch(`${untrusting.url}/v2/images`)).json()) as { images: unknown[] }).images, []);
    const write = await fetch(`${untrusting.url}/v2/images/${randomUUID()}/members`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"member":"x"}' });
    assert.equal(write.status, 503);
    assert.match(await write.text(), /certificate/);
    await stopProcess(untrusting);
    procs.splice(procs.indexOf(untrusting), 1);
  });

  it('openstack and glance CLIs work against https central with --os-cacert', { skip: cliSkip }, async () => {
    const caFile = join(work, 'ca.pem');
    // python-requests lets these variables override a client's own CA setting (--os-cacert).
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'REQUESTS_CA_BUNDLE' && k !== 'CURL_CA_BUNDLE'));
    const image = await createImage(centralSite, { name: 'listed-over-tls' });
    const { stdout } = await run('openstack', ['--os-auth-type', 'none', '--os-endpoint', central.url, '--os-cacert', caFile, 'image', 'list', '-f', 'value', '-c', 'ID'], { env });
    assert.ok(stdout.includes(image.id), stdout);
    const glance = await run('glance', ['--os-image-api-version', '2', '--os-image-url', central.url, '--os-auth-token', 'none', '--os-cacert', caFile, 'image-show', image.id], { env });
    assert.ok(glance.stdout.includes('listed-over-tls'), glance.stdout);
  });

  it('a certificate file that cannot be used stops the start with a message naming it', async () => {
    await assert.rejects(
      spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'bad'), '--tls-cert', join(work, 'server2.pem'), '--tls-key', join(work, 'server1.key')]),
      /exited with 2:[\s\S]*tls_cert .*server2\.pem and tls_key .*server1\.key: not a usable certificate and key/,
    );
    await assert.rejects(
      spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'bad'), '--tls-cert', join(work, 'missing.pem'), '--tls-key', join(work, 'server1.key')]),
      /exited with 2:[\s\S]*tls_cert: cannot read .*missing\.pem/,
    );
  });

  it('SIGHUP: new connections get the renewed certificate, open ones and the listener go on; a bad file keeps the current one', async () => {
    const first = new X509Certificate(await readFile(join(work, 'server1.pem'))).fingerprint256;
    const second = new X509Certificate(await readFile(join(work, 'server2.pem'))).fingerprint256;
    assert.equal(await peerFingerprint(central.url, ca), first);
    const open = await tlsConnect(central.url, ca);
    try {
      await copyFile(join(work, 'server2.pem'), join(work, 'cert.pem'));
      await copyFile(join(work, 'server2.key'), join(work, 'key.pem'));
      central.child.kill('SIGHUP');
      await eventually('new connections see the renewed certificate', 30_000, async () => (await peerFingerprint(central.url, ca)) === second);
      // The connection opened before the reload still has the old certificate and is still served.
      assert.equal(open.getPeerCertificate().fingerprint256, first);
      assert.match(await statusOver(open, '/outpost/v1/status'), /^HTTP\/1\.1 200/);
    } finally {
      open.destroy();
    }
    assert.equal(central.child.exitCode, null, 'central still runs');
    // The edge keeps following central through the reload (the renewed certificate has the same CA).
    const image = await createImage(centralSite, { name: 'after-reload' });
    await eventually('a change after the reload reached the edge', 30_000, async () => (await call(edgeSite, 'GET', `/v2/images/${image.id}`)).status === 200);

    // A key that does not match: the reload is refused, and the renewed certificate stays.
    await copyFile(join(work, 'server1.key'), join(work, 'key.pem'));
    central.child.kill('SIGHUP');
    await eventually('the refused reload is logged', 30_000, async () => /TLS reload failed/.test(central.output()));
    assert.equal(await peerFingerprint(central.url, ca), second);
    assert.equal(central.child.exitCode, null, 'central still runs');
  });
});
