import { h } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import htm from 'htm';
import { ago, api, ApiError, health, size, subtree } from './api.js';

const html = htm.bind(h);

/**
 * Reads `load` now and every `ms` while the page shows (live updates by polling the API), again
 * whenever `deps` change; an answer to a read made before they changed is dropped.
 */
export function usePoll(load, ms = 2000, deps = []) {
  const [state, setState] = useState({ data: undefined, error: undefined });
  const current = useRef(async () => {});
  useEffect(() => {
    let live = true;
    let reading = false;
    // One read at a time: a slow site is not asked again until it has answered.
    const read = async () => {
      if (reading) return;
      reading = true;
      try {
        const data = await load();
        if (live) setState({ data, error: undefined });
      } catch (error) {
        if (live) setState((s) => ({ data: s.data, error }));
      } finally {
        reading = false;
      }
    };
    current.current = read;
    read();
    const timer = setInterval(read, ms);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, deps);
  return { ...state, refresh: () => current.current() };
}

/** `value`, once it has stayed the same for `ms` (a filter applied as the operator stops typing). */
function useSettled(value, ms = 400) {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setSettled(value), ms);
    return () => clearTimeout(timer);
  }, [value]);
  return settled;
}

function Problem({ error }) {
  if (error === undefined) return null;
  return html`<p class="problem" role="alert">${error.message}</p>`;
}

const HEALTH_TEXT = { ok: 'healthy', late: 'late', 'cut-off': 'cut off', unknown: 'not known' };

/** When an edge last heard from its parent, by its own status. */
function parentContact(here) {
  const seconds = here.replication?.seconds_since_contact;
  return seconds === null || seconds === undefined ? 'never' : `${Math.round(seconds)} s ago (its parent)`;
}

/** A site's cache: its copies, their bytes, and how much of its budget they use (≥ 90% stands out). */
function cacheUse(held) {
  const text = `${held.cached.copies} (${size(held.cached.bytes)}`;
  if (!held.cache_budget_bytes) return `${text})`;
  const pct = Math.round((100 * held.cached.bytes) / held.cache_budget_bytes);
  return html`${text} of ${size(held.cache_budget_bytes)}, <span class=${pct >= 90 ? 'problem' : ''}>${pct}%</span>)`;
}

/** What a site's audits and drift checks repaired, in words ('' for nothing). */
function repairs(summary) {
  if (summary === undefined) return '';
  const parts = [];
  if (summary.audit?.repairs > 0) parts.push(`replica repaired ${summary.audit.repairs}× (${(summary.audit.last_mismatch ?? []).join(', ') || 'last audit clean'})`);
  if (summary.drift?.lost > 0) parts.push(`${summary.drift.lost} lost copies fetched again`);
  if (summary.drift?.extra > 0) parts.push(`${summary.drift.extra} stray copies deleted`);
  return parts.join('; ');
}

/**
 * Sites: the tree central → edges → far edges, with health, last contact, lag, what each holds,
 * its transfers and repairs. At an edge: the edge and its subtree (the sites it serves).
 */
