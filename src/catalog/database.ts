import { sql, type Expression, type Kysely, type RawBuilder, type Transaction } from 'kysely';
import type { Change, ChangeEntity, CommitEvent, IoOptions } from '../core/ports.ts';
import { appendChange } from './change-log/append.ts';
import type { DialectName, SqlEngine } from './dialects/dialect.ts';
import type { CatalogTables } from './tables.ts';

/** A write transaction: its queries, and the change log it appends to. */
export interface WriteTx {
  readonly db: Transaction<CatalogTables>;
  /** Appends one change (see change-log/append.ts: append after the reads a write depends on). */
  append(entity: ChangeEntity, id: string, op: Change['op'], body: unknown): Promise<void>;
}

/**
 * The one database handle the catalog's repositories share: reads, write transactions that
 * announce their changes once committed, and consistent multi-statement reads.
 */
export class CatalogDatabase {
  readonly #engine: SqlEngine;

  constructor(engine: SqlEngine) {
    this.#engine = engine;
  }

  get dialect(): DialectName {
    return this.#engine.name;
  }

  /** Reads outside a transaction (each statement sees the latest commits). */
  get db(): Kysely<CatalogTables> {
    return this.#engine.kysely;
  }

  /**
   * Locks the rows `q` reads until the transaction ends (PostgreSQL's `for update`, with
   * `skipLocked` passing over rows another transaction holds). SQLite has no row locks and needs
   * none: a process's one connection, and the data directory's lock (one process per file),
   * serialize its write transactions already.
   */
  forUpdate<Q extends { forUpdate(): Q; skipLocked(): Q }>(q: Q, opts: { skipLocked?: boolean } = {}): Q {
    if (this.dialect === 'sqlite') return q;
    return opts.skipLocked === true ? q.forUpdate().skipLocked() : q.forUpdate();
  }

  /**
   * A select-list value: the JSON array, as text, of `element` over the rows of the subquery it is
   * selected in (or of its group), in no particular order; '[]' when there are none. PostgreSQL's
   * json_agg, SQLite's json_group_array.
   */
  jsonArrayAgg(element: Expression<unknown>): RawBuilder<string> {
    return this.dialect === 'sqlite'
      ? sql<string>`coalesce(json_group_array(${element}), '[]')`
      : sql<string>`coalesce(json_agg(${element}), '[]')::text`;
  }

  /** One row's `values` as a JSON array (json_build_array, SQLite's json_array): an element for jsonArrayAgg. */
  jsonArray(values: readonly Expression<unknown>[]): RawBuilder<unknown> {
    return sql`${sql.raw(this.dialect === 'sqlite' ? 'json_array' : 'json_build_array')}(${sql.join(values)})`;
  }

  /**
   * Runs `fn` in one write transaction; if it appended changes, every listener in every process
   * is told once it has committed: other processes by an announcement the transaction itself
   * makes (sent if and only if it commits), this one's before `write` resolves.
   */
  async write<T>(fn: (tx: WriteTx) => Promise<T>, opts?: IoOptions): Promise<T> {
    opts?.signal?.throwIfAborted();
    let seq = 0;
    const kinds = new Set<ChangeEntity>();
    const result = await this.#engine.kysely.transaction().execute(async (trx) => {
      const value = await fn({
        db: trx,
        async append(entity, id, op, body) {
          seq = await appendChange(trx, entity, id, op, body);
          kinds.add(entity);
        },
      });
      if (seq > 0) await this.#engine.announceIn?.(trx, { seq, kinds: [...kinds] });
      return value;
    });
    if (seq > 0) await this.#engine.notifier.publish({ seq, kinds: [...kinds] });
    return result;
  }

  /** Runs `fn` in one transaction that sees a single point of the database (a snapshot, a digest). */
  async readConsistent<T>(fn: (trx: Transaction<CatalogTables>) => Promise<T>): Promise<T> {
    // SQLite: a transaction is a snapshot already (and its begin takes no isolation level).
    const builder = this.#engine.kysely.transaction();
    return (this.dialect === 'sqlite' ? builder : builder.setIsolationLevel('repeatable read')).execute(fn);
  }

  subscribe(listener: (event: CommitEvent) => void): () => void {
    return this.#engine.notifier.subscribe(listener);
  }

  /**
   * Whether `subscribe`'s listeners are now told of every commit to the database, whoever made it
   * (see SqlEngine.hearsEveryCommit): while this holds, a copy of rows kept in memory and dropped
   * on the commits that touch them stays what the database holds — but for other processes'
   * commits in flight (announced, not yet heard here).
   */
  get hearsEveryCommit(): boolean {
    return this.#engine.hearsEveryCommit();
  }

  close(): Promise<void> {
    return this.#engine.close();
  }
}
