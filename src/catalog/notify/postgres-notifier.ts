import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { CHANGE_ENTITIES, type ChangeEntity, type ChangeNotifier, type CommitEvent, type IoOptions } from '../../core/ports.ts';

/** The channel every node sharing the database listens on. */
const CHANNEL = 'outpost_changes';

/** What a node learns when its listening connection comes back: anything may have committed meanwhile. */
const ANYTHING: CommitEvent = { seq: Number.MAX_SAFE_INTEGER, kinds: CHANGE_ENTITIES };

interface Logger {
  warn(obj: object, msg: string): void;
}

/**
 * The change notifier of a PostgreSQL catalog shared by several nodes: a commit is announced with
 * NOTIFY, which PostgreSQL delivers to every node's LISTENing connection; this node's own
 * listeners are called at once. The listening connection is re-opened after a failure (with
 * back-off), and its return wakes everyone, since notifications sent meanwhile are lost.
 */
export class PostgresNotifier implements ChangeNotifier {
  readonly #listeners = new Set<(event: CommitEvent) => void>();
  readonly #node = randomUUID();
  readonly #connection: pg.ClientConfig;
  readonly #send: (payload: string) => Promise<unknown>;
  readonly #log: Logger | undefined;
  readonly #closed = new AbortController();
  #client: pg.Client | undefined;
  #retry: NodeJS.Timeout | undefined;
  #retryMs = 500;

  private constructor(connection: pg.ClientConfig, send: (payload: string) => Promise<unknown>, log: Logger | undefined) {
    this.#connection = connection;
    this.#send = send;
    this.#log = log;
  }

  /** Starts listening (resolves once LISTEN is in place); `pool` sends the notifications. */
  static async start(connection: pg.ClientConfig, pool: pg.Pool, log?: Logger): Promise<PostgresNotifier> {
    const notifier = new PostgresNotifier(connection, (payload) => pool.query('select pg_notify($1, $2)', [CHANNEL, payload]), log);
    await notifier.#listen();
    return notifier;
  }

  async #listen(): Promise<void> {
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
      this.#listen().then(() => this.#dispatch(ANYTHING), () => { if (!this.#closed.signal.aborted) this.#reconnect(); });
    }, delay);
  }

  #dispatch(event: CommitEvent): void {
    for (const listener of [...this.#listeners]) listener(event);
  }

  async publish(event: CommitEvent, opts?: IoOptions): Promise<void> {
    opts?.signal?.throwIfAborted();
    this.#dispatch(event);
    // Best effort: the commit stands whatever happens here, and other nodes' waiters time out.
    await this.#send(JSON.stringify({ node: this.#node, seq: event.seq, kinds: event.kinds }))
      .catch((error: unknown) => this.#log?.warn({ err: error }, 'catalog change notifications: NOTIFY failed'));
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
