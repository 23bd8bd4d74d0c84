/**
 * orders: carts priced from the catalog, the checkout saga (inventory + payments), orders and their
 * status machine, cancellations and returns (CONTRACT.md section 7). It talks to catalog,
 * inventory and payments only through ctx.call, and publishes order.placed, order.status.changed,
 * order.return.requested and order.return.received through the outbox; it handles no events.
 */
import { setting } from '../../kernel/config'
import { definePlugin, pluginState } from '../../kernel/plugin'
import { Sweeper } from '../../shared/sweeper'
import { Carts } from './carts'
import { CheckoutSaga } from './checkout'
import { SideEffects } from './effects'
import { orderRoutes } from './routes'
import { schema } from './schema'
import { OrderService } from './service'

const state = pluginState<{ sweeper: Sweeper; timer?: ReturnType<typeof setInterval> }>()

export default definePlugin({
  name: 'orders',
  version: '1.0.0',
  // Not a start-up dependency on catalog, inventory or payments: they may live in other processes.
  dependsOn: ['auth'],
  description: 'carts, checkout saga, orders, cancellations and returns',
  schema,
  settings: {
    ORDERS_CHECKOUT_LEASE_MS: setting.int('how long a process owns a checkout saga between steps; a saga left longer is recovered by another', 30_000, 100, 3_600_000),
    ORDERS_CALL_TIMEOUT_MS: setting.int('deadline of each call a checkout step or side effect makes (inventory, payments)', 15_000, 100, 600_000),
    ORDERS_RESERVATION_TTL_SECONDS: setting.int('lifetime of the stock reservations a checkout makes (a backstop if every process is gone)', 900, 1, 86_400),
    ORDERS_SWEEP_MS: setting.int('how often unfinished checkouts and side effects are looked for and settled', 5000, 50, 600_000),
    ORDERS_TEST_PAUSE_BEFORE: setting.oneOf('test hook: checkout step to pause before (to crash a saga there on purpose); none in production', ['none', 'reserve', 'authorize', 'place', 'complete'], 'none'),
    ORDERS_TEST_PAUSE_MS: setting.int('test hook: how long that pause lasts', 0, 0, 600_000),
  },
  setup(ctx) {
    const c = ctx.config
    if (ctx.nodeEnv === 'production' && c.ORDERS_TEST_PAUSE_BEFORE !== 'none')
      throw new Error('ORDERS_TEST_PAUSE_BEFORE is a test hook and must be none when NODE_ENV=production')
    const publish = ctx.events.publish
    const carts = new Carts({ db: ctx.db, t: ctx.tables, call: ctx.call })
    const saga = new CheckoutSaga({
      db: ctx.db,
      t: ctx.tables,
      call: ctx.call,
      carts,
      publish,
      log: ctx.log,
      settings: {
        leaseMs: c.ORDERS_CHECKOUT_LEASE_MS,
        callTimeoutMs: c.ORDERS_CALL_TIMEOUT_MS,
        reservationTtlSeconds: c.ORDERS_RESERVATION_TTL_SECONDS,
        pauseBefore: c.ORDERS_TEST_PAUSE_BEFORE === 'none' ? undefined : c.ORDERS_TEST_PAUSE_BEFORE,
        pauseMs: c.ORDERS_TEST_PAUSE_MS,
      },
    })
    const effects = new SideEffects({ db: ctx.db, t: ctx.tables, call: ctx.call, publish, log: ctx.log, leaseMs: c.ORDERS_CHECKOUT_LEASE_MS, callTimeoutMs: c.ORDERS_CALL_TIMEOUT_MS })
    const orders = new OrderService({ db: ctx.db, t: ctx.tables, call: ctx.call, effects, publish, callTimeoutMs: c.ORDERS_CALL_TIMEOUT_MS })
    const sweeper = new Sweeper(
      async () => {
        await saga.recover()
        await effects.sweep()
      },
      (error) => ctx.log.error({ err: error }, 'orders recovery sweep failed'),
    )
    state.set(ctx, { sweeper })
    ctx.mount(orderRoutes(ctx, carts, saga, orders))
  },
  async start(ctx) {
    const s = state.get(ctx)
    // Recovery at start settles what a crash left mid-way; the timer keeps looking (other replicas die too).
    s.sweeper.nudge()
    s.timer = setInterval(() => s.sweeper.nudge(), ctx.config.ORDERS_SWEEP_MS)
  },
  async stop(ctx) {
    const s = state.get(ctx)
    clearInterval(s.timer)
    await s.sweeper.stop()
  },
})
