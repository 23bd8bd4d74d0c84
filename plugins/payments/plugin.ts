/**
 * payments: authorizations, captures, voids and refunds through a payment provider (the built-in
 * `sandbox` one), each idempotent by its key, with a timeout and a circuit breaker per provider
 * (CONTRACT.md section 7). Other plugins move money with ctx.call('payments.*').
 */
import { setting } from '../../kernel/config'
import { definePlugin, pluginState } from '../../kernel/plugin'
import { Sweeper } from '../../shared/sweeper'
import { GuardedProvider } from './provider'
import { paymentRoutes } from './routes'
import { SandboxProvider } from './sandbox'
import { schema } from './schema'
import { PaymentsService } from './service'

const state = pluginState<{ payments: PaymentsService; sandbox: SandboxProvider; sweeper: Sweeper; timer?: ReturnType<typeof setInterval> }>()

export default definePlugin({
  name: 'payments',
  version: '1.0.0',
  dependsOn: ['auth'],
  description: 'payment authorizations, captures, voids and refunds through a provider (sandbox built in)',
  schema,
  settings: {
    PAYMENTS_PROVIDER_TIMEOUT_MS: setting.int('longest wait for the payment provider to answer one request (then 503, and an authorization is voided by key)', 5000, 10, 120_000),
    PAYMENTS_BREAKER_FAILURES: setting.int('consecutive provider failures (errors, timeouts) that open its circuit: calls fail fast with 503', 5, 1, 1000),
    PAYMENTS_BREAKER_HALF_OPEN_MS: setting.int('how long an open provider circuit waits before letting one call probe it', 5000, 10, 600_000),
    PAYMENTS_SANDBOX_SLOW_MS: setting.int('how long the sandbox provider takes to answer the token tok_slow', 10_000, 0, 600_000),
    PAYMENTS_SWEEP_MS: setting.int('how often abandoned and unknown-outcome authorizations are settled (voided by key)', 5000, 50, 600_000),
  },
  setup(ctx) {
    const c = ctx.config
    const sandbox = new SandboxProvider(ctx.db, ctx.tables, c.PAYMENTS_SANDBOX_SLOW_MS)
    const provider = new GuardedProvider(sandbox, { timeoutMs: c.PAYMENTS_PROVIDER_TIMEOUT_MS, breakerFailures: c.PAYMENTS_BREAKER_FAILURES, halfOpenMs: c.PAYMENTS_BREAKER_HALF_OPEN_MS })
    // The lease outlives one provider call, so a live caller never loses its authorization to the sweep.
    const payments = new PaymentsService({ db: ctx.db, t: ctx.tables, provider, publish: ctx.events.publish, leaseMs: c.PAYMENTS_PROVIDER_TIMEOUT_MS + 2000 })
    const sweeper = new Sweeper(
      () => payments.sweep(),
      (error) => ctx.log.error({ err: error }, 'payments sweep failed'),
    )
    state.set(ctx, { payments, sandbox, sweeper })
    ctx.mount(paymentRoutes(ctx, payments))
    ctx.provide('payments.authorize', (input) => payments.authorize(input))
    ctx.provide('payments.capture', ({ paymentId, key }) => payments.capture(paymentId, key))
    ctx.provide('payments.void', ({ paymentId, key }) => payments.void(paymentId, key))
    ctx.provide('payments.refund', ({ paymentId, amount, key }) => payments.refund(paymentId, amount, key))
    ctx.provide('payments.cancelAuthorization', ({ key, reference }) => payments.cancelAuthorization(key, reference))
    ctx.provide('payments.get', ({ id }) => payments.get(id))
  },
  async start(ctx) {
    const s = state.get(ctx)
    s.sweeper.nudge()
    s.timer = setInterval(() => s.sweeper.nudge(), ctx.config.PAYMENTS_SWEEP_MS)
  },
  async stop(ctx) {
    const s = state.get(ctx)
    clearInterval(s.timer)
    s.sandbox.stop()
    await s.sweeper.stop()
  },
})
