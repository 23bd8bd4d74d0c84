/**
 * HTTP face of stock (CONTRACT.md section 4): warehouses, items, levels, adjustments, the ledger,
 * reservations, suppliers, purchase orders and alerts. Reads need a signed-in user; writes need
 * `manager` or `admin`. The schemas here are the validation and the OpenAPI document.
 */
import { t } from 'elysia'
import type { PluginContext } from '../../kernel/plugin'
import { Alert, StockLevel } from '../../shared/contracts/inventory'
import { toAlertView } from './alerts'
import { ListQuery, Page, decodeCursor, isString, page } from '../../shared/pagination'
import {
  type StockService,
  toItemView,
  toMovementView,
  toPurchaseOrderView,
  toReservationView,
  toSupplierView,
  toWarehouseView,
} from './service'

const WRITERS = ['manager', 'admin']
const MAX_QUANTITY = 1_000_000_000

// Warehouse codes appear in MQTT topics: no slashes, wildcards or spaces.
const CODE = '^[A-Za-z0-9_-]{1,32}$'
const Code = t.String({ pattern: CODE, error: 'warehouse must be a warehouse code (letters, digits, _ and -, up to 32)' })
const Sku = t.String({ minLength: 1, maxLength: 64, pattern: '^\\S(.*\\S)?$', error: 'sku must be 1 to 64 characters without surrounding spaces' })
const Name = t.String({ minLength: 1, maxLength: 200, pattern: '\\S', error: 'name must be 1 to 200 characters, not only spaces' })
const Quantity = t.Integer({ minimum: 1, maximum: MAX_QUANTITY, error: `quantity must be an integer from 1 to ${MAX_QUANTITY}` })
const ReorderPoint = t.Integer({ minimum: 0, maximum: MAX_QUANTITY, error: `reorderPoint must be an integer from 0 to ${MAX_QUANTITY}` })
const ReorderQuantity = t.Integer({ minimum: 1, maximum: MAX_QUANTITY, error: `reorderQuantity must be an integer from 1 to ${MAX_QUANTITY}` })
const Id = t.String({ minLength: 1, maxLength: 64 })
const IdParams = t.Object({ id: Id })
const Time = t.String({ format: 'date-time' })

// Query filters: an empty value means no filter.
const SkuFilter = t.Optional(t.String({ maxLength: 64 }))
const CodeFilter = t.Optional(t.String({ maxLength: 32 }))

const Warehouse = t.Object({ id: t.String(), code: t.String(), name: t.String(), createdAt: Time })
const Item = t.Object({
  id: t.String(),
  sku: t.String(),
  name: t.String(),
  reorderPoint: t.Optional(t.Integer()),
  reorderQuantity: t.Optional(t.Integer()),
  supplierId: t.Optional(t.String()),
  createdAt: Time,
})
const Movement = t.Object({
  id: t.String(),
  sku: t.String(),
  warehouse: t.String(),
  delta: t.Integer(),
  onHandAfter: t.Integer(),
  reason: t.String(),
  source: t.String(),
  at: Time,
})
// Enums are unions of literals, not t.UnionEnum: as an optional query parameter Elysia fills a
// UnionEnum in with its first value when the parameter is absent, turning "no filter" into a filter.
const ReservationStatus = t.Union([t.Literal('active'), t.Literal('committed'), t.Literal('released'), t.Literal('expired')])
const Reservation = t.Object({
  id: t.String(),
  sku: t.String(),
  warehouse: t.String(),
  quantity: t.Integer(),
  reference: t.String(),
  status: ReservationStatus,
  expiresAt: Time,
  createdAt: Time,
})
const Supplier = t.Object({ id: t.String(), name: t.String(), email: t.Union([t.String(), t.Null()]), createdAt: Time })
const PurchaseOrderStatus = t.Union([t.Literal('draft'), t.Literal('ordered'), t.Literal('received'), t.Literal('cancelled')])
const Line = t.Object({ sku: Sku, quantity: Quantity }, { additionalProperties: false })
const PurchaseOrder = t.Object({
  id: t.String(),
  supplierId: t.String(),
  warehouse: t.String(),
  status: PurchaseOrderStatus,
  lines: t.Array(t.Object({ sku: t.String(), quantity: t.Integer() })),
  createdAt: Time,
  updatedAt: Time,
})

