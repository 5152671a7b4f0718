/**
 * Glance's image schema as the property tests see it (shared/glance/API-NOTES.md §1.2, §1.5,
 * §1.6), written out independently of src/, and the fast-check arbitraries built on it.
 */
import fc from 'fast-check';
import { KNOWN_ACCEPTS } from './api-invariants.ts';

export const DISK_FORMATS = ['ami', 'ari', 'aki', 'vhd', 'vhdx', 'vmdk', 'raw', 'qcow2', 'vdi', 'iso', 'ploop'];
export const CONTAINER_FORMATS = ['ami', 'ari', 'aki', 'bare', 'ovf', 'ova', 'docker', 'compressed'];
export const READ_ONLY = [
  'created_at', 'updated_at', 'status', 'checksum', 'os_hash_algo', 'os_hash_value', 'size', 'virtual_size',
  'direct_url', 'self', 'file', 'schema', 'stores', 'locations',
];
export const RESERVED = ['location', 'deleted', 'deleted_at'];
export const BASE = ['name', 'visibility', 'protected', 'os_hidden', 'disk_format', 'container_format', 'min_disk', 'min_ram', 'owner', 'tags'];
export const TYPED_CUSTOM = ['kernel_id', 'ramdisk_id', 'cinder_encryption_key_deletion_policy'];

/** Strings of code points (astral ones included, never a lone surrogate), as Glance counts length. */
export const text = (maxLength: number, minLength = 0) => fc.string({ unit: 'binary', minLength, maxLength });
export const shortText = fc.oneof(text(12), fc.string({ maxLength: 12 }));
/** Up to 255 code points, biased towards the limit and towards astral characters. */
export const text255 = fc.oneof(
  { weight: 4, arbitrary: shortText },
  { weight: 1, arbitrary: text(255, 250) },
  { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom('😀', '𝔘', '\u{10FFFF}', 'é'), minLength: 200, maxLength: 255 }) },
);
export const tooLong = fc.oneof(text(300, 256), fc.string({ unit: fc.constantFrom('x', '😀'), minLength: 256, maxLength: 300 }));

/** A string that is valid JSON but not valid Unicode: it holds a lone surrogate. */
export const loneSurrogate = fc.tuple(fc.string({ maxLength: 4 }), fc.integer({ min: 0xd800, max: 0xdfff }), fc.string({ maxLength: 4 }))
  .map(([a, c, b]) => `${a}${String.fromCharCode(c)}${b}`);

export const uuid = fc.tuple(fc.uuid(), fc.boolean()).map(([u, upper]) => (upper ? u.toUpperCase() : u));

export function isCustomName(k: string): boolean {
  return k.length > 0 && [...k].length <= 255 && !BASE.includes(k) && !READ_ONLY.includes(k) && !RESERVED.includes(k)
    && !TYPED_CUSTOM.includes(k) && k !== 'id' && !k.startsWith('os_glance');
}
export const customName = fc.oneof(
  { weight: 3, arbitrary: text(20, 1) },
  { weight: 1, arbitrary: fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', 'properties',
    'owner_specified.openstack.md5', 'hw_disk_bus', 'Name', 'OWNER', 'os_distro', 'os_glance', 'x'.repeat(255), '😀'.repeat(255)) },
).filter(isCustomName);

/** Custom properties as entries: fc.dictionary would turn "__proto__" into a prototype. */
export const customEntries = fc.uniqueArray(fc.tuple(customName, shortText), { maxLength: 6, selector: ([k]) => k });

export type Body = Record<string, unknown>;

/** An object with exactly these own keys (also "__proto__"). */
export function objectOf(entries: readonly (readonly [string, unknown])[]): Body {
  const o: Body = {};
  for (const [k, v] of entries) Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  return o;
}

export const anyJson = fc.jsonValue({ maxDepth: 3 });
export const notString = anyJson.filter((v) => typeof v !== 'string');
export const nested = fc.oneof(
  fc.constant({ a: { b: { c: [1, 2, { d: null }] } } }),
  fc.array(fc.array(fc.string(), { maxLength: 3 }), { minLength: 1, maxLength: 3 }),
  fc.object({ maxDepth: 2 }),
);

export const accept = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...KNOWN_ACCEPTS.map(([a]) => a)) },
  { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom(...'abcjsonhtml/*;q=0.5, +-'.split('')), maxLength: 30 }) },
);

/** A JSON-pointer segment for a key (RFC 6901: "~" → "~0", "/" → "~1"). */
export function pointer(key: string): string {
  return `/${key.replaceAll('~', '~0').replaceAll('/', '~1')}`;
}