export function SitesPage({ here }) {
  const { data, error } = usePoll(async () => {
    const [{ sites }, summaries] = await Promise.all([
      api('GET', '/outpost/v1/sites'),
      // Central's numbers; an edge cut off from it shows the tree without them.
      api('GET', '/outpost/v1/inventory-summaries').catch(() => ({ summaries: [] })),
    ]);
    return { sites, holdings: new Map(summaries.summaries.map((x) => [x.site, x])) };
  });
  if (data === undefined) return html`<${Problem} error=${error} /><p class="loading">Loading sites…</p>`;
  const scope = subtree(data.sites, here.site);
  const shown = here.role === 'central' ? data.sites : data.sites.filter((s) => scope.has(s.id));
  const children = new Map();
  for (const s of shown) {
    const parent = here.role === 'central' || s.id !== here.site ? s.parent : null;
    children.set(parent, [...(children.get(parent) ?? []), s]);
  }
  const rows = [];
  const walk = (parent, depth) => {
    for (const s of (children.get(parent) ?? []).sort((a, b) => a.id.localeCompare(b.id))) {
      rows.push({ site: s, depth });
      walk(s.id, depth + 1);
    }
  };
  walk(null, 0);
  const now = Date.now();
  // Cut off, an edge knows its own link; how the others are is central's to know (not while away).
  const stateOf = (site) => (!here.readOnly ? health(site, now) : site.id === here.site ? 'cut-off' : 'unknown');
  const counts = { ok: 0, late: 0, 'cut-off': 0, unknown: 0 };
  for (const s of shown) counts[stateOf(s)]++;
  return html`
    <${Problem} error=${error} />
    <p class="summary">${shown.length} sites: ${counts.ok} healthy, ${counts.late} late, <strong>${counts['cut-off']} cut off</strong>${counts.unknown > 0 ? `, ${counts.unknown} not known while cut off` : ''}</p>
    <div class="scroll"><table class="sites">
      <caption>${here.role === 'central' ? 'The region\'s sites, as central last heard from them' : `Site ${here.site} and the sites below it, as central last heard from them`}</caption>
      <thead><tr><th scope="col">Site</th><th scope="col">Health</th><th scope="col">Last contact</th><th scope="col">Feed lag</th>
        <th scope="col">Cache (of budget)</th><th scope="col">Stored</th><th scope="col">Link</th><th scope="col">Transfers</th><th scope="col">Repairs</th><th scope="col">Labels</th><th scope="col">Stores</th></tr></thead>
      <tbody>${rows.map(({ site, depth }) => {
        const state = stateOf(site);
        const held = data.holdings.get(site.id);
        return html`<tr class=${`health-${state}`} data-site=${site.id}>
          <th scope="row" style=${`padding-left:${0.5 + depth * 1.5}rem`}>${depth > 0 ? '└ ' : ''}${site.id}</th>
          <td><span class=${`badge ${state}`}>${HEALTH_TEXT[state]}</span></td>
          <td>${site.parent === null ? 'central' : site.id === here.site ? parentContact(here) : ago(site.last_contact, now)}</td>
          <td>${site.lag_changes ?? '–'}</td>
          <td>${held === undefined ? '–' : cacheUse(held)}</td>
          <td>${held === undefined ? '–' : `${held.stored.copies} (${size(held.stored.bytes)})`}</td>
          <td>${held?.link_bytes_per_second == null || site.parent === null ? '–' : `${size(held.link_bytes_per_second)}/s`}</td>
          <td>${held === undefined ? '–' : html`${held.transfers.running} running${held.transfers.failed > 0 ? html`, <span class="problem">${held.transfers.failed} failed</span>` : ''}`}</td>
          <td>${repairs(held)}</td>
          <td>${Object.entries(site.labels).map(([k, v]) => html`<span class="label">${k}=${v}</span> `)}</td>
          <td>${site.stores.join(', ')}</td>
        </tr>`;
      })}</tbody>
    </table></div>`;
}

const STATE_TEXT = { held: 'held', transferring: 'transferring', pending: 'pending', failed: 'failed' };

/**
 * Fleet: images × sites from the fleet view, with convergence per image and per policy; filtered
 * by image (name, id), tag, policy and site labels. At an edge: the sites of its subtree.
 */
