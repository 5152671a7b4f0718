export interface ParentReachabilityOptions {
  /** How log lines name the parent (its base URL). */
  name: string;
  /**
   * One probe of the parent (ParentClient asks `GET /outpost/v1/status`): resolves when it
   * answered with any status, rejects when it could not be reached or `signal` aborted.
   */
  probe(signal: AbortSignal): Promise<void>;
  /** Pause between probes while the parent is away, ms (default 1000). */
  probeIntervalMs?: number;
  log: { info(obj: object, msg: string): void };
}

/**
 * What an edge knows of whether its parent can be reached — held by the site's ParentClient and
 * fed by every exchange through it (the follower's change feed, requests passed on, cache fills),
 * so that a request that would only wait for an absent parent need not.
 *
 * Contract:
 * - Reachable until an exchange fails to reach the parent (`failed`: no connection, no answer in
 *   time, or a gateway's in its stead; an HTTP answer of any status from the parent is an answer).
 *   From then on `reachable` is false, and the parent is probed (`GET /outpost/v1/status`) every
 *   `probeIntervalMs`; any exchange that gets an answer (`answered`), a probe's included, makes it
 *   reachable again at once.
 * - Nothing waits on it: `reachable` is a plain read, so a request asks it and answers at once.
 * - `close()` stops the probes.
 */
export class ParentReachability {
  readonly #o: ParentReachabilityOptions;
  readonly #stop = new AbortController();
  #away: { since: Date; why: string } | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: ParentReachabilityOptions) {
    this.#o = opts;
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
    this.#o.log.info({ parent: this.#o.name, awayMs: Date.now() - this.#away.since.getTime() }, 'the parent site answers again');
    this.#away = undefined;
    clearTimeout(this.#timer);
  }

  /** An exchange with the parent could not reach it (`why`: for the log). */
  failed(why: string): void {
    if (this.#away !== undefined || this.#stop.signal.aborted) return;
    this.#away = { since: new Date(), why };
    this.#o.log.info({ parent: this.#o.name, why }, 'the parent site is away: single-image reads answer from the replica until it answers again');
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
      await this.#o.probe(this.#stop.signal);
      this.answered();
    } catch {
      if (this.#away !== undefined && !this.#stop.signal.aborted) this.#schedule();
    }
  }
}
