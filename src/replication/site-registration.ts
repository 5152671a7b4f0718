import type { Site } from '../core/ports.ts';
import type { ParentClient } from '../links/parent-client.ts';
import type { FollowerStatus } from './follower.ts';
import { describeError } from '../core/describe-error.ts';

export interface SiteRegistrationOptions {
  /** The link to the parent site (its URL, the site credential, TLS trust). */
  parent: Pick<ParentClient, 'url' | 'fetch'>;
  /** What the site says of itself. */
  site: Pick<Site, 'id' | 'labels' | 'public_url' | 'stores' | 'store_details' | 'version'>;
  follower: { status(): FollowerStatus };
  /** Heartbeat interval (default 30 s). */
  intervalMs?: number;
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

/**
 * An edge registers itself with its parent (which forwards it up to central) as soon as it can,
 * and refreshes the registration as a heartbeat carrying its replication lag. Registration is
 * idempotent; a refusal (unknown or cyclic parent) is logged, not retried in a tight loop.
 */
export class SiteRegistration {
  readonly #o: SiteRegistrationOptions;
  readonly #stop = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  #registered = false;
  /** The parent's site id, learnt from its /outpost/v1/status. */
  #parentId: string | undefined;

  constructor(opts: SiteRegistrationOptions) {
    this.#o = opts;
  }

  start(): void {
    void this.#beat();
  }

  async #beat(): Promise<void> {
    let next = this.#o.intervalMs ?? 30_000;
    try {
      const opts = { signal: this.#stop.signal, timeoutMs: 10_000 };
      if (this.#parentId === undefined) {
        const status = await this.#o.parent.fetch('/outpost/v1/status', { headers: { accept: 'application/json' } }, opts);
        if (!status.ok) throw new Error(`status: HTTP ${status.status}`);
        this.#parentId = ((await status.json()) as { site: string }).site;
      }
      const f = this.#o.follower.status();
      const res = await this.#o.parent.fetch('/outpost/v1/sites', {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify({
          ...this.#o.site, parent: this.#parentId, heartbeat_seconds: Math.max(1, Math.round((this.#o.intervalMs ?? 30_000) / 1000)), lag_changes: f.parentSeq === null ? null : Math.max(0, f.parentSeq - f.position),
        }),
      }, opts);
      const text = await res.text();
      if (res.ok) {
        if (!this.#registered) this.#o.log.info({ parent: this.#o.parent.url, site: this.#o.site.id }, 'registered with the parent site');
        this.#registered = true;
      } else {
        this.#o.log.warn({ status: res.status, message: text.slice(0, 300) }, 'the parent refused this site\'s registration');
      }
    } catch (error) {
      if (this.#stop.signal.aborted) return;
      if (!this.#registered) next = Math.min(next, 2000); // not registered yet: try again soon
      this.#o.log.warn({ parent: this.#o.parent.url, err: describeError(error) }, 'could not reach the parent to register');
    }
    if (!this.#stop.signal.aborted) this.#timer = setTimeout(() => void this.#beat(), next);
  }

  close(): void {
    this.#stop.abort();
    clearTimeout(this.#timer);
  }
}
