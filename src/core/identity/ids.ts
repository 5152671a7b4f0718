import { createHash } from 'node:crypto';

/**
 * Outpost's namespace for predictable identity ids (RFC 9562 §5.5, UUIDv5). Fixed for ever: the
 * same domain and name give the same id in every site and every deployment.
 */
export const IDENTITY_NAMESPACE = '6f0e3c1a-51b2-5d7e-9a40-0a5d0c7e1b2f';

/** Keystone's default domain keeps its well-known id, which clients and configurations name. */
export const DEFAULT_DOMAIN_ID = 'default';

/** UUIDv5 of `name` in `namespace` (SHA-1, version 5, RFC 4122 variant), in the usual 8-4-4-4-12 form. */
export function uuid5(namespace: string, name: string): string {
  const ns = Buffer.from(namespace.replace(/-/g, ''), 'hex');
  if (ns.length !== 16) throw new TypeError(`not a UUID: ${namespace}`);
  const h = createHash('sha1').update(ns).update(name, 'utf8').digest().subarray(0, 16);
  h[6] = (h[6] & 0x0f) | 0x50;
  h[8] = (h[8] & 0x3f) | 0x80;
  const x = h.toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/**
 * The predictable id of a domain, project, user or role: the UUIDv5 of `KIND:DOMAIN_ID:NAME`
 * (roles are global: `role::NAME`), written as 32 hex digits as Keystone writes its ids.
 */
export function predictableId(kind: 'domain' | 'project' | 'user' | 'role', domainId: string, name: string): string {
  return uuid5(IDENTITY_NAMESPACE, `${kind}:${kind === 'role' || kind === 'domain' ? '' : domainId}:${name}`).replace(/-/g, '');
}
