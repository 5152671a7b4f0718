import { sql, type Expression, type ExpressionBuilder, type SqlBool } from 'kysely';
import type { Image } from '../core/image.ts';
import type { AttributeFilter, ImageListQuery, SortKey } from '../core/ports.ts';
import type { CatalogTables } from './tables.ts';

/** The SQL of an image list: Glance's visibility scope, filters, and keyset-paged sorting. */

type Eb = ExpressionBuilder<CatalogTables, 'images'>;

const NULLABLE_TEXT = new Set<SortKey>(['name', 'container_format', 'disk_format']);

export interface SortTerm {
  expr: Expression<unknown>;
  value: (image: Image) => string | number;
}

/**
 * Sort/marker terms of a key, with NULLs below every real value so keyset pages are total. A
 * nullable text column gets an is-null term first, so NULL sorts strictly before ''.
 */
export function sortTerms(key: SortKey): SortTerm[] {
  const col = sql.ref(`images.${key}`);
  if (NULLABLE_TEXT.has(key)) {
    return [
      { expr: sql`case when ${col} is null then 0 else 1 end`, value: (i) => (i[key] === null ? 0 : 1) },
      { expr: sql`coalesce(${col}, '')`, value: (i) => i[key] ?? '' },
    ];
  }
  if (key === 'size') return [{ expr: sql`coalesce(images.size, -1)`, value: (i) => i.size ?? -1 }];
  return [{ expr: col, value: (i) => i[key] as string }];
}

function memberExists(eb: Eb, projectId: string, status: string): Expression<SqlBool> {
  let sub = eb.selectFrom('image_members as m').select(sql.lit(1).as('one'))
    .whereRef('m.image_id', '=', 'images.id').where('m.member_id', '=', projectId);
  if (status !== 'all') sub = sub.where('m.status', '=', status);
  return eb.exists(sub);
}

/** The visibility scope of glance.db.sqlalchemy.api `_select_images_query`. */
export function scopeCondition(eb: Eb, query: ImageListQuery): Expression<SqlBool> {
  const { admin, projectId, visibility, memberStatus } = query.scope;
  const vis = (v: string) => eb('images.visibility', '=', v);
  if (admin) {
    if (visibility === 'all') return sql<SqlBool>`1 = 1`;
    if (visibility !== undefined) return vis(visibility);
    // Without a visibility, community images only when the caller's project owns them — for
    // admins too (glance.db.sqlalchemy.api._image_get_all).
    const notCommunity = eb('images.visibility', '<>', 'community');
    return projectId === null ? notCommunity : eb.or([notCommunity, eb('images.owner', '=', projectId)]);
  }
  const mine = projectId === null ? sql<SqlBool>`1 = 0` : eb('images.owner', '=', projectId);
  const sharedWithMe = projectId === null ? sql<SqlBool>`1 = 0` : eb.and([vis('shared'), memberExists(eb, projectId, memberStatus)]);
  switch (visibility) {
    case undefined: return eb.or([vis('public'), mine, sharedWithMe]);
    case 'all': return eb.or([vis('public'), vis('community'), mine, sharedWithMe]);
    case 'public': return vis('public');
    case 'community': return vis('community');
    case 'private': return eb.and([vis('private'), mine]);
    case 'shared': return eb.and([vis('shared'), eb.or([mine, sharedWithMe])]);
  }
}

const COMPARE_SQL = { gt: '>', gte: '>=', eq: '=', neq: '<>', lt: '<', lte: '<=' } as const;

export function attributeCondition(eb: Eb, attr: string, filter: AttributeFilter): Expression<SqlBool> {
  const col = sql.ref(`images.${attr}`);
  const coerce = (v: string): string | number => {
    if (attr === 'protected' || attr === 'os_hidden') return v === 'true' ? 1 : 0;
    if (['min_disk', 'min_ram', 'size', 'virtual_size'].includes(attr)) return Number(v);
    return v;
  };
  switch (filter.kind) {
    case 'eq': return eb(col, '=', coerce(filter.value));
    case 'in': return filter.values.length === 0 ? sql<SqlBool>`1 = 0` : eb(col, 'in', filter.values.map(coerce));
    // Times are compared to the second, as the API shows them (and as Glance's DATETIME columns
    // hold them): created_at=eq:<a created_at the API showed> matches that image.
    case 'compare': return eb(sql`substr(${col}, 1, 19)`, COMPARE_SQL[filter.op], filter.value.slice(0, 19));
  }
}
