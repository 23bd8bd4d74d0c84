/**
 * HTTP face of payments: managers and admins look payments up (a payment does not know its
 * customer; orders shows its customers the summary of their own). Money moves only through the
 * actions other plugins call (payments.authorize, capture, void, refund).
 */
import { t } from 'elysia'
import type { PluginContext } from '../../kernel/plugin'
import { Payment, PaymentStatus } from '../../shared/contracts/payments'
import { ListQuery, Page, decodeCursor, isString } from '../../shared/pagination'
import { encodeCursor } from '../../shared/pagination'
import type { PaymentsService } from './service'

const READERS = ['manager', 'admin']

export function paymentRoutes(ctx: PluginContext, payments: PaymentsService) {
  return ctx
    .router()
    .get(
      '/payments',
      async ({ query }) => {
        const limit = query.limit ?? 50
        const rows = await payments.list({ reference: query.reference || undefined, status: query.status }, limit + 1, decodeCursor(query.cursor, isString))
        const items = rows.slice(0, limit)
        return {
          items: await Promise.all(items.map((row) => payments.view(row))),
          nextCursor: rows.length > limit ? encodeCursor(items[items.length - 1].id) : null,
        }
      },
      {
        auth: READERS,
        query: t.Composite([ListQuery, t.Object({ reference: t.Optional(t.String({ maxLength: 128 })), status: t.Optional(PaymentStatus) })]),
        response: { 200: Page(Payment) },
        detail: { summary: 'Payments, newest first, by reference (e.g. a checkout id) and status, each with its history' },
      },
    )
    .get('/payments/:id', ({ params }) => payments.get(params.id), {
      auth: READERS,
      params: t.Object({ id: t.String({ minLength: 1, maxLength: 64 }) }),
      response: { 200: Payment },
      detail: { summary: 'A payment with its history (authorized, declined, failed, captured, voided, refunded)' },
    })
}
