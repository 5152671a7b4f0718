import { BadRequestError, ConflictError, ForbiddenError, SchemaViolationError, type OutpostError } from './errors.ts';
import { URL_LOCATION, shownLocations, type Image, type ImageLocation } from './image.ts';
import { repr, tooLong } from './image-validation.ts';

/** A PATCH operation on `locations` (image-patch.ts PatchOp): its value is parsed already. */
export interface LocationOp {
  op: 'add' | 'remove' | 'replace';
  key: string;
  position?: string;
  value?: unknown;
}

/**
 * The locations API's rules on an image record (glance/api/v2/images.py `_do_add_locations`,
 * `_do_replace_locations`, `_do_remove_locations`, `_validate_validation_data`, and the
 * `locations` entries of the image schema), pure: what is at each URL is found beforehand
 * (LocationProbe) and handed in.
 */

/** Glance's `hashing_algorithm`: Outpost hashes every image's bytes with md5 and sha512. */
export const HASHING_ALGORITHM = 'sha512';

/** `validation_data` of a location in a PATCH: the values the image's hashes must have. */
export interface ValidationData {
  checksum?: string;
  os_hash_algo: string;
  os_hash_value: string;
}

/** One location as a PATCH gives it (the image schema's `locations` item). */
export interface LocationValue {
  url: string;
  metadata: Record<string, unknown>;
  validation_data?: ValidationData;
}

/**
 * What is at a location's URL, found before the patch is applied (the I/O of glance/location.py
 * `_check_location_uri`): a copy of the image in one of this site's stores (read and hashed), an
 * http(s) URL (its size from Content-Length), or why the URL is not a location.
 */
export type LocationProbe =
  | { kind: 'store'; store: string; size: number; md5: string; sha512: string; virtualSize: number | null }
  | { kind: 'url'; size: number }
  | { kind: 'invalid'; error: OutpostError };

/** What the location operations of a PATCH need besides the image. */
export interface LocationPatchContext {
  /** Glance's `show_multiple_locations`: without it every location operation is refused (403). */
  showLocations: boolean;
  /** The caller is an administrator (`delete_image_location` is admin-only by default). */
  isAdmin: boolean;
  /** Store weights, for the order locations are shown and numbered in. */
  weight: (store: string) => number;
  /** What is at each URL the patch adds that the image does not have yet. */
  probes: ReadonlyMap<string, LocationProbe>;
}

