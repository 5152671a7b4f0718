import type { TransferTotals } from '../core/metrics.ts';
import type { TransferRecord } from '../core/site-report.ts';

/** The counters a running transfer updates. */
export type TransferCounters = Pick<TransferRecord, 'reused' | 'zeros' | 'fetched' | 'refetched' | 'resumes'>;

/** A transfer in progress: its counters, and how it ends. */
export interface RunningTransfer {
  readonly counts: TransferCounters;
  /** A site that sent some of the bytes (a peer, a site holding a copy): named in the record's `source`. */
  sentBy(site: string): void;
  end(error?: Error): void;
}

/**
 * `stream`, with `transfer` ended as it ends: done at its end, failed with its error, or — left
 * early by its reader — failed with the reason the reader aborted `signal` with (a reader that
 * failed, e.g. on a full disk, aborts it with its error before it lets go, so the record says
 * why), else "stopped before the end". With `count`, each piece's bytes are added to that counter.
 */
export async function* recorded(stream: AsyncIterable<Uint8Array>, transfer: RunningTransfer, signal: AbortSignal | undefined, count?: 'fetched' | 'reused'): AsyncGenerator<Uint8Array> {
  try {
    for await (const piece of stream) {
      if (count !== undefined) transfer.counts[count] += piece.length;
      yield piece;
    }
    transfer.end();
  } catch (error) {
    transfer.end(error as Error);
    throw error;
  } finally {
    const reason: unknown = signal?.aborted === true ? signal.reason : undefined;
    transfer.end(reason instanceof Error ? reason : new Error('stopped before the end'));
  }
}

/** Transfers kept after they end, newest first. */
const RECENT = 50;
/** The window linkRate() measures over, ms. */
const RATE_WINDOW_MS = 10_000;

/**
 * The transfers of image bytes to this site: those running and the most recent ones ended.
 * In memory: a restart forgets them (the cache and stores keep what they moved).
 */
export class TransferLog {
  readonly #running = new Set<{ record: TransferRecord; startedMs: number }>();
  readonly #recent: TransferRecord[] = [];
  /** What the transfers that ended since the start did, together (totals()). */
  readonly #ended = { fetched: 0, refetched: 0, reused: 0, zeros: 0, resumes: 0, done: 0, failed: 0 };
  readonly #now: () => number;
  /** (time, bytes fetched by every transfer since the start) at each linkRate() call of the last RATE_WINDOW_MS, oldest first. */
  readonly #samples: { at: number; fetched: number }[] = [];

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  start(imageId: string, source: string, method: TransferRecord['method'], planned: number): RunningTransfer {
    const startedMs = this.#now();
    const record: TransferRecord = {
      image_id: imageId, source, method, state: 'running', planned,
      reused: 0, zeros: 0, fetched: 0, refetched: 0, resumes: 0, bytes_per_second: 0,
      started_at: new Date(startedMs).toISOString(), ended_at: null, error: null,
    };
    const entry = { record, startedMs };
    this.#running.add(entry);
    let ended = false;
    const senders = new Set<string>();
    return {
      counts: record,
      sentBy: (site) => {
        if (senders.has(site)) return;
        senders.add(site);
        record.source = `${source}, from ${[...senders].map((s) => `site ${s}`).join(', ')}`;
      },
      end: (error) => {
        if (ended) return;
        ended = true;
        this.#running.delete(entry);
        const t = this.#ended;
        t.fetched += record.fetched;
        t.refetched += record.refetched;
        t.reused += record.reused;
        t.zeros += record.zeros;
        t.resumes += record.resumes;
        if (error === undefined) t.done++;
        else t.failed++;
        Object.assign(record, this.#rated(entry), { state: error === undefined ? 'done' : 'failed', ended_at: new Date(this.#now()).toISOString(), error: error?.message ?? null });
        this.#recent.unshift(record);
        this.#recent.length = Math.min(this.#recent.length, RECENT);
      },
    };
  }

  /** Running transfers first (oldest first), then the ended ones, newest first. */
  list(): TransferRecord[] {
    return [...[...this.#running].map((e) => ({ ...e.record, ...this.#rated(e) })), ...this.#recent.map((r) => ({ ...r }))];
  }

  /** A running transfer of the image: bytes of it here so far (reused, zeros, fetched) and their rate. */
  progress(imageId: string): { bytes_done: number; bytes_per_second: number } | undefined {
    for (const e of this.#running) {
      if (e.record.image_id !== imageId) continue;
      const { reused, zeros, fetched } = e.record;
      return { bytes_done: reused + zeros + fetched, ...this.#rated(e) };
    }
    return undefined;
  }

  /**
   * Bytes per second the transfers fetch from their sources now (what crosses the site's link;
   * reused bytes do not): over the last 10 s, from the counts at the calls made in that time (a
   * stalled link reads 0 within 10 s); at a first call, each running transfer's rate since it began.
   */
  linkRate(): number {
    const now = this.#now();
    const t = this.totals();
    const fetched = t.fetched + t.refetched;
    while (this.#samples.length > 0 && now - this.#samples[0]!.at > RATE_WINDOW_MS) this.#samples.shift();
    const oldest = this.#samples[0];
    this.#samples.push({ at: now, fetched });
    if (oldest !== undefined && now > oldest.at) return Math.round((fetched - oldest.fetched) / ((now - oldest.at) / 1000));
    let rate = 0;
    for (const e of this.#running) rate += (e.record.fetched + e.record.refetched) / Math.max(0.001, (now - e.startedMs) / 1000);
    return Math.round(rate);
  }

  /**
   * What every transfer since the start did, together: those ended and the running ones as they
   * stand now, so the byte counts only grow, and grow while a transfer runs (the site's metrics).
   */
  totals(): TransferTotals {
    const t = { ...this.#ended, running: this.#running.size };
    for (const { record: r } of this.#running) {
      t.fetched += r.fetched;
      t.refetched += r.refetched;
      t.reused += r.reused;
      t.zeros += r.zeros;
      t.resumes += r.resumes;
    }
    return t;
  }

  #rated(e: { record: TransferRecord; startedMs: number }): { bytes_per_second: number } {
    const seconds = Math.max(0.001, (this.#now() - e.startedMs) / 1000);
    const { reused, zeros, fetched } = e.record;
    return { bytes_per_second: Math.round((reused + zeros + fetched) / seconds) };
  }
}
