import type { Authenticator, RequestContext, RequestHeaders } from '../core/context.ts';
import { ServiceUnavailableError, UnauthorizedError } from '../core/errors.ts';

export interface RemoteKeystoneOptions {
  /** The existing Keystone's v3 URL, e.g. http://keystone.example:5000/v3. */
  url: string;
  /** A service token to validate with; without one each token validates itself (Keystone's default policy allows its subject). */
  serviceToken?: string | null;
  timeoutMs: number;
  /** A remembered token is validated again after this long, when Keystone can be reached (ms). */
  revalidateMs?: number;
  now?: () => Date;
}

interface Known { ctx: RequestContext; expiresAt: number; checkedAt: number }

const MAX_KNOWN = 10_000;

/**
 * `keystone_url`: tokens are Keystone's own, validated against it (`GET /v3/auth/tokens` with
 * `X-Subject-Token`) and remembered until they expire. While Keystone cannot be reached, a token
 * seen before is still accepted until it expires (a revocation made meanwhile is learnt at the
 * next validation); a token never seen gets 503.
 */
export class RemoteKeystoneAuthenticator implements Authenticator {
  readonly #o: RemoteKeystoneOptions;
  readonly #known = new Map<string, Known>();
  readonly #now: () => Date;

  constructor(opts: RemoteKeystoneOptions) {
    this.#o = { ...opts, url: opts.url.replace(/\/+$/, '') };
    this.#now = opts.now ?? (() => new Date());
  }

  async authenticate(headers: RequestHeaders, signal: AbortSignal): Promise<RequestContext> {
    const raw = headers['x-auth-token'];
    const token = (Array.isArray(raw) ? raw[0] : raw)?.trim();
    if (token === undefined || token === '') throw new UnauthorizedError('The request you have made requires authentication.');
    const now = this.#now().getTime();
    const known = this.#known.get(token);
    if (known !== undefined && known.expiresAt <= now) this.#known.delete(token);
    else if (known !== undefined && now - known.checkedAt < (this.#o.revalidateMs ?? 60_000)) return known.ctx;
    let res: Response;
    try {
      res = await fetch(`${this.#o.url}/auth/tokens`, {
        headers: { accept: 'application/json', 'x-auth-token': this.#o.serviceToken ?? token, 'x-subject-token': token },
        signal: AbortSignal.any([signal, AbortSignal.timeout(this.#o.timeoutMs)]),
      });
    } catch (error) {
      signal.throwIfAborted();
      if (known !== undefined && known.expiresAt > now) return known.ctx; // cut off: what was valid stays valid until it expires
      throw new ServiceUnavailableError(`The identity service ${this.#o.url} could not be reached (${((error as Error).cause as Error | undefined)?.message ?? (error as Error).message}) and this token was not seen before.`);
    }
    if (res.status === 401 || res.status === 403 || res.status === 404) {
      await res.body?.cancel();
      this.#known.delete(token);
      throw new UnauthorizedError('The token is not valid.');
    }
    if (!res.ok) {
      await res.body?.cancel();
      if (known !== undefined && known.expiresAt > now) return known.ctx;
      throw new ServiceUnavailableError(`The identity service ${this.#o.url} answered HTTP ${res.status}.`);
    }
    const body = (await res.json()) as { token?: { expires_at?: string; user?: { id?: string }; project?: { id?: string }; roles?: { name?: string }[] } };
    const t = body.token ?? {};
    const roles = (t.roles ?? []).map((r) => String(r.name ?? '').toLowerCase()).filter(Boolean);
    const ctx: RequestContext = Object.freeze({
      projectId: t.project?.id ?? null, userId: t.user?.id ?? null, roles: Object.freeze(roles), isAdmin: roles.includes('admin'),
    });
    const expiresAt = Date.parse(t.expires_at ?? '');
    if (Number.isFinite(expiresAt)) {
      if (this.#known.size >= MAX_KNOWN) this.#known.delete(this.#known.keys().next().value!);
      this.#known.set(token, { ctx, expiresAt, checkedAt: now });
    }
    return ctx;
  }
}
