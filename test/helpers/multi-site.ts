import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { FaultProxy } from '../../test-support/fault-proxy.ts';
import { sleep, type ImageJson } from './glance-client.ts';
import { spawnServe, type ServeProcess, type TestSite } from './site.ts';

/** SIGTERM, then SIGKILL if the process has not exited within 10 s; resolves once it is gone. */
export async function stopProcess(p: ServeProcess): Promise<void> {
  await p.stop('SIGTERM', 10_000);
}

/** A site served by another process, for the glance-client helpers. */
export function siteAt(url: string): TestSite {
  return { url, dataDir: '', request: (path, init) => fetch(`${url}${path}`, init), close: async () => undefined };
}

export function loopbackTarget(url: string): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port) };
}

/** Polls `check` every 20 ms until it is true, failing after `timeoutMs`. */
export async function eventually(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (performance.now() > deadline) assert.fail(`not within ${timeoutMs} ms: ${what}`);
    await sleep(20);
  }
}

/** What a client downloading an image saw: status, bytes received, their sha512, and whether the body broke off. */
export interface Downloaded {
  status: number;
  length: number;
  contentLength: number | null;
  sha512: string;
  broken: boolean;
}

/** The download is the whole image: 200, not broken off, its size and sha512. */
export function assertWhole(d: Downloaded, image: ImageJson): void {
  assert.equal(d.status, 200);
  assert.equal(d.broken, false);
  assert.equal(d.length, image.size);
  assert.equal(d.sha512, image.os_hash_value);
}

/** GET /v2/images/{id}/file, hashing the body as it streams (no copy of it is kept). */
export async function download(url: string, id: string, headers: Record<string, string> = {}): Promise<Downloaded> {
  const res = await fetch(`${url}/v2/images/${id}/file`, { headers });
  const hash = createHash('sha512');
  let length = 0;
  let broken = false;
  try {
    for await (const chunk of res.body ?? []) {
      hash.update(chunk);
      length += chunk.length;
    }
  } catch {
    broken = true;
  }
  const declared = res.headers.get('content-length');
  return { status: res.status, length, contentLength: declared === null ? null : Number(declared), sha512: hash.digest('hex'), broken };
}

/**
 * Three sites, each its own `outpost serve` process on 127.0.0.1:0 with its own data directory
 * under `work`, linked through fault-injecting proxies:
 *
 *   central ← wanA (FaultProxy) ← edge-1 ← wanB (FaultProxy) ← far-1
 *
 * Every child's --parent is the proxy in front of its parent, so tests cut, slow down and heal
 * the links at runtime without restarting anything.
 */
export interface SiteChain {
  central: TestSite;
  edge: TestSite;
  far: TestSite;
  /** edge → central. */
  wanA: FaultProxy;
  /** far edge → edge. */
  wanB: FaultProxy;
  /** What a site's process printed so far (its JSON log and its lines for the operator). */
  output(site: 'central' | 'edge' | 'far'): string;
  close(): Promise<void>;
}

export async function startSiteChain(work: string, childEnv: Record<string, string>): Promise<SiteChain> {
  const procs: ServeProcess[] = [];
  const proxies: FaultProxy[] = [];
  const close = async () => {
    // Children first, so their followers do not log a vanished parent.
    for (const p of [...procs].reverse()) await stopProcess(p);
    for (const p of proxies) await p.close();
  };
  try {
    const c = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'central'), '--role', 'central'], { OUTPOST_STORAGE_SYNC: 'false' });
    procs.push(c);
    const wanA = await FaultProxy.start({ target: loopbackTarget(c.url) });
    proxies.push(wanA);
    const e = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'edge'), '--role', 'edge', '--site', 'edge-1', '--parent', wanA.url], childEnv);
    procs.push(e);
    const wanB = await FaultProxy.start({ target: loopbackTarget(e.url) });
    proxies.push(wanB);
    const f = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'far'), '--role', 'edge', '--site', 'far-1', '--parent', wanB.url], childEnv);
    procs.push(f);
    const bySite = { central: c, edge: e, far: f };
    return { central: siteAt(c.url), edge: siteAt(e.url), far: siteAt(f.url), wanA, wanB, output: (site) => bySite[site].output(), close };
  } catch (error) {
    await close();
    throw error;
  }
}
