/**
 * Carts: a customer's lines (sku, quantity), priced from the catalog whenever they are shown or
 * checked out, never from the client. A cart belongs to its customer; anyone else gets 404.
 */
import { and, asc, eq, sql } from 'drizzle-orm'
import type { Call } from '../../kernel/calls'
import type { Database, Db, Params, Tables } from '../../kernel/db'
import type { Product } from '../../shared/contracts/catalog'
import { Conflict, type ErrorDetail, Invalid, NotFound } from '../../shared/errors'
import type { OrdersSchema, PricedLine } from './schema'

type T = Tables<OrdersSchema>
type CartRow = T['carts']['$inferSelect']

export const MAX_LINES = 100
export const MAX_LINE_QUANTITY = 1000

export interface CartLineView {
  sku: string
  name: string
  unitPrice: number
  quantity: number
  lineTotal: number
  /** False when the product is gone, inactive or in another currency: checkout refuses the cart. */
  purchasable: boolean
}
export interface CartView {
  id: string
  status: 'open' | 'checked_out'
  currency: string | null
  items: CartLineView[]
  itemCount: number
  subtotal: number
  total: number
  checkoutId: string | null
  createdAt: string
  updatedAt: string
}

/** What checkout charges: every line purchasable, one currency. */
export interface PricedCart {
  lines: PricedLine[]
  total: number
  currency: string
}

export class Carts {
  /** Reads every cart view and checkout makes, built once. */
  private readonly q

  constructor(private readonly d: { db: Database; t: T; call: Call }) {
    const { carts, cartItems } = d.t
    this.q = {
      cart: d.db.prepare('orders.cart', (q, p: Params<{ id: string; customerId: string }>) =>
        q.select().from(carts).where(and(eq(carts.id, p('id')), eq(carts.customerId, p('customerId')))),
      ),
      items: d.db.prepare('orders.cartItems', (q, p: Params<{ cartId: string }>) =>
        q.select().from(cartItems).where(eq(cartItems.cartId, p('cartId'))).orderBy(asc(cartItems.addedAt), asc(cartItems.sku)),
      ),
    }
  }

  async create(customerId: string): Promise<CartView> {
    const now = new Date()
    const [row] = await this.d.db.transaction((tx) =>
      tx.insert(this.d.t.carts).values({ id: Bun.randomUUIDv7(), customerId, status: 'open', createdAt: now, updatedAt: now }).returning(),
    )
    return this.view(row)
  }

  async get(customerId: string, cartId: string): Promise<CartView> {
    return this.view(await this.require(customerId, cartId))
  }

  /** Adds `quantity` of `sku` (to what is there); the product must be active and in the cart's currency. */
  async add(customerId: string, cartId: string, sku: string, quantity: number): Promise<CartView> {
    const cart = await this.requireOpen(customerId, cartId)
    const others = (await this.items(cart.id)).filter((i) => i.sku !== sku)
    if (others.length >= MAX_LINES) throw new Invalid(`a cart holds at most ${MAX_LINES} lines`, undefined, 'CART_FULL')
    // One catalog call prices the new line, checks the currency against the others, and renders the cart.
    const products = await this.products([sku, ...others.map((i) => i.sku)])
    const product = products.find((p) => p.sku === sku)
    if (!product) throw new Invalid(`no product with SKU ${sku}`, [{ path: '/sku', message: 'unknown SKU' }], 'UNKNOWN_SKU')
    if (!product.active) throw new Invalid(`product ${sku} is not for sale`, [{ path: '/sku', message: 'inactive product' }], 'PRODUCT_INACTIVE')
    const foreign = products.find((p) => p.sku !== sku && p.active && p.currency !== product.currency)
    if (foreign)
      throw new Invalid(`${sku} is priced in ${product.currency} but the cart is in ${foreign.currency}`, [{ path: '/sku', message: 'another currency' }], 'MIXED_CURRENCIES')
    const { cartItems } = this.d.t
    const updated = await this.d.db.transaction(async (tx) => {
      const touched = await this.touchOpen(tx, cart.id)
      const [line] = await tx
        .insert(cartItems)
        .values({ cartId: cart.id, sku, quantity, addedAt: new Date() })
        .onConflictDoUpdate({ target: [cartItems.cartId, cartItems.sku], set: { quantity: sql`${cartItems.quantity} + ${quantity}` } })
        .returning()
      if (line.quantity > MAX_LINE_QUANTITY)
        throw new Invalid(`at most ${MAX_LINE_QUANTITY} of one SKU per cart`, [{ path: '/quantity', message: 'too many' }], 'QUANTITY_TOO_LARGE')
      return touched
    })
    return this.view(updated, products)
  }

  async setQuantity(customerId: string, cartId: string, sku: string, quantity: number): Promise<CartView> {
    const cart = await this.requireOpen(customerId, cartId)
    const { cartItems } = this.d.t
    await this.d.db.transaction(async (tx) => {
      await this.touchOpen(tx, cart.id)
      const [line] = await tx.update(cartItems).set({ quantity }).where(and(eq(cartItems.cartId, cart.id), eq(cartItems.sku, sku))).returning()
      if (!line) throw new NotFound(`SKU ${sku} is not in cart ${cart.id}`, 'CART_ITEM_NOT_FOUND')
    })
    return this.get(customerId, cartId)
  }

