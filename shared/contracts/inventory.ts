import { Type as t } from '@sinclair/typebox'
import { action, event } from './define'

export const StockLevel = t.Object({
  sku: t.String(),
  warehouse: t.String(),
  onHand: t.Integer(),
  reserved: t.Integer(),
  available: t.Integer(),
})

export const Reservation = t.Object({
  id: t.String(),
  sku: t.String(),
  warehouse: t.String(),
  quantity: t.Integer(),
  reference: t.String(),
  status: t.Union([t.Literal('active'), t.Literal('committed'), t.Literal('released'), t.Literal('expired')]),
  expiresAt: t.String({ format: 'date-time' }),
  createdAt: t.String({ format: 'date-time' }),
})

export const Alert = t.Object({
  id: t.String(),
  type: t.Union([t.Literal('low_stock'), t.Literal('device_offline')]),
  sku: t.Union([t.String(), t.Null()]),
  warehouse: t.Union([t.String(), t.Null()]),
  deviceId: t.Union([t.String(), t.Null()]),
  message: t.String(),
  createdAt: t.String({ format: 'date-time' }),
})

const ReservationRef = t.Object({ id: t.String({ maxLength: 64 }) })
const Reference = t.String({ minLength: 1, maxLength: 128 })
const Sku = t.String({ minLength: 1, maxLength: 64 })
const Reservations = t.Object({ reservations: t.Array(Reservation) })

export const inventoryActions = {
  'inventory.reserve': action({
    input: t.Object({
      sku: t.String({ minLength: 1, maxLength: 64 }),
      warehouse: t.String({ minLength: 1, maxLength: 32 }),
      quantity: t.Integer({ minimum: 1 }),
      reference: t.String({ minLength: 1, maxLength: 128 }),
      ttlSeconds: t.Optional(t.Integer({ minimum: 1, maximum: 86_400 })),
    }),
    output: Reservation,
    idempotent: false,
    doc: 'Holds stock for a reference until committed, released or expired; Conflict (OUT_OF_STOCK) when available is short.',
  }),
  'inventory.commit': action({
    input: ReservationRef,
    output: Reservation,
    idempotent: true,
    doc: 'The reserved stock leaves: onHand and reserved drop. Committing twice is a no-op.',
  }),
  'inventory.release': action({
    input: ReservationRef,
    output: Reservation,
    idempotent: true,
    doc: 'Gives the reserved stock back. Releasing twice is a no-op.',
  }),
  'inventory.reserveLines': action({
    input: t.Object({
      reference: Reference,
      lines: t.Array(t.Object({ sku: Sku, quantity: t.Integer({ minimum: 1, maximum: 1_000_000 }) }), { minItems: 1, maxItems: 100 }),
      ttlSeconds: t.Optional(t.Integer({ minimum: 1, maximum: 86_400 })),
    }),
    output: Reservations,
    idempotent: true,
    doc:
      'Reserves every line, all or nothing, choosing the warehouses (one per line where one has enough); ' +
      'Conflict OUT_OF_STOCK naming the short SKUs otherwise. Calling again with the same reference returns the reservations made the first time.',
  }),
  'inventory.commitReference': action({
    input: t.Object({ reference: Reference }),
    output: Reservations,
    idempotent: true,
    doc: "Commits every active reservation of the reference (the stock leaves); Conflict RESERVATION_EXPIRED when one lapsed first.",
  }),
  'inventory.releaseReference': action({
    input: t.Object({ reference: Reference }),
    output: Reservations,
    idempotent: true,
    doc: 'Releases every active reservation of the reference; committed ones are left as they are.',
  }),
  'inventory.restock': action({
    input: t.Object({
      reference: Reference,
      reason: t.String({ minLength: 1, maxLength: 200 }),
      lines: t.Array(t.Object({ sku: Sku, warehouse: t.String({ minLength: 1, maxLength: 32 }), quantity: t.Integer({ minimum: 1, maximum: 1_000_000 }) }), {
        minItems: 1,
        maxItems: 100,
      }),
    }),
    output: t.Object({ items: t.Array(StockLevel) }),
    idempotent: true,
    doc: 'Puts goods back on hand (a cancelled order, a received return) through the ledger, once per reference.',
  }),
  'inventory.getStock': action({
    input: t.Object({ sku: t.Optional(t.String()), warehouse: t.Optional(t.String()) }),
    output: t.Object({ items: t.Array(StockLevel) }),
    idempotent: true,
    doc: 'Stock levels, filtered by SKU and/or warehouse.',
  }),
}

export const inventoryEvents = {
  'inventory.stock.changed': event({
    payload: StockLevel,
    doc: 'onHand or reserved of one SKU in one warehouse changed (coalesced per sensor batch).',
  }),
  'inventory.stock.low': event({
    payload: t.Object({ sku: t.String(), warehouse: t.String(), available: t.Integer(), reorderPoint: t.Integer(), reorderQuantity: t.Union([t.Integer(), t.Null()]) }),
    doc: 'available fell to the reorder point; raised once until it rises above it again.',
  }),
  'inventory.device.status': event({
    payload: t.Object({ deviceId: t.String(), warehouse: t.String(), status: t.Union([t.Literal('online'), t.Literal('offline')]) }),
    doc: 'A device went online or offline (last will, status topic or heartbeat timeout).',
  }),
  'inventory.alert.raised': event({
    payload: t.Object({ alert: Alert }),
    doc: 'A low-stock or device-offline alert was raised (the row GET /alerts lists).',
  }),
}
