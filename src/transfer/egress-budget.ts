import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';

export interface EgressBudgetOptions {
  /** What this site sends its child sites together at most, bytes per second (`egress_max_bytes_per_s`). */
  bytesPerSecond: number;
  /** A child's weight (> 0): its share of the budget is its weight over that of the children receiving now. */
  weightOf(site: string): Promise<number>;
  now?: () => number;
}

/** Bytes sent per turn: what a child may be ahead of its share at any moment. */
const SLICE = 64 << 10;

/** A child site receiving now: its share of the budget, and the bytes it may still send (negative: owed). */
interface Share {
  flows: number;
  weight: number;
  rate: number;
  tokens: number;
  refilledAt: number;
}

/**
 * The egress budget of a parent (issue 13): image bytes sent to child sites never exceed
 * `bytesPerSecond` together, and the children receiving at the same time share it in proportion
 * to their weight, so none starves. Each child has a bucket paying off its debt at its share: a
 * chunk is sent once its child owes nothing, and is then owed, so a child's rate over any span is
 * its share plus at most two slices (64 KiB each). No more is saved up while a child is idle, so the
 * sum never exceeds the budget by more than two slices per child.
 * Shares are worked out again whenever a child starts or stops receiving.
 */
export class EgressBudget {
  readonly #o: EgressBudgetOptions;
  readonly #now: () => number;
  readonly #shares = new Map<string, Share>();

  constructor(opts: EgressBudgetOptions) {
    if (!(opts.bytesPerSecond > 0)) throw new RangeError('EgressBudget: bytesPerSecond must be positive');
    this.#o = opts;
    this.#now = opts.now ?? (() => performance.now());
  }

  /** The bytes of `stream` as child `site` may receive them now; the stream is read no faster than it is sent. */
  throttle(site: string, stream: Readable, signal?: AbortSignal): Readable {
    const budget = this;
    async function* paced(): AsyncGenerator<Uint8Array> {
      await budget.#open(site);
      try {
        for await (const chunk of stream) {
          const bytes = chunk as Uint8Array;
          for (let at = 0; at < bytes.length; at += SLICE) {
            const slice = bytes.subarray(at, at + SLICE);
            await budget.#take(site, slice.length, signal);
            yield slice;
          }
        }
      } finally {
        budget.#close(site);
        stream.destroy();
      }
    }
    return Readable.from(paced(), { objectMode: false, highWaterMark: 0 });
  }

  /** The rate each child receiving now may have, bytes per second (for operators and tests). */
  shares(): Map<string, number> {
    return new Map([...this.#shares].map(([site, s]) => [site, s.rate]));
  }

  async #take(site: string, bytes: number, signal: AbortSignal | undefined): Promise<void> {
    for (;;) {
      signal?.throwIfAborted();
      const share = this.#refill(site);
      if (share.tokens >= 0) {
        share.tokens -= bytes;
        return;
      }
      await sleep(Math.max(1, Math.ceil((-share.tokens / share.rate) * 1000)), undefined, { signal });
    }
  }

  #refill(site: string): Share {
    const share = this.#shares.get(site)!;
    const now = this.#now();
    // At most one slice of credit builds up (what a timer's lateness would otherwise lose): more,
    // saved while a child sends nothing, would be a burst above the budget later.
    share.tokens = Math.min(SLICE, share.tokens + ((now - share.refilledAt) / 1000) * share.rate);
    share.refilledAt = now;
    return share;
  }

  async #open(site: string): Promise<void> {
    let share = this.#shares.get(site);
    if (share === undefined) {
      const weight = await this.#o.weightOf(site);
      share = this.#shares.get(site); // another flow of the same child may have opened meanwhile
      if (share === undefined) {
        this.#shares.set(site, { flows: 1, weight: weight > 0 ? weight : 1, rate: 0, tokens: 0, refilledAt: this.#now() });
        this.#reshare();
        return;
      }
    }
    share.flows++;
  }

  #close(site: string): void {
    const share = this.#shares.get(site);
    if (share === undefined || --share.flows > 0) return;
    this.#shares.delete(site);
    this.#reshare();
  }

  /** Each child receiving now gets the budget times its weight over the weights of all of them. */
  #reshare(): void {
    const total = [...this.#shares.values()].reduce((sum, s) => sum + s.weight, 0);
    for (const [site, share] of this.#shares) {
      if (share.rate > 0) this.#refill(site); // credit at the old rate up to now
      share.rate = (this.#o.bytesPerSecond * share.weight) / total;
      share.refilledAt = this.#now();
    }
  }
}

/** The label a child site's weight in its parent's egress budget is read from. */
export const EGRESS_WEIGHT_LABEL = 'egress-weight';

/** A site's egress weight: its `egress-weight` label when that is a positive number, else 1. */
export function egressWeight(labels: Readonly<Record<string, string>> | undefined): number {
  const w = Number(labels?.[EGRESS_WEIGHT_LABEL]);
  return Number.isFinite(w) && w > 0 ? w : 1;
}

/** The request header a child site names itself in (sent with its credential on every call to its parent). */
export const SITE_HEADER = 'x-outpost-site';
