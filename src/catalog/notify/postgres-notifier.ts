import { randomUUID } from 'node:crypto';
import { sql, type Transaction } from 'kysely';
import pg from 'pg';
import { CHANGE_ENTITIES, type ChangeEntity, type ChangeNotifier, type CommitEvent, type IoOptions } from '../../core/ports.ts';
import type { CatalogTables } from '../tables.ts';

/** The channel every node sharing the database listens on. */
const CHANNEL = 'outpost_changes';

/** What a node learns when its listening connection comes back: anything may have committed meanwhile. */
const ANYTHING: CommitEvent = { seq: Number.MAX_SAFE_INTEGER, kinds: CHANGE_ENTITIES };

interface Logger {
  warn(obj: object, msg: string): void;
}

/**
 * The change notifier of a PostgreSQL catalog shared by several nodes: a commit is announced with
 * a NOTIFY made inside its transaction (announceIn), which PostgreSQL delivers, if and only if the
 * transaction commits, to every node's LISTENing connection; this node's own listeners are called
 * by `publish` once it has committed. The listening connection is re-opened after a failure (with
 * back-off), and its return wakes everyone, since notifications sent meanwhile are lost.
 */
export class PostgresNotifier implements ChangeNotifier {
  readonly #listeners = new Set<(event: CommitEvent) => void>();
  readonly #node = randomUUID();
  readonly #connection: pg.ClientConfig;
  readonly #log: Logger | undefined;
  readonly #closed = new AbortController();
  #client: pg.Client | undefined;
  #retry: NodeJS.Timeout | undefined;
  #retryMs = 500;

  private constructor(connection: pg.ClientConfig, log: Logger | undefined) {
    this.#connection = connection;
    this.#log = log;
  }

  /** Starts listening (resolves once LISTEN is in place). */
  static async start(connection: pg.ClientConfig, log?: Logger): Promise<PostgresNotifier> {
    const notifier = new PostgresNotifier(connection, log);
    await notifier.#listen(false);
    return notifier;
  }

  /**
   * Whether every node's commits reach this node's listeners now: while the listening connection
   * is up. It turns true again only together with the wake-up of every listener that makes up for
   * what was missed meanwhile.
   */
  get listening(): boolean {
    return this.#client !== undefined;
  }

  /** `again`: a re-opened connection, whose listeners are woken as it takes over (nothing can run in between). */
  async #listen(again: boolean): Promise<void> {
    const client = new pg.Client(this.#connection);
    client.on('notification', (message) => {
      if (message.channel !== CHANNEL || message.payload === undefined) return;
      const event = JSON.parse(message.payload) as { node: string; seq: number; kinds: ChangeEntity[] };
      if (event.node !== this.#node) this.#dispatch({ seq: event.seq, kinds: event.kinds });
    });
    client.on('error', (error) => this.#lost(client, error));
    client.on('end', () => this.#lost(client, new Error('connection ended')));
    await client.connect();
    await client.query(`listen ${CHANNEL}`);
    if (this.#closed.signal.aborted) {
      await client.end();
      return;
    }
    this.#client = client;
    this.#retryMs = 500;
    if (again) this.#dispatch(ANYTHING);
  }

  #lost(client: pg.Client, error: Error): void {
    if (this.#client !== client || this.#closed.signal.aborted) return;
    this.#client = undefined;
    client.removeAllListeners();
    client.on('error', () => {});
    void client.end().catch(() => {});
    this.#log?.warn({ err: error }, 'catalog change notifications: the listening connection failed; reconnecting');
    this.#reconnect();
  }

  #reconnect(): void {
    const delay = this.#retryMs;
    this.#retryMs = Math.min(this.#retryMs * 2, 30_000);
    this.#retry = setTimeout(() => {
      this.#listen(true).catch(() => { if (!this.#closed.signal.aborted) this.#reconnect(); });
    }, delay);
  }

  #dispatch(event: CommitEvent): void {
    for (const listener of [...this.#listeners]) listener(event);
  }

  /**
   * Announces `event` to every other node from inside the transaction `trx` that made it: NOTIFY
   * is transactional, so the announcement is sent when, and only if, the transaction commits —
   * none is lost between a commit and its announcement. (A failure here fails the transaction.)
   */
  async announceIn(trx: Transaction<CatalogTables>, event: CommitEvent): Promise<void> {
    await sql`select pg_notify(${CHANNEL}, ${JSON.stringify({ node: this.#node, seq: event.seq, kinds: event.kinds })})`.execute(trx);
  }

  /** Tells this node's listeners of a committed write, which announceIn told the other nodes of. */
  async publish(event: CommitEvent, opts?: IoOptions): Promise<void> {
    opts?.signal?.throwIfAborted();
    this.#dispatch(event);
  }

  subscribe(listener: (event: CommitEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => { this.#listeners.delete(listener); };
  }

  async close(): Promise<void> {
    this.#closed.abort();
    clearTimeout(this.#retry);
    this.#listeners.clear();
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => {});
  }
}
