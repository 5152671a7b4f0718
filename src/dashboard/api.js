// The dashboard's one way to the site's API: the caller's token (kept for this browser tab only),
// JSON in and out, and errors carrying Glance's message.

const TOKEN_KEY = 'outpost-token';

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** The window event api() raises when the site refuses the tab's token (401). */
export const SIGNED_OUT = 'outpost-signed-out';

export function logout() {
  sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** `method path` with an optional JSON body: the parsed answer (undefined for 204). */
export async function api(method, path, body) {
  const headers = { accept: 'application/json' };
  const t = token();
  if (t !== null) headers['x-auth-token'] = t;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  if (res.status === 401 && t !== null) {
    // The token is no longer good (expired, revoked): forget it and say so to the app.
    logout();
    dispatchEvent(new Event(SIGNED_OUT));
  }
  if (!res.ok) {
    let message = text;
    try {
      const parsed = JSON.parse(text);
      message = parsed.message ?? parsed.error?.message ?? text;
    } catch { /* not JSON */ }
    throw new ApiError(res.status, String(message).replace(/<br \/>[\s\S]*$/, '').trim());
  }
  return text === '' ? undefined : JSON.parse(text);
}

/** Logs in at the site's Keystone (/identity/v3): a project-scoped token, kept for this tab. */
export async function login({ user, password, project, domain }) {
  const res = await fetch('/identity/v3/auth/tokens', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({
      auth: {
        identity: { methods: ['password'], password: { user: { name: user, domain: { name: domain }, password } } },
        scope: { project: { name: project, domain: { name: domain } } },
      },
    }),
  });
  if (!res.ok) throw new ApiError(res.status, res.status === 401 ? 'The user name or password is wrong.' : `Login failed (${res.status}).`);
  sessionStorage.setItem(TOKEN_KEY, res.headers.get('x-subject-token'));
}

export function useToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

/** Bytes for people. */
export function size(bytes) {
  if (bytes === null || bytes === undefined) return '–';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

/** Seconds since an ISO time, for people. */
export function ago(iso, now = Date.now()) {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  return s < 120 ? `${s} s ago` : s < 7200 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
}

/**
 * A site's health from when central last heard from it: late after 1.5 heartbeat intervals
 * without one, cut off after 3 (docs/configuration.md heartbeat_seconds). Central is the judge.
 */
export function health(site, now = Date.now()) {
  if (site.parent === null) return 'ok';
  const interval = (site.heartbeat_seconds ?? 30) * 1000;
  const silent = now - Date.parse(site.last_contact);
  return silent > 3 * interval ? 'cut-off' : silent > 1.5 * interval ? 'late' : 'ok';
}

/** The ids of `root` and of every site below it (its subtree), from the sites' parents. */
export function subtree(sites, root) {
  const ids = new Set([root]);
  for (let grew = true; grew;) {
    grew = false;
    for (const s of sites) if (!ids.has(s.id) && ids.has(s.parent)) { ids.add(s.id); grew = true; }
  }
  return ids;
}

/**
 * Whether this site (an edge) is cut off from its parent now, by its own status: its change feed
 * failed at the last try, or it has not heard from its parent for a minute. The dashboard is then
 * read-only: what it shows comes from the site's replica, and changes need the parent.
 */
export function cutOff(status) {
  const r = status.replication;
  return status.role === 'edge' && r !== null && (r.last_error !== null || (r.seconds_since_contact ?? 0) > 60);
}
