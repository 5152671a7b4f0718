import { createHash } from 'node:crypto';
import { SignJWT, decodeProtectedHeader, exportJWK, generateKeyPair, importJWK, jwtVerify, type CryptoKey, type JWK } from 'jose';
import { UnauthorizedError } from '../core/errors.ts';
import { ConflictError } from '../core/errors.ts';
import type { IdentityStore, IoOptions, SigningKeys, TokenClaims, TokenSigner, TokenVerifier } from '../core/ports.ts';

/** A public signing key as replicated (`signing_key` records). */
export interface SigningKeyRecord {
  kid: string;
  jwk: JWK;
  created_at: string;
  /** `active`: signs new tokens (one at a time); `retired`: still verifies tokens signed before. */
  state: 'active' | 'retired';
}

const ALG = 'EdDSA';
const ISSUER = 'outpost';

/**
 * Tokens as JWS (compact JWT, EdDSA over Ed25519) with jose. Central keeps the private key of its
 * active signing key as a local secret; the public keys are `signing_key` identity records, so
 * they reach every site through the change feed and every site verifies tokens offline. Only
 * EdDSA is accepted (`alg: none` and every other algorithm are refused), the key is chosen by the
 * token's `kid` among the keys this site has, and an expired token is refused.
 */
export class JoseTokens implements TokenSigner, TokenVerifier, SigningKeys {
  readonly #store: IdentityStore;
  /** Imported public keys by kid (a key record never changes but for its state). */
  readonly #keys = new Map<string, CryptoKey>();
  readonly #now: () => Date;

  constructor(store: IdentityStore, now: () => Date = () => new Date()) {
    this.#store = store;
    this.#now = now;
  }

  /** Central: makes sure an active signing key exists (creating the first one). */
  async ensureSigningKey(opts: IoOptions = {}): Promise<string> {
    const active = (await this.#records(opts)).find((k) => k.state === 'active');
    if (active !== undefined && await this.#store.getSecret(`signing_key:${active.kid}`, opts) !== undefined) return active.kid;
    return this.rotate(opts);
  }

  /** Central: a new active key; the previous ones stay, retired, so their tokens verify until they expire. */
  async rotate(opts: IoOptions = {}): Promise<string> {
    const { publicKey, privateKey } = await generateKeyPair(ALG, { crv: 'Ed25519', extractable: true });
    const jwk = await exportJWK(publicKey);
    // Hex, so that a key id given on the command line (`outpost keys remove KID`) is never read as
    // an option, as a base64url id starting with '-' was.
    const kid = createHash('sha256').update(JSON.stringify(jwk)).digest('hex').slice(0, 16);
    await this.#store.setSecret(`signing_key:${kid}`, JSON.stringify(await exportJWK(privateKey)), opts);
    for (const k of await this.#records(opts)) {
      if (k.state === 'active') await this.#store.putIdentity({ kind: 'signing_key', id: k.kid, body: { ...k, state: 'retired' } }, opts);
    }
    const record: SigningKeyRecord = { kid, jwk, created_at: this.#now().toISOString(), state: 'active' };
    await this.#store.putIdentity({ kind: 'signing_key', id: kid, body: { ...record } }, opts);
    return kid;
  }

  async remove(kid: string, opts: IoOptions = {}): Promise<boolean> {
    const record = await this.#store.getIdentity('signing_key', kid, opts) as unknown as SigningKeyRecord | undefined;
    if (record === undefined) return false;
    if (record.state === 'active') throw new ConflictError(`Key ${kid} is the active signing key: rotate first.`);
    await this.#store.deleteIdentity('signing_key', kid, opts);
    await this.#store.setSecret(`signing_key:${kid}`, null, opts);
    return true;
  }

  async sign(claims: TokenClaims, opts: IoOptions = {}): Promise<string> {
    const active = (await this.#records(opts)).find((k) => k.state === 'active');
    const secret = active === undefined ? undefined : await this.#store.getSecret(`signing_key:${active.kid}`, opts);
    if (active === undefined || secret === undefined) throw new Error('this site has no signing key (only central issues tokens)');
    const key = await importJWK(JSON.parse(secret) as JWK, ALG);
    const { sub, iat, exp, ...rest } = claims;
    return new SignJWT({ ...rest })
      .setProtectedHeader({ alg: ALG, kid: active.kid, typ: 'JWT' })
      .setIssuer(ISSUER).setSubject(sub).setIssuedAt(iat).setExpirationTime(exp)
      .sign(key);
  }

  async verify(token: string, opts: IoOptions = {}): Promise<TokenClaims> {
    let kid: string | undefined;
    try {
      const header = decodeProtectedHeader(token);
      if (header.alg !== ALG) throw new Error(`alg ${String(header.alg)}`);
      kid = header.kid;
    } catch {
      throw new UnauthorizedError('The request you have made requires authentication: the token is malformed.');
    }
    const key = kid === undefined ? undefined : await this.#key(kid, opts);
    if (key === undefined) throw new UnauthorizedError('The token was signed by a key this site does not know.');
    try {
      const { payload } = await jwtVerify(token, key, { algorithms: [ALG], issuer: ISSUER, currentDate: this.#now() });
      const p = payload as Record<string, unknown>;
      if (typeof p.sub !== 'string' || typeof p.audit_id !== 'string' || !Array.isArray(p.roles) || typeof p.exp !== 'number' || typeof p.iat !== 'number') {
        throw new Error('claims');
      }
      return {
        sub: p.sub, ...(typeof p.project === 'string' ? { project: p.project } : {}), roles: p.roles as string[],
        methods: Array.isArray(p.methods) ? p.methods as string[] : ['password'], audit_id: p.audit_id, iat: p.iat, exp: p.exp,
      };
    } catch (error) {
      const expired = (error as { code?: string }).code === 'ERR_JWT_EXPIRED';
      throw new UnauthorizedError(expired ? 'The token has expired.' : 'The token is not valid.');
    }
  }

  async #key(kid: string, opts: IoOptions): Promise<CryptoKey | undefined> {
    const record = await this.#store.getIdentity('signing_key', kid, opts) as unknown as SigningKeyRecord | undefined;
    // A key removed from the replica no longer verifies anything, even if imported before.
    if (record === undefined) {
      this.#keys.delete(kid);
      return undefined;
    }
    let key = this.#keys.get(kid);
    if (key === undefined) {
      key = await importJWK(record.jwk, ALG) as CryptoKey;
      this.#keys.set(kid, key);
    }
    return key;
  }

  async #records(opts: IoOptions): Promise<SigningKeyRecord[]> {
    return await this.#store.listIdentity('signing_key', opts) as unknown as SigningKeyRecord[];
  }
}
