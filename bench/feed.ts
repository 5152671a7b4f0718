import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { assertLoopback } from './clients.ts';

/** Wall-clock milliseconds with sub-millisecond resolution, comparable between threads. */
export const now = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A lightweight follower of a site's change feed: long-polls GET /outpost/v1/changes?since=SEQ
 * &limit=500&wait=S as src/replication/follower.ts does, without a replica, and records when
 * the first upsert of each image arrived. On an edge, the feed it re-serves is read from its
 * replica, so an image arriving there has been committed at that edge.
 */
export class FeedFollower {
  /** Image id → when its first upsert arrived (now()). */
  readonly seen = new Map<string, number>();
  responses = 0;
  errors = 0;
  readonly base: string;
  readonly waitS: number;
  #since: number;
  readonly #stop = new AbortController();
  readonly #loop: Promise<void>;
  #wake = () => {};

  constructor(base: string, since: number, waitS: number) {
    assertLoopback(base);
    this.base = base;
    this.waitS = waitS;
    this.#since = since;
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      try {
        const res = await fetch(`${this.base}/outpost/v1/changes?since=${this.#since}&limit=500&wait=${this.waitS}`, {
          headers: { accept: 'application/json' },
          signal: AbortSignal.any([signal, AbortSignal.timeout((this.waitS + 5) * 1000)]),
        });
        if (!res.ok) throw new Error(`changes: HTTP ${res.status}`);
        const { changes } = await res.json() as { changes: { seq: number; entity: string; id: string; op: string }[] };
        const at = now();
        for (const c of changes) if (c.entity === 'image' && c.op === 'upsert' && !this.seen.has(c.id)) this.seen.set(c.id, at);
        if (changes.length > 0) this.#since = changes[changes.length - 1].seq;
        this.responses++;
      } catch (e) {
        if (signal.aborted) return;
        this.errors++;
        process.stderr.write(`bench: feed ${this.base}: ${(e as Error).message}\n`);
        await sleep(100);
      }
      this.#wake();
    }
  }

  /** Resolves true once `cond()` holds after a response, false after `timeoutMs` (one caller at a time). */
  async until(cond: () => boolean, timeoutMs: number): Promise<boolean> {
    const end = Date.now() + timeoutMs;
    while (!cond()) {
      const left = end - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#wake = () => { clearTimeout(t); resolve(); };
      });
    }
    return true;
  }

  async close(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
  }
}

interface PoolData { base: string; since: number; count: number; waitS: number }
export interface PoolResult { seen: Map<string, number>[]; responses: number; errors: number; incomplete: number }

/**
 * `count` FeedFollowers of one site in a worker thread of this process, so that their requests
 * and JSON parsing do not delay the main thread's clocks (the writer and the edges' followers).
 */
export class FollowerPool {
  readonly #worker: Worker;

  private constructor(worker: Worker) {
    this.#worker = worker;
  }

  /** Resolves once every follower has had its first answer (started at `since`, one change back, so it answers at once). */
  static async start(data: PoolData): Promise<FollowerPool> {
    const worker = new Worker(new URL(import.meta.url), { workerData: { feedPool: data } });
    const pool = new FollowerPool(worker);
    await pool.#next('attached');
    return pool;
  }

  /** Waits until every follower has seen image `lastId` (at most `timeoutMs`) and returns what each saw. */
  async collect(lastId: string, timeoutMs: number): Promise<PoolResult> {
    this.#worker.postMessage({ lastId, timeoutMs });
    return (await this.#next('result')).result as PoolResult;
  }

  /** Stops the followers (their long polls end) and the worker. */
  async close(): Promise<void> {
    this.#worker.postMessage({ close: true });
    await Promise.race([this.#next('closed'), sleep(10_000)]).catch(() => undefined);
    await this.#worker.terminate();
  }

  #next(type: string): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const onMessage = (m: Record<string, unknown>) => {
        if (m.type !== type) return;
        this.#worker.off('message', onMessage).off('error', reject);
        resolve(m);
      };
      this.#worker.on('message', onMessage).once('error', reject);
    });
  }
}

if (!isMainThread && workerData?.feedPool !== undefined) {
  const { base, since, count, waitS } = workerData.feedPool as PoolData;
  const followers = Array.from({ length: count }, () => new FeedFollower(base, since, waitS));
  await Promise.all(followers.map((f) => f.until(() => f.responses > 0, 60_000)));
  parentPort!.postMessage({ type: 'attached' });
  parentPort!.on('message', async (m: { lastId?: string; timeoutMs?: number; close?: boolean }) => {
    if (m.close) {
      await Promise.all(followers.map((f) => f.close()));
      parentPort!.postMessage({ type: 'closed' });
      return;
    }
    const ok = await Promise.all(followers.map((f) => f.until(() => f.seen.has(m.lastId!), m.timeoutMs!)));
    const result: PoolResult = {
      seen: followers.map((f) => f.seen),
      responses: followers.reduce((n, f) => n + f.responses, 0),
      errors: followers.reduce((n, f) => n + f.errors, 0),
      incomplete: ok.filter((x) => !x).length,
    };
    parentPort!.postMessage({ type: 'result', result });
  });
}
