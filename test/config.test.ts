import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { ConfigError, imageCacheDirectory, resolveConfig } from '../src/core/config.ts';
import { REPO_ROOT, tempDir } from './helpers/site.ts';

const run = promisify(execFile);
const outpost = (args: string[], env: Record<string, string> = {}) =>
  run(process.execPath, [join(REPO_ROOT, 'bin/outpost.js'), ...args], { env: { ...process.env, ...env } });

function problems(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  assert.fail('expected a ConfigError');
}

describe('configuration', () => {
  it('defaults to a central site on 127.0.0.1:9292 with one file store under ./data', () => {
    const c = resolveConfig({});
    assert.equal(c.role, 'central');
    assert.equal(c.site, 'central');
    assert.equal(c.listen, '127.0.0.1:9292');
    assert.equal(c.auth, 'keystone');
    assert.deepEqual(c.stores.map((s) => [s.id, s.type === 'file' ? s.path : s.bucket]), [['central', './data/stores/central']]);
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c.stores[0]));
  });

  it('refuses auth none on an address other than loopback, unless insecure_auth_none says so', () => {
    assert.equal(resolveConfig({ flags: { auth: 'none', listen: '127.0.0.1:1' } }).auth, 'none');
    assert.equal(resolveConfig({ flags: { auth: 'none', listen: '[::1]:1' } }).auth, 'none');
    assert.ok(problems(() => resolveConfig({ flags: { auth: 'none', listen: '0.0.0.0:9292' } })).some((p) => /anyone who can reach 0\.0\.0\.0:9292 an administrator/.test(p)));
    assert.equal(resolveConfig({ flags: { auth: 'none', listen: '0.0.0.0:1', insecure_auth_none: true } }).auth, 'none');
    assert.equal(resolveConfig({ flags: { listen: '0.0.0.0:1' } }).auth, 'keystone');
  });

  it('layers file < environment < flags', () => {
    const c = resolveConfig({
      file: { listen: '127.0.0.1:1', site: 'from-file', api_limit_max: 10 },
      env: { OUTPOST_LISTEN: '127.0.0.1:2', OUTPOST_API_LIMIT_MAX: '20', PATH: '/bin' },
      flags: { listen: '127.0.0.1:3' },
    });
    assert.equal(c.listen, '127.0.0.1:3');
    assert.equal(c.api_limit_max, 20);
    assert.equal(c.site, 'from-file');
  });

  it('takes stores as ID=file:PATH specs, the first being the default, and in the file as objects', () => {
    const c = resolveConfig({ flags: { stores: ['fast=file:/srv/fast', 'slow=file:/srv/slow'] } });
    assert.deepEqual(c.stores.map((s) => s.id), ['fast', 'slow']);
    const f = resolveConfig({ file: { stores: [{ id: 'a', path: '/a', weight: 5, description: 'A' }, { id: 'nfs', path: '/mnt/nfs', partial_grace_seconds: 7200 }] } });
    assert.equal(f.stores[0].weight, 5);
    assert.deepEqual(f.stores.map((s) => s.partial_grace_seconds), [3600, 7200]);
    assert.throws(() => resolveConfig({ file: { stores: [{ id: 'a', path: '/a', partial_grace_seconds: -1 }] } }), /store "a": partial_grace_seconds must be an integer from 0/);
    const e = resolveConfig({ env: { OUTPOST_STORES: 'x=file:/x,y=file:/y' } });
    assert.deepEqual(e.stores.map((s) => s.type === 'file' && s.path), ['/x', '/y']);
  });

  it('takes S3 stores as ID=s3://BUCKET[/PREFIX]?OPTIONS specs, in OUTPOST_STORES, and as objects in the file', () => {
    const c = resolveConfig({ flags: { stores: [
      'lake=s3://images-bucket/glance/images?endpoint=http://127.0.0.1:8080&region=us-east-1&path_style=true&part_size_mb=16&max_parts=1000',
      'aws=s3://central-images',
      'local=file:/srv/images',
    ] } });
    assert.deepEqual(c.stores[0], {
      id: 'lake', type: 's3', bucket: 'images-bucket', prefix: 'glance/images', endpoint: 'http://127.0.0.1:8080', region: 'us-east-1',
      path_style: true, profile: null, part_size_mb: 16, max_parts: 1000, parts_in_flight: 4, partial_grace_seconds: 3600, connect_timeout_ms: 5000,
      timeout_ms: 30000, max_attempts: 3, description: '', weight: 0, read_only: false,
    });
    const aws = c.stores[1];
    assert.ok(aws.type === 's3');
    assert.deepEqual([aws.bucket, aws.prefix, aws.endpoint, aws.region, aws.path_style], ['central-images', '', null, null, false]);
    assert.equal(c.stores[2].type, 'file');
    const e = resolveConfig({ env: { OUTPOST_STORES: 'edge=s3://edge-bucket/x?endpoint=https://rgw.example:7480&profile=edge,f=file:/f' } });
    const edge = e.stores[0];
    assert.ok(edge.type === 's3');
    assert.deepEqual([edge.endpoint, edge.profile, edge.path_style], ['https://rgw.example:7480', 'edge', true], 'path style by default with an endpoint');
    const f = resolveConfig({ file: { stores: [{
      id: 'ceph', type: 's3', bucket: 'edge-images', endpoint: 'http://rgw.local:7480/', region: 'default', partial_grace_seconds: 600, weight: 3,
    }] } });
    const ceph = f.stores[0];
    assert.ok(ceph.type === 's3');
    assert.deepEqual([ceph.endpoint, ceph.region, ceph.partial_grace_seconds, ceph.weight, ceph.path_style], ['http://rgw.local:7480', 'default', 600, 3, true]);
    assert.ok(Object.isFrozen(ceph));
  });

  it('refuses bad S3 store specs, and credentials anywhere in them, saying where credentials go', () => {
    const p = [...problems(() => resolveConfig({
      flags: { stores: [
        'a=s3://AKIAXAMPLE:s3cr3tValue@bucket-a', 'b=s3://bucket-b?secret_key=s3cr3tValue', 'c=s3://bucket-c?colour=blue', 'd=s3://B_d', 'e=s3:bucket-e',
        'f=s3://bucket-f?endpoint=ftp://x', 'g=s3://bucket-g?part_size_mb=4', 'h=s3://bucket-h/../x', 'i=s3://bucket-i?path_style=maybe',
        'j=s3://bucket-j?endpoint=http://user:pw@rgw:7480',
      ] },
    })), ...problems(() => resolveConfig({
      file: { stores: [{ id: 'k', type: 's3', bucket: 'bucket-k', aws_secret_access_key: 'x' }, { id: 'l', type: 's3' }] },
    }))];
    for (const expected of [
      /store "a": credentials do not go in the store configuration: use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/,
      /store "b": secret_key: credentials do not go in the store configuration/,
      /stores\[2\]: unknown key "colour" \(an S3 store takes bucket, path_style, prefix, endpoint/,
      /store "d": bucket "B_d" must be an S3 bucket name/,
      /store "e": an S3 store is of the form ID=s3:\/\/BUCKET\[\/PREFIX\]/,
      /store "f": endpoint "ftp:\/\/x" must be the http\(s\) URL of the S3 API/,
      /store "g": part_size_mb must be an integer from 5 to 5120 \(got 4\)/,
      /store "h": prefix "\.\.\/x" must be/,
      /store "i": path_style must be true or false/,
      /store "j": endpoint: credentials do not go in the store configuration/,
      /store "k": aws_secret_access_key: credentials do not go/,
      /store "l": bucket undefined must be an S3 bucket name/,
    ]) {
      assert.ok(p.some((x) => expected.test(x)), `${expected} in ${JSON.stringify(p, null, 1)}`);
    }
    assert.ok(!p.some((x) => x.includes('s3cr3tValue') || x.includes('AKIAXAMPLE')), 'no secret is echoed back');
    assert.ok(problems(() => resolveConfig({ flags: { stores: ['m=s3:AKIAXAMPLE:s3cr3tValue@bucket-m'] } })).every((x) => /credentials do not go/.test(x) && !x.includes('s3cr3tValue')));
  });

  it('takes site labels as KEY=VALUE flags, KEY=VALUE,… or JSON in the environment, and an object in the file', () => {
    assert.deepEqual(resolveConfig({}).labels, {});
    assert.deepEqual(resolveConfig({ flags: { labels: ['region=north', 'tier=far-edge'] } }).labels, { region: 'north', tier: 'far-edge' });
    assert.deepEqual(resolveConfig({ env: { OUTPOST_LABELS: 'region=north, rack=r1=a' } }).labels, { region: 'north', rack: 'r1=a' });
    assert.deepEqual(resolveConfig({ env: { OUTPOST_LABELS: '{"gpu":"yes"}' } }).labels, { gpu: 'yes' });
    assert.deepEqual(resolveConfig({ file: { labels: { zone: 'z1' } }, flags: { labels: ['zone=z2'] } }).labels, { zone: 'z2' });
    const p = problems(() => resolveConfig({ file: { labels: { ok: 'x', n: 5 } }, flags: { labels: ['novalue', 'bad key=1', 'a=1', 'a=2'] } }));
    for (const expected of [/label "novalue" is not of the form KEY=VALUE/, /label key "bad key" must be/, /label a is given twice/]) {
      assert.ok(p.some((x) => expected.test(x)), `${expected} in ${JSON.stringify(p)}`);
    }
    assert.ok(problems(() => resolveConfig({ file: { labels: { n: 5 } } })).some((x) => /label n must have a string value/.test(x)));
    assert.ok(problems(() => resolveConfig({ file: { labels: 'x' } })).some((x) => /labels must be an object/.test(x)));
  });

  it('takes an edge\'s peers as --peer flags, OUTPOST_PEERS=a,b or a list in the file; refuses bad ids, and peers at central', () => {
    const edge = { role: 'edge', parent: 'http://127.0.0.1:9292', site: 'metro-a' };
    assert.deepEqual(resolveConfig({}).peers, []);
    assert.deepEqual(resolveConfig({ flags: { ...edge, peers: ['metro-b', 'metro-c'] } }).peers, ['metro-b', 'metro-c']);
    assert.deepEqual(resolveConfig({ file: edge, env: { OUTPOST_PEERS: 'metro-b, metro-c' } }).peers, ['metro-b', 'metro-c']);
    assert.deepEqual(resolveConfig({ file: { ...edge, peers: ['metro-b'] } }).peers, ['metro-b']);
    assert.ok(problems(() => resolveConfig({ file: { ...edge, peers: ['metro b'] } })).some((x) => /peers must be a list of site ids/.test(x)));
    assert.ok(problems(() => resolveConfig({ file: { peers: ['metro-b'] } })).some((x) => /peers are an edge's/.test(x)));
  });

  it('takes TLS files as keys, flags and OUTPOST_TLS_* variables: a certificate with its key, parent_ca for an edge', () => {
    const c = resolveConfig({ env: { OUTPOST_TLS_CERT: '/tls/cert.pem', OUTPOST_TLS_KEY: '/tls/key.pem', OUTPOST_SITES_CA: '/tls/ca.pem' } });
    assert.deepEqual([c.tls_cert, c.tls_key, c.sites_ca, c.parent_ca], ['/tls/cert.pem', '/tls/key.pem', '/tls/ca.pem', null]);
    const edge = resolveConfig({ flags: { role: 'edge', site: 'e', parent: 'https://central.example:9292', parent_ca: '/tls/ca.pem' } });
    assert.equal(edge.parent_ca, '/tls/ca.pem');
    assert.ok(problems(() => resolveConfig({ flags: { tls_cert: '/tls/cert.pem' } })).some((p) => /tls_cert and tls_key go together/.test(p)));
    assert.ok(problems(() => resolveConfig({ flags: { parent_ca: '/tls/ca.pem' } })).some((p) => /parent_ca is only for role "edge"/.test(p)));
  });

  it('takes the catalog as database_url (a PostgreSQL URL), OUTPOST_DATABASE_URL or --database-url; the default is SQLite', () => {
    assert.equal(resolveConfig({}).database_url, null);
    assert.equal(resolveConfig({}).migrate_at_start, true);
    const url = 'postgres://outpost:secret@127.0.0.1:5432/outpost';
    assert.equal(resolveConfig({ env: { OUTPOST_DATABASE_URL: url } }).database_url, url);
    assert.equal(resolveConfig({ flags: { database_url: url, migrate_at_start: false } }).migrate_at_start, false);
    for (const bad of ['mysql://h/db', 'postgres://host-without-database', '/var/lib/outpost/catalog.sqlite']) {
      assert.ok(problems(() => resolveConfig({ flags: { database_url: bad } })).some((p) => /database_url must be a PostgreSQL URL/.test(p)), bad);
    }
  });

  it('places the image cache by image_cache_dir (OUTPOST_IMAGE_CACHE_DIR): central\'s default is <data>/image-cache, an edge\'s its default store; never in a store or the staging area', () => {
    assert.equal(resolveConfig({}).image_cache_dir, null);
    assert.equal(imageCacheDirectory(resolveConfig({}), '/srv/outpost', false), '/srv/outpost/image-cache');
    // Central nodes sharing a catalog share the cache's bookkeeping: unset, the default store they share.
    assert.equal(imageCacheDirectory(resolveConfig({}), '/srv/outpost', true), undefined);
    const edge = resolveConfig({ flags: { role: 'edge', site: 'e1', parent: 'http://central:9292' } });
    assert.equal(imageCacheDirectory(edge, '/srv/outpost', false), undefined);
    const set = resolveConfig({ env: { OUTPOST_IMAGE_CACHE_DIR: '/fast/cache' }, flags: { role: 'edge', site: 'e1', parent: 'http://central:9292' } });
    assert.equal(imageCacheDirectory(set, '/srv/outpost', true), '/fast/cache');
    for (const [flags, what] of [
      [{ image_cache_dir: '/srv/images', stores: ['a=file:/srv/images'] }, /apart from store "a" \(\/srv\/images\)/],
      [{ image_cache_dir: '/srv/images/cache', stores: ['a=file:/srv/images'] }, /apart from store "a"/],
      [{ image_cache_dir: '/srv', stores: ['a=file:/srv/images'] }, /apart from store "a"/],
      [{ image_cache_dir: './data/stores/central' }, /apart from store "central"/],
      [{ image_cache_dir: '/shared/staging', staging_path: '/shared/staging' }, /apart from staging_path/],
    ] as const) {
      assert.ok(problems(() => resolveConfig({ flags })).some((p) => what.test(p)), JSON.stringify(flags));
    }
    assert.equal(resolveConfig({ flags: { image_cache_dir: '/srv/images-cache', stores: ['a=file:/srv/images'] } }).image_cache_dir, '/srv/images-cache');
  });

  it('rejects unknown keys and reports every problem at once', () => {
    const p = problems(() => resolveConfig({
      file: { listen: 'nowhere', colour: 'blue', api_limit_max: -1 },
      env: { OUTPOST_FOO: 'x' },
      flags: { stores: ['bad', 'a=rbd:pool', 'a=file:/x', 'a=file:/y'] },
    }));
    for (const expected of [/unknown key "colour"/, /unknown variable OUTPOST_FOO/, /listen must be HOST:PORT/,
      /api_limit_max must be an integer/, /"bad" is not of the form ID=file:PATH/, /type "rbd" is not supported \(supported: file, s3\)/,
      /store id "a" is given twice/]) {
      assert.ok(p.some((x) => expected.test(x)), `${expected} in ${JSON.stringify(p)}`);
    }
  });

  it('outpost config check prints the resolved configuration, or every error with exit code 2', async () => {
    const dir = await tempDir();
    const good = join(dir, 'good.json');
    await writeFile(good, JSON.stringify({ site: 'lab', stores: ['lab=file:/tmp/lab'] }));
    const { stdout } = await outpost(['config', 'check', good], { OUTPOST_LISTEN: '127.0.0.1:9999' });
    assert.equal(JSON.parse(stdout).listen, '127.0.0.1:9999');
    assert.equal(JSON.parse(stdout).site, 'lab');

    const bad = join(dir, 'bad.json');
    await writeFile(bad, JSON.stringify({ role: 'moon', nope: 1 }));
    await assert.rejects(outpost(['config', 'check', bad]), (e: { code: number; stderr: string }) => {
      assert.equal(e.code, 2);
      assert.match(e.stderr, /role must be one of central, edge/);
      assert.match(e.stderr, /unknown key "nope"/);
      return true;
    });
    await assert.rejects(outpost(['serve', '--listen', 'bogus']), (e: { code: number; stderr: string }) => {
      assert.equal(e.code, 2);
      assert.match(e.stderr, /listen must be HOST:PORT/);
      return true;
    });
  });
});