const isPair = (k: unknown): k is [string, string] =>
  Array.isArray(k) && k.length === 2 && k.every((s) => typeof s === 'string' && s.length > 0 && s.length <= 64)

/** A list route's query: the page plus optional filters. */
const listQuery = <P extends Parameters<typeof t.Object>[0]>(filters: P) => t.Composite([ListQuery, t.Object(filters)])

export function stockRoutes(ctx: PluginContext, stock: StockService) {
  return (
    ctx
      .router()
      // ------------------------------------------------------------------ warehouses
      .post('/warehouses', ({ body }) => stock.createWarehouse(body), {
        auth: WRITERS,
        creates: true,
        body: t.Object({ code: Code, name: Name }),
        response: { 201: Warehouse },
        detail: { summary: 'Create a warehouse; its code is unique and appears in device MQTT topics (409 if taken)' },
      })
      .get(
        '/warehouses',
        async ({ query }) => {
          const limit = query.limit ?? 50
          return page(await stock.listWarehouses(limit + 1, decodeCursor(query.cursor, isString)), limit, toWarehouseView, (w) => w.id)
        },
        { auth: true, query: ListQuery, response: { 200: Page(Warehouse) }, detail: { summary: 'Warehouses, oldest first' } },
      )
      .get('/warehouses/:id', ({ params }) => stock.getWarehouse(params.id), {
        auth: true,
        params: IdParams,
        response: { 200: Warehouse },
        detail: { summary: 'A warehouse, by id or by code' },
      })
      // ------------------------------------------------------------------ items
      .post('/items', ({ body }) => stock.createItem(body), {
        auth: WRITERS,
        creates: true,
        body: t.Object({
          sku: Sku,
          name: Name,
          reorderPoint: t.Optional(ReorderPoint),
          reorderQuantity: t.Optional(ReorderQuantity),
          supplierId: t.Optional(Id),
        }),
        response: { 201: Item },
        detail: { summary: 'Create an item; its SKU is unique (409 if taken). A low-stock alert is raised when available falls to reorderPoint' },
      })
      .get(
        '/items',
        async ({ query }) => {
          const limit = query.limit ?? 50
          return page(await stock.listItems(limit + 1, decodeCursor(query.cursor, isString)), limit, toItemView, (i) => i.id)
        },
        { auth: true, query: ListQuery, response: { 200: Page(Item) }, detail: { summary: 'Items, oldest first' } },
      )
      .get('/items/:id', ({ params }) => stock.getItem(params.id), {
        auth: true,
        params: IdParams,
        response: { 200: Item },
        detail: { summary: 'An item, by id or by SKU' },
      })
      .patch('/items/:id', ({ params, body }) => stock.updateItem(params.id, body), {
        auth: WRITERS,
        params: IdParams,
        body: t.Object(
          {
            name: t.Optional(Name),
            reorderPoint: t.Optional(t.Union([ReorderPoint, t.Null()])),
            reorderQuantity: t.Optional(t.Union([ReorderQuantity, t.Null()])),
            supplierId: t.Optional(t.Union([Id, t.Null()])),
          },
          { minProperties: 1, additionalProperties: false },
        ),
        response: { 200: Item },
        detail: { summary: 'Change an item’s name or reorder settings (null clears one); by id or by SKU' },
      })
      // ------------------------------------------------------------------ stock and ledger
      .get(
        '/stock',
        async ({ query }) => {
          const limit = query.limit ?? 50
          const levels = await stock.stock(
            { sku: query.sku || undefined, warehouse: query.warehouse || undefined },
            { limit: limit + 1, after: decodeCursor(query.cursor, isPair) },
          )
          return page(levels, limit, (l) => l, (l) => [l.sku, l.warehouse])
        },
        {
          auth: true,
          query: listQuery({ sku: SkuFilter, warehouse: CodeFilter }),
          response: { 200: Page(StockLevel) },
          detail: { summary: 'Stock levels by SKU and warehouse (available = onHand − reserved); a known pair that never held stock shows zeros' },
        },
      )
      .post('/adjustments', ({ body, principal }) => stock.adjust(body, principal.id), {
        auth: WRITERS,
        creates: true,
        body: t.Object({
          sku: Sku,
          warehouse: Code,
          delta: t.Integer({
            minimum: -MAX_QUANTITY,
            maximum: MAX_QUANTITY,
            description: 'non-zero: positive adds stock, negative removes it',
            error: `delta must be a non-zero integer from -${MAX_QUANTITY} to ${MAX_QUANTITY}`,
          }),
          reason: t.String({ minLength: 1, maxLength: 500, pattern: '\\S', error: 'reason must be 1 to 500 characters, not only spaces' }),
        }),
        response: { 201: StockLevel },
        detail: {
          summary: 'A manual movement of onHand, recorded in the ledger with source manual:<userId>; a decrease below available is 409 and changes nothing',
        },
      })
      .get(
        '/movements',
        async ({ query }) => {
          const limit = query.limit ?? 50
          const rows = await stock.listMovements(
            { sku: query.sku || undefined, warehouse: query.warehouse || undefined },
            limit + 1,
            decodeCursor(query.cursor, isString),
          )
          return page(rows, limit, toMovementView, (m) => m.id)
        },
        {
          auth: true,
          query: listQuery({ sku: SkuFilter, warehouse: CodeFilter }),
          response: { 200: Page(Movement) },
          detail: { summary: 'The append-only ledger, newest first: every change of onHand is one row' },
        },
      )
      // ------------------------------------------------------------------ reservations
      .post('/reservations', ({ body }) => stock.reserve(body), {
        auth: WRITERS,
        creates: true,
        body: t.Object({
          sku: Sku,
          warehouse: Code,
          quantity: Quantity,
          reference: t.String({ minLength: 1, maxLength: 128 }),
          ttlSeconds: t.Optional(t.Integer({ minimum: 1, maximum: 86_400, error: 'ttlSeconds must be an integer from 1 to 86400' })),
        }),
        response: { 201: Reservation },
        detail: {
          summary: 'Hold stock until committed, released or expired (default TTL from RESERVATION_TTL_SECONDS); 409 OUT_OF_STOCK when available is short',
        },
      })
      .get(
        '/reservations',
        async ({ query }) => {
          const limit = query.limit ?? 50
          const rows = await stock.listReservations(
            { sku: query.sku || undefined, warehouse: query.warehouse || undefined, status: query.status, reference: query.reference || undefined },
            limit + 1,
            decodeCursor(query.cursor, isString),
          )
          return page(rows, limit, toReservationView, (r) => r.id)
        },
        {
          auth: WRITERS,
          query: listQuery({
            sku: SkuFilter,
            warehouse: CodeFilter,
            status: t.Optional(ReservationStatus),
            reference: t.Optional(t.String({ maxLength: 128 })),
          }),
          response: { 200: Page(Reservation) },
          detail: { summary: 'Reservations, newest first' },
        },
      )
      .get('/reservations/:id', ({ params }) => stock.getReservation(params.id), {
        auth: WRITERS,
        params: IdParams,
        response: { 200: Reservation },
        detail: { summary: 'A reservation' },
      })
      .post('/reservations/:id/commit', ({ params }) => stock.commit(params.id), {
        auth: WRITERS,
        params: IdParams,
        response: { 200: Reservation },
        detail: { summary: 'The reserved stock leaves (onHand and reserved drop); again is a no-op; 409 when released or expired' },
      })
      .delete('/reservations/:id', ({ params }) => stock.release(params.id), {
        auth: WRITERS,
        params: IdParams,
        response: { 200: Reservation },
        detail: { summary: 'Release a reservation (its stock is available again); again is a no-op; 409 when committed' },
      })
      // ------------------------------------------------------------------ suppliers
      .post('/suppliers', ({ body }) => stock.createSupplier(body), {
        auth: WRITERS,
        creates: true,
        body: t.Object({ name: Name, email: t.Optional(t.String({ format: 'email', maxLength: 254, error: 'email must be a valid email address' })) }),
        response: { 201: Supplier },
        detail: { summary: 'Create a supplier' },
      })
      .get(
        '/suppliers',
        async ({ query }) => {
          const limit = query.limit ?? 50
          return page(await stock.listSuppliers(limit + 1, decodeCursor(query.cursor, isString)), limit, toSupplierView, (s) => s.id)
        },
        { auth: true, query: ListQuery, response: { 200: Page(Supplier) }, detail: { summary: 'Suppliers, oldest first' } },
      )
      .get('/suppliers/:id', ({ params }) => stock.getSupplier(params.id), {
        auth: true,
        params: IdParams,
        response: { 200: Supplier },
        detail: { summary: 'A supplier' },
      })
      // ------------------------------------------------------------------ purchase orders
      .post('/purchase-orders', ({ body }) => stock.createPurchaseOrder(body), {
        auth: WRITERS,
        creates: true,
        body: t.Object({ supplierId: Id, warehouse: Code, lines: t.Array(Line, { minItems: 1, maxItems: 100 }) }),
        response: { 201: PurchaseOrder },
        detail: { summary: 'Draft a purchase order (one line per SKU); draft → ordered → received, or cancelled before receipt' },
      })
      .get(
        '/purchase-orders',
        async ({ query }) => {
          const limit = query.limit ?? 50
          const rows = await stock.listPurchaseOrders(
            { status: query.status, supplierId: query.supplierId || undefined, warehouse: query.warehouse || undefined },
            limit + 1,
            decodeCursor(query.cursor, isString),
          )
          return page(rows, limit, toPurchaseOrderView, (p) => p.id)
        },
        {
          auth: true,
          query: listQuery({ status: t.Optional(PurchaseOrderStatus), supplierId: t.Optional(t.String({ maxLength: 64 })), warehouse: CodeFilter }),
          response: { 200: Page(PurchaseOrder) },
          detail: { summary: 'Purchase orders, newest first' },
        },
      )
      .get('/purchase-orders/:id', ({ params }) => stock.getPurchaseOrder(params.id), {
        auth: true,
        params: IdParams,
        response: { 200: PurchaseOrder },
        detail: { summary: 'A purchase order' },
      })
      .post('/purchase-orders/:id/order', ({ params }) => stock.order(params.id), {
        auth: WRITERS,
        params: IdParams,
        response: { 200: PurchaseOrder },
        detail: { summary: 'Send a draft purchase order (draft → ordered); 409 from any other status' },
      })
      .post('/purchase-orders/:id/receive', ({ params }) => stock.receive(params.id), {
        auth: WRITERS,
        params: IdParams,
        response: { 200: PurchaseOrder },
        detail: { summary: 'Receive an ordered purchase order (ordered → received): its lines are added to stock, source po:<id>; 409 from any other status' },
      })
      .post('/purchase-orders/:id/cancel', ({ params }) => stock.cancel(params.id), {
        auth: WRITERS,
        params: IdParams,
        response: { 200: PurchaseOrder },
        detail: { summary: 'Cancel a draft or ordered purchase order; 409 once received' },
      })
      // ------------------------------------------------------------------ alerts
      .get(
        '/alerts',
        async ({ query }) => {
          const limit = query.limit ?? 50
          const rows = await stock.listAlerts(
            { type: query.type, sku: query.sku || undefined, warehouse: query.warehouse || undefined },
            limit + 1,
            decodeCursor(query.cursor, isString),
          )
          return page(rows, limit, toAlertView, (a) => a.id)
        },
        {
          auth: true,
          query: listQuery({ type: t.Optional(t.Union([t.Literal('low_stock'), t.Literal('device_offline')])), sku: SkuFilter, warehouse: CodeFilter }),
          response: { 200: Page(Alert) },
          detail: { summary: 'Low-stock and device-offline alerts, newest first' },
        },
      )
  )
}
