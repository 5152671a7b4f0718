import { BadRequestError } from './errors.ts';
import { MEMBER_STATUSES, VISIBILITIES, setProperty, type MemberStatus, type Visibility } from './image.ts';
import {
  SORT_KEYS, type AttributeFilter, type CompareOp, type FilterableBase, type ImageListQuery, type SortDir, type SortKey,
} from './ports.ts';

/** Query parameters as received: every name maps to all its values, in order. */
export type QueryParams = ReadonlyMap<string, readonly string[]>;

export interface ListLimits {
  /** `limit_param_default` (25). */
  defaultLimit: number;
  /** `api_limit_max` (1000). */
  maxLimit: number;
}

/** The parsed list request; the service adds the caller's scope and resolves the marker. */
export interface ParsedListQuery {
  query: Omit<ImageListQuery, 'scope' | 'marker'>;
  visibility?: Visibility | 'all';
  memberStatus: MemberStatus | 'all';
  marker?: string;
}

const COMPARE_OPS: readonly CompareOp[] = ['gt', 'gte', 'eq', 'neq', 'lt', 'lte'];
const IN_ATTRIBUTES = ['id', 'name', 'status', 'container_format', 'disk_format'];
const EXACT_BASE: readonly FilterableBase[] = [
  'id', 'name', 'status', 'container_format', 'disk_format', 'owner', 'checksum', 'os_hash_value', 'min_disk',
  'min_ram', 'size', 'virtual_size',
];
const HANDLED = new Set([
  'limit', 'marker', 'sort_key', 'sort_dir', 'sort', 'visibility', 'member_status', 'os_hidden', 'protected',
  'size_min', 'size_max', 'created_at', 'updated_at', 'tag',
]);

function single(params: QueryParams, name: string): string | undefined {
  const values = params.get(name);
  return values === undefined ? undefined : values[values.length - 1];
}

function parseInteger(value: string, name: string): number {
  if (!/^-?\d+$/.test(value.trim())) throw new BadRequestError(`${name} param must be an integer`);
  return Number(value);
}

/** images.py `index`: os_hidden is lower-cased first, protected is not ('True' → 400). */
function parseBool(value: string, name: string): boolean {
  const v = name === 'os_hidden' ? value.toLowerCase() : value;
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw new BadRequestError(`Invalid value '${v}' for '${name}' filter. Valid values are 'true' or 'false'.`);
}

function parseTime(value: string): string {
  const ms = Date.parse(value);
  if (Number.isNaN(ms) || !/^\d{4}-\d{2}-\d{2}/.test(value)) {
    throw new BadRequestError(`Unable to filter on a range with a nonsensical value: '${value}' is not a valid ISO 8601 date and time`);
  }
  return new Date(ms).toISOString();
}

/** Splits `in:` values on commas, honouring double-quoted values that contain commas. */
function splitInValues(raw: string): string[] {
  const out: string[] = [];
  const re = /\s*(?:"((?:[^"\\]|\\.)*)"|([^,]*))\s*(?:,|$)/gy;
  let m: RegExpExecArray | null;
  while (re.lastIndex < raw.length && (m = re.exec(raw)) !== null) {
    out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]);
    if (m[0] === '') break;
  }
  if (out.length === 0) throw new BadRequestError('Invalid value for the in: operator');
  return out;
}

/**
 * The sort keys of `sort` or `sort_key`/`sort_dir` (images.py `_get_sorting_params`), and the
 * direction glance.db then appends `created_at` and `id` with: the one direction given when
 * exactly one was (one `sort_dir`, or `sort` with one key), else desc.
 */
function parseSort(params: QueryParams): { sort: { key: SortKey; dir: SortDir }[]; tieDir: SortDir } {
  const sort = params.get('sort');
  const keys = params.get('sort_key') ?? [];
  const dirs = params.get('sort_dir') ?? [];
  const checkKey = (k: string): SortKey => {
    if (!(SORT_KEYS as readonly string[]).includes(k)) {
      throw new BadRequestError(`Invalid sort key: ${k}. It should be one of the following: ${SORT_KEYS.join(', ')}.`);
    }
    return k as SortKey;
  };
  const checkDir = (d: string): SortDir => {
    if (d !== 'asc' && d !== 'desc') throw new BadRequestError(`Invalid sort direction: ${d}`);
    return d;
  };
  if (sort !== undefined) {
    if (keys.length > 0 || dirs.length > 0) {
      throw new BadRequestError("The 'sort' parameter is not supported together with 'sort_key' or 'sort_dir'.");
    }
    const parsed = sort.join(',').split(',').filter((s) => s !== '').map((part) => {
      const [k, d, extra] = part.split(':');
      if (extra !== undefined) throw new BadRequestError(`Invalid sort value: ${part}`);
      return { key: checkKey(k.trim()), dir: d === undefined ? 'desc' as const : checkDir(d.trim()) };
    });
    return { sort: parsed, tieDir: parsed.length === 1 ? parsed[0].dir : 'desc' };
  }
  if (dirs.length > 1 && dirs.length !== keys.length) {
    throw new BadRequestError('Number of sort dirs does not match the number of sort keys');
  }
  const parsedDirs = dirs.map(checkDir);
  // No sort_key: created_at, in the sort_dir given if any.
  return {
    sort: (keys.length === 0 ? ['created_at'] : keys)
      .map((k, i) => ({ key: checkKey(k), dir: parsedDirs.length === 1 ? parsedDirs[0] : parsedDirs[i] ?? 'desc' })),
    tieDir: parsedDirs.length === 1 ? parsedDirs[0] : 'desc',
  };
}

