import { ConflictError } from './errors.ts';
import type { Image } from './image.ts';
import { LOCK_PROPERTY, STALE_LOCK_MS } from './import-properties.ts';
import type { NodeWork } from './node-work.ts';
import type { Catalog, IoOptions } from './ports.ts';
import { endTask, isTerminal, type Task } from './task.ts';

/** Why a running task was stopped without failing it: it stays pending or processing, for recover(). */
export class TaskAborted extends Error {}

export interface TaskRunsOptions<T extends Task> {
  /** The tasks of this kind (the others are another runner's). */
  type: T['type'];
  /** How a claimed task runs; it handles its own failures (a task's failure is recorded, not thrown). */
  run(task: T, signal: AbortSignal): Promise<void>;
  catalog: Pick<Catalog, 'listTasks' | 'updateTask'>;
  /** This node among several sharing the catalog: a task runs where it is claimed. Absent: the only process. */
  work?: NodeWork;
  log: { warn(obj: object, msg: string): void };
  now: () => Date;
}

/**
 * The tasks of one kind this process runs (an import, a location import): each is claimed by this
 * node while it runs and given up however it ends, so another node takes over one whose node
 * stopped; close() stops them without failing them; recover() runs those no live node runs.
 */
export class TaskRuns<T extends Task> {
  readonly #o: TaskRunsOptions<T>;
  readonly #running = new Map<string, { controller: AbortController; done: Promise<void> }>();

  constructor(opts: TaskRunsOptions<T>) {
    this.#o = opts;
  }

  /**
   * A new task: claimed by this node before it exists (no other node's recover() takes it before
   * it starts here); `create` records it and takes the image's lock; the task whose stale lock it
   * took over (`superseded`) fails; then it runs. A `create` that throws gives the claim up.
   */
  async launch(task: T, create: () => Promise<void>, superseded: Task | undefined, opts: IoOptions): Promise<void> {
    await this.#o.work?.claim('task', task.id, opts);
    try {
      await create();
    } catch (error) {
      await this.#o.work?.release('task', task.id).catch(() => undefined);
      throw error;
    }
    if (superseded !== undefined) {
      await this.#o.catalog.updateTask(superseded.id, (t) => endTask(t, 'failure',
        `Superseded: no progress for ${STALE_LOCK_MS / 60_000} minutes; the image lock went to task ${task.id}`, null, this.#o.now()));
    }
    this.start(task);
  }

  /** Starts running a task (does not wait for it). */
  start(task: T): void {
    const controller = new AbortController();
    const done = this.#claimed(task, controller.signal)
      .catch((error: unknown) => this.#o.log.warn({ err: error, task: task.id }, `${this.#o.type} task crashed`))
      .finally(() => this.#running.delete(task.id));
    this.#running.set(task.id, { controller, done });
  }

  /** Waits for every running task (tests, shutdown). */
  async idle(): Promise<void> {
    await Promise.all([...this.#running.values()].map((r) => r.done));
  }

  /** Stops running tasks; they stay `processing`, unclaimed, for recover() here or at another node. */
  async close(): Promise<void> {
    for (const r of this.#running.values()) r.controller.abort(new TaskAborted('the server is stopping'));
    await this.idle();
  }

  /**
   * Runs the tasks of this kind no node runs: pending or processing, not running here, and not
   * claimed by a node that is alive (a stop or a crash left them; claiming them is atomic, so of
   * two nodes only one takes each). Returns how many were taken. Run at start and, where nodes
   * share the catalog, periodically.
   */
  async recover(): Promise<number> {
    const unfinished = await this.#o.catalog.listTasks({ statuses: ['pending', 'processing'], type: this.#o.type, limit: 10_000 });
    let taken = 0;
    for (const task of unfinished) {
      if (task.type !== this.#o.type || this.#running.has(task.id)) continue;
      if (this.#o.work !== undefined && !(await this.#o.work.claim('task', task.id))) continue;
      this.#o.log.warn({ task: task.id, image: task.image_id }, `resuming a ${this.#o.type} task its node left unfinished`);
      this.start(task as T);
      taken++;
    }
    return taken;
  }

  async #claimed(task: T, signal: AbortSignal): Promise<void> {
    // A task another node holds is that node's.
    if (this.#o.work !== undefined && !(await this.#o.work.claim('task', task.id, { signal }))) return;
    try {
      await this.#o.run(task, signal);
    } finally {
      await this.#o.work?.release('task', task.id).catch(() => undefined);
    }
  }
}

/**
 * The image's import lock (LOCK_PROPERTY) as a new task finds it: held by a task that is alive →
 * 409 "Image has active task". A lock whose task is missing or finished may be taken (undefined);
 * so may one whose task made no progress for STALE_LOCK_MS — that task is returned, to be failed as
 * superseded (TaskRuns.launch).
 */
export async function takeOverableLock(catalog: Pick<Catalog, 'getTask'>, image: Image, now: Date, opts: IoOptions): Promise<Task | undefined> {
  const holder = image.properties[LOCK_PROPERTY];
  if (holder === undefined || holder === '') return undefined;
  const task = await catalog.getTask(holder, opts);
  if (task === undefined || isTerminal(task.status)) return undefined;
  if (now.getTime() - Date.parse(task.updated_at) > STALE_LOCK_MS) return task;
  throw new ConflictError('Image has active task');
}