export function FleetPage({ here }) {
  const [text, setText] = useState('');
  // Images written at this site (and below) while cut off, not yet at central: this site's own list.
  const { data: unsynced } = usePoll(() => api('GET', '/v2/images?os_outpost_pending_sync=true&limit=100'), 3000);
  const [tagText, setTag] = useState('');
  const [policy, setPolicy] = useState('');
  const [labelsText, setLabels] = useState('');
  const tag = useSettled(tagText);
  const labels = useSettled(labelsText);
  const { data, error } = usePoll(async () => {
    const q = new URLSearchParams({ limit: '1000' });
    if (tag.trim() !== '') q.set('tag', tag.trim());
    if (policy !== '') q.set('policy', policy);
    if (labels.trim() !== '') q.set('site_labels', labels.trim());
    const [fleet, sites, policies] = await Promise.all([api('GET', `/outpost/v1/fleet?${q}`), api('GET', '/outpost/v1/sites'), api('GET', '/outpost/v1/policies')]);
    return { fleet, sites: sites.sites, policies: policies.policies };
  }, 2000, [tag, policy, labels]);
  const filters = html`<form class="filters" role="search" onSubmit=${(e) => e.preventDefault()}>
    <label>Image <input type="search" value=${text} placeholder="name or id" onInput=${(e) => setText(e.currentTarget.value)} /></label>
    <label>Tag <input type="search" value=${tagText} onInput=${(e) => setTag(e.currentTarget.value)} /></label>
    <label>Policy <select value=${policy} onChange=${(e) => setPolicy(e.currentTarget.value)}>
      <option value="">any</option>${(data?.policies ?? []).map((p) => html`<option value=${p.name}>${p.name}</option>`)}
      <option value="outpost_placement">outpost_placement</option><option value="copy-image">copy-image</option></select></label>
    <label>Site labels <input type="search" value=${labelsText} placeholder="region=eu,tier!=far" onInput=${(e) => setLabels(e.currentTarget.value)} /></label>
  </form>`;
  const pending = unsynced === undefined || unsynced.images.length === 0 ? '' : html`<section aria-labelledby="unsynced"><h2 id="unsynced">Not yet at central</h2>
    <ul class="unsynced">${unsynced.images.map((i) => html`<li data-unsynced=${i.id}><a href=${`#/images/${i.id}`}>${i.name ?? i.id}</a>: written at ${i.os_outpost_origin_site} while it was cut off; sent to central when the link is back</li>`)}</ul></section>`;
  if (data === undefined) return html`${filters}${pending}<${Problem} error=${error} /><p class="loading">Loading the fleet…</p>`;
  const wanted = text.trim().toLowerCase();
  const scope = here.role === 'central' ? undefined : subtree(data.sites, here.site);
  const images = new Map();
  for (const e of data.fleet.fleet) {
    if (scope !== undefined && !scope.has(e.site)) continue;
    if (wanted !== '' && !`${e.image_name ?? ''} ${e.image_id}`.toLowerCase().includes(wanted)) continue;
    const row = images.get(e.image_id) ?? { id: e.image_id, name: e.image_name, cells: new Map() };
    row.cells.set(e.site, e);
    images.set(e.image_id, row);
  }
  // The sites the filters leave: those with a wanted copy (all of them, unfiltered).
  const filtered = tag.trim() !== '' || policy !== '' || labels.trim() !== '' || wanted !== '';
  const withCopies = new Set([...images.values()].flatMap((r) => [...r.cells.keys()]));
  const siteIds = data.sites.map((s) => s.id).filter((id) => (scope === undefined || scope.has(id)) && (!filtered || withCopies.has(id))).sort();
  const convergence = new Map(data.fleet.convergence.images.map((c) => [c.id, c]));
  return html`
    ${filters}
    ${pending}
    <${Problem} error=${error} />
    <div class="scroll"><table class="fleet">
      <caption>Where each copy the placement policies want stands${scope === undefined ? '' : ` at ${here.site} and below`}</caption>
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
    ${images.size === 0 ? html`<p>No copies wanted${filtered ? ' match the filters.' : ' yet: create a placement policy (outpost policy create).'}</p>` : ''}
    <h2>Policies</h2>
    <ul class="convergence">${data.fleet.convergence.policies.map((c) => html`<li>${c.id}: ${c.held}/${c.desired} held (${c.percent}%)</li>`)}</ul>`;
}

