import { ConflictError, NotFoundError } from '../core/errors.ts';
import type { IoOptions, TaskListQuery } from '../core/ports.ts';
import type { Task } from '../core/task.ts';
import type { CatalogDatabase } from './database.ts';
import { rowToTask, taskToRow } from './rows.ts';

/** Import tasks (replicated, so that an edge answers GET /v2/tasks/{id} too). */
export class TaskRepository {
  readonly #db: CatalogDatabase;

  constructor(db: CatalogDatabase) {
    this.#db = db;
  }

  async createTask(task: Task, opts?: IoOptions): Promise<void> {
    await this.#db.write(async (tx) => {
      const inserted = await tx.db.insertInto('tasks').values(taskToRow(task))
        .onConflict((oc) => oc.column('id').doNothing()).returning('id').executeTakeFirst();
      if (inserted === undefined) throw new ConflictError(`Task with identifier ${task.id} already exists`);
      await tx.append('task', task.id, 'upsert', task);
    }, opts);
  }

  async getTask(id: string, opts?: IoOptions): Promise<Task | undefined> {
    opts?.signal?.throwIfAborted();
    const row = await this.#db.db.selectFrom('tasks').selectAll().where('id', '=', id).executeTakeFirst();
    return row === undefined ? undefined : rowToTask(row);
  }

  async updateTask(id: string, mutate: (current: Task) => Task, opts?: IoOptions): Promise<Task> {
    return this.#db.write(async (tx) => {
      const row = await this.#db.forUpdate(tx.db.selectFrom('tasks').selectAll().where('id', '=', id)).executeTakeFirst();
      if (row === undefined) throw new NotFoundError(`Task with identifier ${id} not found`);
      const current = rowToTask(row);
      const next = mutate(structuredClone(current));
      if (JSON.stringify(next) === JSON.stringify(current)) return current;
      const { id: _id, ...values } = taskToRow(next);
      await tx.db.updateTable('tasks').set(values).where('id', '=', id).execute();
      await tx.append('task', id, 'upsert', next);
      return next;
    }, opts);
  }

  async listTasks(query: TaskListQuery, opts?: IoOptions): Promise<Task[]> {
    opts?.signal?.throwIfAborted();
    if (query.statuses?.length === 0) return []; // (`in ()` is no SQL PostgreSQL takes)
    let q = this.#db.db.selectFrom('tasks').selectAll();
    if (query.imageId !== undefined) q = q.where('image_id', '=', query.imageId);
    if (query.statuses !== undefined) q = q.where('status', 'in', [...query.statuses]);
    if (query.type !== undefined) q = q.where('type', '=', query.type);
    const key = query.sortKey ?? 'created_at';
    const dir = query.sortDir ?? 'desc';
    const marker = query.marker;
    if (marker !== undefined) {
      const cmp = dir === 'asc' ? '>' : '<';
      q = q.where((eb) => eb.or([
        eb(key, cmp, marker[key]),
        eb.and([eb(key, '=', marker[key]), eb('id', cmp, marker.id)]),
      ]));
    }
    const rows = await q.orderBy(key, dir).orderBy('id', dir).limit(query.limit).execute();
    return rows.map(rowToTask);
  }
}
