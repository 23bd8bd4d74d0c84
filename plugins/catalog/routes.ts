/**
 * HTTP face of the catalog (CONTRACT.md section 7). Reads are public: no token needed, and a
 * manager's or admin's token also shows inactive products. Writes need `manager` or `admin`. The
 * schemas here are the validation and the OpenAPI document.
 */
import { t } from 'elysia'
import type { PluginContext } from '../../kernel/plugin'
import { Product } from '../../shared/contracts/catalog'
import { ListQuery, Page, decodeCursor, isString, page } from '../../shared/pagination'
import { type ProductSearch, SORTS } from './search'
import { type CatalogService, toCategoryView } from './service'

const WRITERS = ['manager', 'admin']
/** Above this, a price is surely a typing error (10 billion in major units). */
const MAX_PRICE = 1_000_000_000_000

const PUBLIC = {
  security: [],
  description: 'Public: no token needed. With a manager or admin token, inactive products are included.',
}

// No NUL characters anywhere: PostgreSQL cannot store them in text or JSON.
const NO_NUL = '^[^\\u0000]*$'
const Id = t.String({ minLength: 1, maxLength: 64, pattern: NO_NUL })
const IdParams = t.Object({ id: Id })
const Time = t.String({ format: 'date-time' })
const Slug = t.String({
  minLength: 1,
  maxLength: 100,
  pattern: '^[a-z0-9]+(-[a-z0-9]+)*$',
  error: 'slug must be lower-case letters and digits in words joined by single hyphens, up to 100 characters',
})
const Name = t.String({
  minLength: 1,
  maxLength: 200,
  pattern: '^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$',
  error: 'name must be 1 to 200 characters, not only spaces',
})
const Sku = t.String({
  minLength: 1,
  maxLength: 64,
  pattern: '^[^\\s\\u0000]([^\\u0000\\r\\n]*[^\\s\\u0000])?$',
  error: 'sku must be 1 to 64 characters without surrounding spaces',
})
const Description = t.String({ maxLength: 5000, pattern: NO_NUL, error: 'description must be at most 5000 characters' })
const Price = t.Integer({ minimum: 0, maximum: MAX_PRICE, description: 'minor units (1999 = 19.99)', error: `price must be an integer from 0 to ${MAX_PRICE} (minor units)` })
const Currency = t.String({ pattern: '^[A-Z]{3}$', description: 'ISO 4217', error: 'currency must be an ISO 4217 code such as EUR' })
const AttributeText = (maxLength: number) => t.String({ maxLength, pattern: NO_NUL })
const AttributeValue = t.Union([AttributeText(500), t.Number(), t.Boolean(), t.Array(AttributeText(100), { maxItems: 50 })])
// Keys are checked in service.ts: a Record's key schema is not enforced by the validator.
const Attributes = t.Record(t.String({ minLength: 1, maxLength: 64 }), AttributeValue, {
  maxProperties: 50,
  description: 'free-form facts such as color, size or brand: strings, numbers, booleans or lists of strings',
  error: 'attributes must be an object of at most 50 entries, each a string, number, boolean or list of strings',
})

const Category = t.Object({ id: t.String(), slug: t.String(), name: t.String(), parentId: t.Union([t.String(), t.Null()]), createdAt: Time, updatedAt: Time })
const ProductOut = t.Composite([Product, t.Object({ available: t.Integer({ description: 'units available across warehouses (from inventory)' }) })])

// Enums are unions of literals, not t.UnionEnum: as an optional query parameter Elysia fills a
// UnionEnum in with its first value when the parameter is absent, turning "no filter" into a filter.
const Sort = t.Union(
  SORTS.map((s) => t.Literal(s)),
  { description: 'relevance (default with q; without q it means newest), newest (default otherwise), price_asc, price_desc, name; ties are broken by id' },
)
const ProductListQuery = t.Composite([
  ListQuery,
  t.Object({
    q: t.Optional(t.String({ maxLength: 200, description: 'words to find in name and description; the last one also as a prefix' })),
    category: t.Optional(t.String({ minLength: 1, maxLength: 100, description: 'category id or slug; includes its descendants' })),
    minPrice: t.Optional(t.Integer({ minimum: 0, maximum: MAX_PRICE })),
    maxPrice: t.Optional(t.Integer({ minimum: 0, maximum: MAX_PRICE })),
    inStock: t.Optional(t.Boolean({ description: 'true: available > 0 across warehouses; false: not' })),
    sort: t.Optional(Sort),
  }),
])

