import { STATUS_CODES } from 'node:http';

/**
 * Renders errors as Glance does: webob's HTTPException body, negotiated on `Accept`
 * (webob/exc.py WSGIHTTPException.generate_response) —
 *   text/html (also for "*\/*", what python-requests sends): the HTML page;
 *   application/json: {"message": "<msg><br /><br />\n\n\n", "code": "404 Not Found", "title": "Not Found"};
 *   anything else, or an empty Accept: text/plain.
 */
export interface RenderedError {
  contentType: string;
  body: string;
}

function quality(accept: string, type: string): number {
  const [major] = type.split('/');
  let best = 0;
  let bestSpecificity = -1;
  for (const part of accept.split(',')) {
    const [range, ...params] = part.trim().toLowerCase().split(';');
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    const value = q === undefined ? 1 : Number(q.slice(2));
    const specificity = range === type ? 2 : range === `${major}/*` ? 1 : range === '*/*' ? 0 : -1;
    if (specificity > bestSpecificity) {
      bestSpecificity = specificity;
      best = Number.isFinite(value) ? value : 0;
    }
  }
  return best;
}

function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function renderError(status: number, message: string, accept: string | undefined): RenderedError {
  const title = STATUS_CODES[status] ?? 'Error';
  const code = `${status} ${title}`;
  const html = accept === undefined || accept.trim() === '' ? 0 : quality(accept, 'text/html');
  const json = accept === undefined || accept.trim() === '' ? 0 : quality(accept, 'application/json');
  if (html > 0 && html >= json) {
    return {
      contentType: 'text/html; charset=UTF-8',
      body: `<html>\n <head>\n  <title>${code}</title>\n </head>\n <body>\n  <h1>${code}</h1>\n  ${escapeHtml(message)}<br /><br />\n\n\n\n </body>\n</html>`,
    };
  }
  if (json > 0) {
    return {
      contentType: 'application/json',
      body: JSON.stringify({ message: `${message}<br /><br />\n\n\n`, code, title }),
    };
  }
  return { contentType: 'text/plain; charset=UTF-8', body: `${code}\n\n${message}\n\n   ` };
}

/** Keystone's error body (keystone/server/flask/application.py): {"error": {"code", "message", "title"}}. */
export function renderKeystoneError(status: number, message: string): RenderedError {
  return { contentType: 'application/json', body: JSON.stringify({ error: { code: status, message, title: STATUS_CODES[status] ?? 'Error' } }) };
}
