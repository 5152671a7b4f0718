import type { TransferPriority } from '../core/ports.ts';

/** Served in this order: a client waiting first, then copies for the site's store, then prefetches. */
const ORDER: readonly TransferPriority[] = ['client', 'replicate', 'prefetch'];

/** At most this much credit builds up while nothing arrives (what a timer's lateness would otherwise lose). */
const MAX_CREDIT = 64 << 10;

interface Waiter {
  bytes: number;
  resolve(): void;
  reject(reason: unknown): void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/**
 * A site's cap on the bytes its transfers from its parent take together
 * (`ingress_max_bytes_per_s`, issue 13), served in priority order: a chunk that arrived is handed
 * on once the bucket owes nothing, the waiting chunk of the highest priority first (first come,
 * first served within one), and is then owed. So a client waiting on a miss is never behind a
 * policy's copy, and a prefetch only takes what neither wants. The long-run rate is the cap; it is
 * exceeded by at most one chunk and MAX_CREDIT at any moment.
 */
export class IngressBudget {
  readonly #rate: number;
  readonly #now: () => number;
  readonly #queues = new Map<TransferPriority, Waiter[]>(ORDER.map((p) => [p, []]));
  #tokens = 0;
  #refilledAt: number;
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: { bytesPerSecond: number; now?: () => number }) {
    if (!(opts.bytesPerSecond > 0)) throw new RangeError('IngressBudget: bytesPerSecond must be positive');
    this.#rate = opts.bytesPerSecond;
    this.#now = opts.now ?? (() => performance.now());
    this.#refilledAt = this.#now();
  }

  /** Resolves when `bytes` of a transfer for `priority` may be handed on; rejects when `signal` aborts first. */
  take(bytes: number, priority: TransferPriority, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted === true) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { bytes, resolve, reject, signal };
      const queue = this.#queues.get(priority)!;
      if (signal !== undefined) {
        waiter.onAbort = () => {
          const at = queue.indexOf(waiter);
          if (at >= 0) queue.splice(at, 1);
          reject(signal.reason);
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      queue.push(waiter);
      this.#serve();
    });
  }

  /** How many chunks wait, per priority (for tests and operators). */
  waiting(): Record<TransferPriority, number> {
    return Object.fromEntries(ORDER.map((p) => [p, this.#queues.get(p)!.length])) as Record<TransferPriority, number>;
  }

  #serve(): void {
    if (this.#timer !== undefined) return;
    const now = this.#now();
    this.#tokens = Math.min(MAX_CREDIT, this.#tokens + ((now - this.#refilledAt) / 1000) * this.#rate);
    this.#refilledAt = now;
    for (;;) {
      const next = ORDER.map((p) => this.#queues.get(p)!).find((q) => q.length > 0);
      if (next === undefined) return;
      if (this.#tokens < 0) {
        this.#timer = setTimeout(() => {
          this.#timer = undefined;
          this.#serve();
        }, Math.max(1, Math.ceil((-this.#tokens / this.#rate) * 1000)));
        return;
      }
      const waiter = next.shift()!;
      if (waiter.onAbort !== undefined) waiter.signal!.removeEventListener('abort', waiter.onAbort);
      this.#tokens -= waiter.bytes;
      waiter.resolve();
    }
  }
}
