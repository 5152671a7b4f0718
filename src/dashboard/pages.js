import { h } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { ago, api, health, size } from './api.js';

const html = htm.bind(h);

/** Reads `load` now and every `ms` while the page shows (live updates by polling the API). */
export function usePoll(load, ms = 2000, deps = []) {
  const [state, setState] = useState({ data: undefined, error: undefined });
  const refresh = useCallback(async () => {
    try {
      setState({ data: await load(), error: undefined });
    } catch (error) {
      setState((s) => ({ data: s.data, error }));
    }
  }, deps);
  useEffect(() => {
    refresh();
    const timer = setInterval(refresh, ms);
    return () => clearInterval(timer);
  }, [refresh]);
  return { ...state, refresh };
}

function Problem({ error }) {
  if (error === undefined) return null;
  return html`<p class="problem" role="alert">${error.message}</p>`;
}

const HEALTH_TEXT = { ok: 'healthy', late: 'late', 'cut-off': 'cut off' };

/** Sites: the tree central → edges → far edges, with health, last contact, lag and what each holds. */
export function SitesPage() {
  const { data, error } = usePoll(async () => {
    const [{ sites }, summaries] = await Promise.all([
      api('GET', '/outpost/v1/sites'),
      // Central's numbers; an edge cut off from it shows the tree without them.
      api('GET', '/outpost/v1/inventory-summaries').catch(() => ({ summaries: [] })),
    ]);
    return { sites, holdings: new Map(summaries.summaries.map((x) => [x.site, x])) };
  });
  if (data === undefined) return html`<${Problem} error=${error} /><p class="loading">Loading sites…</p>`;
  const children = new Map();
  for (const s of data.sites) children.set(s.parent, [...(children.get(s.parent) ?? []), s]);
  const rows = [];
  const walk = (parent, depth) => {
    for (const s of (children.get(parent) ?? []).sort((a, b) => a.id.localeCompare(b.id))) {
      rows.push({ site: s, depth });
      walk(s.id, depth + 1);
    }
  };
  walk(null, 0);
  const now = Date.now();
  const counts = { ok: 0, late: 0, 'cut-off': 0 };
  for (const s of data.sites) counts[health(s, now)]++;
  return html`
    <${Problem} error=${error} />
    <p class="summary">${data.sites.length} sites: ${counts.ok} healthy, ${counts.late} late, <strong>${counts['cut-off']} cut off</strong></p>
    <div class="scroll"><table class="sites">
      <caption>The region's sites, as central last heard from them</caption>
      <thead><tr><th scope="col">Site</th><th scope="col">Health</th><th scope="col">Last contact</th><th scope="col">Feed lag</th>
        <th scope="col">Cached</th><th scope="col">Stored</th><th scope="col">Labels</th><th scope="col">Stores</th></tr></thead>
      <tbody>${rows.map(({ site, depth }) => {
        const state = health(site, now);
        const held = data.holdings.get(site.id);
        return html`<tr class=${`health-${state}`} data-site=${site.id}>
          <th scope="row" style=${`padding-left:${0.5 + depth * 1.5}rem`}>${depth > 0 ? '└ ' : ''}${site.id}</th>
          <td><span class=${`badge ${state}`}>${HEALTH_TEXT[state]}</span></td>
          <td>${site.parent === null ? 'central' : ago(site.last_contact, now)}</td>
          <td>${site.lag_changes ?? '–'}</td>
          <td>${held === undefined ? '–' : `${held.cached.copies} (${size(held.cached.bytes)})`}</td>
          <td>${held === undefined ? '–' : `${held.stored.copies} (${size(held.stored.bytes)})`}</td>
          <td>${Object.entries(site.labels).map(([k, v]) => html`<span class="label">${k}=${v}</span> `)}</td>
          <td>${site.stores.join(', ')}</td>
        </tr>`;
      })}</tbody>
    </table></div>`;
}

const STATE_TEXT = { held: 'held', transferring: 'transferring', pending: 'pending', failed: 'failed' };

