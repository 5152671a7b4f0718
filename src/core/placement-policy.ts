import { BadRequestError } from './errors.ts';
import type { Image, Visibility } from './image.ts';
import { parseLabelSelector, selectorMatches, type LabelSelector } from './label-selector.ts';

/**
 * A placement policy (issue 13): which images (by tags, properties, visibility — all given must
 * hold) are to be at which sites (by label selector, or by id), and how: `replicate` keeps a copy
 * in the site's store, never evicted; `cache` prefetches into the site's cache, pinned while the
 * policy holds. Higher `priority` is transferred first.
 */
export interface PlacementPolicy {
  name: string;
  images: { tags: string[]; properties: Record<string, string>; visibility: Visibility | null };
  sites: { labels: LabelSelector } | { ids: string[] };
  mode: 'replicate' | 'cache';
  priority: number;
}

/** A policy as stored, replicated and answered by the API: the selector as its text. */
export interface PolicyRecord {
  id: string;
  name: string;
  images: PlacementPolicy['images'];
  sites: { labels: string } | { ids: string[] };
  mode: PlacementPolicy['mode'];
  priority: number;
  created_at: string;
  updated_at: string;
}

/** The record of a validated policy. */
export function policyRecord(id: string, p: PlacementPolicy, createdAt: string, updatedAt: string): PolicyRecord {
  return {
    id, name: p.name, images: p.images, sites: 'ids' in p.sites ? { ids: p.sites.ids } : { labels: p.sites.labels.text },
    mode: p.mode, priority: p.priority, created_at: createdAt, updated_at: updatedAt,
  };
}

/** The policy a record holds (its selector parsed again). */
export function policyOf(r: PolicyRecord): PlacementPolicy {
  return {
    name: r.name, images: r.images, sites: 'ids' in r.sites ? { ids: r.sites.ids } : { labels: parseLabelSelector(r.sites.labels, 'sites.labels') },
    mode: r.mode, priority: r.priority,
  };
}

const VISIBILITIES: readonly Visibility[] = ['public', 'community', 'shared', 'private'];
const MODES = ['replicate', 'cache'] as const;

function fail(field: string, what: string): never {
  throw new BadRequestError(`${field}: ${what}`);
}

function object(value: unknown, field: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(field, 'must be an object.');
  return value as Record<string, unknown>;
}

function strings(value: unknown, field: string): string[] {
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string' || v === '')) fail(field, 'must be a list of non-empty strings.');
  return [...new Set(value as string[])].sort();
}

/**
 * A policy from a request body (POST, or a PATCH merged over the stored one): every field
 * checked, with a 400 naming the field; `knownSites` are the registered sites' ids, which a
 * policy by ids may name only.
 */
export function validatePolicy(body: unknown, knownSites: ReadonlySet<string>): PlacementPolicy {
  const b = object(body, 'policy');
  for (const key of Object.keys(b)) if (!['name', 'images', 'sites', 'mode', 'priority'].includes(key)) fail(key, 'is not a field of a policy (name, images, sites, mode, priority).');
  if (typeof b.name !== 'string' || b.name.trim() === '' || b.name.length > 255) fail('name', 'must be a string of 1-255 characters.');
  const images = object(b.images ?? {}, 'images');
  for (const key of Object.keys(images)) if (!['tags', 'properties', 'visibility'].includes(key)) fail(`images.${key}`, 'is not an image criterion (tags, properties, visibility).');
  const properties = object(images.properties ?? {}, 'images.properties');
  for (const [k, v] of Object.entries(properties)) if (typeof v !== 'string') fail(`images.properties.${k}`, 'must be a string.');
  const visibility = images.visibility ?? null;
  if (visibility !== null && !VISIBILITIES.includes(visibility as Visibility)) fail('images.visibility', `must be one of ${VISIBILITIES.join(', ')}.`);
  const sites = object(b.sites, 'sites');
  let chosen: PlacementPolicy['sites'];
  if (Object.keys(sites).length !== 1) fail('sites', 'must be {"labels": "<label selector>"} or {"ids": [site ids]}.');
  if ('labels' in sites) {
    chosen = { labels: parseLabelSelector(sites.labels as string, 'sites.labels') };
  } else if ('ids' in sites) {
    const ids = strings(sites.ids, 'sites.ids');
    const unknown = ids.filter((id) => !knownSites.has(id));
    if (unknown.length > 0) fail('sites.ids', `no site is registered as ${unknown.join(', ')}.`);
    chosen = { ids };
  } else {
    fail('sites', 'must be {"labels": "<label selector>"} or {"ids": [site ids]}.');
  }
  if (!MODES.includes(b.mode as typeof MODES[number])) fail('mode', `must be one of ${MODES.join(', ')}.`);
  const priority = b.priority ?? 50;
  if (!Number.isInteger(priority) || (priority as number) < 0 || (priority as number) > 100) fail('priority', 'must be an integer from 0 to 100.');
  return {
    name: b.name.trim(),
    images: { tags: strings(images.tags ?? [], 'images.tags'), properties: properties as Record<string, string>, visibility: visibility as Visibility | null },
    sites: chosen,
    mode: b.mode as PlacementPolicy['mode'],
    priority: priority as number,
  };
}

/** Whether the policy wants this image (every criterion given holds). */
export function policyWantsImage(policy: PlacementPolicy, image: Image): boolean {
  const { tags, properties, visibility } = policy.images;
  return tags.every((t) => image.tags.includes(t))
    && Object.entries(properties).every(([k, v]) => image.properties[k] === v || (image as unknown as Record<string, unknown>)[k] === v)
    && (visibility === null || image.visibility === visibility);
}

/** Whether the policy wants a copy at this site. */
export function policyWantsSite(policy: PlacementPolicy, site: { id: string; labels: Readonly<Record<string, string>> }): boolean {
  return 'ids' in policy.sites ? policy.sites.ids.includes(site.id) : selectorMatches(policy.sites.labels, site.labels);
}
