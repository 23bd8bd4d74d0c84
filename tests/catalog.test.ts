/**
 * The catalog plugin from the outside (CONTRACT.md sections 2 and 7): categories as a tree,
 * products with integer prices, search with filters, sorts and cursor pages, availability from
 * inventory's stock events, catalog.getProducts through ctx.call, roles and bad input. Real HTTP
 * against a real server; runs on embedded defaults and, with TEST_DATABASE_URL / TEST_REDIS_URL,
 * on PostgreSQL + Redis.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { adminToken, client, eventually, expectError, expectStatus, startServer, type TestServer, userWithRole, variant } from './harness'

const CAT = '/api/v1/catalog'
type Api = ReturnType<typeof client>

let server: TestServer
let api: Api
let admin: string
let manager: { id: string; token: string }
let customer: { id: string; token: string }

beforeAll(async () => {
  server = await startServer()
  api = client(server.url)
  admin = await adminToken(server.url)
  manager = await userWithRole(server.url, 'manager', admin)
  customer = await userWithRole(server.url, 'customer', admin)
})
afterAll(async () => {
  await server?.stop()
})

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

let seq = 0
const unique = (tag: string) => `${tag}-${Date.now().toString(36)}-${seq++}`
const slug = (tag: string) => unique(tag).toLowerCase()

const post = (path: string, body?: unknown, token: string | undefined = manager.token) => api.post(CAT + path, body, token)
const patch = (path: string, body?: unknown, token: string | undefined = manager.token) => api.patch(CAT + path, body, token)
const get = (path: string, token?: string) => api.get(CAT + path, token)

async function category(extra: Record<string, unknown> = {}) {
  const r = await post('/categories', { slug: slug('cat'), name: 'A category', ...extra })
  expectStatus(r, 201)
  return r.body as { id: string; slug: string; name: string; parentId: string | null }
}

async function product(extra: Record<string, unknown> = {}) {
  const r = await post('/products', { sku: unique('SKU'), name: 'A thing', price: 1999, currency: 'EUR', ...extra })
  expectStatus(r, 201)
  return r.body as Product
}

interface Product {
  id: string
  sku: string
  name: string
  description: string
  price: number
  currency: string
  categoryId: string | null
  attributes: Record<string, unknown>
  active: boolean
  available: number
  createdAt: string
  updatedAt: string
}

/** Every product a query returns, following nextCursor to the end. */
async function everything(query: string, token?: string, limit = 7) {
  const seen: Product[] = []
  let cursor: string | null = null
  for (let pages = 0; pages < 1000; pages++) {
    const r = await get(`/products?${query}&limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, token)
    expectStatus(r, 200)
    seen.push(...r.body.items)
    cursor = r.body.nextCursor
    if (!cursor) return seen
  }
  throw new Error('paging did not end')
}

// ---------------------------------------------------------------------------
// categories
// ---------------------------------------------------------------------------

describe(`categories (${variant})`, () => {
  test('create, get by id or slug, list; the slug is unique', async () => {
    const s = slug('shoes')
    const created = await post('/categories', { slug: s, name: 'Shoes' })
    expectStatus(created, 201)
    expect(created.body.slug).toBe(s)
    expect(created.body.name).toBe('Shoes')
    expect(created.body.parentId).toBeNull()

    expectError(await post('/categories', { slug: s, name: 'Again' }), 409, 'SLUG_TAKEN')

    const byId = await get(`/categories/${created.body.id}`)
    expectStatus(byId, 200)
    expect(byId.body.slug).toBe(s)
    expect((await get(`/categories/${s}`)).body.id).toBe(created.body.id)
    expectError(await get('/categories/no-such-category'), 404, 'CATEGORY_NOT_FOUND')

    const child = await category({ parentId: created.body.id })
    const children = await get(`/categories?parentId=${created.body.id}`)
    expectStatus(children, 200)
    expect(children.body.items.map((c: any) => c.id)).toEqual([child.id])
  })

  test('rename, re-slug and move; a move that would make a cycle is 422 and changes nothing', async () => {
    const root = await category()
    const mid = await category({ parentId: root.id })
    const leaf = await category({ parentId: mid.id })
    const other = await category()

    const renamed = await patch(`/categories/${leaf.id}`, { name: 'Leaf', slug: slug('leaf') })
    expectStatus(renamed, 200)
    expect(renamed.body.name).toBe('Leaf')

    expectError(await patch(`/categories/${root.id}`, { parentId: leaf.id }), 422, 'CATEGORY_CYCLE')
    expectError(await patch(`/categories/${root.id}`, { parentId: root.id }), 422, 'CATEGORY_CYCLE')
    expect((await get(`/categories/${root.id}`)).body.parentId).toBeNull()

    expectError(await patch(`/categories/${leaf.id}`, { slug: other.slug }), 409, 'SLUG_TAKEN')
    expectError(await patch(`/categories/${leaf.id}`, { parentId: 'no-such-category' }), 422, 'CATEGORY_NOT_FOUND')

    const moved = await patch(`/categories/${mid.id}`, { parentId: other.id })
    expectStatus(moved, 200)
    expect(moved.body.parentId).toBe(other.id)
    const toRoot = await patch(`/categories/${mid.id}`, { parentId: null })
    expect(toRoot.body.parentId).toBeNull()
  })

  test('bad input is refused with the error envelope', async () => {
    for (const body of [
      { slug: 'Has Caps', name: 'x' },
      { slug: 'a--b', name: 'x' },
      { slug: '', name: 'x' },
      { slug: slug('ok'), name: '   ' },
      { slug: slug('ok'), name: 'x', parentId: 5 },
      { slug: slug('ok') },
    ])
      expectError(await post('/categories', body), 422)
    expectError(await post('/categories', { slug: slug('orphan'), name: 'Orphan', parentId: 'no-such-parent' }), 422, 'CATEGORY_NOT_FOUND')
    expectError(await patch(`/categories/${(await category()).id}`, {}), 422)
  })
})

// ---------------------------------------------------------------------------
// products
// ---------------------------------------------------------------------------

describe(`products (${variant})`, () => {
  test('create, get by id or SKU, update, deactivate', async () => {
    const cat = await category()
    const sku = unique('TSHIRT')
    const created = await post('/products', {
      sku,
      name: 'Organic cotton T-shirt',
      description: 'Soft and breathable',
      price: 2499,
      currency: 'EUR',
      categoryId: cat.id,
      attributes: { color: 'navy', size: 'M', tags: ['organic'] },
    })
    expectStatus(created, 201)
    const p = created.body as Product
    expect(p).toEqual({
      id: p.id,
      sku,
      name: 'Organic cotton T-shirt',
      description: 'Soft and breathable',
      price: 2499,
      currency: 'EUR',
      categoryId: cat.id,
      attributes: { color: 'navy', size: 'M', tags: ['organic'] },
      active: true,
      available: 0,
      createdAt: p.createdAt,
      updatedAt: p.updatedAt,
    })
    expectError(await post('/products', { sku, name: 'Twin', price: 1, currency: 'EUR' }), 409, 'SKU_TAKEN')

    expect((await get(`/products/${p.id}`)).body).toEqual(p)
    expect((await get(`/products/${sku}`)).body).toEqual(p)
    expectError(await get('/products/no-such-product'), 404, 'PRODUCT_NOT_FOUND')

    const updated = await patch(`/products/${sku}`, { price: 1999, categoryId: null, attributes: { color: 'black' } })
    expectStatus(updated, 200)
    expect(updated.body.price).toBe(1999)
    expect(updated.body.categoryId).toBeNull()
    expect(updated.body.attributes).toEqual({ color: 'black' })
    expect(updated.body.name).toBe('Organic cotton T-shirt')

    const off = await post(`/products/${p.id}/deactivate`)
    expectStatus(off, 200)
    expect(off.body.active).toBe(false)
    // Hidden from the public and from customers; managers still see it.
    expectError(await get(`/products/${p.id}`), 404, 'PRODUCT_NOT_FOUND')
    expectError(await get(`/products/${p.id}`, customer.token), 404, 'PRODUCT_NOT_FOUND')
    expect((await get(`/products/${p.id}`, manager.token)).body.active).toBe(false)
    const on = await post(`/products/${p.id}/activate`)
    expect(on.body.active).toBe(true)
    expectStatus(await get(`/products/${p.id}`), 200)
  })

  test('writes need a manager or admin; reads need no token, and a bad token is refused', async () => {
    const body = { sku: unique('SKU'), name: 'x', price: 1, currency: 'EUR' }
    expectError(await post('/products', body, ''), 401)
    expectError(await post('/products', body, customer.token), 403, 'FORBIDDEN')
    expectError(await post('/categories', { slug: slug('c'), name: 'c' }, customer.token), 403)
    const p = await product()
    expectError(await patch(`/products/${p.id}`, { price: 5 }, customer.token), 403)
    expectError(await post(`/products/${p.id}/deactivate`, undefined, ''), 401)
    expectStatus(await post('/products', { ...body, sku: unique('SKU') }, admin), 201)

    expectStatus(await get(`/products/${p.id}`), 200)
    expectStatus(await get('/products'), 200)
    expectStatus(await get('/categories'), 200)
    expectError(await get('/products', 'not-a-token'), 401)
  })

  test('bad input is refused with the error envelope and changes nothing', async () => {
    const sku = unique('BAD')
    const good = { sku, name: 'x', price: 100, currency: 'EUR' }
    for (const body of [
      { ...good, price: -1 },
      { ...good, price: 19.99 },
      { ...good, currency: 'eur' },
      { ...good, currency: 'EURO' },
      { ...good, name: '' },
      { ...good, sku: ' padded ' },
      { ...good, attributes: { nested: { no: 1 } } },
      { ...good, attributes: [] },
      { ...good, extra: true },
      { sku, name: 'x', price: 100 },
    ])
      expectError(await post('/products', body), 422)
    expectError(await post('/products', { ...good, currency: 'XQQ' }), 422, 'UNKNOWN_CURRENCY')
    expectError(await post('/products', { ...good, categoryId: 'no-such-category' }), 422, 'CATEGORY_NOT_FOUND')
    expectError(await get(`/products/${sku}`, manager.token), 404)

    const p = await product()
    expectError(await patch(`/products/${p.id}`, {}), 422)
    expectError(await patch(`/products/${p.id}`, { sku: 'other' }), 422)
    expectError(await patch(`/products/${p.id}`, { price: -5 }), 422)
    expectError(await patch('/products/no-such-product', { price: 5 }), 404, 'PRODUCT_NOT_FOUND')
    expect((await get(`/products/${p.id}`)).body.price).toBe(p.price)
  })

  test('an Idempotency-Key replays the first answer; another body with it is 422', async () => {
    const body = { sku: unique('IDEM'), name: 'Once', price: 500, currency: 'USD' }
    const headers = { 'idempotency-key': unique('key') }
    const first = await api.post(`${CAT}/products`, body, manager.token, headers)
    const second = await api.post(`${CAT}/products`, body, manager.token, headers)
    expectStatus(first, 201)
    expectStatus(second, 201)
    expect(second.body).toEqual(first.body)
    expect(second.headers.get('idempotent-replayed')).toBe('true')
    expectError(await api.post(`${CAT}/products`, { ...body, price: 501 }, manager.token, headers), 422, 'IDEMPOTENCY_KEY_REUSED')
  })
})

// ---------------------------------------------------------------------------
// catalog.getProducts through ctx.call
// ---------------------------------------------------------------------------

describe(`catalog.getProducts (${variant})`, () => {
  /** What the storefront fixture got back from ctx.call. */
  const callAction = async (action: string, input: unknown) => {
    const r = await api.post('/api/v1/storefront/call', { action, input })
    expectStatus(r, 200)
    return r.body as { ok: boolean; result?: any; kind?: string; code?: string }
  }

  test('returns the products with these SKUs, inactive ones included, unknown ones left out', async () => {
    const a = await product({ price: 1000 })
    const b = await product({ price: 2000, active: false })
    const got = await callAction('catalog.getProducts', { skus: [a.sku, b.sku, 'NO-SUCH-SKU', a.sku] })
    expect(got.ok).toBe(true)
    const bySku = Object.fromEntries(got.result.items.map((p: any) => [p.sku, p]))
    expect(Object.keys(bySku).sort()).toEqual([a.sku, b.sku].sort())
    const { available: _, ...contractA } = a
    expect(bySku[a.sku]).toEqual(contractA)
    expect(bySku[b.sku].active).toBe(false)
  })

  test('bad input is refused as the contract says', async () => {
    const got = await callAction('catalog.getProducts', { skus: [] })
    expect(got.ok).toBe(false)
    expect(got.kind).toBe('Invalid')
  })
})
