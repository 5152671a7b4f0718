import type { Change, ChangeLog, OfflineWriteStore, Replica, Snapshot } from '../core/ports.ts';
import { describeError } from '../core/describe-error.ts';
import type { ParentClient } from '../links/parent-client.ts';
import type { AuditCounts } from '../core/site-report.ts';

export interface FollowerOptions {
  replica: Replica & Pick<ChangeLog, 'digest'> & Pick<OfflineWriteStore, 'offlineMarks'>;
  /** Seconds between audits (0: only on demand). */
  auditIntervalSeconds?: number;
  /** The link to the parent site (its URL, the site credential, TLS trust). */
  parent: Pick<ParentClient, 'url' | 'fetch'>;
  /** Changes per request (default 500). */
  batch?: number;
  /** Long-poll seconds per request (default 10); a request is given up 5 s after that. */
  waitSeconds?: number;
  /** Backoff after a failure: first delay and cap, ms (defaults 250 and 30 000). */
  backoffMs?: { first: number; max: number };
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

export interface FollowerStatus {
  /** The parent's seq applied up to. */
  position: number;
  /** The parent's newest seq when it last answered. */
  parentSeq: number | null;
  /** When the parent last answered. */
  lastContact: Date | null;
  lastError: string | null;
  audit: AuditStatus;
}

export interface AuditStatus {
  lastAt: Date | null;
  /** Entity kinds that differed at the last audit and were repaired; null before the first. */
  lastMismatch: string[] | null;
  /** Audits that found and repaired a difference, since start. */
  repairs: number;
}

/** The audits' status as a site reports it (with its inventory, and in GET /outpost/v1/status). */
export function auditCounts(a: AuditStatus): AuditCounts {
  return { last_at: a.lastAt?.toISOString() ?? null, last_mismatch: a.lastMismatch === null ? null : [...a.lastMismatch], repairs: a.repairs };
}

export type AuditResult = { result: 'ok' | 'repaired'; seq: number; mismatched: string[] } | { result: 'busy'; seq: null; mismatched: [] };

/**
 * Follows a parent's change feed into a replica: long-polls GET /outpost/v1/changes, applies
 * each batch in one transaction, reloads from /outpost/v1/snapshot when the parent answers 410,
 * and retries with capped exponential backoff and jitter while the parent is away.
 */
export class Follower {
  readonly #o: FollowerOptions;
  readonly #stop = new AbortController();
  #loop: Promise<void> | undefined;
  #status: FollowerStatus = {
    position: 0, parentSeq: null, lastContact: null, lastError: null, audit: { lastAt: null, lastMismatch: null, repairs: 0 },
  };
  #auditTimer: NodeJS.Timeout | undefined;
  #writing: Promise<void> = Promise.resolve();
  readonly #progress = new EventTarget();

  constructor(opts: FollowerOptions) {
    this.#o = opts;
  }

