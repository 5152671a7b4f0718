/**
 * Outpost's one configuration schema. Sources, lowest precedence first: built-in defaults, the
 * config file (JSON), `OUTPOST_<KEY>` environment variables, command-line flags. Unknown keys are
 * rejected; every problem is reported at once (ConfigError.problems); the result is frozen.
 */

import { join, resolve, sep } from 'node:path';

interface StoreConfigBase {
  id: string;
  description: string;
  weight: number;
  read_only: boolean;
  /**
   * A partial write (a temporary file, an incomplete multipart upload) that this process is not
   * writing is taken for another node's running write until it is this old (default 3600); then
   * for the remains of a node that stopped, and removed. A file store of a single node (a SQLite
   * catalog: one process per data directory) has no other writers and removes them at start.
   */
  partial_grace_seconds: number;
}

/** A store in a directory (`ID=file:PATH`). */
export interface FileStoreConfig extends StoreConfigBase {
  type: 'file';
  path: string;
}

/**
 * A store in an S3 bucket (`ID=s3://BUCKET[/PREFIX]?endpoint=URL&region=REGION&path_style=true`):
 * AWS, Ceph RGW, Swift's s3api. Credentials never appear here: the AWS SDK's standard chain
 * (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or `profile` in the shared credentials file).
 */
export interface S3StoreConfig extends StoreConfigBase {
  type: 's3';
  bucket: string;
  /** Objects are PREFIX/KEY ('' for the top of the bucket). */
  prefix: string;
  /** The S3 API's URL; null: AWS, from the region. */
  endpoint: string | null;
  /** Signing region; null: the SDK's (AWS_REGION, the profile), or us-east-1 with an endpoint. */
  region: string | null;
  /** ENDPOINT/BUCKET/KEY URLs (default: true with an endpoint, false for AWS). */
  path_style: boolean;
  /** A profile of the shared credentials and config files, for this store; null: the default chain. */
  profile: string | null;
  /** Size of the first parts of a multipart upload, in MiB (≥ 5; default 8); parts grow for large blobs. */
  part_size_mb: number;
  /** Most parts of one upload the server takes (AWS, Ceph RGW: 10000; Swift s3api: 1000 by default). */
  max_parts: number;
  /** Parts of one upload sent at a time (default 4); each holds a part of memory while it is sent. */
  parts_in_flight: number;
  connect_timeout_ms: number;
  /** A request on which nothing moves for this long fails (default 30000). */
  timeout_ms: number;
  /** Attempts of each S3 request, the first included (default 3). */
  max_attempts: number;
}

export type StoreConfig = FileStoreConfig | S3StoreConfig;

/** The S3 store options (besides id, type, description, weight, read_only) and their defaults. */
const S3_DEFAULTS: Omit<S3StoreConfig, keyof StoreConfigBase | 'type' | 'bucket' | 'path_style'> = {
  prefix: '', endpoint: null, region: null, profile: null, part_size_mb: 8, max_parts: 10_000, parts_in_flight: 4,
  connect_timeout_ms: 5000, timeout_ms: 30_000, max_attempts: 3,
};
const S3_INTEGERS: Record<string, { min: number; max: number }> = {
  part_size_mb: { min: 5, max: 5120 },
  max_parts: { min: 1, max: 10_000 },
  parts_in_flight: { min: 1, max: 16 },
  connect_timeout_ms: { min: 1, max: 600_000 },
  timeout_ms: { min: 1, max: 3_600_000 },
  max_attempts: { min: 1, max: 20 },
};
const STORE_KEYS = ['id', 'type', 'description', 'weight', 'read_only', 'partial_grace_seconds'];
/** partial_grace_seconds: its default, also the grace of a staging area several nodes share (staging_path). */
export const PARTIAL_GRACE = { default: 3600, min: 0, max: 365 * 86_400 } as const;
const S3_KEYS = ['bucket', 'path_style', ...Object.keys(S3_DEFAULTS)];
/** Names that would carry a secret: refused, with where credentials go instead. */
const S3_SECRET_RE = /access|secret|key|token|password|credential/i;
const S3_CREDENTIALS_HINT = 'credentials do not go in the store configuration: use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, '
  + 'or profile=NAME of the shared credentials file (~/.aws/credentials)';
const S3_SPEC_FORM = 'ID=s3://BUCKET[/PREFIX][?endpoint=URL&region=REGION&path_style=true]';

/** Import filtering for web-download (and redirects of glance-download), see import-filter docs. */
export interface ImportFilterConfig {
  allowed_schemes: string[];
  disallowed_schemes: string[];
  allowed_hosts: string[];
  disallowed_hosts: string[];
  allowed_ports: number[];
  disallowed_ports: number[];
  max_redirects: number;
  max_size: number | null;
  timeout_ms: number;
}

/** A trusted external token issuer (see `trusted_issuers`). */
export interface TrustedIssuer {
  jwks?: { keys: Record<string, unknown>[] };
  jwks_url?: string;
  domain?: string;
  user_claim?: string;
  project_claim?: string;
  roles_claim?: string;
}

