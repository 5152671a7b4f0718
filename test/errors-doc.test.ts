import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { it } from 'node:test';
import { ERROR_CLASSES } from '../src/core/errors.ts';
import { renderError } from '../src/api/error-responses.ts';
import { REPO_ROOT } from './helpers/site.ts';

it('docs/errors.md lists every error code with its HTTP status, and nothing else', async () => {
  const doc = await readFile(`${REPO_ROOT}/docs/errors.md`, 'utf8');
  const documented = new Map([...doc.matchAll(/^\| `([a-z_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1], Number(m[2])]));
  const actual = new Map(ERROR_CLASSES.map((C) => {
    const e = new (C as unknown as new (m: string) => { code: string; status: number })('x');
    return [e.code, e.status];
  }));
  assert.deepEqual([...documented].sort(), [...actual].sort());
});

it('renders errors in the shape the Accept header asks for, as webob does', () => {
  assert.deepEqual(JSON.parse(renderError(404, 'No image found with ID x', 'application/json').body), {
    message: 'No image found with ID x<br /><br />\n\n\n', code: '404 Not Found', title: 'Not Found',
  });
  const html = renderError(404, 'a <b>', '*/*');
  assert.equal(html.contentType, 'text/html; charset=UTF-8');
  assert.match(html.body, /<h1>404 Not Found<\/h1>\n  a &lt;b&gt;<br \/><br \/>/);
  assert.equal(renderError(409, 'x', 'text/html;q=0.5, application/json').contentType, 'application/json');
  assert.equal(renderError(400, 'x', '').contentType, 'text/plain; charset=UTF-8');
  assert.equal(renderError(400, 'x', 'text/plain').contentType, 'text/plain; charset=UTF-8');
});
