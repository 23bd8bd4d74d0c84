/**
 * Product search: full-text `q` over name and description, filters, sorts and keyset pages. One
 * query interface; only the text match differs by dialect (the FTS5 table on SQLite, the tsvector
 * column on PostgreSQL, both written in migrations/<dialect>/0001_search.sql). Filters, sorting and
 * paging are the same SQL on both. On PostgreSQL, relevance is ranked over a narrow copy of the
 * tsvector and the filter columns (`searchCopy`), and only the returned page is read in full.
 *
 * User text never reaches a query language: it is cut into words (letters, digits and marks), each
 * word becomes a quoted term, and the last one also matches as a prefix ("lapt" finds "laptop").
 */
import { and, asc, desc, eq, getTableColumns, gt, gte, inArray, lte, sql, type SQL, type SQLWrapper } from 'drizzle-orm'
import type { Database, Tables } from '../../kernel/db'
import { decodeCursor, encodeCursor, invalidCursor } from '../../shared/pagination'
import { Invalid } from '../../shared/errors'
import { type CatalogSchema, searchCopy } from './schema'
import { type ProductView, toProductView } from './service'

type T = Tables<CatalogSchema>
type Copy = ReturnType<typeof searchCopy.materialize>

export const SORTS = ['relevance', 'newest', 'price_asc', 'price_desc', 'name'] as const
export type Sort = (typeof SORTS)[number]

export interface ProductQuery {
  q?: string
  /** A category id or slug: its products and those of every category under it. */
  category?: string
  minPrice?: number
  maxPrice?: number
  inStock?: boolean
  sort?: Sort
  cursor?: string
  limit: number
  /** Managers and admins see inactive products too. */
  includeInactive: boolean
}

/** Words taken from `q`; more are ignored (a search box never needs them). */
const MAX_TERMS = 12
const MAX_TERM_LENGTH = 64

/** The words of a user's query, lower-cased, in order, without repeats. */
export function searchTerms(q: string): string[] {
  const words = q.normalize('NFKC').toLowerCase().match(/[\p{L}\p{N}][\p{L}\p{N}\p{M}]*/gu) ?? []
  return [...new Set(words.map((w) => w.slice(0, MAX_TERM_LENGTH)))].slice(0, MAX_TERMS)
}

/** A text match for one dialect: restricts to matching products and scores them (lower is better). */
interface TextMatch {
  join?: { table: SQL; on: SQL }
  where: SQL
  score: SQL<number>
}

/** `rows` is the table whose `search` tsvector is matched on PostgreSQL: the products or their narrow copy. */
function textMatch(dialect: Database['dialect'], products: T['products'], terms: string[], rows: T['products'] | Copy = products): TextMatch {
  const last = terms.length - 1
  if (dialect === 'sqlite') {
    // Each word a quoted FTS5 string (so AND, NEAR, * and quotes are just text); the last one a prefix too.
    const query = terms.map((w, i) => `"${w}"${i === last ? '*' : ''}`).join(' ')
    return {
      join: { table: sql`catalog_products_fts`, on: sql`catalog_products_fts.rowid = ${products}.rowid` },
      where: sql`catalog_products_fts match ${query}`,
      // bm25 is negative, better matches lower; a word in the name counts ten times one in the description.
      score: sql<number>`bm25(catalog_products_fts, 10.0, 1.0)`,
    }
  }
  // Words are letters and digits only, so this to_tsquery input has no operators but ours.
  const query = terms.map((w, i) => (i === last ? `${w}:*` : w)).join(' & ')
  const tsquery = sql`to_tsquery('english', ${query})`
  return {
    where: sql`${rows}."search" @@ ${tsquery}`,
    score: sql<number>`(0 - ts_rank(${rows}."search", ${tsquery}))::float8`,
  }
}

interface Order {
  key: SQLWrapper
  direction: 'asc' | 'desc'
  /** The sort key of a row, as kept in the cursor (JSON). */
  keyOf(row: Row): string | number
  /** The cursor's key back as a query parameter. */
  param(key: unknown): unknown
  valid(key: unknown): boolean
}

type Row = T['products']['$inferSelect'] & { score: number | null }

const isNumber = (k: unknown) => typeof k === 'number' && Number.isFinite(k)
const isInteger = (k: unknown) => Number.isSafeInteger(k)
/** A string a query may carry (PostgreSQL refuses NUL in text). */
const isText = (k: unknown, maxLength: number): k is string => typeof k === 'string' && k.length <= maxLength && !k.includes('\u0000')