/** A glance-download region: another region's image API and the token to use there. */
export interface RegionConfig {
  url: string;
  token: string | null;
}

export const ALL_IMPORT_METHODS = ['glance-direct', 'web-download', 'copy-image', 'glance-download'] as const;

export interface OutpostConfig {
  role: 'central' | 'edge';
  site: string;
  listen: string;
  data: string;
  /**
   * Where the catalog lives: null for the SQLite file in the data directory (the default), or a
   * PostgreSQL URL (postgres://USER:PASSWORD@HOST:PORT/DATABASE) that several central nodes share.
   */
  database_url: string | null;
  /**
   * Where import data is staged (glance-direct's PUT /stage, web-download's download): null for
   * `<data>/staging`. Several central nodes share a directory here (as they share their stores),
   * so that an import reaches the data whichever node staged it.
   */
  staging_path: string | null;
  /** Apply pending catalog migrations at start (else a catalog that needs them is refused: `outpost db migrate`). */
  migrate_at_start: boolean;
  parent: string | null;
  /** Labels of this site (placement policies select sites by them), e.g. {"region": "north"}. */
  labels: Readonly<Record<string, string>>;
  stores: readonly StoreConfig[];
  auth: 'none' | 'keystone';
  /** Allow `auth: none` on an address other than loopback (anyone who reaches it is an administrator). */
  insecure_auth_none: boolean;
  /**
   * auth keystone: an existing Keystone's v3 URL to validate tokens against instead of Outpost's
   * own identity service (tokens remembered until they expire, so a cut-off site keeps accepting
   * those it has seen). Null: Outpost's own.
   */
  keystone_url: string | null;
  /** With keystone_url: a service token to validate with (default: each token validates itself). Secret. */
  keystone_service_token: string | null;
  /** auth keystone: lifetime of the tokens central issues, seconds. */
  token_ttl_seconds: number;
  /**
   * An edge's site credential (`outpost site add NAME` prints it): the token it presents to its
   * parent with auth keystone. Secret.
   */
  site_token: string | null;
  /**
   * auth keystone, central: external identity providers whose tokens are accepted (federation),
   * by issuer (`iss`): their JWKS (inline `jwks` or `jwks_url`), the domain their users and
   * projects go to, and the claims naming user, project and roles.
   */
  trusted_issuers: Readonly<Record<string, TrustedIssuer>>;
  /**
   * An edge's peers: other sites (ids) it can reach directly, e.g. in the same metro. While its
   * parent cannot be reached, image bytes a peer holds in its store are fetched from that peer
   * (checked chunk by chunk and whole, as from the parent).
   */
  peers: readonly string[];
  log_level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Base URL clients reach this site at (version document links); default http(s)://<listen>. */
  public_url: string | null;
  /** The site serves https with this certificate chain (PEM file; with tls_key). Reloaded on SIGHUP. */
  tls_cert: string | null;
  /** The private key of tls_cert (PEM file). Secret. */
  tls_key: string | null;
  /** Edge: CA bundle (PEM file) the parent's https certificate is verified against (null: the system's trust store). */
  parent_ca: string | null;
  /** Central: CA bundle (PEM file) the sites' https certificates are verified against when central reads their copies (null: the system's trust store). */
  sites_ca: string | null;
  /** Glance `image_size_cap`: the largest image accepted, in bytes (default 1 TiB). */
  image_size_cap: number;
  /** Glance `limit_param_default`. */
  limit_param_default: number;
  /** Glance `api_limit_max`. */
  api_limit_max: number;
  /** Glance `show_multiple_locations`: show `locations` in image records. */
  show_multiple_locations: boolean;
  /** Glance `show_image_direct_url`: show `direct_url` in image records. */
  show_image_direct_url: boolean;
  /** fdatasync each image before it becomes visible. */
  storage_sync: boolean;
  /** Build each image's chunk manifest while its bytes are stored (else when first asked for). */
  chunk_manifests: boolean;
  /** Edge: how long a forwarded write may wait for the parent before answering 503, ms. */
  parent_timeout_ms: number;
  /**
   * Edge: seconds a change-feed request long-polls. A silently cut link is noticed after this
   * plus 5 s at most, so it bounds how long catching up takes once the link returns.
   */
  feed_wait_seconds: number;
  /** Edge: how often it refreshes its registration at its parent (the heartbeat central judges it alive by). */
  heartbeat_seconds: number;
  /**
   * Bytes the site's cached image copies may take together (Glance's image_cache_max_size); least
   * recently used unpinned copies are evicted to make room.
   */
  cache_max_bytes: number;
  /**
   * Glance's `image_cache_dir`: the directory the site's image cache keeps its copies in, apart
   * from its stores (see imageCacheDirectory for where it is when null).
   */
  image_cache_dir: string | null;
  /**
   * Bytes per second this site sends its child sites' image transfers together at most, shared
   * among the children receiving at the same time by their `egress-weight` label (default 1).
   * Null: no limit.
   */
  egress_max_bytes_per_s: number | null;
  /**
   * Edge: bytes per second its transfers from its parent take together at most, a client waiting
   * on a miss served first, then copies for its store, then prefetches into its cache. Null: no limit.
   */
  ingress_max_bytes_per_s: number | null;
  /**
   * Edge: seconds between checks of the copies in its stores against the catalog (a copy whose
   * bytes are lost is fetched again, bytes no record wants are deleted).
   */
  drift_check_seconds: number;
  /**
   * How many of the newest changes the site's change log keeps for its followers; a follower
   * further behind reloads from the snapshot (410 from the feed).
   */
  change_log_retain: number;
  /** Edge: seconds between audits of the replica against the parent (0: only on demand). */
  audit_interval_seconds: number;
  /**
   * Edge: seconds without news from the parent after which a single-image read is revalidated
   * with the parent before answering (null: never).
   */
  metadata_max_staleness: number | null;
  /** Import methods offered (Glance `enabled_import_methods`). */
  import_methods: readonly (typeof ALL_IMPORT_METHODS)[number][];
  import_filter: ImportFilterConfig;
  /** glance-download: region name → image API endpoint. */
  glance_download_regions: Readonly<Record<string, RegionConfig>>;
}

