import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import { UnauthorizedError } from '../core/errors.ts';
import type { ExternalIdentity, ExternalTokenVerifier, IoOptions } from '../core/ports.ts';

/** One trusted issuer (configuration key `trusted_issuers`, by issuer URL). */
export interface TrustedIssuerConfig {
  /** The issuer's public keys, inline, or where to fetch them. */
  jwks?: JSONWebKeySet;
  jwks_url?: string;
  /** The domain its users and projects are created in (default: the issuer URL). */
  domain?: string;
  /** Claims naming the user, the project and the role names (defaults: preferred_username or sub, project, roles). */
  user_claim?: string;
  project_claim?: string;
  roles_claim?: string;
}

const ALGORITHMS = ['EdDSA', 'ES256', 'ES384', 'RS256', 'RS384', 'RS512', 'PS256'];

/**
 * Federation with jose: a token whose `iss` is a configured issuer is verified with that issuer's
 * JWKS (inline, or fetched from `jwks_url` and cached by jose), its expiry checked, and its claims
 * mapped to a user, a project and role names.
 */
export class TrustedIssuers implements ExternalTokenVerifier {
  readonly #issuers = new Map<string, { config: TrustedIssuerConfig; keys: JWTVerifyGetKey }>();

  constructor(config: Readonly<Record<string, TrustedIssuerConfig>>) {
    for (const [issuer, c] of Object.entries(config)) {
      const keys = c.jwks !== undefined ? createLocalJWKSet(c.jwks) : createRemoteJWKSet(new URL(c.jwks_url!));
      this.#issuers.set(issuer, { config: c, keys });
    }
  }

  accepts(token: string): boolean {
    try {
      const iss = decodeJwt(token).iss;
      return iss !== undefined && this.#issuers.has(iss);
    } catch {
      return false;
    }
  }

  async verify(token: string, _opts: IoOptions = {}): Promise<ExternalIdentity> {
    let iss: string | undefined;
    try {
      iss = decodeJwt(token).iss;
    } catch { /* below */ }
    const issuer = iss === undefined ? undefined : this.#issuers.get(iss);
    if (issuer === undefined) throw new UnauthorizedError('The token is not from a trusted issuer.');
    let payload: Record<string, unknown>;
    try {
      payload = (await jwtVerify(token, issuer.keys, { issuer: iss, algorithms: ALGORITHMS })).payload as Record<string, unknown>;
    } catch (error) {
      const expired = (error as { code?: string }).code === 'ERR_JWT_EXPIRED';
      throw new UnauthorizedError(expired ? 'The token has expired.' : `The token is not valid for issuer ${iss}.`);
    }
    const c = issuer.config;
    const user = payload[c.user_claim ?? 'preferred_username'] ?? payload.sub;
    const project = payload[c.project_claim ?? 'project'];
    const roles = payload[c.roles_claim ?? 'roles'];
    if (typeof user !== 'string' || user === '') throw new UnauthorizedError('The token names no user.');
    return {
      issuer: iss!, domain: c.domain ?? iss!, user, project: typeof project === 'string' && project !== '' ? project : null,
      roles: Array.isArray(roles) ? roles.filter((r): r is string => typeof r === 'string') : [], exp: Number(payload.exp ?? 0),
    };
  }
}
