export interface ParentReachabilityOptions {
  /** The parent site's base URL. */
  parentUrl: string;
  /** Headers a probe carries (the site's credential). */
  headers?: Record<string, string>;
  /** A probe that gets no answer within this fails, ms. */
  timeoutMs: number;
  /** Pause between probes while the parent is away, ms (default 1000). */
  probeIntervalMs?: number;
  log: { info(obj: object, msg: string): void };
}

/**
 * What an edge knows of whether its parent can be reached — one object per site, fed by every
 * exchange with the parent (the follower's change feed, requests passed on), so that a request
 * that would only wait for an absent parent need not.
 *
 * Contract:
 * - Reachable until an exchange fails to reach the parent (`failed`: no connection, or no answer in
 *   time; an HTTP answer of any status is an answer). From then on `reachable` is false, and the
 *   parent is probed (`GET /outpost/v1/status`) every `probeIntervalMs`; any exchange that gets an
 *   answer (`answered`), a probe's included, makes it reachable again at once.
 * - Nothing waits on it: `reachable` is a plain read, so a request asks it and answers at once.
 * - `close()` stops the probes.
 */
export class ParentReachability {
  readonly #o: ParentReachabilityOptions;
  readonly #base: string;
  readonly #stop = new AbortController();
  #away: { since: Date; why: string } | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: ParentReachabilityOptions) {
    this.#o = opts;
    this.#base = opts.parentUrl.replace(/\/+$/, '');
  }

  /** False from a failed exchange with the parent until the next one that gets an answer. */
  get reachable(): boolean {
    return this.#away === undefined;
  }

  /** Since when, and why, the parent is away; undefined while it is reachable. */
  get away(): { since: Date; why: string } | undefined {
    return this.#away;
  }

  /** An exchange with the parent got an answer (any HTTP status). */
  answered(): void {
    if (this.#away === undefined) return;
    this.#o.log.info({ parent: this.#base, awayMs: Date.now() - this.#away.since.getTime() }, 'the parent site answers again');
    this.#away = undefined;
    clearTimeout(this.#timer);
  }

  /** An exchange with the parent could not reach it (`why`: for the log). */
  failed(why: string): void {
    if (this.#away !== undefined || this.#stop.signal.aborted) return;
    this.#away = { since: new Date(), why };
    this.#o.log.info({ parent: this.#base, why }, 'the parent site is away: single-image reads answer from the replica until it answers again');
    this.#schedule();
  }

  close(): void {
    this.#stop.abort();
    clearTimeout(this.#timer);
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#probe(), this.#o.probeIntervalMs ?? 1000);
    this.#timer.unref();
  }

  async #probe(): Promise<void> {
    try {
      const res = await fetch(`${this.#base}/outpost/v1/status`, {
        headers: this.#o.headers, signal: AbortSignal.any([this.#stop.signal, AbortSignal.timeout(this.#o.timeoutMs)]),
      });
      await res.body?.cancel();
      this.answered();
    } catch {
      if (this.#away !== undefined && !this.#stop.signal.aborted) this.#schedule();
    }
  }
}