export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.problems = problems;
  }
}

type Kind = 'string' | 'integer' | 'nullable-integer' | 'boolean' | 'stores' | 'nullable-string' | 'methods' | 'import-filter' | 'regions' | 'labels' | 'issuers' | 'site-ids';
interface KeySpec {
  kind: Kind;
  values?: readonly string[];
  min?: number;
}

const SPEC: Record<Exclude<keyof OutpostConfig, never>, KeySpec> = {
  role: { kind: 'string', values: ['central', 'edge'] },
  site: { kind: 'string' },
  listen: { kind: 'string' },
  data: { kind: 'string' },
  database_url: { kind: 'nullable-string' },
  migrate_at_start: { kind: 'boolean' },
  staging_path: { kind: 'nullable-string' },
  parent: { kind: 'nullable-string' },
  labels: { kind: 'labels' },
  stores: { kind: 'stores' },
  auth: { kind: 'string', values: ['none', 'keystone'] },
  insecure_auth_none: { kind: 'boolean' },
  keystone_url: { kind: 'nullable-string' },
  keystone_service_token: { kind: 'nullable-string' },
  token_ttl_seconds: { kind: 'integer', min: 60 },
  site_token: { kind: 'nullable-string' },
  trusted_issuers: { kind: 'issuers' },
  peers: { kind: 'site-ids' },
  log_level: { kind: 'string', values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
  public_url: { kind: 'nullable-string' },
  tls_cert: { kind: 'nullable-string' },
  tls_key: { kind: 'nullable-string' },
  parent_ca: { kind: 'nullable-string' },
  sites_ca: { kind: 'nullable-string' },
  image_size_cap: { kind: 'integer', min: 1 },
  limit_param_default: { kind: 'integer', min: 1 },
  api_limit_max: { kind: 'integer', min: 1 },
  show_multiple_locations: { kind: 'boolean' },
  show_image_direct_url: { kind: 'boolean' },
  storage_sync: { kind: 'boolean' },
  chunk_manifests: { kind: 'boolean' },
  parent_timeout_ms: { kind: 'integer', min: 1 },
  feed_wait_seconds: { kind: 'integer', min: 1 },
  heartbeat_seconds: { kind: 'integer', min: 1 },
  change_log_retain: { kind: 'integer', min: 1 },
  cache_max_bytes: { kind: 'integer', min: 0 },
  image_cache_dir: { kind: 'nullable-string' },
  egress_max_bytes_per_s: { kind: 'nullable-integer', min: 1 },
  ingress_max_bytes_per_s: { kind: 'nullable-integer', min: 1 },
  drift_check_seconds: { kind: 'integer', min: 1 },
  audit_interval_seconds: { kind: 'integer', min: 0 },
  metadata_max_staleness: { kind: 'nullable-integer', min: 1 },
  import_methods: { kind: 'methods' },
  import_filter: { kind: 'import-filter' },
  glance_download_regions: { kind: 'regions' },
};

export const CONFIG_KEYS = Object.keys(SPEC) as (keyof OutpostConfig)[];

/** Defaults: `npm start` runs a central site on 127.0.0.1:9292 with everything under ./data. */
export const DEFAULTS: Omit<OutpostConfig, 'stores'> & { stores: StoreConfig[] } = {
  role: 'central',
  site: 'central',
  listen: '127.0.0.1:9292',
  data: './data',
  database_url: null,
  migrate_at_start: true,
  staging_path: null,
  parent: null,
  labels: {},
  stores: [],
  auth: 'keystone',
  insecure_auth_none: false,
  keystone_url: null,
  keystone_service_token: null,
  token_ttl_seconds: 3600,
  site_token: null,
  trusted_issuers: {},
  peers: [],
  log_level: 'info',
  public_url: null,
  tls_cert: null,
  tls_key: null,
  parent_ca: null,
  sites_ca: null,
  image_size_cap: 1024 ** 4,
  limit_param_default: 25,
  api_limit_max: 1000,
  show_multiple_locations: false,
  show_image_direct_url: false,
  storage_sync: true,
  chunk_manifests: true,
  parent_timeout_ms: 5000,
  feed_wait_seconds: 10,
  heartbeat_seconds: 30,
  change_log_retain: 100_000,
  cache_max_bytes: 10 * 1024 ** 3,
  image_cache_dir: null,
  egress_max_bytes_per_s: null,
  ingress_max_bytes_per_s: null,
  drift_check_seconds: 60,
  audit_interval_seconds: 600,
  metadata_max_staleness: null,
  import_methods: [...ALL_IMPORT_METHODS],
  import_filter: {
    allowed_schemes: ['http', 'https'], disallowed_schemes: [], allowed_hosts: [], disallowed_hosts: [],
    allowed_ports: [80, 443], disallowed_ports: [], max_redirects: 5, max_size: null, timeout_ms: 30_000,
  },
  glance_download_regions: {},
};

/**
 * The directory the site's image cache keeps its copies in, or undefined for the site's default
 * store (under `<image id>.cached`): `image_cache_dir` when set; else, at central, `<data>/image-cache`
 * — apart from its stores, which may be remote (S3) — and at an edge its default store, as before
 * the key existed. Central nodes sharing one catalog (`shared`: PostgreSQL) share the cache's
 * bookkeeping, so their cache is where they all see it: their default store unless image_cache_dir
 * names a directory they share (as staging_path does).
 */
export function imageCacheDirectory(config: Pick<OutpostConfig, 'image_cache_dir' | 'role'>, dataDir: string, shared: boolean): string | undefined {
  if (config.image_cache_dir !== null) return resolve(config.image_cache_dir);
  return config.role === 'central' && !shared ? join(dataDir, 'image-cache') : undefined;
}

/** Environment variables that are not configuration keys but are read elsewhere (identity bootstrap; the operator verbs' --url). */
const OTHER_ENV = new Set(['OUTPOST_ADMIN_PASSWORD', 'OUTPOST_URL']);

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

export function envName(key: string): string {
  return `OUTPOST_${key.toUpperCase().replace(/[.-]/g, '_')}`;
}

/**
 * `ID=file:PATH` or `ID=s3://BUCKET[/PREFIX][?OPTION=VALUE&...]` (as --store and OUTPOST_STORES
 * entries), as the object the config file would hold; the S3 options are S3StoreConfig's keys.
 */
export function parseStoreSpec(spec: string): Record<string, unknown> & { problem?: string } {
  const m = /^([^=]+)=([a-z0-9]+):(.+)$/.exec(spec);
  if (m === null) return { problem: `store "${spec}" is not of the form ID=file:PATH or ${S3_SPEC_FORM}` };
  const [, id, type, rest] = m;
  if (type === 's3' && rest.includes('@') && !rest.includes('?')) return { problem: `store "${id}": ${S3_CREDENTIALS_HINT}` };
  if (type === 'file') return { id, type: 'file', path: rest };
  if (type !== 's3') return { problem: `store "${id}": type "${type}" is not supported (supported: file, s3)` };
  // Taken apart by hand, not by URL, which would resolve '..' in the prefix and hide it.
  const parts = /^\/\/([^/?#]+)(\/[^?#]*)?(\?[^#]*)?(#.*)?$/.exec(rest);
  if (parts === null) return { problem: `store "${id}": an S3 store is of the form ${S3_SPEC_FORM}` };
  const [, authority, path = '', query = '', fragment] = parts;
  if (authority.includes('@')) return { problem: `store "${id}": ${S3_CREDENTIALS_HINT}` };
  if (fragment !== undefined) return { problem: `store "${id}": the store URL has a fragment (#...); options go in the query (?endpoint=URL&...)` };
  let bucket: string;
  let prefix: string;
  try {
    bucket = decodeURIComponent(authority);
    prefix = decodeURIComponent(path).replace(/^\/+|\/+$/g, '');
  } catch {
    return { problem: `store "${id}": an S3 store is of the form ${S3_SPEC_FORM}` };
  }
  const out: Record<string, unknown> = { id, type: 's3', bucket, prefix };
  for (const [name, value] of new URLSearchParams(query)) {
    if (name === 'bucket' || name === 'prefix' || name === 'id' || name === 'type') {
      return { problem: `store "${id}": ${name} is given by the URL itself (${S3_SPEC_FORM}), not as ?${name}=` };
    }
    if (Object.hasOwn(out, name)) return { problem: `store "${id}": option ${name} is given twice` };
    out[name] = name === 'path_style' || name === 'read_only'
      ? (value === 'true' ? true : value === 'false' ? false : value)
      : name in S3_INTEGERS || name === 'weight' || name === 'partial_grace_seconds' ? (/^\d+$/.test(value) ? Number(value) : value) : value;
  }
  return out;
}

export interface ConfigSources {
  file?: Record<string, unknown>;
  env?: Record<string, string | undefined>;
  /** Flags already named as config keys (`stores` as an array of ID=file:PATH or ID=s3://BUCKET... specs). */
  flags?: Record<string, unknown>;
}

function coerceFromString(kind: Kind, raw: string): unknown {
  switch (kind) {
    case 'integer': return /^-?\d+$/.test(raw.trim()) ? Number(raw) : raw;
    case 'nullable-integer': return raw === '' ? null : /^-?\d+$/.test(raw.trim()) ? Number(raw) : raw;
    case 'boolean': return raw === 'true' ? true : raw === 'false' ? false : raw;
    case 'stores': return raw.split(',').map((s) => s.trim()).filter(Boolean);
    case 'nullable-string': return raw === '' ? null : raw;
    case 'methods':
    case 'site-ids': return raw.split(',').map((s) => s.trim()).filter(Boolean);
    case 'labels':
      if (!raw.trim().startsWith('{')) return raw.split(',').map((s) => s.trim()).filter(Boolean);
    // falls through: a JSON object
    case 'import-filter':
    case 'issuers':
    case 'regions':
      try {
        return JSON.parse(raw);
      } catch {
        return raw;
      }
    default: return raw;
  }
}

function checkStores(value: unknown, where: string, problems: string[]): StoreConfig[] {
  if (!Array.isArray(value)) {
    problems.push(`${where}: stores must be a list`);
    return [];
  }
  const out: StoreConfig[] = [];
  value.forEach((entry, i) => {
    const raw = typeof entry === 'string' ? parseStoreSpec(entry) : (entry as Record<string, unknown>);
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      problems.push(`${where}: stores[${i}] must be an object or an ID=file:PATH or ${S3_SPEC_FORM} string`);
      return;
    }
    if (typeof raw.problem === 'string') {
      problems.push(`${where}: ${raw.problem}`);
      return;
    }
    const id = raw.id;
    if (typeof id !== 'string' || !ID_RE.test(id) || id.startsWith('os_glance_')) {
      problems.push(`${where}: stores[${i}]: id ${JSON.stringify(id)} must be 1-64 letters, digits, '_' or '-' (not os_glance_*)`);
      return;
    }
    const type = raw.type ?? 'file';
    if (type !== 'file' && type !== 's3') {
      problems.push(`${where}: store "${id}": type ${JSON.stringify(raw.type)} is not supported (supported: file, s3)`);
      return;
    }
    const known = [...STORE_KEYS, ...(type === 'file' ? ['path'] : S3_KEYS)];
    for (const k of Object.keys(raw)) {
      if (known.includes(k)) continue;
      if (type === 's3' && S3_SECRET_RE.test(k)) problems.push(`${where}: store "${id}": ${k}: ${S3_CREDENTIALS_HINT}`);
      else problems.push(`${where}: stores[${i}]: unknown key "${k}"${type === 's3' ? ` (an S3 store takes ${S3_KEYS.join(', ')})` : ''}`);
    }
    const weight = raw.weight ?? 0;
    if (typeof weight !== 'number' || !Number.isInteger(weight)) problems.push(`${where}: store "${id}": weight must be an integer`);
    const grace = raw.partial_grace_seconds ?? PARTIAL_GRACE.default;
    if (typeof grace !== 'number' || !Number.isSafeInteger(grace) || grace < PARTIAL_GRACE.min || grace > PARTIAL_GRACE.max) {
      problems.push(`${where}: store "${id}": partial_grace_seconds must be an integer from ${PARTIAL_GRACE.min} to ${PARTIAL_GRACE.max} (got ${JSON.stringify(grace)})`);
    }
    const base = {
      id, description: typeof raw.description === 'string' ? raw.description : '', weight: Number(weight) || 0, read_only: raw.read_only === true,
      partial_grace_seconds: typeof grace === 'number' ? grace : PARTIAL_GRACE.default,
    };
    if (type === 'file') {
      if (typeof raw.path !== 'string' || raw.path === '') problems.push(`${where}: store "${id}": path is required`);
      out.push({ ...base, type: 'file', path: String(raw.path ?? '') });
    } else {
      out.push(checkS3Store(raw, base, `${where}: store "${id}"`, problems));
    }
  });
  return out;
}

/** The S3 options of a store entry, checked; problems are reported as `${where}: ...`. */
function checkS3Store(raw: Record<string, unknown>, base: StoreConfigBase, where: string, problems: string[]): S3StoreConfig {
  const s3 = { ...S3_DEFAULTS, path_style: false, ...base, type: 's3' as const, bucket: '' };
  const bucket = raw.bucket;
  // S3's rules for bucket names (DNS-compatible; what AWS, Ceph RGW and Swift's s3api all take).
  if (typeof bucket !== 'string' || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket) || bucket.includes('..') || /^\d+\.\d+\.\d+\.\d+$/.test(bucket)) {
    problems.push(`${where}: bucket ${JSON.stringify(bucket)} must be an S3 bucket name: 3-63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit`);
  } else {
    s3.bucket = bucket;
  }
  const prefix = raw.prefix ?? '';
  if (typeof prefix !== 'string' || (prefix !== '' && (prefix.length > 512 || !prefix.split('/').every((p) => /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(p) && p !== '..')))) {
    problems.push(`${where}: prefix ${JSON.stringify(prefix)} must be '/'-separated names of letters, digits, '.', '_' and '-' (no leading, trailing or double '/', no '..')`);
  } else {
    s3.prefix = prefix;
  }
  const endpoint = raw.endpoint ?? null;
  if (endpoint !== null) {
    let url: URL | undefined;
    try {
      url = typeof endpoint === 'string' ? new URL(endpoint) : undefined;
    } catch { /* reported below */ }
    if (url === undefined || !/^https?:$/.test(url.protocol) || url.search !== '' || url.hash !== '') {
      problems.push(`${where}: endpoint ${JSON.stringify(endpoint)} must be the http(s) URL of the S3 API, e.g. https://rgw.example:8080`);
    } else if (url.username !== '' || url.password !== '') {
      problems.push(`${where}: endpoint: ${S3_CREDENTIALS_HINT}`);
    } else {
      s3.endpoint = String(endpoint).replace(/\/+$/, '');
    }
  }
  for (const key of ['region', 'profile'] as const) {
    const value = raw[key] ?? null;
    if (value !== null && (typeof value !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(value))) {
      problems.push(`${where}: ${key} ${JSON.stringify(value)} must be a name of letters, digits, '.', '_' and '-'`);
    } else {
      s3[key] = value;
    }
  }
  const pathStyle = raw.path_style ?? s3.endpoint !== null;
  if (typeof pathStyle !== 'boolean') problems.push(`${where}: path_style must be true or false (got ${JSON.stringify(pathStyle)})`);
  else s3.path_style = pathStyle;
  for (const [key, { min, max }] of Object.entries(S3_INTEGERS)) {
    const value = raw[key] ?? S3_DEFAULTS[key as keyof typeof S3_DEFAULTS];
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
      problems.push(`${where}: ${key} must be an integer from ${min} to ${max} (got ${JSON.stringify(value)})`);
    } else {
      (s3 as Record<string, unknown>)[key] = value;
    }
  }
  return s3;
}