/**
 * What an image says of its reconciliation with central (docs/operations.md "Writes while cut
 * off"): written at a cut-off edge and not yet at central, or an edge's writes that lost to central's.
 */
function SyncBadges({ image }) {
  return html`${image.os_outpost_pending_sync === 'true' ? html`<span class="badge late" title=${`written at ${image.os_outpost_origin_site} while it was cut off`}>not yet at central</span> ` : ''}${
    image.os_outpost_conflict ? html`<span class="badge cut-off" title=${image.os_outpost_conflict}>conflict</span>` : ''}`;
}

/** Images: the catalog, newest first, each linking to its page. */
export function ImagesPage() {
  const { data, error } = usePoll(() => api('GET', '/v2/images?limit=100'));
  if (data === undefined) return html`<${Problem} error=${error} /><p class="loading">Loading images…</p>`;
  return html`<${Problem} error=${error} />
    <div class="scroll"><table>
      <caption>Images</caption>
      <thead><tr><th scope="col">Name</th><th scope="col">Status</th><th scope="col">Size</th><th scope="col">Stores</th><th scope="col">Updated</th></tr></thead>
      <tbody>${data.images.map((i) => html`<tr data-image=${i.id}><th scope="row"><a href=${`#/images/${i.id}`}>${i.name ?? i.id}</a> <${SyncBadges} image=${i} /></th><td>${i.status}</td>
        <td>${size(i.size)}</td><td>${i.stores ?? ''}</td><td>${ago(i.updated_at)}</td></tr>`)}</tbody>
    </table></div>`;
}