/** Fleet: images × sites from the fleet view, with convergence per image and per policy. */
export function FleetPage() {
  const [filter, setFilter] = useState('');
  const { data, error } = usePoll(async () => {
    const [fleet, sites] = await Promise.all([api('GET', '/outpost/v1/fleet?limit=1000'), api('GET', '/outpost/v1/sites')]);
    return { fleet, sites: sites.sites };
  });
  if (data === undefined) return html`<${Problem} error=${error} /><p class="loading">Loading the fleet…</p>`;
  const wanted = filter.trim().toLowerCase();
  const images = new Map();
  for (const e of data.fleet.fleet) {
    if (wanted !== '' && !`${e.image_name ?? ''} ${e.image_id} ${(e.policies ?? []).join(' ')}`.toLowerCase().includes(wanted)) continue;
    const row = images.get(e.image_id) ?? { id: e.image_id, name: e.image_name, cells: new Map() };
    row.cells.set(e.site, e);
    images.set(e.image_id, row);
  }
  const siteIds = data.sites.map((s) => s.id).sort();
  const convergence = new Map(data.fleet.convergence.images.map((c) => [c.id, c]));
  return html`
    <${Problem} error=${error} />
    <label class="filter">Filter by image, id or policy <input type="search" value=${filter} onInput=${(e) => setFilter(e.currentTarget.value)} /></label>
    <div class="scroll"><table class="fleet">
      <caption>Where each copy the placement policies want stands</caption>
      <thead><tr><th scope="col">Image</th><th scope="col">Converged</th>${siteIds.map((s) => html`<th scope="col">${s}</th>`)}</tr></thead>
      <tbody>${[...images.values()].map((row) => html`<tr data-image=${row.id}>
        <th scope="row"><a href=${`#/images/${row.id}`}>${row.name ?? row.id}</a></th>
        <td>${convergence.get(row.id)?.percent ?? 0}%</td>
        ${siteIds.map((site) => {
          const e = row.cells.get(site);
          if (e === undefined) return html`<td class="cell none" data-site=${site}>·</td>`;
          const pct = e.bytes_total === 0 ? 100 : Math.floor((100 * e.bytes_done) / e.bytes_total);
          return html`<td class=${`cell ${e.state}`} data-site=${site} title=${e.reason ?? ''}>
            ${STATE_TEXT[e.state]}${e.state === 'transferring' ? html` <progress max="100" value=${pct} aria-label=${`${pct}%`}></progress>` : ''}
            ${e.state === 'failed' && e.reason ? html`<small>${e.reason}</small>` : ''}</td>`;
        })}
      </tr>`)}</tbody>
    </table></div>
    ${images.size === 0 ? html`<p>No copies wanted${wanted === '' ? ' yet: create a placement policy (outpost policy create).' : ' match the filter.'}</p>` : ''}
    <h2>Policies</h2>
    <ul class="convergence">${data.fleet.convergence.policies.map((c) => html`<li>${c.id}: ${c.held}/${c.desired} held (${c.percent}%)</li>`)}</ul>`;
}

/** Images: the catalog, newest first, each linking to its page. */
export function ImagesPage() {
  const { data, error } = usePoll(() => api('GET', '/v2/images?limit=100'));
  if (data === undefined) return html`<${Problem} error=${error} /><p class="loading">Loading images…</p>`;
  return html`<${Problem} error=${error} />
    <div class="scroll"><table>
      <caption>Images</caption>
      <thead><tr><th scope="col">Name</th><th scope="col">Status</th><th scope="col">Size</th><th scope="col">Stores</th><th scope="col">Updated</th></tr></thead>
      <tbody>${data.images.map((i) => html`<tr><th scope="row"><a href=${`#/images/${i.id}`}>${i.name ?? i.id}</a></th><td>${i.status}</td>
        <td>${size(i.size)}</td><td>${i.stores ?? ''}</td><td>${ago(i.updated_at)}</td></tr>`)}</tbody>
    </table></div>`;
}