  status(): FollowerStatus {
    return { ...this.#status, audit: { ...this.#status.audit } };
  }

  async start(): Promise<void> {
    this.#status.position = await this.#o.replica.position();
    this.#loop = this.#run();
    const every = this.#o.auditIntervalSeconds ?? 600;
    if (every > 0) {
      const tick = () => {
        this.audit().catch((e: unknown) => this.#o.log.warn({ err: describeError(e) }, 'audit failed'))
          .finally(() => { if (!this.#stop.signal.aborted) this.#auditTimer = setTimeout(tick, every * 1000); });
      };
      this.#auditTimer = setTimeout(tick, every * 1000);
    }
  }

  /**
   * Compares a digest of each entity kind of the replica with the parent's at the same seq; a
   * difference (a row altered or lost behind the follower's back) is repaired by reloading the
   * parent's snapshot, logged and counted.
   */
  async audit(): Promise<AuditResult> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const res = await this.#get('/outpost/v1/digest', this.#stop.signal, 60_000);
      if (!res.ok) throw new Error(`digest: HTTP ${res.status}`);
      const parent = await res.json() as { seq: number; digests: Record<string, string> };
      if (!(await this.waitFor(parent.seq, 10_000)) || this.#status.position !== parent.seq) continue;
      // The images this site wrote while cut off are not its parent's yet: left out.
      const local = await this.#o.replica.digest({ excludeImages: new Set((await this.#o.replica.offlineMarks()).map((m) => m.image_id)) });
      if (this.#status.position !== parent.seq) continue; // moved on meanwhile: compare again
      const mismatched = Object.keys(parent.digests).filter((k) => parent.digests[k] !== local.digests[k]);
      this.#status.audit.lastAt = new Date();
      this.#status.audit.lastMismatch = mismatched;
      if (mismatched.length === 0) return { result: 'ok', seq: parent.seq, mismatched };
      this.#o.log.warn({ parent: this.#o.parent.url, seq: parent.seq, mismatched }, 'audit: the replica differs from its parent; reloading from the snapshot');
      await this.#reload(this.#stop.signal);
      this.#status.audit.repairs++;
      return { result: 'repaired', seq: parent.seq, mismatched };
    }
    return { result: 'busy', seq: null, mismatched: [] };
  }

  async close(): Promise<void> {
    this.#stop.abort();
    clearTimeout(this.#auditTimer);
    await this.#loop;
  }

  /** Resolves true once the replica has applied the parent's `seq`, false after `timeoutMs`. */
  async waitFor(seq: number, timeoutMs: number): Promise<boolean> {
    if (this.#status.position >= seq) return true;
    return new Promise((resolve) => {
      const check = () => {
        if (this.#status.position >= seq) finish(true);
      };
      const finish = (ok: boolean) => {
        clearTimeout(timer);
        this.#progress.removeEventListener('applied', check);
        resolve(ok);
      };
      const timer = setTimeout(() => finish(false), timeoutMs);
      this.#progress.addEventListener('applied', check);
    });
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    const backoff = this.#o.backoffMs ?? { first: 250, max: 30_000 };
    let failures = 0;
    while (!signal.aborted) {
      try {
        await this.#step(signal);
        failures = 0;
      } catch (error) {
        if (signal.aborted) return;
        failures++;
        const message = describeError(error);
        if (this.#status.lastError !== message) this.#o.log.warn({ parent: this.#o.parent.url, err: message }, 'change feed unavailable; retrying');
        this.#status.lastError = message;
        const delay = Math.min(backoff.max, backoff.first * 2 ** (failures - 1)) * (0.5 + Math.random() / 2);
        await new Promise((resolve) => {
          const t = setTimeout(resolve, delay);
          signal.addEventListener('abort', () => { clearTimeout(t); resolve(undefined); }, { once: true });
        });
      }
    }
  }

  async #get(path: string, signal: AbortSignal, timeoutMs: number): Promise<Response> {
    return this.#o.parent.fetch(path, { headers: { accept: 'application/json' } }, { signal, timeoutMs });
  }

  async #step(signal: AbortSignal): Promise<void> {
    const wait = this.#o.waitSeconds ?? 10;
    const since = this.#status.position;
    const res = await this.#get(`/outpost/v1/changes?since=${since}&limit=${this.#o.batch ?? 500}&wait=${wait}`, signal, (wait + 5) * 1000);
    if (res.status === 410) {
      await res.body?.cancel();
      this.#o.log.info({ parent: this.#o.parent.url, since }, 'change log truncated past our position; reloading from the snapshot');
      await this.#reload(signal);
      return;
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new Error(`changes: HTTP ${res.status}`);
    }
    const { changes, last_seq: parentSeq } = await res.json() as { changes: Change[]; last_seq: number };
    await this.#exclusive(async () => {
      // An audit may have reloaded the replica while this batch was on its way: it is stale then.
      if (this.#status.position !== since) return;
      if (changes.length > 0) await this.#o.replica.apply(changes, changes[changes.length - 1].seq);
      this.#applied(changes.length > 0 ? changes[changes.length - 1].seq : since, parentSeq);
    });
  }

  /** Replaces the replica with the parent's snapshot (after a 410, or to repair what an audit found). */
  async #reload(signal: AbortSignal): Promise<void> {
    const res = await this.#get('/outpost/v1/snapshot', signal, 300_000);
    if (!res.ok) throw new Error(`snapshot: HTTP ${res.status}`);
    const snapshot = await res.json() as Snapshot;
    await this.#exclusive(async () => {
      await this.#o.replica.load(snapshot);
      this.#applied(snapshot.seq, snapshot.seq);
    });
  }

  /** Runs replica writes one at a time (the feed loop and the audit both write). */
  #exclusive(fn: () => Promise<void>): Promise<void> {
    const run = this.#writing.then(fn);
    this.#writing = run.catch(() => undefined);
    return run;
  }

  #applied(position: number, parentSeq: number): void {
    this.#status = { ...this.#status, position, parentSeq, lastContact: new Date(), lastError: null };
    this.#progress.dispatchEvent(new Event('applied'));
  }
}