function orders(products: T['products'], score: SQL<number> | undefined): Record<Sort, Order | undefined> {
  const byNumber = (key: SQLWrapper, direction: 'asc' | 'desc', keyOf: (r: Row) => number, valid = isNumber): Order => ({ key, direction, keyOf, param: (k) => k, valid })
  return {
    relevance: score && byNumber(score, 'asc', (r) => r.score ?? 0),
    newest: {
      key: products.createdAt,
      direction: 'desc',
      keyOf: (r) => r.createdAt.getTime(),
      param: (k) => sql.param(new Date(k as number), products.createdAt),
      valid: (k) => isInteger(k) && Math.abs(k as number) < 8.64e15,
    },
    price_asc: byNumber(products.price, 'asc', (r) => r.price, isInteger),
    price_desc: byNumber(products.price, 'desc', (r) => r.price, isInteger),
    name: { key: products.name, direction: 'asc', keyOf: (r) => r.name, param: (k) => k, valid: (k) => isText(k, 1000) },
  }
}

/** The per-category index of each sort order (schema.ts). */
const CATEGORY_INDEX: Record<Exclude<Sort, 'relevance'>, string> = {
  newest: 'catalog_products_category',
  price_asc: 'catalog_products_category_price',
  price_desc: 'catalog_products_category_price',
  name: 'catalog_products_category_name',
}

interface CursorKey {
  /** The sort and query the cursor belongs to. */
  s: Sort
  f: string
  k: string | number
  i: string
}

const isCursorKey = (key: unknown): key is CursorKey => {
  const k = key as CursorKey
  return typeof k === 'object' && k !== null && SORTS.includes(k.s) && typeof k.f === 'string' && isText(k.i, 64)
}

export class ProductSearch {
  private readonly copy: Copy

  constructor(
    private readonly db: Database,
    private readonly t: T,
  ) {
    this.copy = searchCopy.materialize('postgres')
  }

  async search(query: ProductQuery): Promise<{ items: ProductView[]; nextCursor: string | null }> {
    const { products } = this.t
    if (query.minPrice !== undefined && query.maxPrice !== undefined && query.minPrice > query.maxPrice)
      throw new Invalid('minPrice must not be above maxPrice', [{ path: '/minPrice', message: 'above maxPrice' }], 'INVALID_PRICE_RANGE')
    const q = query.q?.trim() ? query.q : undefined
    const terms = q === undefined ? [] : searchTerms(q)
    // A query with no words in it (only punctuation, say) matches nothing rather than everything.
    if (q !== undefined && terms.length === 0) return { items: [], nextCursor: null }

    const categoryIds = query.category === undefined ? undefined : await this.categoryAndBelow(query.category)
    if (categoryIds?.length === 0) return { items: [], nextCursor: null }
    const sort: Sort = query.sort === undefined || (query.sort === 'relevance' && !terms.length) ? (terms.length ? 'relevance' : 'newest') : query.sort
    // Ranking reads every match: on PostgreSQL it reads them from the narrow copy (see searchCopy).
    const copy = this.db.dialect === 'postgres' && sort === 'relevance' ? this.copy : undefined
    const text = terms.length ? textMatch(this.db.dialect, products, terms, copy) : undefined
    const order = orders(products, text?.score)[sort]!
    const fingerprint = new Bun.CryptoHasher('sha1')
      .update(JSON.stringify([terms, query.category ?? null, query.minPrice ?? null, query.maxPrice ?? null, query.inStock ?? null, query.includeInactive]))
      .digest('base64url')
      .slice(0, 12)

    let after: SQL | undefined
    if (query.cursor !== undefined) {
      const key = decodeCursor(query.cursor, isCursorKey)!
      if (key.s !== sort || key.f !== fingerprint) throw invalidCursor('this cursor belongs to another query or sort')
      if (!order.valid(key.k)) throw invalidCursor()
      // Row values compare the sort key, then the id: a strict order even when keys tie.
      const id = (copy ?? products).id
      after = order.direction === 'asc' ? sql`(${order.key}, ${id}) > (${order.param(key.k)}, ${key.i})` : sql`(${order.key}, ${id}) < (${order.param(key.k)}, ${key.i})`
    }

    const filtered = copy ?? products
    const filters = and(
      query.includeInactive ? undefined : eq(filtered.active, true),
      text?.where,
      query.minPrice !== undefined ? gte(filtered.price, query.minPrice) : undefined,
      query.maxPrice !== undefined ? lte(filtered.price, query.maxPrice) : undefined,
      query.inStock === undefined ? undefined : copy ? eq(copy.inStock, query.inStock) : query.inStock ? gt(products.available, 0) : lte(products.available, 0),
      after,
    )
    const direction = order.direction === 'asc' ? asc : desc
    const n = query.limit + 1
    let rows: Row[]
    if (copy && text) {
      rows = await this.rankedFromCopy(copy, text.score, and(filters, categoryIds ? inArray(copy.categoryId, categoryIds) : undefined), n)
    } else if (this.db.dialect === 'postgres' && !text && categoryIds && categoryIds.length > 1) {
      rows = await this.severalCategories(categoryIds, filters, sort as Exclude<Sort, 'relevance'>, direction, n)
    } else {
      // SQLite serves a category list in sort order from the (category, key, id) index of that key,
      // reading at most n rows per category; left alone, its planner may pick another category index
      // and sort every product of the categories (newest first over a department: 20-35 ms, not 1).
      const hinted = this.db.dialect === 'sqlite' && !text && categoryIds !== undefined
      const columns = getTableColumns(products)
      let select = this.db.read
        .select({
          // Columns as expressions (each with its own decoding): drizzle checks plain columns against a table, not a hinted one.
          ...(hinted ? (Object.fromEntries(Object.entries(columns).map(([k, c]) => [k, sql`${c}`.mapWith(c)])) as unknown as typeof columns) : columns),
          score: text ? text.score.mapWith(Number) : sql<null>`null`,
        })
        .from(hinted ? (sql`${products} indexed by ${sql.identifier(CATEGORY_INDEX[sort as Exclude<Sort, 'relevance'>])}` as unknown as typeof products) : products)
        .$dynamic()
      if (text?.join) select = select.innerJoin(text.join.table as never, text.join.on)
      rows = (await select
        .where(and(filters, categoryIds ? inArray(products.categoryId, categoryIds) : undefined))
        .orderBy(direction(order.key as SQL), direction(products.id))
        .limit(n)) as Row[]
    }

    const more = rows.length > query.limit
    const items = rows.slice(0, query.limit)
    const last = items[items.length - 1]
    return {
      items: items.map(toProductView),
      nextCursor: more && last ? encodeCursor({ s: sort, f: fingerprint, k: order.keyOf(last), i: last.id } satisfies CursorKey) : null,
    }
  }

