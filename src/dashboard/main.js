import { h, render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { api, ApiError, login, logout, token, useToken } from './api.js';
import { FleetPage, ImagePage, ImagesPage, SitesPage, TransfersPage } from './pages.js';

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

function App() {
  const [where, setWhere] = useState(route());
  const [status, setStatus] = useState(undefined);
  const [needsLogin, setNeedsLogin] = useState(false);
  useEffect(() => {
    const onHash = () => setWhere(route());
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);
  const check = async () => {
    try {
      setStatus(await api('GET', '/outpost/v1/status'));
      await api('GET', '/outpost/v1/sites');
      setNeedsLogin(false);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) setNeedsLogin(true);
    }
  };
  useEffect(() => { check(); }, []);
  if (needsLogin) return html`<${Login} onDone=${check} />`;
  if (status === undefined) return html`<p class="loading">Connecting…</p>`;
  const page = where.page === 'images' && where.id ? html`<${ImagePage} id=${where.id} />`
    : where.page === 'fleet' ? html`<${FleetPage} />`
      : where.page === 'images' ? html`<${ImagesPage} />`
        : where.page === 'transfers' ? html`<${TransfersPage} />` : html`<${SitesPage} />`;
  return html`
    <header>
      <h1>Outpost <span class="where">${status.site} (${status.role})</span></h1>
      <nav aria-label="Pages"><ul>${PAGES.map((p) => html`<li><a href=${`#/${p.path}`} aria-current=${where.page === p.path ? 'page' : undefined}>${p.title}</a></li>`)}</ul></nav>
      ${token() !== null ? html`<button type="button" class="logout" onClick=${() => { logout(); setNeedsLogin(true); }}>Log out</button>` : ''}
    </header>
    <main>${page}</main>`;
}

render(html`<${App} />`, document.getElementById('app'));
