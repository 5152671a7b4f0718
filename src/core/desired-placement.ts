import type { Image } from './image.ts';
import { parseLabelSelector, selectorMatches, type LabelSelector } from './label-selector.ts';
import { policyWantsImage, policyWantsSite, type PlacementPolicy } from './placement-policy.ts';

/**
 * The image property that acts as a replicate policy for its image (issue 13): a label selector
 * of the sites that should hold a copy, for operators who only use glance or openstack.
 */
export const PLACEMENT_PROPERTY = 'outpost_placement';

/** The priority of a copy `outpost_placement` asks for. */
const PROPERTY_PRIORITY = 50;

/** A site as placement sees it. */
export interface PlacementSite {
  id: string;
  labels: Readonly<Record<string, string>>;
}

/** Why and how a site should hold an image. */
export interface DesiredCopy {
  /** `replicate` (a copy in the site's store) when any reason asks for one, else `cache`. */
  mode: 'replicate' | 'cache';
  /** The highest priority of its reasons. */
  priority: number;
  /** The names of the policies that want it, and `outpost_placement` when the property does. */
  reasons: string[];
}

/** `outpost_placement` parsed, or undefined when the image has none, it is empty or not a selector. */
export function placementSelector(image: Image): LabelSelector | undefined {
  const text = image.properties[PLACEMENT_PROPERTY];
  if (text === undefined || text.trim() === '') return undefined;
  try {
    return parseLabelSelector(text, PLACEMENT_PROPERTY);
  } catch {
    return undefined;
  }
}

/** Whether an image's bytes can be placed: it has them, with the size and hashes a copy is verified by. */
export function placeable(image: Image): boolean {
  return (image.status === 'active' || image.status === 'deactivated')
    && image.size !== null && image.checksum !== null && image.os_hash_algo === 'sha512' && image.os_hash_value !== null;
}

/**
 * What the placement policies and `outpost_placement` want `site` to hold, per image id: the
 * desired state of one site, computed from the catalog every site replicates (so a site computes
 * its own while cut off, and central the same for every site). Images without verifiable bytes
 * are never wanted.
 */
export function desiredAt(site: PlacementSite, images: Iterable<Image>, policies: readonly PlacementPolicy[]): Map<string, DesiredCopy> {
  const here = policies.filter((p) => policyWantsSite(p, site));
  const desired = new Map<string, DesiredCopy>();
  for (const image of images) {
    if (!placeable(image)) continue;
    let copy: DesiredCopy | undefined;
    const want = (mode: DesiredCopy['mode'], priority: number, reason: string) => {
      if (copy === undefined) copy = { mode, priority, reasons: [reason] };
      else copy = { mode: copy.mode === 'replicate' || mode === 'replicate' ? 'replicate' : 'cache', priority: Math.max(copy.priority, priority), reasons: [...copy.reasons, reason] };
    };
    for (const p of here) if (policyWantsImage(p, image)) want(p.mode, p.priority, p.name);
    const selector = placementSelector(image);
    if (selector !== undefined && selectorMatches(selector, site.labels)) want('replicate', PROPERTY_PRIORITY, PLACEMENT_PROPERTY);
    if (copy !== undefined) desired.set(image.id, copy);
  }
  return desired;
}
