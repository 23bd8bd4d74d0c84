/**
 * HTTP face of orders (CONTRACT.md section 7): carts, checkout, orders and their status machine,
 * returns, and the checkout sagas themselves (for support and for the curious). Customers see only
 * their own carts, checkouts and orders (anything else is 404); managers and admins see every order.
 */
import { t } from 'elysia'
import type { Principal } from '../../kernel/http/identity'
import type { PluginContext } from '../../kernel/plugin'
import { OrderStatus } from '../../shared/contracts/orders'
import { ListQuery, Page, decodeCursor, isString, page } from '../../shared/pagination'
import { MAX_LINE_QUANTITY, MAX_LINES, type Carts } from './carts'
import { type CheckoutSaga, toCheckoutView } from './checkout'
import { type Actor, type OrderService, toOrderSummary, toOrderView } from './service'

const MANAGERS = ['manager', 'admin']
const actor = (p: Principal): Actor => ({ id: p.id, manager: p.roles.includes('manager') || p.roles.includes('admin') })

const Id = t.String({ minLength: 1, maxLength: 64 })
const Sku = t.String({ minLength: 1, maxLength: 64, pattern: '^\\S(.*\\S)?$', error: 'sku must be 1 to 64 characters without surrounding spaces' })
const Quantity = t.Integer({ minimum: 1, maximum: MAX_LINE_QUANTITY, error: `quantity must be an integer from 1 to ${MAX_LINE_QUANTITY}` })
const Time = t.String({ format: 'date-time' })
/** A request object: an unknown property is a 422, not silently ignored. */
const Strict: typeof t.Object = ((properties: any, options?: any) => t.Object(properties, { additionalProperties: false, ...options })) as typeof t.Object
const Text = (max: number, name: string) => t.String({ minLength: 1, maxLength: max, pattern: '\\S', error: `${name} must be 1 to ${max} characters, not only spaces` })

const CartView = t.Object({
  id: t.String(),
  status: t.Union([t.Literal('open'), t.Literal('checked_out')]),
  currency: t.Union([t.String(), t.Null()]),
  items: t.Array(
    t.Object({ sku: t.String(), name: t.String(), unitPrice: t.Integer(), quantity: t.Integer(), lineTotal: t.Integer(), purchasable: t.Boolean() }),
  ),
  itemCount: t.Integer(),
  subtotal: t.Integer(),
  total: t.Integer(),
  checkoutId: t.Union([t.String(), t.Null()]),
  createdAt: Time,
  updatedAt: Time,
})

const ShippingAddress = Strict({
  name: Text(200, 'name'),
  line1: Text(200, 'line1'),
  line2: t.Optional(t.String({ maxLength: 200 })),
  city: Text(100, 'city'),
  postalCode: Text(20, 'postalCode'),
  country: t.String({ pattern: '^[A-Z]{2}$', error: 'country must be an ISO 3166 two-letter code' }),
})

