import { sql, type AliasedRawBuilder, type Expression, type Kysely, type SelectQueryBuilder } from 'kysely';
import { setProperty, type Image } from '../core/image.ts';
import type { CatalogDatabase } from './database.ts';
import { locationOf, rowToImage } from './rows.ts';
import type { CatalogTables, ImageRow } from './tables.ts';

/** The columns an image's children come in with its row: each a JSON array, as text (null: none). */
export interface ImageChildrenColumns {
  properties_json: string | null;
  tags_json: string | null;
  locations_json: string | null;
}

/** A child table of images: the column its rows come in, and the columns of each row's JSON element. */
interface ChildTable {
  table: 'image_properties' | 'image_tags' | 'image_locations';
  column: keyof ImageChildrenColumns;
  element: readonly string[];
}

/** Tags and locations carry their position last: imageOf puts them in its order. */
const CHILD_TABLES: readonly ChildTable[] = [
  { table: 'image_properties', column: 'properties_json', element: ['name', 'value'] },
  { table: 'image_tags', column: 'tags_json', element: ['tag', 'position'] },
  { table: 'image_locations', column: 'locations_json', element: ['store', 'url', 'placed_by', 'metadata', 'position'] },
];

/** Elements ending with their position, in its order. */
function byPosition<T extends [...unknown[], number]>(elements: T[]): T[] {
  return elements.sort((a, b) => (a[a.length - 1] as number) - (b[b.length - 1] as number));
}

/** One child table's JSON array of one image (readMany's grouped reads). */
interface Grouped {
  image_id: string;
  j: string;
}

/** One term of the order of a read of many images, over `images.` columns. */
export interface ImageOrder {
  expr: Expression<unknown>;
  dir: 'asc' | 'desc';
}

/**
 * An image from its row read with its children's columns: tags and locations by position,
 * properties in the order the database read them (as hydrateImages, rows.ts).
 */
export function imageOf(row: ImageRow & ImageChildrenColumns): Image {
  const image = rowToImage(row);
  for (const [name, value] of JSON.parse(row.properties_json ?? '[]') as [string, string][]) setProperty(image.properties, name, value);
  image.tags = byPosition(JSON.parse(row.tags_json ?? '[]') as [string, number][]).map(([tag]) => tag);
  image.locations = byPosition(JSON.parse(row.locations_json ?? '[]') as [string, string, string | null, string | null, number][])
    .map(([store, url, placedBy, metadata]) => locationOf(store, url, placedBy, metadata));
  return image;
}

/**
 * How images are read whole — with their properties, tags and locations — in one statement: each
 * child table comes as one JSON array per image (as text), which imageOf turns back into the
 * image: properties as [name, value], tags as [tag, position], locations as [store, url,
 * placed_by, metadata, position]. The SQL is the same for every read, so it is built once per database
 * handle.
 */
export class ImageChildren {
  /**
   * Select-list values that carry the children of the query's `images` row, each a subquery
   * correlated to it: for a read of one image (readMany reads many).
   */
  readonly ofRow: readonly AliasedRawBuilder<string | null, keyof ImageChildrenColumns>[];
  readonly #db: CatalogDatabase;
  /** Per child table, its rows of the images in `images_page`, aggregated per image (readMany, PostgreSQL). */
  readonly #grouped: { p: AliasedRawBuilder<Grouped, 'p'>; t: AliasedRawBuilder<Grouped, 't'>; l: AliasedRawBuilder<Grouped, 'l'> };

  constructor(db: CatalogDatabase) {
    this.#db = db;
    // The child table is aliased `c` in every statement below.
    const aggregates = CHILD_TABLES.map(({ element }) => db.jsonArrayAgg(db.jsonArray(element.map((col) => sql.ref(`c.${col}`)))));
    this.ofRow = CHILD_TABLES.map(({ table, column }, i) =>
      sql<string | null>`(select ${aggregates[i]} from ${sql.table(table)} as c where c.image_id = images.id)`.as(column));
    const grouped = <A extends string>(i: number, alias: A) => sql<Grouped>`(select c.image_id, ${aggregates[i]} as j from ${
      sql.table(CHILD_TABLES[i].table)} as c where c.image_id in (select id from images_page) group by c.image_id)`.as(alias);
    this.#grouped = { p: grouped(0, 'p'), t: grouped(1, 't'), l: grouped(2, 'l') };
  }

  /**
   * The images `rows` selects (a page, say), whole, in `order`, in one statement. Either engine
   * reads the same rows and children, in the shape its planner does best with (measured with
   * pages of 25 of 200 images): PostgreSQL reads each child table once for all the rows, grouped
   * by image (a subquery per row and child table cost it some 40% more); SQLite, in process where
   * a statement costs no round trip, reads them by those subqueries (the grouped reads cost it
   * about twice as much).
   */
  async readMany(kysely: Kysely<CatalogTables>, rows: SelectQueryBuilder<CatalogTables, 'images', ImageRow>, order: readonly ImageOrder[]): Promise<Image[]> {
    if (this.#db.dialect === 'sqlite') {
      // The rows are a derived table named `images`: their children are read after their limit.
      let q = kysely.selectFrom(rows.as('images')).selectAll('images').select(this.ofRow);
      for (const o of order) q = q.orderBy(o.expr, o.dir);
      return (await q.execute()).map(imageOf);
    }
    const { p, t, l } = this.#grouped;
    let q = kysely.with((cte) => cte('images_page').materialized(), () => rows)
      .selectFrom('images_page as images')
      .leftJoin(p, 'p.image_id', 'images.id')
      .leftJoin(t, 't.image_id', 'images.id')
      .leftJoin(l, 'l.image_id', 'images.id')
      .selectAll('images')
      .select(['p.j as properties_json', 't.j as tags_json', 'l.j as locations_json']);
    for (const o of order) q = q.orderBy(o.expr, o.dir);
    return (await q.execute()).map(imageOf);
  }
}