export function catalogRoutes(ctx: PluginContext, catalog: CatalogService, search: ProductSearch) {
  /** Whether the caller, if any, may see inactive products. A token that is sent must be valid. */
  const seesInactive = async (authorization: string | null) => {
    if (!authorization) return false
    const principal = await ctx.identity.authenticate(authorization)
    return WRITERS.some((r) => principal.roles.includes(r))
  }

  return (
    ctx
      .router()
      // ------------------------------------------------------------------ categories
      .post('/categories', ({ body }) => catalog.createCategory(body), {
        auth: WRITERS,
        creates: true,
        body: t.Object({ slug: Slug, name: Name, parentId: t.Optional(t.Union([Id, t.Null()])) }),
        response: { 201: Category },
        detail: { summary: 'Create a category, at the root or under parentId; the slug is unique (409 SLUG_TAKEN); an unknown parent is 422' },
      })
      .get(
        '/categories',
        async ({ query }) => {
          const limit = query.limit ?? 50
          const parentId = query.parentId === undefined ? undefined : query.parentId === '' ? null : query.parentId
          return page(await catalog.listCategories({ parentId }, limit + 1, decodeCursor(query.cursor, isString)), limit, toCategoryView, (c) => c.id)
        },
        {
          query: t.Composite([ListQuery, t.Object({ parentId: t.Optional(t.String({ maxLength: 64, pattern: NO_NUL, description: 'children of this category; empty for the roots' })) })]),
          response: { 200: Page(Category) },
          detail: { summary: 'Categories, oldest first (the whole tree, or the children of parentId)', ...PUBLIC },
        },
      )
      .get('/categories/:id', ({ params }) => catalog.getCategory(params.id), {
        params: IdParams,
        response: { 200: Category },
        detail: { summary: 'A category, by id or by slug', ...PUBLIC },
      })
      .patch('/categories/:id', ({ params, body }) => catalog.updateCategory(params.id, body), {
        auth: WRITERS,
        params: IdParams,
        body: t.Object({ slug: t.Optional(Slug), name: t.Optional(Name), parentId: t.Optional(t.Union([Id, t.Null()])) }, { minProperties: 1, additionalProperties: false }),
        response: { 200: Category },
        detail: { summary: 'Rename, re-slug or move a category (parentId null = to the root); a move under itself or a descendant is 422 CATEGORY_CYCLE' },
      })
      // ------------------------------------------------------------------ products
      .post('/products', ({ body }) => catalog.createProduct(body), {
        auth: WRITERS,
        creates: true,
        body: t.Object({
          sku: Sku,
          name: Name,
          description: t.Optional(Description),
          price: Price,
          currency: Currency,
          categoryId: t.Optional(t.Union([Id, t.Null()])),
          attributes: t.Optional(Attributes),
          active: t.Optional(t.Boolean({ default: true })),
        }),
        response: { 201: ProductOut },
        detail: { summary: 'Create a product; its SKU (the inventory item’s) is unique (409 SKU_TAKEN); announced as catalog.product.changed' },
      })
      .get(
        '/products',
        async ({ query, request }) =>
          search.search({
            q: query.q,
            category: query.category,
            minPrice: query.minPrice,
            maxPrice: query.maxPrice,
            inStock: query.inStock,
            sort: query.sort,
            cursor: query.cursor,
            limit: query.limit ?? 50,
            includeInactive: await seesInactive(request.headers.get('authorization')),
          }),
        {
          query: ProductListQuery,
          response: { 200: Page(ProductOut) },
          detail: {
            summary: 'Search and browse products: full-text q, filters, sorts, and cursor pages (no repeats or gaps even when sort keys tie); a bad cursor is 400',
            ...PUBLIC,
          },
        },
      )
      .get('/products/:id', async ({ params, request }) => catalog.getProduct(params.id, await seesInactive(request.headers.get('authorization'))), {
        params: IdParams,
        response: { 200: ProductOut },
        detail: { summary: 'A product, by id or by SKU (an inactive one is 404 unless you are a manager or admin)', ...PUBLIC },
      })
      .patch('/products/:id', ({ params, body }) => catalog.updateProduct(params.id, body), {
        auth: WRITERS,
        params: IdParams,
        body: t.Object(
          {
            name: t.Optional(Name),
            description: t.Optional(Description),
            price: t.Optional(Price),
            currency: t.Optional(Currency),
            categoryId: t.Optional(t.Union([Id, t.Null()])),
            attributes: t.Optional(Attributes),
            active: t.Optional(t.Boolean()),
          },
          { minProperties: 1, additionalProperties: false },
        ),
        response: { 200: ProductOut },
        detail: { summary: 'Change a product (by id or SKU; categoryId null clears it); announced as catalog.product.changed' },
      })
      .post('/products/:id/deactivate', ({ params }) => catalog.updateProduct(params.id, { active: false }), {
        auth: WRITERS,
        params: IdParams,
        response: { 200: ProductOut },
        detail: { summary: 'Take a product off sale: hidden from customers, still known to orders (catalog.getProducts); again is a no-op' },
      })
      .post('/products/:id/activate', ({ params }) => catalog.updateProduct(params.id, { active: true }), {
        auth: WRITERS,
        params: IdParams,
        response: { 200: ProductOut },
        detail: { summary: 'Put a product back on sale' },
      })
  )
}