const Warehouses = t.Array(t.Object({ warehouse: t.String(), quantity: t.Integer() }))
const ReturnView = t.Object({
  id: t.String(),
  orderId: t.String(),
  status: t.Union([t.Literal('requested'), t.Literal('received')]),
  reason: t.String(),
  lines: t.Array(t.Object({ sku: t.String(), quantity: t.Integer(), unitPrice: t.Integer(), warehouses: Warehouses })),
  amount: t.Integer(),
  createdAt: Time,
  receivedAt: t.Union([Time, t.Null()]),
})
const OrderView = t.Object({
  id: t.String(),
  customerId: t.String(),
  checkoutId: t.String(),
  status: OrderStatus,
  currency: t.String(),
  lines: t.Array(
    t.Object({
      sku: t.String(),
      name: t.String(),
      unitPrice: t.Integer(),
      quantity: t.Integer(),
      lineTotal: t.Integer(),
      returned: t.Integer({ description: 'units asked back by returns so far' }),
      allocations: Warehouses,
    }),
  ),
  totals: t.Object({ subtotal: t.Integer(), total: t.Integer(), refunded: t.Integer() }),
  payment: t.Union([
    t.Object({ id: t.String(), status: t.String(), amount: t.Integer(), captured: t.Integer(), refunded: t.Integer() }),
    t.Null({ description: 'payments did not answer just now' }),
  ]),
  shippingAddress: t.Object({
    name: t.String(),
    line1: t.String(),
    line2: t.Optional(t.String()),
    city: t.String(),
    postalCode: t.String(),
    country: t.String(),
  }),
  history: t.Array(t.Object({ from: t.Union([OrderStatus, t.Null()]), to: OrderStatus, at: Time, note: t.Union([t.String(), t.Null()]) })),
  returns: t.Array(ReturnView),
  createdAt: Time,
  updatedAt: Time,
})
const OrderSummary = t.Object({
  id: t.String(),
  customerId: t.String(),
  status: OrderStatus,
  total: t.Integer(),
  currency: t.String(),
  refunded: t.Integer(),
  createdAt: Time,
  updatedAt: Time,
})
const CheckoutStatus = t.Union([t.Literal('running'), t.Literal('compensating'), t.Literal('completed'), t.Literal('compensated')])
const CheckoutView = t.Object({
  id: t.String(),
  cartId: t.String(),
  status: CheckoutStatus,
  step: t.Union([t.Literal('reserve'), t.Literal('authorize'), t.Literal('place'), t.Literal('complete')]),
  total: t.Integer(),
  currency: t.String(),
  paymentId: t.Union([t.String(), t.Null()]),
  orderId: t.Union([t.String(), t.Null()]),
  error: t.Union([t.Object({ status: t.Integer(), code: t.String(), message: t.String() }), t.Null()]),
  createdAt: Time,
  updatedAt: Time,
})

const CartParams = t.Object({ id: Id })
const CartItemParams = t.Object({ id: Id, sku: Sku })
const IdParams = t.Object({ id: Id })

