import { createHash } from 'node:crypto';
import type { Change, ChangeEntity, ChangeLog, IoOptions, Snapshot } from '../../core/ports.ts';
import type { CatalogDatabase } from '../database.ts';
import { lastSeqOf } from './append.ts';
import { ENTITY_KINDS } from './entity-kinds.ts';

/** JSON with object keys sorted, so that equal contents hash equally whatever order they were written in. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (v === null || typeof v !== 'object' || Array.isArray(v)
    ? v
    : Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))));
}

/** The serving side of replication: the feed, long polls on it, snapshots and digests. */
export class SqlChangeLog implements ChangeLog {
  readonly #db: CatalogDatabase;

  constructor(db: CatalogDatabase) {
    this.#db = db;
  }

  async changesSince(since: number, limit: number, opts?: IoOptions): Promise<Change[]> {
    opts?.signal?.throwIfAborted();
    const rows = await this.#db.db.selectFrom('changes').selectAll().where('seq', '>', since).orderBy('seq').limit(limit).execute();
    return rows.map((r) => ({
      seq: Number(r.seq), entity: r.entity as ChangeEntity, id: r.entity_id, op: r.op as Change['op'], body: JSON.parse(r.body), at: r.at,
    }));
  }

  async lastSeq(opts?: IoOptions): Promise<number> {
    opts?.signal?.throwIfAborted();
    return lastSeqOf(this.#db.db);
  }

  async firstSeq(opts?: IoOptions): Promise<number> {
    opts?.signal?.throwIfAborted();
    const row = await this.#db.db.selectFrom('changes').select((eb) => eb.fn.min('seq').as('seq')).executeTakeFirst();
    return row?.seq === null || row?.seq === undefined ? (await this.lastSeq()) + 1 : Number(row.seq);
  }

  async waitForChange(after: number, timeoutMs: number, opts: IoOptions = {}): Promise<void> {
    opts.signal?.throwIfAborted();
    if (timeoutMs <= 0) return;
    // Listening starts before the position is read, so a commit in between is not missed.
    let unsubscribe = () => {};
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        unsubscribe();
        opts.signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      unsubscribe = this.#db.subscribe((event) => { if (event.seq > after) done(); });
      opts.signal?.addEventListener('abort', done, { once: true });
      void this.lastSeq().then((seq) => { if (seq > after) done(); }, done);
    });
  }

  async truncate(keep: number, opts?: IoOptions): Promise<number> {
    opts?.signal?.throwIfAborted();
    const last = await this.lastSeq();
    const r = await this.#db.db.deleteFrom('changes').where('seq', '<=', last - keep).executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  async snapshot(opts?: IoOptions): Promise<Snapshot> {
    opts?.signal?.throwIfAborted();
    // One consistent read: the entities and the seq are read at the same point of the log.
    return this.#db.readConsistent(async (trx) => {
      const snapshot: Snapshot = { seq: await lastSeqOf(trx), images: [], deleted: [], members: [], tasks: [], sites: [], policies: [], identity: [] };
      for (const kind of ENTITY_KINDS) await kind.read(trx, snapshot);
      return snapshot;
    });
  }

  async digest(opts?: IoOptions & { excludeImages?: ReadonlySet<string> }): Promise<{ seq: number; digests: Record<string, string> }> {
    const whole = await this.snapshot(opts);
    const excluded = opts?.excludeImages;
    const snap = excluded === undefined || excluded.size === 0 ? whole
      : { ...whole, images: whole.images.filter((i) => !excluded.has(i.id)), deleted: whole.deleted.filter((id) => !excluded.has(id)) };
    const digests: Record<string, string> = {};
    for (const { name, items, key } of ENTITY_KINDS.flatMap((k) => k.digests)) {
      const h = createHash('sha256');
      for (const line of items(snap).map((x) => `${key(x)} ${canonicalJson(x)}`).sort()) h.update(line).update('\n');
      digests[name] = h.digest('hex');
    }
    return { seq: snap.seq, digests };
  }
}