/** Image: its properties, where it is, its transfers and tasks; pin at a site, copy to sites, remove from a store. */
export function ImagePage({ id }) {
  const [site, setSite] = useState('');
  const [message, setMessage] = useState(undefined);
  const { data, error, refresh } = usePoll(async () => {
    const [image, sites, fleet, tasks] = await Promise.all([
      api('GET', `/v2/images/${id}`),
      api('GET', '/outpost/v1/sites'),
      api('GET', `/outpost/v1/fleet?image=${id}`).catch(() => ({ fleet: [] })),
      api('GET', `/v2/images/${id}/tasks`).catch(() => ({ tasks: [] })),
    ]);
    const inventories = await Promise.all(sites.sites.map((s) => api('GET', `/outpost/v1/sites/${encodeURIComponent(s.id)}/inventory`).catch(() => null)));
    const held = inventories.filter((i) => i !== null).map((i) => ({ site: i.site, copy: i.images.find((c) => c.image_id === id) })).filter((x) => x.copy !== undefined);
    return { image, sites: sites.sites, fleet: fleet.fleet, tasks: tasks.tasks, held };
  }, 2000, [id]);
  if (data === undefined) return html`<${Problem} error=${error} /><p class="loading">Loading the image…</p>`;
  const { image } = data;
  const act = async (what, fn) => {
    try {
      await fn();
      setMessage({ ok: true, text: what });
      refresh();
    } catch (e) {
      setMessage({ ok: false, text: `${what}: ${e.message}` });
    }
  };
  const chosen = site || data.sites[0]?.id;
  const base = ['id', 'name', 'status', 'size', 'disk_format', 'container_format', 'visibility', 'owner', 'os_hash_value', 'stores', 'created_at', 'updated_at'];
  return html`
    <${Problem} error=${error} />
    <h2>${image.name ?? image.id}</h2>
    ${message === undefined ? '' : html`<p class=${message.ok ? 'done' : 'problem'} role="status">${message.text}</p>`}
    <section aria-labelledby="where"><h3 id="where">Where it is</h3>
      <table><thead><tr><th scope="col">Site</th><th scope="col">Copy</th><th scope="col">Since</th><th scope="col">Hits</th></tr></thead>
      <tbody>${data.held.map((x) => html`<tr data-held=${x.site}><th scope="row">${x.site}</th><td>${x.copy.state} (${x.copy.store})</td><td>${ago(x.copy.since)}</td><td>${x.copy.hits ?? '–'}</td></tr>`)}</tbody></table>
    </section>
    <section aria-labelledby="actions"><h3 id="actions">Actions</h3>
      <form class="actions" onSubmit=${(e) => e.preventDefault()}>
        <label>Site <select value=${chosen} onChange=${(e) => setSite(e.currentTarget.value)}>
          ${data.sites.map((s) => html`<option value=${s.id}>${s.id}</option>`)}</select></label>
        <button type="button" onClick=${() => act(`pinned at ${chosen}`, () => api('PUT', `/outpost/v1/sites/${encodeURIComponent(chosen)}/cache/${id}/pin`, {}))}>Pin at site</button>
        <button type="button" onClick=${() => act(`unpinned at ${chosen}`, () => api('DELETE', `/outpost/v1/sites/${encodeURIComponent(chosen)}/cache/${id}/pin`))}>Unpin</button>
        <button type="button" onClick=${() => act(`copy to ${chosen} started`, () => api('POST', `/v2/images/${id}/import`, { method: { name: 'copy-image' }, stores: data.sites.find((s) => s.id === chosen)?.stores.slice(0, 1) ?? [] }))}>Copy to site's store</button>
        <button type="button" onClick=${() => act(`removed from ${chosen}`, async () => {
          const store = data.sites.find((s) => s.id === chosen)?.stores.find((s) => (image.stores ?? '').split(',').includes(s));
          if (store === undefined) throw new Error(`${chosen} holds no copy in its stores`);
          await api('DELETE', `/v2/stores/${encodeURIComponent(store)}/${id}`);
        })}>Remove from site's store</button>
      </form>
    </section>
    <section aria-labelledby="placement"><h3 id="placement">Placement</h3>
      <ul>${data.fleet.map((e) => html`<li>${e.site}: ${e.state}${e.state === 'transferring' ? ` ${size(e.bytes_done)} of ${size(e.bytes_total)}` : ''}${e.reason ? ` (${e.reason})` : ''}</li>`)}</ul>
      ${data.fleet.length === 0 ? html`<p>No placement policy wants this image.</p>` : ''}
    </section>
    <section aria-labelledby="props"><h3 id="props">Properties</h3>
      <dl class="props">${[...base, ...Object.keys(image).filter((k) => !base.includes(k) && !['self', 'file', 'schema', 'tags', 'locations'].includes(k)).sort()].filter((k) => image[k] !== undefined)
        .map((k) => html`<dt>${k}</dt><dd>${k === 'size' ? size(image[k]) : String(image[k] ?? '')}</dd>`)}
        <dt>tags</dt><dd>${(image.tags ?? []).join(', ')}</dd></dl>
    </section>
    <section aria-labelledby="tasks"><h3 id="tasks">Tasks</h3>
      <ul>${data.tasks.map((t) => html`<li>${t.type} ${t.status} ${ago(t.updated_at)}${t.message ? `: ${t.message}` : ''}</li>`)}</ul>
    </section>`;
}

/** Transfers: what is moving to this site, with rates, and the last ended ones with their errors. */
export function TransfersPage() {
  const { data, error } = usePoll(() => api('GET', '/outpost/v1/transfers'));
  if (data === undefined) return html`<${Problem} error=${error} /><p class="loading">Loading transfers…</p>`;
  return html`<${Problem} error=${error} />
    <div class="scroll"><table>
      <caption>Transfers of image bytes to this site</caption>
      <thead><tr><th scope="col">Image</th><th scope="col">State</th><th scope="col">Progress</th><th scope="col">Reused</th><th scope="col">Fetched</th><th scope="col">Rate</th><th scope="col">Started</th></tr></thead>
      <tbody>${data.transfers.map((t) => {
        const done = t.reused + t.zeros + t.fetched;
        const pct = t.planned === 0 ? 100 : Math.min(100, Math.floor((100 * done) / t.planned));
        return html`<tr><th scope="row"><a href=${`#/images/${t.image_id}`}>${t.image_id}</a></th>
          <td>${t.state}${t.error ? html` <small class="problem">${t.error}</small>` : ''}</td>
          <td><progress max="100" value=${pct} aria-label=${`${pct}%`}></progress> ${pct}%</td>
          <td>${size(t.reused)}</td><td>${size(t.fetched)}</td><td>${size(t.bytes_per_second)}/s</td><td>${ago(t.started_at)}</td></tr>`;
      })}</tbody>
    </table></div>
    ${data.transfers.length === 0 ? html`<p>No transfers yet.</p>` : ''}`;
}