  /**
   * The best `n` matches by relevance, ranked over the narrow copy, then joined to their products:
   * the wide rows are read for one page, not for every match.
   */
  private async rankedFromCopy(copy: Copy, score: SQL<number>, where: SQL | undefined, n: number): Promise<Row[]> {
    const { products } = this.t
    const page = this.db.read
      .select({ id: copy.id, score: sql<number>`${score}`.as('score') })
      .from(copy)
      .where(where)
      .orderBy(asc(score), asc(copy.id))
      .limit(n)
      .as('page')
    const rows = await this.db.read
      .select({ ...getTableColumns(products), score: sql<number>`${page.score}`.mapWith(Number) })
      .from(page)
      .innerJoin(products, eq(products.id, page.id))
      .orderBy(asc(page.score), asc(page.id))
    return rows as Row[]
  }

  /**
   * Browsing several categories (a department) in a sort order, on PostgreSQL: the first `n` of
   * each category, read off its (category, sort key, id) index, then merged. Filtering one sort
   * index by category instead walks thousands of rows when the categories' products sit at one end
   * of the order (clothing is cheap), and PostgreSQL cannot merge index scans for an IN list itself.
   * (SQLite's planner reads the per-category indexes for the IN list already.)
   */
  private async severalCategories(ids: string[], filters: SQL | undefined, sort: Exclude<Sort, 'relevance'>, direction: typeof asc, n: number): Promise<Row[]> {
    const { products } = this.t
    const key = { newest: 'createdAt', price_asc: 'price', price_desc: 'price', name: 'name' } as const
    const column = products[key[sort]]
    const each = this.db.read
      .select()
      .from(products)
      .where(and(filters, sql`${products.categoryId} = c.id`))
      .orderBy(direction(column), direction(products.id))
      .limit(n)
      .as('p')
    const list = sql.join(
      ids.map((id) => sql`${id}`),
      sql`, `,
    )
    const rows = await this.db.read
      .select({ ...each._.selectedFields })
      .from(sql`unnest(array[${list}]::text[]) as c(id)`)
      .crossJoinLateral(each)
      .orderBy(direction(each[key[sort]]), direction(each.id))
      .limit(n)
    return rows.map((r) => ({ ...r, score: null })) as Row[]
  }

  /**
   * The category (by id, else by slug) and every category under it. Read as a list first, not as a
   * subquery: the planner then knows how many products the filter leaves (a leaf or a department),
   * and picks between walking a sort index and sorting the category's products.
   */
  private async categoryAndBelow(idOrSlug: string): Promise<string[]> {
    const { categories } = this.t
    const tree = await this.db.read.select({ id: categories.id, slug: categories.slug, parentId: categories.parentId }).from(categories)
    const root = tree.find((c) => c.id === idOrSlug) ?? tree.find((c) => c.slug === idOrSlug)
    if (!root) return []
    const children = new Map<string, string[]>()
    for (const c of tree) if (c.parentId) children.set(c.parentId, [...(children.get(c.parentId) ?? []), c.id])
    const found = new Set([root.id])
    for (const id of found) for (const child of children.get(id) ?? []) found.add(child)
    return [...found]
  }
}