/** Merges and validates the sources. Throws ConfigError listing every problem. */
export function resolveConfig(sources: ConfigSources): OutpostConfig {
  const problems: string[] = [];
  const merged: Record<string, unknown> = { ...DEFAULTS };
  const origin: Record<string, string> = {};

  const layer = (values: Record<string, unknown>, where: string, fromStrings: boolean) => {
    for (const [key, value] of Object.entries(values)) {
      if (value === undefined) continue;
      const spec = Object.hasOwn(SPEC, key) ? (SPEC as Record<string, KeySpec>)[key] : undefined;
      if (spec === undefined) {
        problems.push(`${where}: unknown key "${key}"`);
        continue;
      }
      merged[key] = fromStrings && typeof value === 'string' ? coerceFromString(spec.kind, value) : value;
      origin[key] = where;
    }
  };

  if (sources.file !== undefined) {
    if (sources.file === null || typeof sources.file !== 'object' || Array.isArray(sources.file)) {
      problems.push('config file: must be a JSON object');
    } else {
      layer(sources.file, 'config file', false);
    }
  }
  const env: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(sources.env ?? {})) {
    if (!name.startsWith('OUTPOST_') || OTHER_ENV.has(name) || value === undefined) continue;
    const key = CONFIG_KEYS.find((k) => envName(k) === name);
    if (key === undefined) problems.push(`environment: unknown variable ${name}`);
    else env[key] = value;
  }
  layer(env, 'environment', true);
  layer(sources.flags ?? {}, 'command line', false);

  for (const [key, spec] of Object.entries(SPEC)) {
    const value = merged[key];
    const where = origin[key] ?? 'default';
    switch (spec.kind) {
      case 'string':
        if (typeof value !== 'string' || value === '') problems.push(`${where}: ${key} must be a non-empty string`);
        else if (spec.values !== undefined && !spec.values.includes(value)) {
          problems.push(`${where}: ${key} must be one of ${spec.values.join(', ')} (got "${value}")`);
        }
        break;
      case 'nullable-string':
        if (value !== null && typeof value !== 'string') problems.push(`${where}: ${key} must be a string`);
        break;
      case 'nullable-integer':
        if (value === null) break;
      // falls through
      case 'integer':
        if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < (spec.min ?? 0)) {
          problems.push(`${where}: ${key} must be an integer ≥ ${spec.min ?? 0} (got ${JSON.stringify(value)})`);
        }
        break;
      case 'boolean':
        if (typeof value !== 'boolean') problems.push(`${where}: ${key} must be true or false (got ${JSON.stringify(value)})`);
        break;
      case 'stores':
        merged[key] = checkStores(value, where, problems);
        break;
      case 'methods':
        if (!Array.isArray(value) || value.some((m) => !(ALL_IMPORT_METHODS as readonly unknown[]).includes(m))) {
          problems.push(`${where}: ${key} must be a list of ${ALL_IMPORT_METHODS.join(', ')}`);
        }
        break;
      case 'import-filter':
        merged[key] = checkImportFilter(value, where, problems);
        break;
      case 'regions':
        merged[key] = checkRegions(value, where, problems);
        break;
      case 'labels':
        merged[key] = checkLabels(value, where, problems);
        break;
      case 'issuers':
        merged[key] = checkIssuers(value, where, problems);
        break;
      case 'site-ids':
        if (!Array.isArray(value) || value.some((id) => typeof id !== 'string' || !ID_RE.test(id))) {
          problems.push(`${where}: ${key} must be a list of site ids (1-64 letters, digits, '_' or '-')`);
        }
        break;
    }
  }

  const listen = String(merged.listen);
  const lm = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(listen);
  if (lm === null || Number(lm[2]) > 65535) problems.push(`${origin.listen ?? 'default'}: listen must be HOST:PORT (got "${listen}")`);
  if (typeof merged.site === 'string' && !ID_RE.test(merged.site)) {
    problems.push(`${origin.site ?? 'default'}: site must be 1-64 letters, digits, '_' or '-' (got "${merged.site}")`);
  }
  if (merged.role !== 'edge' && Array.isArray(merged.peers) && merged.peers.length > 0) {
    problems.push(`${origin.peers ?? 'default'}: peers are an edge's (central reads from every site holding a copy)`);
  }
  if (merged.role === 'edge') {
    if (typeof merged.parent !== 'string' || !/^https?:\/\/[^/]+/.test(merged.parent)) {
      problems.push(`${origin.parent ?? origin.role}: an edge needs parent, the URL of its parent site (http://HOST:PORT or https://HOST:PORT)`);
    }
    if (merged.site === 'central') problems.push(`${origin.site ?? 'default'}: an edge needs its own site id (--site)`);
  } else if (merged.parent !== null) {
    problems.push(`${origin.parent}: parent is only for role "edge"`);
  }
  if ((merged.tls_cert === null) !== (merged.tls_key === null)) {
    problems.push(`${origin.tls_cert ?? origin.tls_key}: tls_cert and tls_key go together (the certificate and its private key)`);
  }
  if (typeof merged.database_url === 'string' && !/^postgres(ql)?:\/\/[^/]+\/[^/?]+/i.test(merged.database_url)) {
    problems.push(`${origin.database_url}: database_url must be a PostgreSQL URL, postgres://USER:PASSWORD@HOST:PORT/DATABASE (without it, the catalog is the SQLite file in the data directory)`);
  }
  if (merged.parent_ca !== null && merged.role !== 'edge') problems.push(`${origin.parent_ca}: parent_ca is only for role "edge"`);
  if (typeof merged.keystone_url === 'string' && !/^https?:\/\/[^/]+/.test(merged.keystone_url)) {
    problems.push(`${origin.keystone_url}: keystone_url must be the http(s) URL of a Keystone v3 API`);
  }
  // auth none trusts identity headers: only where nobody else can reach the site.
  if (merged.auth === 'none' && merged.insecure_auth_none !== true && lm !== null && !isLoopbackHost(lm[1])) {
    problems.push(`${origin.auth ?? 'default'}: auth "none" makes anyone who can reach ${listen} an administrator; use auth "keystone", `
      + 'listen on a loopback address, or set insecure_auth_none');
  }
  const ids = (merged.stores as StoreConfig[]).map((s) => s.id);
  for (const dup of new Set(ids.filter((id, i) => ids.indexOf(id) !== i))) problems.push(`stores: store id "${dup}" is given twice`);

  if (problems.length > 0) throw new ConfigError(problems);
  if ((merged.stores as StoreConfig[]).length === 0) {
    merged.stores = [{
      id: merged.site as string, type: 'file', path: `${merged.data as string}/stores/${merged.site as string}`,
      description: `Filesystem store of site ${merged.site as string}`, weight: 0, read_only: false,
    }];
  }
  // The cache's directory is its own: a store or the staging area in it, or it in one, would see
  // the other's files as its own (and remove them as partial writes).
  if (typeof merged.image_cache_dir === 'string') {
    const cache = resolve(merged.image_cache_dir);
    const others = [
      ...(merged.stores as StoreConfig[]).flatMap((s) => (s.type === 'file' ? [[`store "${s.id}"`, s.path]] : [])),
      ['staging_path', typeof merged.staging_path === 'string' ? merged.staging_path : join(String(merged.data), 'staging')],
    ];
    for (const [what, path] of others) {
      const other = resolve(path!);
      if (cache === other || cache.startsWith(other + sep) || other.startsWith(cache + sep)) {
        problems.push(`${origin.image_cache_dir}: image_cache_dir ${JSON.stringify(merged.image_cache_dir)} must be a directory of the cache's own, apart from ${what} (${path})`);
      }
    }
    if (problems.length > 0) throw new ConfigError(problems);
  }
  return deepFreeze(merged as unknown as OutpostConfig);
}

