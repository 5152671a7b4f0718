import type { Authenticator, RequestContext, RequestHeaders } from '../core/context.ts';
import { UnauthorizedError } from '../core/errors.ts';
import type { IdentityService } from '../core/identity/identity-service.ts';

/**
 * `auth: keystone` — the caller is who its `X-Auth-Token` says, checked by this site itself
 * (IdentityService.contextFor: signature, expiry, revocations, and the replica's users, projects
 * and role assignments), so a site cut off from central keeps authenticating.
 */
export class KeystoneAuthenticator implements Authenticator {
  readonly #identity: IdentityService;

  constructor(identity: IdentityService) {
    this.#identity = identity;
  }

  async authenticate(headers: RequestHeaders, signal: AbortSignal): Promise<RequestContext> {
    const raw = headers['x-auth-token'];
    const token = (Array.isArray(raw) ? raw[0] : raw)?.trim();
    if (token === undefined || token === '') throw new UnauthorizedError('The request you have made requires authentication.');
    return this.#identity.contextFor(token, { signal });
  }
}
