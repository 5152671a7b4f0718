import type { FastifyInstance } from 'fastify';
import type { Task } from '../../core/task.ts';
import type { AppDeps } from '../app-deps.ts';
import { jsonBody } from '../http/json-body.ts';
import { resource } from '../resource.ts';
import { header, octetBody, pageLinks, queryParams } from './request-helpers.ts';
import { isoSeconds } from './views.ts';

type IdParams = { id: string };

/** `/v2/images/{id}/tasks` shows tasks as raw database rows: microsecond times without a zone. */
function rowTime(iso: string | null): string | null {
  return iso === null ? null : `${iso.slice(0, 23)}000`;
}

function imageTaskView(t: Task): Record<string, unknown> {
  return {
    id: t.id, type: t.type, status: t.status, owner: t.owner, expires_at: rowTime(t.expires_at),
    created_at: rowTime(t.created_at), updated_at: rowTime(t.updated_at), deleted_at: null, deleted: false,
    image_id: t.image_id, request_id: t.request_id, user_id: t.user_id, input: t.input, result: t.result,
    message: t.message,
  };
}

function taskStub(t: Task): Record<string, unknown> {
  return {
    id: t.id, type: t.type, status: t.status, owner: t.owner,
    expires_at: t.expires_at === null ? null : isoSeconds(t.expires_at),
    created_at: isoSeconds(t.created_at), updated_at: isoSeconds(t.updated_at),
    self: `/v2/tasks/${t.id}`, schema: '/v2/schemas/task',
  };
}

function taskView(t: Task): Record<string, unknown> {
  return {
    ...taskStub(t), input: t.input, result: t.result, message: t.message, image_id: t.image_id,
    request_id: t.request_id, user_id: t.user_id,
  };
}

/** Interoperable import, tasks and store deletion (images.py, image_data.py, tasks.py, router.py). */
export function registerImportRoutes(app: FastifyInstance, deps: AppDeps): void {
  const { imports } = deps;

  resource(app, '/v2/images/:id/stage', {
    PUT: async (req, reply) => {
      const { data, declaredSize } = octetBody(req);
      await imports.stage(req.ctx, (req.params as IdParams).id, data, { signal: req.clientSignal, declaredSize });
      return reply.code(204).send();
    },
  });

  resource(app, '/v2/images/:id/import', {
    POST: async (req, reply) => {
      await imports.start(req.ctx, (req.params as IdParams).id, await jsonBody(req), {
        signal: req.clientSignal, storeHeader: header(req, 'x-image-meta-store'), requestId: req.id,
      });
      return reply.code(202).send();
    },
  });

  resource(app, '/v2/images/:id/tasks', {
    GET: async (req) => ({
      tasks: (await imports.imageTasks(req.ctx, (req.params as IdParams).id, { signal: req.clientSignal })).map(imageTaskView),
    }),
  });

  resource(app, '/v2/tasks', {
    GET: async (req) => {
      const { pairs, map } = queryParams(req);
      const { tasks, more } = await imports.tasks(req.ctx, map, deps.maxLimit, { signal: req.clientSignal });
      const { first, next } = pageLinks('/v2/tasks', pairs, more ? tasks[tasks.length - 1].id : undefined);
      return { tasks: tasks.map(taskStub), first, schema: '/v2/schemas/tasks', ...(next === undefined ? {} : { next }) };
    },
  });

  resource(app, '/v2/tasks/:id', {
    GET: async (req) => taskView(await imports.task(req.ctx, (req.params as IdParams).id, { signal: req.clientSignal })),
  });

  resource(app, '/v2/stores/:store/:id', {
    DELETE: async (req, reply) => {
      const { store, id } = req.params as IdParams & { store: string };
      await imports.deleteFromStore(req.ctx, store, id, { signal: req.clientSignal });
      return reply.code(204).send();
    },
  });
}