/**
 * Parses GET /v2/images query parameters the way Glance's `RequestDeserializer.index` does.
 * Unknown parameters are exact-match filters on custom properties.
 */
export function parseListQuery(params: QueryParams, limits: ListLimits): ParsedListQuery {
  if (params.has('changes-since')) throw new BadRequestError('The changes-since filter is no longer available on v2.');

  const rawLimit = single(params, 'limit');
  let limit = limits.defaultLimit;
  if (rawLimit !== undefined) {
    limit = parseInteger(rawLimit, 'limit');
    if (limit < 0) throw new BadRequestError('limit param must be positive');
    limit = Math.min(limit, limits.maxLimit);
  }

  const visibility = single(params, 'visibility');
  if (visibility !== undefined && visibility !== 'all' && !(VISIBILITIES as readonly string[]).includes(visibility)) {
    throw new BadRequestError(`Invalid visibility value: ${visibility}`);
  }
  const memberStatus = single(params, 'member_status') ?? 'accepted';
  if (memberStatus !== 'all' && !(MEMBER_STATUSES as readonly string[]).includes(memberStatus)) {
    throw new BadRequestError(`Invalid status value: ${memberStatus}`);
  }

  const base: Partial<Record<FilterableBase, AttributeFilter>> = {};
  const osHidden = single(params, 'os_hidden');
  base.os_hidden = { kind: 'eq', value: String(osHidden === undefined ? false : parseBool(osHidden, 'os_hidden')) };
  const prot = single(params, 'protected');
  if (prot !== undefined) base.protected = { kind: 'eq', value: String(parseBool(prot, 'protected')) };

  for (const attr of ['created_at', 'updated_at'] as const) {
    const raw = single(params, attr);
    if (raw === undefined) continue;
    const colon = raw.indexOf(':');
    const maybeOp = colon > 0 ? raw.slice(0, colon) : '';
    if ((COMPARE_OPS as readonly string[]).includes(maybeOp)) {
      base[attr] = { kind: 'compare', op: maybeOp as CompareOp, value: parseTime(raw.slice(colon + 1)) };
    } else {
      base[attr] = { kind: 'compare', op: 'eq', value: parseTime(raw) };
    }
  }

  const properties: Record<string, string> = {};
  for (const [name, values] of params) {
    if (HANDLED.has(name)) continue;
    const value = values[values.length - 1];
    if ((EXACT_BASE as readonly string[]).includes(name)) {
      if (IN_ATTRIBUTES.includes(name)) {
        // glance.common.utils.split_filter_op: `in:a,b`, `eq:a` or `a`; any other `op:` is a 400.
        const colon = value.indexOf(':');
        const op = colon < 0 ? 'eq' : value.slice(0, colon);
        if (op === 'in') base[name as FilterableBase] = { kind: 'in', values: splitInValues(value.slice(3)) };
        else if (op === 'eq') base[name as FilterableBase] = { kind: 'eq', value: value.slice(colon + 1) };
        else throw new BadRequestError(`Unable to filter by unknown operator '${op}'.`);
      } else {
        if (['min_disk', 'min_ram', 'size', 'virtual_size'].includes(name)) parseInteger(value, name);
        base[name as FilterableBase] = { kind: 'eq', value };
      }
    } else {
      setProperty(properties, name, value);
    }
  }

  const sizeMin = single(params, 'size_min');
  const sizeMax = single(params, 'size_max');
  const marker = single(params, 'marker');
  return {
    query: {
      base,
      properties,
      tags: [...(params.get('tag') ?? [])],
      sizeMin: sizeMin === undefined ? undefined : parseInteger(sizeMin, 'size_min'),
      sizeMax: sizeMax === undefined ? undefined : parseInteger(sizeMax, 'size_max'),
      sort: completeSort(parseSort(params)),
      limit,
    },
    visibility: visibility as Visibility | 'all' | undefined,
    memberStatus: memberStatus as MemberStatus | 'all',
    marker,
  };
}

/**
 * glance.db.sqlalchemy.api `_image_get_all`: `created_at` then `id` are appended (in `tieDir`) so
 * that the order — and so marker pagination — is total.
 */
function completeSort({ sort, tieDir }: { sort: { key: SortKey; dir: SortDir }[]; tieDir: SortDir }): { key: SortKey; dir: SortDir }[] {
  const out = [...sort];
  if (!out.some((s) => s.key === 'created_at')) out.push({ key: 'created_at', dir: tieDir });
  if (!out.some((s) => s.key === 'id')) out.push({ key: 'id', dir: tieDir });
  return out;
}
