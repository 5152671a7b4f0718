import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ADMIN, call, expectStatus, sleep, type ApiResponse, type Identity } from './glance-client.ts';
import type { TestSite } from './site.ts';

/**
 * Interoperable import as a user drives it: stage, POST …/import, then watch the image and
 * GET /v2/images/{id}/tasks until the task ends.
 */

export const JSON_ACCEPT = Object.freeze({ accept: 'application/json' });

/** A task as GET /v2/images/{id}/tasks shows it. */
export type TaskJson = Record<string, any> & { id: string; status: string; message: string; request_id: string };

/** POST /v2/images/{id}/import with `body` (JSON errors). */
export async function startImport(site: TestSite, id: string, body: unknown, opts: { as?: Identity; headers?: Record<string, string> } = {}): Promise<ApiResponse<{ message: string }>> {
  return call(site, 'POST', `/v2/images/${id}/import`, { as: opts.as, json: body, headers: { ...JSON_ACCEPT, ...(opts.headers ?? {}) } });
}

/** PUT /v2/images/{id}/stage. */
export async function stage(site: TestSite, id: string, data: Uint8Array, as: Identity = ADMIN, headers: Record<string, string> = {}): Promise<ApiResponse<{ message: string }>> {
  return call(site, 'PUT', `/v2/images/${id}/stage`, {
    as, body: data, headers: { 'content-type': 'application/octet-stream', ...JSON_ACCEPT, ...headers },
  });
}

export async function imageTasks(site: TestSite, id: string, as: Identity = ADMIN): Promise<TaskJson[]> {
  const res = await call<{ tasks: TaskJson[] }>(site, 'GET', `/v2/images/${id}/tasks`, { as });
  expectStatus(res, 200);
  return res.body.tasks;
}

/**
 * Starts an import that must be accepted (202, empty body) and returns the request id the
 * answer carried, which names the task.
 */
export async function acceptedImport(site: TestSite, id: string, body: unknown, opts: { as?: Identity; headers?: Record<string, string> } = {}): Promise<string> {
  const res = await startImport(site, id, body, opts);
  expectStatus(res, 202);
  assert.equal(res.text, '');
  const requestId = res.headers.get('x-openstack-request-id');
  assert.match(requestId ?? '', /^req-[0-9a-f-]{36}$/);
  return requestId!;
}

/** Polls the image's tasks until the one started by `requestId` ends (success or failure). */
export async function waitForTask(site: TestSite, imageId: string, requestId: string, timeoutMs = 30_000): Promise<TaskJson> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const task = (await imageTasks(site, imageId)).find((t) => t.request_id === requestId);
    if (task !== undefined && (task.status === 'success' || task.status === 'failure')) return task;
    if (Date.now() > deadline) assert.fail(`task of ${requestId} did not end in ${timeoutMs} ms: ${JSON.stringify(task)}`);
    await sleep(25);
  }
}

/** Starts an import (202) and waits for its task to end. */
export async function runImport(site: TestSite, id: string, body: unknown, opts: { as?: Identity; headers?: Record<string, string> } = {}): Promise<TaskJson> {
  return waitForTask(site, id, await acceptedImport(site, id, body, opts));
}

/** What a file store directory holds for an image: the committed file, and partial files. */
export async function storeFiles(dir: string, id: string): Promise<{ committed: boolean; partial: string[] }> {
  let partial: string[] = [];
  try {
    partial = (await readdir(join(dir, '.incomplete'))).filter((f) => f.startsWith(id));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  return { committed: existsSync(join(dir, id)), partial };
}

export const NOTHING_STORED = Object.freeze({ committed: false, partial: [] as string[] });