function isLoopbackHost(host: string): boolean {
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) || host === '[::1]' || host === 'localhost';
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

const LABEL_KEY_RE = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$/;

/** `KEY=VALUE` (as --label and OUTPOST_LABELS entries). */
export function parseLabelSpec(spec: string): { key: string; value: string } | undefined {
  const i = spec.indexOf('=');
  return i <= 0 ? undefined : { key: spec.slice(0, i).trim(), value: spec.slice(i + 1).trim() };
}

/** Labels: an object of strings, or a list of KEY=VALUE strings; keys as Kubernetes-style names. */
function checkLabels(value: unknown, where: string, problems: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  let entries: [string, unknown][];
  if (Array.isArray(value)) {
    entries = [];
    for (const spec of value) {
      const parsed = typeof spec === 'string' ? parseLabelSpec(spec) : undefined;
      if (parsed === undefined) problems.push(`${where}: label ${JSON.stringify(spec)} is not of the form KEY=VALUE`);
      else entries.push([parsed.key, parsed.value]);
    }
  } else if (isObject(value)) {
    entries = Object.entries(value);
  } else {
    problems.push(`${where}: labels must be an object of strings (or KEY=VALUE,KEY=VALUE)`);
    return out;
  }
  for (const [k, v] of entries) {
    if (!LABEL_KEY_RE.test(k)) {
      problems.push(`${where}: label key ${JSON.stringify(k)} must be 1-63 letters, digits, '.', '_', '/' or '-'`);
    } else if (typeof v !== 'string' || v.length > 255) {
      problems.push(`${where}: label ${k} must have a string value of at most 255 characters`);
    } else if (Object.hasOwn(out, k)) {
      problems.push(`${where}: label ${k} is given twice`);
    } else {
      Object.defineProperty(out, k, { value: v, enumerable: true });
    }
  }
  return out;
}

