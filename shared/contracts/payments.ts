import { type Static, Type as t } from '@sinclair/typebox'
import { action, event } from './define'

export const PaymentStatus = t.Union([
  /** The provider was asked and has not answered yet (or the asker died; a sweep settles it). */
  t.Literal('pending'),
  t.Literal('authorized'),
  t.Literal('captured'),
  t.Literal('voided'),
  t.Literal('refunded'),
  t.Literal('partially_refunded'),
  t.Literal('declined'),
  t.Literal('failed'),
])
export type PaymentStatus = Static<typeof PaymentStatus>

export const PaymentEventKind = t.Union([
  t.Literal('authorized'),
  t.Literal('declined'),
  t.Literal('failed'),
  t.Literal('captured'),
  t.Literal('voided'),
  t.Literal('refunded'),
])

/** A payment with its history (CONTRACT.md §7: authorized, captured, voided, refunded). */
export const Payment = t.Object({
  id: t.String(),
  /** What the money is for, e.g. the checkout or order it belongs to. */
  reference: t.String(),
  provider: t.String(),
  status: PaymentStatus,
  amount: t.Integer({ minimum: 0 }),
  currency: t.String(),
  captured: t.Integer({ minimum: 0 }),
  refunded: t.Integer({ minimum: 0 }),
  createdAt: t.String({ format: 'date-time' }),
  events: t.Array(
    t.Object({
      kind: PaymentEventKind,
      amount: t.Integer({ minimum: 0 }),
      at: t.String({ format: 'date-time' }),
      detail: t.Union([t.String(), t.Null()]),
    }),
  ),
})
export type Payment = Static<typeof Payment>

const Key = t.String({ minLength: 1, maxLength: 200, description: 'makes a retried call have one effect (also sent to the provider)' })
const PaymentRef = t.Object({ paymentId: t.String({ minLength: 1, maxLength: 64 }), key: Key })

/**
 * Every action carries an idempotency key, so every one is retry-safe: the same key returns the
 * first outcome. Failures: 402 PAYMENT_DECLINED, 503 PAYMENT_PROVIDER_UNAVAILABLE (timeout, provider
 * error or open circuit; an authorization whose outcome is unknown is voided by the plugin).
 */
export const paymentsActions = {
  'payments.authorize': action({
    input: t.Object({
      amount: t.Integer({ minimum: 1 }),
      currency: t.String({ pattern: '^[A-Z]{3}$' }),
      method: t.Literal('card'),
      token: t.String({ minLength: 1, maxLength: 200 }),
      reference: t.String({ minLength: 1, maxLength: 128 }),
      key: Key,
    }),
    output: Payment,
    idempotent: true,
    doc: 'Holds the amount on the card; 402 PAYMENT_DECLINED when the provider declines.',
  }),
  'payments.capture': action({ input: PaymentRef, output: Payment, idempotent: true, doc: 'Takes the held amount.' }),
  'payments.void': action({ input: PaymentRef, output: Payment, idempotent: true, doc: 'Lets go of an authorization that was not captured.' }),
  'payments.refund': action({
    input: t.Object({ paymentId: t.String({ minLength: 1, maxLength: 64 }), amount: t.Integer({ minimum: 1 }), key: Key }),
    output: Payment,
    idempotent: true,
    doc: 'Gives back part or all of a captured amount; 409 when more than the captured rest is asked for.',
  }),
  'payments.cancelAuthorization': action({
    input: t.Object({ key: Key, reference: t.String({ minLength: 1, maxLength: 128 }) }),
    output: Payment,
    idempotent: true,
    doc:
      'Makes sure the authorization asked for with this key holds no money, whatever became of it: voids it if it was approved, ' +
      'or spends the key so it never authorizes (a voided payment of amount 0); 409 PAYMENT_IN_PROGRESS while it is being asked, PAYMENT_CAPTURED once captured.',
  }),
  'payments.get': action({ input: t.Object({ id: t.String({ minLength: 1, maxLength: 64 }) }), output: Payment, idempotent: true, doc: 'A payment and its history.' }),
}

const PaymentChange = t.Object({ paymentId: t.String(), reference: t.String(), amount: t.Integer(), currency: t.String() })

export const paymentsEvents = {
  'payment.authorized': event({ payload: PaymentChange, doc: 'An amount is held on a card.' }),
  'payment.captured': event({ payload: PaymentChange, doc: 'A held amount was taken.' }),
  'payment.voided': event({ payload: PaymentChange, doc: 'A hold was let go.' }),
  'payment.refunded': event({ payload: PaymentChange, doc: 'An amount was given back (amount = this refund).' }),
}
