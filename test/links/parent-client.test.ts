import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ParentClient } from '../../src/links/parent-client.ts';

/** A parent's address that answers each path as `answers` says: status, and whether it is the site's own answer. */
describe('ParentClient: answers from the site, and a gateway\'s in its stead', () => {
  let server: Server;
  let url: string;
  const answers: Record<string, { status: number; site: boolean; body?: string }> = {
    '/site-503': { status: 503, site: true, body: '{"code":503}' },
    '/gateway-502': { status: 502, site: false, body: '<html><body><h1>502 Bad Gateway</h1>\n<hr><center>nginx</center></body></html>' },
    '/gateway-504': { status: 504, site: false },
    '/plain-500': { status: 500, site: false, body: 'oops' },
  };
  const client = () => new ParentClient({ url, timeoutMs: 5000, reachability: { log: { info: () => undefined }, probeIntervalMs: 60_000 } });

  before(async () => {
    server = createServer((req, res) => {
      const a = answers[req.url ?? ''] ?? { status: 200, site: true };
      res.writeHead(a.status, a.site ? { 'x-openstack-request-id': 'req-1' } : { 'content-type': 'text/html' }).end(a.body ?? '');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('a 503 the site gave is an answer: returned as it is, and the site counts as reachable', async () => {
    const c = client();
    const res = await c.fetch('/site-503');
    assert.deepEqual([res.status, await res.text(), c.reachability!.reachable], [503, '{"code":503}', true]);
    c.close();
  });

  it('a 502 or 504 without the site\'s request id is the gateway saying the site is away: rejected, quoting it, and the site counts as away until it answers', async () => {
    const c = client();
    await assert.rejects(c.fetch('/gateway-502'), { message: 'a gateway answered for it with HTTP 502 (502 Bad Gateway nginx): none of its nodes answers' });
    assert.equal(c.reachability!.reachable, false);
    assert.match(c.reachability!.away!.why, /HTTP 502/);
    await assert.rejects(c.fetch('/gateway-504'), { message: 'a gateway answered for it with HTTP 504: none of its nodes answers' });
    assert.equal((await c.fetch('/')).status, 200);
    assert.equal(c.reachability!.reachable, true, 'the next answer from the site');
    c.close();
  });

  it('other errors are answers, whoever gave them', async () => {
    const c = client();
    assert.equal((await c.fetch('/plain-500')).status, 500);
    assert.equal(c.reachability!.reachable, true);
    c.close();
  });
});