function checkIssuers(value: unknown, where: string, problems: string[]): Record<string, TrustedIssuer> {
  const out: Record<string, TrustedIssuer> = {};
  if (!isObject(value)) {
    problems.push(`${where}: trusted_issuers must be an object of issuer → {jwks | jwks_url, domain, user_claim, project_claim, roles_claim}`);
    return out;
  }
  for (const [issuer, v] of Object.entries(value)) {
    if (!isObject(v)) {
      problems.push(`${where}: trusted_issuers.${issuer} must be an object`);
      continue;
    }
    for (const k of Object.keys(v)) {
      if (!['jwks', 'jwks_url', 'domain', 'user_claim', 'project_claim', 'roles_claim'].includes(k)) problems.push(`${where}: trusted_issuers.${issuer}: unknown key "${k}"`);
      else if (k !== 'jwks' && typeof v[k] !== 'string') problems.push(`${where}: trusted_issuers.${issuer}.${k} must be a string`);
    }
    const jwksOk = isObject(v.jwks) && Array.isArray(v.jwks.keys);
    if (jwksOk === (typeof v.jwks_url === 'string')) {
      problems.push(`${where}: trusted_issuers.${issuer} needs either jwks ({"keys": [...]}) or jwks_url`);
      continue;
    }
    Object.defineProperty(out, issuer, { value: v as TrustedIssuer, enumerable: true });
  }
  return out;
}