function violation(detail: string): SchemaViolationError {
  return new SchemaViolationError(`Provided object does not match schema 'image': ${detail}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

const VALIDATION_LIMITS: Record<string, { min?: number; max: number }> = {
  checksum: { min: 32, max: 32 }, os_hash_algo: { max: 64 }, os_hash_value: { max: 128 },
};

/** One `locations` item of the image schema: `url` (≤ 255) and `metadata` required, `validation_data` optional. */
export function parseLocationValue(value: unknown): LocationValue {
  if (!isObject(value)) throw violation(`${repr(value)} is not of type 'object'`);
  for (const key of ['url', 'metadata']) if (!Object.hasOwn(value, key)) throw violation(`'${key}' is a required property`);
  const { url, metadata } = value;
  if (typeof url !== 'string') throw violation(`${repr(url)} is not of type 'string'`);
  if (tooLong(url, 255)) throw violation(`${repr(url)} is too long`);
  if (!isObject(metadata)) throw violation(`${repr(metadata)} is not of type 'object'`);
  const parsed: LocationValue = { url, metadata };
  if (Object.hasOwn(value, 'validation_data')) {
    const vd = value.validation_data;
    if (!isObject(vd)) throw violation(`${repr(vd)} is not of type 'object'`);
    const extra = Object.keys(vd).filter((k) => !Object.hasOwn(VALIDATION_LIMITS, k));
    if (extra.length > 0) throw violation(`Additional properties are not allowed (${extra.map((k) => `'${k}'`).join(', ')} ${extra.length === 1 ? 'was' : 'were'} unexpected)`);
    for (const key of ['os_hash_algo', 'os_hash_value']) if (!Object.hasOwn(vd, key)) throw violation(`'${key}' is a required property`);
    for (const [key, v] of Object.entries(vd)) {
      if (typeof v !== 'string') throw violation(`${repr(v)} is not of type 'string'`);
      const { min, max } = VALIDATION_LIMITS[key];
      if (min !== undefined && [...v].length < min) throw violation(`${repr(v)} is too short`);
      if (tooLong(v, max)) throw violation(`${repr(v)} is too long`);
    }
    parsed.validation_data = vd as unknown as ValidationData;
  }
  return parsed;
}

/** The value of `replace /locations`: an array of locations. */
export function parseLocationList(value: unknown): LocationValue[] {
  if (!Array.isArray(value)) throw violation(`${repr(value)} is not of type 'array'`);
  return value.map(parseLocationValue);
}

/**
 * The position a `/locations/N` or `/locations/-` path names (`_get_locations_op_pos`): for an
 * add, any N (past the end appends) and `-` the end; for a remove, an existing index and `-` the
 * last. Undefined for anything else.
 */
export function locationPosition(segment: string | undefined, length: number, add: boolean): number | undefined {
  if (segment === undefined) return undefined;
  if (segment === '-') return add ? length : length - 1 >= 0 ? length - 1 : undefined;
  if (!/^[0-9]+$/.test(segment)) return undefined;
  const pos = Number(segment);
  return add || pos < length ? pos : undefined;
}

function isHex(s: string): boolean {
  return s.length % 2 === 0 && /^[0-9a-fA-F]*$/.test(s);
}

/** Digest sizes in bytes of the algorithms the locations API names. */
export const DIGEST_BYTES: Readonly<Record<string, number>> = { md5: 16, sha1: 20, sha256: 32, sha512: 64 };

type Hashes = Partial<Pick<Image, 'checksum' | 'os_hash_algo' | 'os_hash_value'>>;

/**
 * `_validate_validation_data`: the values the locations' validation_data would give the image.
 * Conflicting values, or values other than the image's own, are refused (409); values the image
 * has already are fine; new values only for a queued image, of the right form and algorithm.
 */
export function newValidationData(image: Image, locations: readonly LocationValue[]): Hashes {
  const given: Record<string, string> = {};
  for (const loc of locations) {
    for (const [k, v] of Object.entries(loc.validation_data ?? {})) {
      if (Object.hasOwn(given, k) && given[k] !== v) throw new ConflictError(`Conflicting values for ${k}`);
      given[k] = v as string;
    }
  }
  const fresh: Record<string, string> = {};
  for (const [k, v] of Object.entries(given)) {
    const current = image[k as keyof Hashes];
    if (v === current) continue;
    if (current !== null && current !== '') throw new ConflictError(`${k} is already set with a different value`);
    fresh[k] = v;
  }
  if (Object.keys(fresh).length === 0) return {};
  if (image.status !== 'queued') {
    throw new ConflictError(`New value(s) for ${Object.keys(fresh).join(', ')} may only be provided when image status is 'queued'`);
  }
  if (fresh.checksum !== undefined) {
    if (!isHex(fresh.checksum)) throw new ConflictError(`checksum (${fresh.checksum}) is not a valid hexadecimal value`);
    if (fresh.checksum.length !== 32) throw new ConflictError(`checksum (${fresh.checksum}) is not the correct size for md5 (should be 16 bytes)`);
  }
  const algo = fresh.os_hash_algo;
  if (algo !== HASHING_ALGORITHM) throw new ConflictError(`os_hash_algo must be ${HASHING_ALGORITHM}, not ${algo ?? 'None'}`);
  const value = fresh.os_hash_value ?? '';
  if (!isHex(value)) throw new ConflictError(`os_hash_value (${value}) is not a valid hexadecimal value`);
  if (value.length !== DIGEST_BYTES[algo] * 2) {
    throw new ConflictError(`os_hash_value (${value}) is not the correct size for ${algo} (should be ${DIGEST_BYTES[algo]} bytes)`);
  }
  return fresh as Hashes;
}

/**
 * Applies one location operation of a PATCH to `next` (a copy of the image being patched), in
 * Glance's order of checks for each operation. Locations are numbered as they are shown
 * (shownLocations).
 */
export function applyLocationOp(next: Image, op: LocationOp, lc: LocationPatchContext): void {
  if (op.op === 'remove') return removeLocation(next, op.position, lc);
  if (op.op === 'add') return addLocations(next, [op.value as LocationValue], lc, op.position);
  const value = op.value as LocationValue[];
  // "Cannot set locations to empty list." comes before the policy and every other check.
  if (value.length === 0) throw new ForbiddenError('Cannot set locations to empty list.');
  return replaceLocations(next, value, lc);
}

function assertShown(lc: LocationPatchContext, verb: string): void {
  if (!lc.showLocations) throw new ForbiddenError(`It's not allowed to ${verb} locations if locations are invisible.`);
}

function addLocations(next: Image, values: readonly LocationValue[], lc: LocationPatchContext, segment: string | undefined): void {
  assertShown(lc, 'add');
  if (next.status !== 'active' && next.status !== 'queued') {
    throw new ConflictError(`It's not allowed to add locations if image status is ${next.status}.`);
  }
  const fresh = newValidationData(next, values);
  const shown = shownLocations(next.locations, lc.weight);
  const pos = locationPosition(segment, shown.length, true);
  if (pos === undefined) throw new BadRequestError('Invalid position for adding a location.');
  const found = admit(next, values[0], fresh, shown, lc);
  shown.splice(pos, 0, found.location);
  next.locations = shown;
  settle(next, fresh, found.probe);
}

function replaceLocations(next: Image, values: readonly LocationValue[], lc: LocationPatchContext): void {
  assertShown(lc, 'update');
  if (next.status !== 'active' && next.status !== 'queued') {
    throw new ConflictError(`It's not allowed to replace locations if image status is ${next.status}.`);
  }
  const fresh = newValidationData(next, values);
  const shown = shownLocations(next.locations, lc.weight);
  const urls = (list: readonly { url: string }[]) => list.map((l) => l.url).sort().join('\n');
  if (urls(values) === urls(shown)) {
    // The same URLs: only the metadata changes (glanceclient's location-update).
    next.locations = values.map((v) => withMetadata(shown.find((l) => l.url === v.url)!, v.metadata));
    return;
  }
  if (shown.length > 0) throw new BadRequestError(`Original locations is not empty: ${repr(shown.map((l) => ({ url: l.url, metadata: metadataShown(l) })))}`);
  const added: ImageLocation[] = [];
  let probe: LocationProbe | undefined;
  for (const value of values) {
    const found = admit(next, value, fresh, added, lc);
    added.push(found.location);
    if (found.probe.kind === 'store') probe ??= found.probe;
  }
  next.locations = added;
  settle(next, fresh, probe);
}

function removeLocation(next: Image, segment: string | undefined, lc: LocationPatchContext): void {
  // `delete_image_location` (admin-only by default) is enforced before anything else.
  if (!lc.isAdmin) throw new ForbiddenError('You are not authorized to complete delete_image_location action.');
  assertShown(lc, 'remove');
  if (next.status !== 'active') throw new ConflictError(`It's not allowed to remove locations if image status is ${next.status}.`);
  const shown = shownLocations(next.locations, lc.weight);
  if (shown.length === 1) throw new ForbiddenError('Cannot remove last location in the image.');
  const pos = locationPosition(segment, shown.length, false);
  if (pos === undefined) throw new BadRequestError('Invalid position for removing a location.');
  shown.splice(pos, 1);
  next.locations = shown;
}

/**
 * A location's metadata as shown: its own, and for a copy in a store `store` (Glance's multistore
 * sets `metadata.store` from the URL, whatever the client gave).
 */
export function metadataShown(location: ImageLocation): Record<string, unknown> {
  if (location.store === URL_LOCATION) return { ...location.metadata };
  return { ...location.metadata, store: location.store };
}

/** The location with the client's metadata (`store` is the location's own, never the client's). */
function withMetadata(location: ImageLocation, metadata: Record<string, unknown>): ImageLocation {
  const { store: _given, ...rest } = metadata;
  const { metadata: _old, ...base } = location;
  return Object.keys(rest).length === 0 ? base : { ...base, metadata: rest };
}

/**
 * `StoreLocations.insert` / `_check_image_location` for one new location: what is at the URL must
 * be a location (400 "Invalid location" otherwise), not one the image has (400), and of the
 * image's size and — a copy in a store, which was hashed — its checksum and hash, or the ones the
 * validation_data gives a queued image.
 */
function admit(next: Image, value: LocationValue, fresh: Hashes, existing: readonly ImageLocation[], lc: LocationPatchContext): { location: ImageLocation; probe: LocationProbe } {
  if (existing.some((l) => l.url === value.url) || next.locations.some((l) => l.url === value.url)) {
    throw new BadRequestError(`The location ${value.url} already exists`);
  }
  const probe = lc.probes.get(value.url) ?? { kind: 'invalid', error: new BadRequestError('Invalid location') };
  if (probe.kind === 'invalid') throw probe.error;
  if (next.size !== null && probe.size !== next.size) {
    throw new BadRequestError(`Invalid location: ${value.url} has ${probe.size} bytes, image ${next.id} has ${next.size}.`);
  }
  if (probe.kind === 'store') {
    const checksum = next.checksum ?? fresh.checksum;
    const hash = next.os_hash_value ?? fresh.os_hash_value;
    if ((checksum !== null && checksum !== undefined && checksum !== probe.md5) || (hash !== null && hash !== undefined && hash !== probe.sha512)) {
      throw new BadRequestError(`Invalid location: the bytes at ${value.url} do not match the checksum and hash of image ${next.id}${next.status === 'queued' ? ' given in validation_data' : ''}.`);
    }
  }
  // `_set_image_size`: the first location gives an image without a size its size.
  next.size ??= probe.size;
  const store = probe.kind === 'store' ? probe.store : URL_LOCATION;
  return { location: withMetadata({ store, url: value.url }, value.metadata), probe };
}

/**
 * After the locations are in place: a queued image takes the validation_data's values (and those
 * of a copy in a store, which was hashed) and becomes active — which needs its formats, as any
 * move of a queued image to active ("Property … must be set prior to saving data.", 400).
 */
function settle(next: Image, fresh: Hashes, probe: LocationProbe | undefined): void {
  if (next.status !== 'queued') {
    if (probe?.kind === 'store') {
      // An active image that had no hashes (an http location without validation_data) learns them.
      next.checksum ??= probe.md5;
      if (next.os_hash_value === null) Object.assign(next, { os_hash_algo: HASHING_ALGORITHM, os_hash_value: probe.sha512 });
    }
    return;
  }
  Object.assign(next, fresh);
  if (probe?.kind === 'store') {
    Object.assign(next, { checksum: probe.md5, os_hash_algo: HASHING_ALGORITHM, os_hash_value: probe.sha512, virtual_size: probe.virtualSize });
  }
  const missing = (['disk_format', 'container_format'] as const).filter((k) => next[k] === null || next[k] === '');
  if (missing.length === 1) throw new BadRequestError(`Property ${missing[0]} must be set prior to saving data.`);
  if (missing.length > 1) throw new BadRequestError(`Properties ${missing.join(', ')} must be set prior to saving data.`);
  next.status = 'active';
}

/** The URLs of a patch's location operations that are new to the image (those whose target must be probed). */
export function urlsToProbe(image: Image, ops: readonly LocationOp[]): string[] {
  const have = new Set(image.locations.map((l) => l.url));
  const urls = ops.filter((o) => o.key === 'locations' && o.op !== 'remove')
    .flatMap((o) => (o.op === 'add' ? [o.value as LocationValue] : o.value as LocationValue[]).map((v) => v.url));
  return [...new Set(urls)].filter((u) => !have.has(u));
}
