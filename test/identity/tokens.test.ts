import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { openCatalog, type SqlCatalog } from '../../src/catalog/open-catalog.ts';
import { ADMIN_CONTEXT } from '../../src/core/context.ts';
import { UnauthorizedError } from '../../src/core/errors.ts';
import { IdentityService } from '../../src/core/identity/identity-service.ts';
import { IDENTITY_NAMESPACE, predictableId, uuid5 } from '../../src/core/identity/ids.ts';
import { JoseTokens } from '../../src/identity/jose-tokens.ts';
import { ScryptPasswords } from '../../src/identity/scrypt-passwords.ts';
import { TrustedIssuers } from '../../src/identity/trusted-issuers.ts';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey } from 'jose';

const run = promisify(execFile);

/** Central and an edge replica (fed by snapshots), with a clock the tests move. */
describe('tokens: issued by central, checked by every site against its replica', () => {
  let dir: string;
  let central: SqlCatalog;
  let edge: SqlCatalog;
  let clock = new Date('2026-01-01T00:00:00Z');
  const now = () => clock;
  let centralTokens: JoseTokens;
  let identity: IdentityService;
  let atEdge: IdentityService;
  const sync = async () => edge.load(await central.snapshot());
  const login = async (name: string, password: string, project = 'admin') => (await identity.authenticate({
    auth: {
      identity: { methods: ['password'], password: { user: { name, domain: { name: 'Default' }, password } } },
      scope: { project: { name: project, domain: { id: 'default' } } },
    },
  })).token;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'outpost-tokens-'));
    central = await openCatalog(join(dir, 'central.sqlite'));
    edge = await openCatalog(join(dir, 'edge.sqlite'));
    centralTokens = new JoseTokens(central, now);
    await centralTokens.ensureSigningKey();
    const sites = async () => [];
    identity = new IdentityService({ store: central, verifier: centralTokens, signer: centralTokens, passwords: new ScryptPasswords(), tokenTtlSeconds: 600, sites, now });
    atEdge = new IdentityService({ store: edge, verifier: new JoseTokens(edge, now), tokenTtlSeconds: 600, sites, now });
    await identity.bootstrap('secret');
    await sync();
  });
  after(async () => {
    await central?.close();
    await edge?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('a password gives a token the edge accepts offline, as the admin of the admin project', async () => {
    const token = await login('admin', 'secret');
    const ctx = await atEdge.contextFor(token);
    assert.deepEqual([ctx.isAdmin, ctx.projectId, [...ctx.roles].sort()], [true, predictableId('project', 'default', 'admin'), ['admin', 'member', 'reader']]);
    await assert.rejects(login('admin', 'wrong'), UnauthorizedError);
    await assert.rejects(login('nobody', 'secret'), UnauthorizedError);
  });

  it('refuses expired, forged, altered and alg:none tokens', async () => {
    const token = await login('admin', 'secret');
    clock = new Date(clock.getTime() + 601_000);
    await assert.rejects(atEdge.contextFor(token), /expired/);
    clock = new Date(clock.getTime() - 601_000);
    const [h, p, sig] = token.split('.');
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
    const altered = Buffer.from(JSON.stringify({ ...claims, sub: 'someone-else' })).toString('base64url');
    await assert.rejects(atEdge.contextFor(`${h}.${altered}.${sig}`), UnauthorizedError);
    const none = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
    await assert.rejects(atEdge.contextFor(`${none}.${p}.`), UnauthorizedError);
    // Signed by a key of another deployment, with this deployment's kid.
    const otherDir = await openCatalog(join(dir, 'other.sqlite'));
    const other = new JoseTokens(otherDir, now);
    await other.ensureSigningKey();
    const forged = await other.sign({ ...claims, sub: claims.sub });
    const kid = JSON.parse(Buffer.from(h, 'base64url').toString()).kid;
    const [, fp, fsig] = forged.split('.');
    const forgedHeader = Buffer.from(JSON.stringify({ alg: 'EdDSA', kid, typ: 'JWT' })).toString('base64url');
    await assert.rejects(atEdge.contextFor(`${forgedHeader}.${fp}.${fsig}`), UnauthorizedError);
    await assert.rejects(atEdge.contextFor(forged), /does not know/);
    await otherDir.close();
  });

  it('revocations and removed role assignments reach the edge through replication', async () => {
    await identity.createUser(ADMIN_CONTEXT, { name: 'alice', password: 'pw' });
    const demo = await identity.createProject(ADMIN_CONTEXT, { name: 'demo' });
    const alice = predictableId('user', 'default', 'alice');
    const member = predictableId('role', '', 'member');
    await identity.grant(ADMIN_CONTEXT, demo.id, alice, member);
    await sync();
    const t1 = await login('alice', 'pw', 'demo');
    const t2 = await login('alice', 'pw', 'demo');
    assert.deepEqual([...(await atEdge.contextFor(t1)).roles].sort(), ['member', 'reader']);
    await identity.revoke(ADMIN_CONTEXT, t1);
    await sync();
    await assert.rejects(atEdge.contextFor(t1), /revoked/);
    assert.equal((await atEdge.contextFor(t2)).projectId, demo.id);
    await identity.ungrant(ADMIN_CONTEXT, demo.id, alice, member);
    await sync();
    await assert.rejects(atEdge.contextFor(t2), /no longer has a role/);
    // Disabling the user (PATCH) refuses its tokens; enabling it again accepts them.
    await identity.grant(ADMIN_CONTEXT, demo.id, alice, member);
    const t3 = await login('alice', 'pw', 'demo');
    await identity.update(ADMIN_CONTEXT, 'user', alice, { enabled: false });
    await sync();
    await assert.rejects(atEdge.contextFor(t3), /disabled/);
    await assert.rejects(login('alice', 'pw', 'demo'), UnauthorizedError);
    await identity.update(ADMIN_CONTEXT, 'user', alice, { enabled: true, password: 'pw2' });
    await sync();
    assert.equal((await atEdge.contextFor(t3)).projectId, demo.id);
    await assert.rejects(login('alice', 'pw', 'demo'), UnauthorizedError);
    assert.ok(await login('alice', 'pw2', 'demo'));
  });

  it('a revocation is dropped once every token it could refuse has expired', async () => {
    const t = await login('admin', 'secret');
    await identity.revoke(ADMIN_CONTEXT, t);
    const count = async () => (await central.listIdentity('revocation')).length;
    const before = await count();
    clock = new Date(clock.getTime() + 3600_000);
    try {
      await identity.revoke(ADMIN_CONTEXT, await login('admin', 'secret'));
      assert.ok(await count() < before + 1, 'the expired revocations went');
      assert.ok((await central.listIdentity('revocation')).every((r) => String(r.expires_at) > clock.toISOString()));
    } finally {
      clock = new Date(clock.getTime() - 3600_000);
    }
  });

  it('after a key rotation old tokens still verify; once the old key is removed they are refused', async () => {
    const before = await login('admin', 'secret');
    const [h] = before.split('.');
    const oldKid = JSON.parse(Buffer.from(h, 'base64url').toString()).kid;
    await centralTokens.rotate();
    await sync();
    const afterRotation = await login('admin', 'secret');
    const newKid = JSON.parse(Buffer.from(afterRotation.split('.')[0], 'base64url').toString()).kid;
    assert.notEqual(newKid, oldKid);
    assert.match(newKid, /^[0-9a-f]{16}$/, 'key ids are hex: never taken for an option on the command line');
    assert.equal((await atEdge.contextFor(before)).isAdmin, true);
    assert.equal((await atEdge.contextFor(afterRotation)).isAdmin, true);
    await central.deleteIdentity('signing_key', oldKid);
    await sync();
    await assert.rejects(atEdge.contextFor(before), /does not know/);
    assert.equal((await atEdge.contextFor(afterRotation)).isAdmin, true);
  });

  it('ids are UUIDv5 of kind, domain and name (as Python\'s uuid5 computes them), the same in every deployment', async () => {
    const { stdout } = await run('python3', ['-c', `import uuid; print(uuid.uuid5(uuid.UUID('${IDENTITY_NAMESPACE}'), 'project:default:demo').hex)`]);
    assert.equal(predictableId('project', 'default', 'demo'), stdout.trim());
    assert.equal(uuid5('6ba7b810-9dad-11d1-80b4-00c04fd430c8', 'python.org'), '886313e1-3b8a-5372-9b90-0c9aee199e5d');
    const otherDb = await openCatalog(join(dir, 'deployment-2.sqlite'));
    const otherTokens = new JoseTokens(otherDb, now);
    await otherTokens.ensureSigningKey();
    const other = new IdentityService({ store: otherDb, verifier: otherTokens, signer: otherTokens, passwords: new ScryptPasswords(), tokenTtlSeconds: 600, sites: async () => [] });
    await other.bootstrap('x');
    const demo = await other.createProject(ADMIN_CONTEXT, { name: 'demo' });
    assert.equal(demo.id, (await central.getIdentity('project', demo.id))?.id);
    await otherDb.close();
  });
});