function checkImportFilter(value: unknown, where: string, problems: string[]): ImportFilterConfig {
  const out = { ...DEFAULTS.import_filter };
  if (!isObject(value)) {
    problems.push(`${where}: import_filter must be an object`);
    return out;
  }
  for (const [k, v] of Object.entries(value)) {
    if (!Object.hasOwn(out, k)) {
      problems.push(`${where}: import_filter: unknown key "${k}"`);
      continue;
    }
    const ports = k.endsWith('_ports');
    if (k.startsWith('allowed_') || k.startsWith('disallowed_')) {
      const ok = Array.isArray(v) && v.every((x) => (ports ? Number.isInteger(x) && x > 0 && x < 65536 : typeof x === 'string'));
      if (!ok) problems.push(`${where}: import_filter.${k} must be a list of ${ports ? 'port numbers' : 'strings'}`);
      else (out as Record<string, unknown>)[k] = ports ? v : (v as string[]).map((x) => x.toLowerCase());
    } else if (k === 'max_size' && v === null) {
      out.max_size = null;
    } else if (!Number.isSafeInteger(v) || (v as number) < 0) {
      problems.push(`${where}: import_filter.${k} must be a whole number ≥ 0`);
    } else {
      (out as Record<string, unknown>)[k] = v;
    }
  }
  return out;
}

function checkRegions(value: unknown, where: string, problems: string[]): Record<string, RegionConfig> {
  const out: Record<string, RegionConfig> = {};
  if (!isObject(value)) {
    problems.push(`${where}: glance_download_regions must be an object of region name → {url, token}`);
    return out;
  }
  for (const [name, v] of Object.entries(value)) {
    const entry = typeof v === 'string' ? { url: v } : v;
    if (!isObject(entry) || typeof entry.url !== 'string' || !/^https?:\/\//.test(entry.url)) {
      problems.push(`${where}: glance_download_regions.${name} needs a url (http:// or https://)`);
      continue;
    }
    for (const k of Object.keys(entry)) {
      if (k !== 'url' && k !== 'token') problems.push(`${where}: glance_download_regions.${name}: unknown key "${k}"`);
    }
    if (entry.token !== undefined && entry.token !== null && typeof entry.token !== 'string') {
      problems.push(`${where}: glance_download_regions.${name}.token must be a string`);
    }
    Object.defineProperty(out, name, {
      value: { url: entry.url, token: typeof entry.token === 'string' ? entry.token : null }, enumerable: true,
    });
  }
  return out;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