  async remove(customerId: string, cartId: string, sku: string): Promise<CartView> {
    const cart = await this.requireOpen(customerId, cartId)
    const { cartItems } = this.d.t
    await this.d.db.transaction(async (tx) => {
      await this.touchOpen(tx, cart.id)
      const gone = await tx.delete(cartItems).where(and(eq(cartItems.cartId, cart.id), eq(cartItems.sku, sku))).returning()
      if (!gone.length) throw new NotFound(`SKU ${sku} is not in cart ${cart.id}`, 'CART_ITEM_NOT_FOUND')
    })
    return this.get(customerId, cartId)
  }

  /** The cart priced for checkout; 422 when it is empty or holds something that cannot be bought. */
  async priceForCheckout(cartId: string): Promise<PricedCart> {
    const items = await this.items(cartId)
    if (!items.length) throw new Invalid('the cart is empty', undefined, 'CART_EMPTY')
    const bySku = new Map((await this.products(items.map((i) => i.sku))).map((p) => [p.sku, p]))
    const problems: ErrorDetail[] = []
    const lines: PricedLine[] = []
    items.forEach((item, i) => {
      const p = bySku.get(item.sku)
      if (!p || !p.active) problems.push({ path: `/items/${i}`, message: `${item.sku} is ${p ? 'not for sale' : 'unknown'}` })
      else lines.push({ sku: item.sku, name: p.name, unitPrice: p.price, quantity: item.quantity })
    })
    if (problems.length) throw new Invalid(`the cart holds products that cannot be bought: ${problems.map((p) => p.message).join('; ')}`, problems, 'PRODUCT_UNAVAILABLE')
    const currencies = new Set(lines.map((l) => bySku.get(l.sku)!.currency))
    if (currencies.size > 1) throw new Invalid(`the cart mixes currencies (${[...currencies].join(', ')})`, undefined, 'MIXED_CURRENCIES')
    return { lines, total: lines.reduce((n, l) => n + l.unitPrice * l.quantity, 0), currency: [...currencies][0] }
  }

  async require(customerId: string, cartId: string): Promise<CartRow> {
    const [row] = await this.q.cart(this.d.db.read, { id: cartId, customerId })
    if (!row) throw new NotFound(`no cart ${cartId}`, 'CART_NOT_FOUND')
    return row
  }

  private async requireOpen(customerId: string, cartId: string): Promise<CartRow> {
    const cart = await this.require(customerId, cartId)
    if (cart.status !== 'open') throw new Conflict(`cart ${cartId} is checked out (checkout ${cart.checkoutId})`, 'CART_CHECKED_OUT')
    return cart
  }

  /** A change only lands while the cart is open (a checkout may have taken it since it was read). */
  private async touchOpen(tx: Db, cartId: string): Promise<CartRow> {
    const { carts } = this.d.t
    const [row] = await tx
      .update(carts)
      .set({ updatedAt: new Date() })
      .where(and(eq(carts.id, cartId), eq(carts.status, 'open')))
      .returning()
    if (!row) throw new Conflict(`cart ${cartId} is checked out`, 'CART_CHECKED_OUT')
    return row
  }

  private items(cartId: string) {
    return this.q.items(this.d.db.read, { cartId })
  }

  private async products(skus: string[]): Promise<Product[]> {
    if (!skus.length) return []
    return (await this.d.call('catalog.getProducts', { skus })).items
  }

  /** `known`: products already fetched for this request (any missing are asked for). */
  private async view(cart: CartRow, known: Product[] = []): Promise<CartView> {
    const items = await this.items(cart.id)
    const bySku = new Map(known.map((p) => [p.sku, p]))
    const missing = items.map((i) => i.sku).filter((sku) => !bySku.has(sku))
    for (const p of await this.products(missing)) bySku.set(p.sku, p)
    // The cart's currency is that of its first purchasable line; lines in another one cannot be bought with it.
    const currency = items.map((i) => bySku.get(i.sku)).find((p) => p?.active)?.currency ?? null
    const lines = items.map((item): CartLineView => {
      const p = bySku.get(item.sku)
      const purchasable = Boolean(p?.active && p.currency === currency)
      const unitPrice = p?.price ?? 0
      return { sku: item.sku, name: p?.name ?? item.sku, unitPrice, quantity: item.quantity, lineTotal: purchasable ? unitPrice * item.quantity : 0, purchasable }
    })
    const subtotal = lines.reduce((n, l) => n + l.lineTotal, 0)
    return {
      id: cart.id,
      status: cart.status as CartView['status'],
      currency,
      items: lines,
      itemCount: lines.reduce((n, l) => n + l.quantity, 0),
      subtotal,
      total: subtotal,
      checkoutId: cart.checkoutId,
      createdAt: cart.createdAt.toISOString(),
      updatedAt: cart.updatedAt.toISOString(),
    }
  }
}