describe('federation: tokens of a trusted external issuer', () => {
  let dir: string;
  let central: SqlCatalog;
  let edge: SqlCatalog;
  let identity: IdentityService;
  let sign: (claims: Record<string, unknown>, key?: CryptoKey) => Promise<string>;
  const ISSUER = 'https://idp.example.test';

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'outpost-federation-'));
    central = await openCatalog(join(dir, 'central.sqlite'));
    edge = await openCatalog(join(dir, 'edge.sqlite'));
    const idp = await generateKeyPair('ES256', { extractable: true });
    const jwk = { ...(await exportJWK(idp.publicKey)), kid: 'idp-1', alg: 'ES256' };
    sign = (claims, key = idp.privateKey) => new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'idp-1' })
      .setIssuer(ISSUER).setIssuedAt().setExpirationTime('1h').sign(key);
    const tokens = new JoseTokens(central);
    await tokens.ensureSigningKey();
    identity = new IdentityService({
      store: central, verifier: tokens, signer: tokens, passwords: new ScryptPasswords(), tokenTtlSeconds: 600, sites: async () => [],
      federation: new TrustedIssuers({ [ISSUER]: { jwks: { keys: [jwk] }, domain: 'partners' } }),
    });
    await identity.bootstrap('secret');
  });
  after(async () => {
    await central?.close();
    await edge?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('creates the asserted user, project and role assignment once; a second use creates nothing', async () => {
    const claims = { preferred_username: 'carol', project: 'research', roles: ['member', 'no-such-role'] };
    const before = await central.lastSeq();
    const ctx = await identity.contextFor(await sign(claims));
    const domain = predictableId('domain', '', 'partners');
    assert.deepEqual([ctx.projectId, ctx.userId, [...ctx.roles].sort(), ctx.isAdmin],
      [predictableId('project', domain, 'research'), predictableId('user', domain, 'carol'), ['member', 'reader'], false]);
    const created = (await central.changesSince(before, 100)).map((c) => c.entity);
    assert.deepEqual(created.sort(), ['assignment', 'domain', 'project', 'user']);
    const again = await central.lastSeq();
    const ctx2 = await identity.contextFor(await sign(claims));
    assert.deepEqual(ctx2, ctx);
    assert.equal(await central.lastSeq(), again, 'nothing new on the second use');
  });

  it('refuses a token signed by another key, or from an issuer not configured', async () => {
    const other = await generateKeyPair('ES256');
    await assert.rejects(identity.contextFor(await sign({ preferred_username: 'mallory', project: 'research', roles: ['admin'] }, other.privateKey)), UnauthorizedError);
    const stranger = await new SignJWT({ preferred_username: 'x', project: 'p', roles: ['admin'] }).setProtectedHeader({ alg: 'ES256' })
      .setIssuer('https://elsewhere.test').setExpirationTime('1h').sign(other.privateKey);
    await assert.rejects(identity.contextFor(stranger), UnauthorizedError);
  });

  it('exchanges the external token for a region token (token method) that every site accepts offline', async () => {
    const { token, body } = await identity.authenticate({ auth: { identity: { methods: ['token'], token: { id: await sign({ preferred_username: 'dave', project: 'research', roles: ['reader'] }) } } } });
    assert.equal((body.token as { project: { name: string } }).project.name, 'research');
    await edge.load(await central.snapshot());
    const atEdge = new IdentityService({ store: edge, verifier: new JoseTokens(edge), tokenTtlSeconds: 600, sites: async () => [] });
    const ctx = await atEdge.contextFor(token);
    assert.deepEqual([...ctx.roles], ['reader']);
  });
});