export function orderRoutes(ctx: PluginContext, carts: Carts, saga: CheckoutSaga, orders: OrderService) {
  return (
    ctx
      .router()
      // ------------------------------------------------------------------ carts
      .post('/carts', ({ principal }) => carts.create(principal.id), {
        auth: true,
        creates: true,
        response: { 201: CartView },
        detail: { summary: 'Start a cart for the signed-in customer' },
      })
      .get('/carts/:id', ({ principal, params }) => carts.get(principal.id, params.id), {
        auth: true,
        params: CartParams,
        response: { 200: CartView },
        detail: { summary: 'A cart with its lines priced from the catalog now (never from the client); other customers’ carts are 404' },
      })
      .post('/carts/:id/items', ({ principal, params, body }) => carts.add(principal.id, params.id, body.sku, body.quantity), {
        auth: true,
        creates: true,
        params: CartParams,
        body: Strict({ sku: Sku, quantity: Quantity }),
        response: { 201: CartView },
        detail: {
          summary: `Add units of a product (to those already in the cart, at most ${MAX_LINE_QUANTITY} per SKU and ${MAX_LINES} lines); 422 for an unknown or inactive SKU or another currency; 409 once checked out`,
        },
      })
      .patch('/carts/:id/items/:sku', ({ principal, params, body }) => carts.setQuantity(principal.id, params.id, params.sku, body.quantity), {
        auth: true,
        params: CartItemParams,
        body: Strict({ quantity: Quantity }),
        response: { 200: CartView },
        detail: { summary: 'Set the quantity of a line' },
      })
      .delete('/carts/:id/items/:sku', ({ principal, params }) => carts.remove(principal.id, params.id, params.sku), {
        auth: true,
        params: CartItemParams,
        response: { 200: CartView },
        detail: { summary: 'Remove a line' },
      })
      .post(
        '/carts/:id/checkout',
        async ({ principal, params, body, request }) => {
          const done = await saga.checkout(principal.id, params.id, body, request.headers.get('idempotency-key'))
          return done.placed ? toOrderView(done.placed) : orders.get(actor(principal), done.orderId)
        },
        {
          auth: true,
          creates: true,
          params: CartParams,
          body: Strict({
            payment: Strict({ method: t.Literal('card'), token: t.String({ minLength: 1, maxLength: 200 }) }),
            shippingAddress: ShippingAddress,
          }),
          response: { 201: OrderView },
          detail: {
            summary:
              'Check the cart out: reserve stock, authorize the card, place the order, commit the stock and capture the payment. 201 the paid order; ' +
              '409 OUT_OF_STOCK; 402 PAYMENT_DECLINED; 503 when a step’s plugin or the payment provider is unavailable (nothing stays reserved or held). ' +
              'The same Idempotency-Key returns the same answer; a cart is checked out once.',
          },
        },
      )
      // ------------------------------------------------------------------ checkouts (the sagas)
      .get(
        '/checkouts',
        async ({ principal, query }) => {
          const limit = query.limit ?? 50
          const rows = await saga.list(actor(principal), { cartId: query.cartId || undefined, status: query.status }, limit + 1, decodeCursor(query.cursor, isString))
          return page(rows, limit, toCheckoutView, (c) => c.id)
        },
        {
          auth: true,
          query: t.Composite([ListQuery, t.Object({ cartId: t.Optional(t.String({ maxLength: 64 })), status: t.Optional(CheckoutStatus) })]),
          response: { 200: Page(CheckoutView) },
          detail: { summary: 'Checkout attempts, newest first, with their step, outcome and error (own, or all for managers)' },
        },
      )
      .get('/checkouts/:id', ({ principal, params }) => saga.get(actor(principal), params.id), {
        auth: true,
        params: IdParams,
        response: { 200: CheckoutView },
        detail: { summary: 'A checkout attempt' },
      })
      // ------------------------------------------------------------------ orders
      .get(
        '/orders',
        async ({ principal, query }) => {
          const limit = query.limit ?? 50
          const rows = await orders.list(actor(principal), { status: query.status, customerId: query.customerId || undefined }, limit + 1, decodeCursor(query.cursor, isString))
          return page(rows, limit, toOrderSummary, (o) => o.id)
        },
        {
          auth: true,
          query: t.Composite([ListQuery, t.Object({ status: t.Optional(OrderStatus), customerId: t.Optional(t.String({ maxLength: 64 })) })]),
          response: { 200: Page(OrderSummary) },
          detail: { summary: 'Orders, newest first: a customer’s own, or everyone’s for managers and admins (customerId filters)' },
        },
      )
      .get('/orders/:id', ({ principal, params }) => orders.get(actor(principal), params.id), {
        auth: true,
        params: IdParams,
        response: { 200: OrderView },
        detail: { summary: 'An order: lines with prices and warehouse allocation, totals, payment summary, status history and returns' },
      })
      .post('/orders/:id/cancel', ({ principal, params }) => orders.cancel(actor(principal), params.id), {
        auth: true,
        params: IdParams,
        response: { 200: OrderView },
        detail: { summary: 'Cancel before shipping (its customer or a manager): the goods go back on hand and the whole amount is refunded; 409 naming the status otherwise' },
      })
      .post('/orders/:id/fulfil', ({ principal, params }) => orders.fulfil(actor(principal), params.id), {
        auth: MANAGERS,
        params: IdParams,
        response: { 200: OrderView },
        detail: { summary: 'paid → fulfilling (picking and packing); 409 naming the status otherwise' },
      })
      .post('/orders/:id/ship', ({ principal, params }) => orders.ship(actor(principal), params.id), {
        auth: MANAGERS,
        params: IdParams,
        response: { 200: OrderView },
        detail: { summary: 'paid or fulfilling → shipped; 409 naming the status otherwise' },
      })
      .post('/orders/:id/deliver', ({ principal, params }) => orders.deliver(actor(principal), params.id), {
        auth: MANAGERS,
        params: IdParams,
        response: { 200: OrderView },
        detail: { summary: 'shipped → delivered; 409 naming the status otherwise' },
      })
      .post('/orders/:id/returns', ({ principal, params, body }) => orders.requestReturn(actor(principal), params.id, body), {
        auth: true,
        creates: true,
        params: IdParams,
        body: Strict({
          lines: t.Array(Strict({ sku: Sku, quantity: Quantity }), { minItems: 1, maxItems: MAX_LINES }),
          reason: Text(500, 'reason'),
        }),
        response: { 201: ReturnView },
        detail: { summary: 'Ask to send back lines of a delivered order (its customer); never more than bought minus already returned (422)' },
      })
      .post('/returns/:id/receive', ({ principal, params }) => orders.receiveReturn(actor(principal), params.id), {
        auth: MANAGERS,
        params: IdParams,
        response: { 200: ReturnView },
        detail: { summary: 'The returned goods arrived: back on hand and refunded; the order becomes returned once every unit came back' },
      })
  )
}
