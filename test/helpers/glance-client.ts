import assert from 'node:assert/strict';
import { createCipheriv } from 'node:crypto';
import type { TestSite } from './site.ts';

/**
 * A small Glance v2 client for API tests: every call returns what a user sees (status, headers,
 * raw text and the parsed JSON body when the answer is JSON). Identity comes from the
 * `auth: none` headers (X-Project-Id, X-User-Id, X-Roles); no headers at all is an administrator.
 */

export type Identity = Readonly<Record<string, string>>;

/** No identity headers: the administrator without a project. */
export const ADMIN: Identity = Object.freeze({});

/** A caller in `projectId` (role member unless `roles` is given, a comma-separated list). */
export function project(projectId: string, roles?: string): Identity {
  return Object.freeze({ 'x-project-id': projectId, 'x-user-id': `user-of-${projectId}`, ...(roles === undefined ? {} : { 'x-roles': roles }) });
}

export const PATCH_V21 = 'application/openstack-images-v2.1-json-patch';
export const PATCH_V20 = 'application/openstack-images-v2.0-json-patch';

// Image JSON as the API renders it.
export type ImageJson = Record<string, any> & { id: string };

export interface ApiResponse<T = unknown> {
  status: number;
  headers: Headers;
  text: string;
  /** Parsed JSON when the response is JSON, else undefined. */
  body: T;
}

export interface CallOptions {
  as?: Identity;
  /** Sent as JSON with Content-Type application/json unless `headers` gives another type. */
  json?: unknown;
  body?: string | Uint8Array;
  headers?: Record<string, string>;
}

export async function call<T = any>(site: TestSite, method: string, path: string, opts: CallOptions = {}): Promise<ApiResponse<T>> {
  const headers: Record<string, string> = { ...(opts.as ?? ADMIN), ...(opts.headers ?? {}) };
  let body: string | Uint8Array | undefined = opts.body;
  if (opts.json !== undefined) {
    body = JSON.stringify(opts.json);
    if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['content-type'] = 'application/json';
  }
  const res = await site.request(path, { method, headers, body });
  const text = await res.text();
  const type = res.headers.get('content-type') ?? '';
  const parsed = type.startsWith('application/json') && text !== '' ? JSON.parse(text) : undefined;
  return { status: res.status, headers: res.headers, text, body: parsed as T };
}

/** Asserts the status, showing the body when it differs. */
export function expectStatus(res: ApiResponse, status: number): void {
  assert.equal(res.status, status, `expected ${status}, got ${res.status}: ${res.text}`);
}

export async function createImage(site: TestSite, body: Record<string, unknown> = {}, as: Identity = ADMIN): Promise<ImageJson> {
  const res = await call<ImageJson>(site, 'POST', '/v2/images', { as, json: body });
  expectStatus(res, 201);
  return res.body;
}

export async function getImage(site: TestSite, id: string, as: Identity = ADMIN): Promise<ImageJson> {
  const res = await call<ImageJson>(site, 'GET', `/v2/images/${id}`, { as });
  expectStatus(res, 200);
  return res.body;
}

export async function upload(site: TestSite, id: string, data: Uint8Array, as: Identity = ADMIN, headers: Record<string, string> = {}): Promise<ApiResponse> {
  return call(site, 'PUT', `/v2/images/${id}/file`, {
    as, body: data, headers: { 'content-type': 'application/octet-stream', ...headers },
  });
}

/** Creates a raw/bare image and uploads `data`; returns the active image. */
export async function createActiveImage(site: TestSite, data: Uint8Array, body: Record<string, unknown> = {}, as: Identity = ADMIN): Promise<ImageJson> {
  const image = await createImage(site, { disk_format: 'raw', container_format: 'bare', ...body }, as);
  expectStatus(await upload(site, image.id, data, as), 204);
  const active = await getImage(site, image.id, as);
  assert.equal(active.status, 'active');
  return active;
}

export async function patchImage(site: TestSite, id: string, ops: unknown, opts: { as?: Identity; type?: string; accept?: string } = {}): Promise<ApiResponse<ImageJson>> {
  return call<ImageJson>(site, 'PATCH', `/v2/images/${id}`, {
    as: opts.as,
    body: JSON.stringify(ops),
    headers: { 'content-type': opts.type ?? PATCH_V21, ...(opts.accept === undefined ? {} : { accept: opts.accept }) },
  });
}

export interface ImageList {
  images: ImageJson[];
  first: string;
  next?: string;
  schema: string;
}

/** GET /v2/images?query (query without the leading '?'), expecting 200. */
export async function listImages(site: TestSite, query = '', as: Identity = ADMIN): Promise<ImageList> {
  const res = await call<ImageList>(site, 'GET', `/v2/images${query === '' ? '' : `?${query}`}`, { as });
  expectStatus(res, 200);
  return res.body;
}

/** Ids of a list answer, in order. */
export function ids(list: ImageList): string[] {
  return list.images.map((i) => i.id);
}

/**
 * Deterministic pseudo-random bytes, different per seed: AES-128-CTR of zeros under a key made of
 * the seed, so that no two seeds share a run of bytes (a delta transfer would find it).
 */
export function bytesOf(size: number, seed = 1): Buffer {
  const key = Buffer.alloc(16);
  key.writeUInt32BE(seed >>> 0, 12);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(size));
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
