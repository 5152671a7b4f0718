import { randomUUID } from 'node:crypto';
import type { IoOptions, WorkClaims, WorkKind } from './ports.ts';

export interface NodeWorkOptions {
  claims: WorkClaims;
  site: string;
  /**
   * This node is the only one its database can have (SQLite: the data directory's lock makes it
   * so): every other node recorded there is gone, and its work is free at once.
   */
  exclusive: boolean;
  log: { warn(obj: object, msg: string): void };
  /** How often the node says it is alive (default 5 s). */
  heartbeatMs?: number;
  /** How long unseen before a node's work is taken over (default 30 s: six missed heartbeats). */
  deadAfterMs?: number;
}

/**
 * This node among the nodes serving a site from one database: seen alive while it runs, and
 * claiming the long-running work it does (import tasks, uploads, staging), so that the work of a
 * node that dies — and only that work — is taken over by another.
 */
export class NodeWork {
  readonly node = randomUUID();
  readonly #o: NodeWorkOptions;
  readonly #deadAfterMs: number;
  #timer: NodeJS.Timeout | undefined;

  private constructor(opts: NodeWorkOptions) {
    this.#o = opts;
    this.#deadAfterMs = opts.deadAfterMs ?? 30_000;
  }

  /** Records the node as alive (and, exclusive, the others as gone), then keeps it so until close(). */
  static async start(opts: NodeWorkOptions): Promise<NodeWork> {
    const work = new NodeWork(opts);
    await opts.claims.nodeSeen(work.node, opts.site);
    if (opts.exclusive) await opts.claims.forgetOtherNodes(work.node);
    work.#timer = setInterval(() => {
      opts.claims.nodeSeen(work.node, opts.site).catch((error: unknown) => {
        opts.log.warn({ err: error, node: work.node }, 'this node could not record that it is alive; others may take its work over');
      });
    }, opts.heartbeatMs ?? 5000);
    return work;
  }

  /** Takes the work unless a node that is alive holds it; true when this node holds it now. */
  claim(kind: WorkKind, id: string, opts?: IoOptions): Promise<boolean> {
    return this.#o.claims.claim(kind, id, this.node, this.#deadAfterMs, opts);
  }

  release(kind: WorkKind, id: string, opts?: IoOptions): Promise<void> {
    return this.#o.claims.release(kind, id, this.node, opts);
  }

  /** Whether a node that is alive (this one included) does the work. */
  isClaimed(kind: WorkKind, id: string, opts?: IoOptions): Promise<boolean> {
    return this.#o.claims.isClaimed(kind, id, this.#deadAfterMs, opts);
  }

  close(): void {
    clearInterval(this.#timer);
  }
}
