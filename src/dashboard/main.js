import { h, render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { api, ApiError, cutOff, login, logout, SIGNED_OUT, token, useToken } from './api.js';
import { FleetPage, ImagePage, ImagesPage, SitesPage, TransfersPage, usePoll } from './pages.js';

const html = htm.bind(h);

const PAGES = [
  { path: 'sites', title: 'Sites' },
  { path: 'fleet', title: 'Fleet' },
  { path: 'images', title: 'Images' },
  { path: 'transfers', title: 'Transfers' },
];

function route() {
  const parts = location.hash.replace(/^#\/?/, '').split('/');
  return { page: parts[0] || 'sites', id: parts[1] };
}

/** Keystone login (user and password, or a token); shown when the site answers 401. */
function Login({ onDone }) {
  const [error, setError] = useState(undefined);
  const submit = async (e) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    try {
      if (f.get('token')) useToken(String(f.get('token')));
      else await login({ user: f.get('user'), password: f.get('password'), project: f.get('project'), domain: f.get('domain') });
      onDone();
    } catch (err) {
      setError(err.message);
    }
  };
  return html`<main class="login"><h1>Outpost</h1>
    <form onSubmit=${submit} aria-describedby=${error ? 'login-error' : undefined}>
      <label>User <input name="user" autocomplete="username" /></label>
      <label>Password <input name="password" type="password" autocomplete="current-password" /></label>
      <label>Project <input name="project" value="admin" /></label>
      <label>Domain <input name="domain" value="Default" /></label>
      <p class="or">or</p>
      <label>Token <input name="token" autocomplete="off" /></label>
      ${error ? html`<p id="login-error" class="problem" role="alert">${error}</p>` : ''}
      <button type="submit">Log in</button>
    </form></main>`;
}

/**
 * The pages of a signed-in caller: this site's status, polled (an edge's cut-off shows at once, and
 * so does a site that stops answering), and the page asked for.
 */
function Pages({ where, onLogout }) {
  const { data: status, error } = usePoll(() => api('GET', '/outpost/v1/status'), 3000);
  if (status === undefined) {
    return error === undefined ? html`<p class="loading">Connecting…</p>`
      : html`<p class="problem" role="alert">This site does not answer: ${error.message}. Trying again…</p>`;
  }
  const here = { ...status, readOnly: cutOff(status) };
  const page = where.page === 'images' && where.id ? html`<${ImagePage} id=${where.id} here=${here} />`
    : where.page === 'fleet' ? html`<${FleetPage} here=${here} />`
      : where.page === 'images' ? html`<${ImagesPage} />`
        : where.page === 'transfers' ? html`<${TransfersPage} here=${here} />` : html`<${SitesPage} here=${here} />`;
  return html`
    <header>
      <h1>Outpost <span class="where">${status.site} (${status.role})</span></h1>
      <nav aria-label="Pages"><ul>${PAGES.map((p) => html`<li><a href=${`#/${p.path}`} aria-current=${where.page === p.path ? 'page' : undefined}>${p.title}</a></li>`)}</ul></nav>
      ${token() !== null ? html`<button type="button" class="logout" onClick=${onLogout}>Log out</button>` : ''}
    </header>
    ${error === undefined ? '' : html`<p class="problem" role="alert">This site does not answer: ${error.message}. What it said last is shown; trying again…</p>`}
    ${here.readOnly ? html`<p class="cut-off-banner" role="status">Cut off from its parent ${status.parent ?? ''}: this site keeps serving images from its replica and cache.
      The dashboard shows what the site knows and is read-only until the link is back.</p>` : ''}
    <main>${page}</main>`;
}

function App() {
  const [where, setWhere] = useState(route());
  const [signedIn, setSignedIn] = useState(undefined);
  const [needsLogin, setNeedsLogin] = useState(false);
  useEffect(() => {
    const onHash = () => setWhere(route());
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);
  const check = async () => {
    try {
      await api('GET', '/outpost/v1/sites');
      setNeedsLogin(false);
      setSignedIn(true);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) setNeedsLogin(true);
      else setSignedIn(true);
    }
  };
  useEffect(() => { check(); }, []);
  // A token that expired or was revoked (api() saw a 401 for it): back to the login form.
  useEffect(() => {
    const onSignedOut = () => setNeedsLogin(true);
    addEventListener(SIGNED_OUT, onSignedOut);
    return () => removeEventListener(SIGNED_OUT, onSignedOut);
  }, []);
  if (needsLogin) return html`<${Login} onDone=${check} />`;
  if (signedIn === undefined) return html`<p class="loading">Connecting…</p>`;
  return html`<${Pages} where=${where} onLogout=${() => { logout(); setNeedsLogin(true); }} />`;
}

render(html`<${App} />`, document.getElementById('app'));
