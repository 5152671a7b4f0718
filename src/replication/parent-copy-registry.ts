import type { RequestContext } from '../core/context.ts';
import {
  BadRequestError, ConflictError, ForbiddenError, GoneError, NotFoundError, OutpostError, PayloadTooLargeError, ServiceUnavailableError,
} from '../core/errors.ts';
import type { CopyRegistry, IoOptions, VerifiedCopy } from '../core/ports.ts';
import type { ParentClient } from '../links/parent-client.ts';

export interface ParentCopyRegistryOptions {
  /** The link to the parent site, with this site's credential (auth keystone) and `parent_timeout_ms`. */
  parent: Pick<ParentClient, 'url' | 'fetch'>;
  /** How long a recorded copy may wait for the replica to catch up, ms (`parent_timeout_ms`). */
  timeoutMs: number;
  /** Resolves once this site's replica has applied the parent's change `seq` (false: timed out). */
  waitForReplica(seq: number, timeoutMs: number): Promise<boolean>;
  log: { warn(obj: object, msg: string): void };
}

/** The parent's refusals, as the error of the catalog with the same status. */
const BY_STATUS: Record<number, new (message: string) => OutpostError> = {
  400: BadRequestError, 403: ForbiddenError, 404: NotFoundError, 409: ConflictError, 410: GoneError, 413: PayloadTooLargeError,
};

/**
 * An edge's CopyRegistry: `PUT {parent}/outpost/v1/images/{id}/locations/{store}`, which each
 * parent passes on up to central, on behalf of the caller. With `auth: none` the caller is sent as
 * the X-Project-Id / X-User-Id / X-Roles headers it was identified by; with `auth: keystone` the
 * site's credential (the service role) vouches for the upload this site allowed.
 */
export class ParentCopyRegistry implements CopyRegistry {
  readonly #o: ParentCopyRegistryOptions;

  constructor(opts: ParentCopyRegistryOptions) {
    this.#o = opts;
  }

  async reachable(opts: IoOptions = {}): Promise<void> {
    const res = await this.#fetch('/outpost/v1/status', { headers: { accept: 'application/json' } }, { ...opts, credential: false });
    await res.body?.cancel();
    if (!res.ok) throw this.#unreachable(`HTTP ${res.status}`);
  }

  async record(ctx: RequestContext, imageId: string, copy: VerifiedCopy, opts: IoOptions = {}): Promise<void> {
    const { store, ...body } = copy;
    await this.#call('PUT', ctx, imageId, store, body, opts);
  }

  async remove(ctx: RequestContext, imageId: string, store: string, opts: IoOptions = {}): Promise<void> {
    await this.#call('DELETE', ctx, imageId, store, undefined, opts);
  }

  /** One call about the copy in `store`; resolves once the replica shows its change (or it timed out). */
  async #call(method: string, ctx: RequestContext, imageId: string, store: string, body: object | undefined, opts: IoOptions): Promise<void> {
    const res = await this.#fetch(`/outpost/v1/images/${encodeURIComponent(imageId)}/locations/${encodeURIComponent(store)}`, {
      method,
      headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), accept: 'application/json', ...callerHeaders(ctx) },
      body: body === undefined ? undefined : JSON.stringify(body),
    }, opts);
    const text = await res.text();
    if (!res.ok) {
      let message = text;
      try {
        message = String((JSON.parse(text) as { message?: string }).message ?? text).replace(/<br \/>[\s\S]*$/, '');
      } catch { /* not JSON: the text as it is */ }
      const Refusal = BY_STATUS[res.status];
      if (Refusal !== undefined) throw new Refusal(message);
      throw this.#unreachable(`HTTP ${res.status}: ${message.slice(0, 200)}`);
    }
    const seq = Number(res.headers.get('x-outpost-seq'));
    if (Number.isSafeInteger(seq) && seq > 0 && !(await this.#o.waitForReplica(seq, this.#o.timeoutMs))) {
      this.#o.log.warn({ seq, image: imageId }, 'the replica did not catch up with a recorded copy in time');
    }
  }

  async #fetch(path: string, init: RequestInit, opts: IoOptions & { credential?: boolean }): Promise<Response> {
    try {
      return await this.#o.parent.fetch(path, init, opts);
    } catch (error) {
      opts.signal?.throwIfAborted();
      throw this.#unreachable((error as Error).message);
    }
  }

  #unreachable(why: string): ServiceUnavailableError {
    return new ServiceUnavailableError(`The parent site ${this.#o.parent.url} could not be reached (${why}); uploads at this site need it, reads are served here.`);
  }
}

function callerHeaders(ctx: RequestContext): Record<string, string> {
  const headers: Record<string, string> = {};
  if (ctx.projectId !== null) headers['x-project-id'] = ctx.projectId;
  if (ctx.userId !== null) headers['x-user-id'] = ctx.userId;
  if (ctx.projectId !== null || ctx.userId !== null || !ctx.isAdmin) headers['x-roles'] = ctx.roles.join(',');
  return headers;
}
