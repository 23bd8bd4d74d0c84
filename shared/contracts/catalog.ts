import { type Static, Type as t } from '@sinclair/typebox'
import { action, event } from './define'

/** CONTRACT.md §7: prices are integers in minor units with an ISO 4217 currency. */
export const Product = t.Object({
  id: t.String(),
  sku: t.String(),
  name: t.String(),
  description: t.String(),
  price: t.Integer({ minimum: 0 }),
  currency: t.String({ pattern: '^[A-Z]{3}$' }),
  categoryId: t.Union([t.String(), t.Null()]),
  attributes: t.Record(t.String(), t.Unknown()),
  active: t.Boolean(),
  createdAt: t.String({ format: 'date-time' }),
  updatedAt: t.String({ format: 'date-time' }),
})
export type Product = Static<typeof Product>

export const catalogActions = {
  'catalog.getProducts': action({
    input: t.Object({ skus: t.Array(t.String({ minLength: 1, maxLength: 64 }), { minItems: 1, maxItems: 200 }) }),
    output: t.Object({ items: t.Array(Product) }),
    idempotent: true,
    doc: 'The products with these SKUs, inactive ones included (callers check `active`); unknown SKUs are left out.',
  }),
}

export const catalogEvents = {
  'catalog.product.changed': event({
    payload: t.Object({ product: Product }),
    doc: 'A product was created or changed (price, active flag, …).',
  }),
}