/** Image: its properties, where it is, its transfers and tasks; pin at a site, copy to sites, remove from a store. */
export function ImagePage({ id, here }) {
  const [site, setSite] = useState('');
  const [message, setMessage] = useState(undefined);
  const { data, error, refresh } = usePoll(async () => {
    const [image, sites, fleet, tasks, transfers] = await Promise.all([
      api('GET', `/v2/images/${id}`),
      api('GET', '/outpost/v1/sites'),
      // Central's views (an edge asks it); an edge cut off from central knows only its own transfers.
      api('GET', `/outpost/v1/fleet?image=${id}`).catch(() => ({ fleet: null })),
      api('GET', `/v2/images/${id}/tasks`).catch(() => ({ tasks: [] })),
      // A project member may read neither list (admin only): the image page shows no transfers then.
      api('GET', `/outpost/v1/fleet/transfers?image=${id}`).catch(async () => ({
        transfers: (await api('GET', '/outpost/v1/transfers')).transfers.filter((t) => t.image_id === id).map((t) => ({ ...t, site: here.site })),
      })).catch(() => ({ transfers: [] })),
    ]);
    const inventories = await Promise.all(sites.sites.map((s) => api('GET', `/outpost/v1/sites/${encodeURIComponent(s.id)}/inventory`).catch(() => null)));
    const held = inventories.filter((i) => i !== null).map((i) => ({ site: i.site, copy: i.images.find((c) => c.image_id === id) })).filter((x) => x.copy !== undefined);
    const scope = here.role === 'central' ? undefined : subtree(sites.sites, here.site);
    return { image, sites: sites.sites.filter((s) => scope === undefined || scope.has(s.id)), fleet: fleet.fleet, tasks: tasks.tasks, held, transfers: transfers.transfers };
  }, 2000, [id, here.site, here.role]);
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
    <h2>${image.name ?? image.id} <${SyncBadges} image=${image} /></h2>
    ${image.os_outpost_conflict ? html`<p class="problem">${image.os_outpost_conflict}</p>` : ''}
    ${message === undefined ? '' : html`<p class=${message.ok ? 'done' : 'problem'} role="status">${message.text}</p>`}
    <section aria-labelledby="where"><h3 id="where">Where it is</h3>
      <table><thead><tr><th scope="col">Site</th><th scope="col">Copy</th><th scope="col">Since</th><th scope="col">Hits</th></tr></thead>
      <tbody>${data.held.map((x) => html`<tr data-held=${x.site}><th scope="row">${x.site}</th><td>${x.copy.state} (${x.copy.store})</td><td>${ago(x.copy.since)}</td><td>${x.copy.hits ?? '–'}</td></tr>`)}</tbody></table>
    </section>
    <section aria-labelledby="moved"><h3 id="moved">Transfers</h3>
      <div class="scroll"><table class="image-transfers">
        <caption>Its bytes moved to each site: fetched over the site's link, or reused from what the site held (delta)</caption>
        <thead><tr><th scope="col">Site</th><th scope="col">State</th><th scope="col">Fetched</th><th scope="col">Reused</th><th scope="col">Zeros</th><th scope="col">Resumes</th><th scope="col">Rate</th><th scope="col">Ended</th></tr></thead>
        <tbody>${data.transfers.map((t) => html`<tr data-transfer=${t.site}><th scope="row">${t.site}</th>
          <td>${t.state}${t.error ? html` <small class="problem">${t.error}</small>` : ''}</td><td>${size(t.fetched)}</td><td>${size(t.reused)}</td>
          <td>${size(t.zeros)}</td><td>${t.resumes}</td><td>${size(t.bytes_per_second)}/s</td><td>${t.ended_at === null ? 'running' : ago(t.ended_at)}</td></tr>`)}</tbody>
      </table></div>
      ${data.transfers.length === 0 ? html`<p>No site has reported a transfer of this image lately.</p>` : ''}
    </section>
    <section aria-labelledby="actions"><h3 id="actions">Actions</h3>
      ${here.readOnly ? html`<p>Not while this site is cut off from its parent: changes are made at central.</p>` : ''}
      <form onSubmit=${(e) => e.preventDefault()}><fieldset class="actions" disabled=${here.readOnly}><legend class="visually-hidden">At a site</legend>
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
      </fieldset></form>
    </section>
    <section aria-labelledby="placement"><h3 id="placement">Placement</h3>
      ${data.fleet === null ? html`<p>Central cannot be reached: where the placement policies want this image is not known here now.</p>` : html`
      <ul>${data.fleet.map((e) => html`<li>${e.site}: ${e.state}${e.state === 'transferring' ? ` ${size(e.bytes_done)} of ${size(e.bytes_total)}` : ''}${e.reason ? ` (${e.reason})` : ''}</li>`)}</ul>
      ${data.fleet.length === 0 ? html`<p>No placement policy wants this image.</p>` : ''}`}
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

/** One transfer's row: where it went (region-wide), how far it got, what it fetched and reused. */
function TransferRow({ t, now }) {
  const done = t.reused + t.zeros + t.fetched;
  const pct = t.planned === 0 ? 100 : Math.min(100, Math.floor((100 * done) / t.planned));
  return html`<tr data-site=${t.site} data-image=${t.image_id}>${t.site === undefined ? '' : html`<td>${t.site}</td>`}
    <th scope="row"><a href=${`#/images/${t.image_id}`}>${t.image_id}</a></th>
    <td>${t.state}${t.error ? html` <small class="problem">${t.error}</small>` : ''}</td>
    <td><progress max="100" value=${pct} aria-label=${`${pct}%`}></progress> ${pct}%</td>
    <td>${size(t.reused)}</td><td>${size(t.fetched)}</td><td>${size(t.bytes_per_second)}/s</td><td>${ago(t.started_at, now)}</td></tr>`;
}

function TransferTable({ caption, transfers, withSite, now }) {
  return html`<div class="scroll"><table class="transfers">
    <caption>${caption}</caption>
    <thead><tr>${withSite ? html`<th scope="col">Site</th>` : ''}<th scope="col">Image</th><th scope="col">State</th><th scope="col">Progress</th>
      <th scope="col">Reused</th><th scope="col">Fetched</th><th scope="col">Rate</th><th scope="col">Started</th></tr></thead>
    <tbody>${transfers.map((t) => html`<${TransferRow} t=${t} now=${now} />`)}</tbody>
  </table></div>`;
}

/**
 * Transfers: what is moving in the region (at an edge: in its subtree) with rates, the recent
 * failures — transfers that failed and copies the placement policies want that failed — and what
 * the sites' audits and drift checks repaired. An edge cut off from central shows its own
 * transfers, which it knows.
 */
export function TransfersPage({ here }) {
  const { data, error } = usePoll(async () => {
    try {
      const [transfers, failed, summaries, sites] = await Promise.all([
        api('GET', '/outpost/v1/fleet/transfers'), api('GET', '/outpost/v1/fleet?state=failed&limit=100'),
        api('GET', '/outpost/v1/inventory-summaries'), api('GET', '/outpost/v1/sites'),
      ]);
      const scope = here.role === 'central' ? undefined : subtree(sites.sites, here.site);
      const mine = (x) => scope === undefined || scope.has(x.site);
      return { region: true, transfers: transfers.transfers.filter(mine), failed: failed.fleet.filter(mine), summaries: summaries.summaries.filter(mine) };
    } catch (e) {
      // Only an edge whose parent does not answer (5xx) falls back; a refusal (401, 403) is shown as it is.
      if (here.role === 'central' || !(e instanceof ApiError) || e.status < 500) throw e;
      // Central cannot be reached: this site's own transfers.
      return { region: false, transfers: (await api('GET', '/outpost/v1/transfers')).transfers, failed: [], summaries: [] };
    }
  }, 2000, [here.site, here.role]);
  if (data === undefined) return html`<${Problem} error=${error} /><p class="loading">Loading transfers…</p>`;
  const now = Date.now();
  const running = data.transfers.filter((t) => t.state === 'running');
  const failures = data.transfers.filter((t) => t.state === 'failed');
  const repaired = data.summaries.filter((x) => repairs(x) !== '');
  const where = here.role === 'central' ? 'in the region' : `at ${here.site} and below`;
  return html`<${Problem} error=${error} />
    ${data.region ? '' : html`<p>Central cannot be reached: these are ${here.site}'s own transfers.</p>`}
    <h2>In flight</h2>
    <${TransferTable} caption=${`Transfers of image bytes running ${data.region ? where : `to ${here.site}`}`} transfers=${running} withSite=${data.region} now=${now} />
    ${running.length === 0 ? html`<p>Nothing is moving.</p>` : ''}
    <h2>Recent failures</h2>
    ${failures.length === 0 && data.failed.length === 0 ? html`<p>No recent failures.</p>` : ''}
    ${failures.length === 0 ? '' : html`<${TransferTable} caption="Transfers that failed (each is tried again)" transfers=${failures} withSite=${data.region} now=${now} />`}
    ${data.failed.length === 0 ? '' : html`<ul class="failures">${data.failed.map((e) => html`<li data-failed=${`${e.site}/${e.image_id}`}>
      <a href=${`#/images/${e.image_id}`}>${e.image_name ?? e.image_id}</a> at ${e.site}: ${e.reason ?? 'failed'} (${e.reasons.join(', ')})</li>`)}</ul>`}
    ${data.region ? html`<h2>Repairs</h2>
      ${repaired.length === 0 ? html`<p>No site has repaired its replica or its copies since it started.</p>` : html`<ul class="repairs">${repaired.map((x) => html`<li data-repairs=${x.site}>${x.site}: ${repairs(x)}</li>`)}</ul>`}` : ''}
    <h2>Ended</h2>
    <${TransferTable} caption="The most recent transfers that ended" transfers=${data.transfers.filter((t) => t.state === 'done').slice(0, 50)} withSite=${data.region} now=${now} />`;
}
