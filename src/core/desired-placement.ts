import type { Image } from './image.ts';
import { IMPORTING_PROPERTY, storeList } from './import-properties.ts';
import { parseLabelSelector, selectorMatches, type LabelSelector } from './label-selector.ts';
import { policyWantsImage, policyWantsSite, type PlacementPolicy } from './placement-policy.ts';

/**
 * The image property that acts as a replicate policy for its image (issue 13): a label selector
 * of the sites that should hold a copy, for operators who only use glance or openstack.
 */
export const PLACEMENT_PROPERTY = 'outpost_placement';

/** The priority of a copy `outpost_placement` asks for. */
const PROPERTY_PRIORITY = 50;

/**
 * The reason of a copy copy-image asked for in another site's store (the store is in the image's
 * `os_glance_importing_to_stores` until the site has recorded its copy), and its priority: an
 * operator asked for it now.
 */
export const COPY_IMAGE_REASON = 'copy-image';
const COPY_IMAGE_PRIORITY = 80;

/** A site as placement sees it. */
export interface PlacementSite {
  id: string;
  labels: Readonly<Record<string, string>>;
  /** Its stores: a copy-image to one of them is a copy it should hold. */
  stores: readonly string[];
}

/** Why and how a site should hold an image. */
export interface DesiredCopy {
  /** `replicate` (a copy in the site's store) when any reason asks for one, else `cache`. */
  mode: 'replicate' | 'cache';
  /** The highest priority of its reasons. */
  priority: number;
  /** The names of the policies that want it, `outpost_placement` when the property does, `copy-image`. */
  reasons: string[];
  /** The store of the site a copy-image named (else the site's default store). */
  store?: string;
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
 * What the placement policies, `outpost_placement` and copy-image want each site to hold, for one state of
 * the catalog: which images each policy selects, and each image's own selector, are worked out
 * once, so the desired state of a site costs what it holds rather than images × policies.
 */
export class DesiredPlacement {
  readonly #byPolicy: { policy: PlacementPolicy; images: Image[] }[];
  readonly #byProperty: { image: Image; selector: LabelSelector }[] = [];
  /** Per store, the images a copy-image is bringing there. */
  readonly #copying = new Map<string, Image[]>();

  constructor(images: Iterable<Image>, policies: readonly PlacementPolicy[]) {
    const placeables = [...images].filter(placeable);
    this.#byPolicy = policies.map((policy) => ({ policy, images: placeables.filter((i) => policyWantsImage(policy, i)) }));
    for (const image of placeables) {
      const selector = placementSelector(image);
      if (selector !== undefined) this.#byProperty.push({ image, selector });
      if (image.status !== 'active') continue;
      for (const store of storeList(image, IMPORTING_PROPERTY)) this.#copying.set(store, [...this.#copying.get(store) ?? [], image]);
    }
  }

  /**
   * What `site` should hold, per image id: the desired state of one site, a function of the
   * catalog every site replicates (so a site computes its own while cut off, and central the same
   * for every site). Images without verifiable bytes are never wanted.
   */
  at(site: PlacementSite): Map<string, DesiredCopy> {
    const desired = new Map<string, DesiredCopy>();
    const want = (id: string, mode: DesiredCopy['mode'], priority: number, reason: string, store?: string) => {
      const copy = desired.get(id);
      const merged: DesiredCopy = copy === undefined ? { mode, priority, reasons: [reason] } : {
        mode: copy.mode === 'replicate' || mode === 'replicate' ? 'replicate' : 'cache', priority: Math.max(copy.priority, priority), reasons: [...copy.reasons, reason],
      };
      const named = store ?? copy?.store;
      desired.set(id, named === undefined ? merged : { ...merged, store: named });
    };
    for (const { policy, images } of this.#byPolicy) {
      if (!policyWantsSite(policy, site)) continue;
      for (const image of images) want(image.id, policy.mode, policy.priority, policy.name);
    }
    for (const { image, selector } of this.#byProperty) {
      if (selectorMatches(selector, site.labels)) want(image.id, 'replicate', PROPERTY_PRIORITY, PLACEMENT_PROPERTY);
    }
    for (const store of site.stores) for (const image of this.#copying.get(store) ?? []) want(image.id, 'replicate', COPY_IMAGE_PRIORITY, COPY_IMAGE_REASON, store);
    return desired;
  }
}

/** What the policies and `outpost_placement` want `site` to hold (DesiredPlacement.at for one site). */
export function desiredAt(site: PlacementSite, images: Iterable<Image>, policies: readonly PlacementPolicy[]): Map<string, DesiredCopy> {
  return new DesiredPlacement(images, policies).at(site);
}
