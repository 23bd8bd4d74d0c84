/**
 * inventory: warehouses, items, stock levels with an append-only ledger, reservations, replenishment,
 * and the warehouse devices that stream readings over MQTT (CONTRACT.md sections 4 and 5).
 */
import { setting } from '../../kernel/config'
import { definePlugin, pluginState } from '../../kernel/plugin'
import { Allocations } from './allocation'
import { deviceRoutes } from './device-routes'
import { DeviceRegistry } from './devices'
import { deviceStatus } from './events'
import { Ingest } from './ingest'
import { Ledger } from './ledger'
import { stockRoutes } from './routes'
import { schema } from './schema'
import { StockService } from './service'

const state = pluginState<{ devices: DeviceRegistry; ingest: Ingest; sweeper?: ReturnType<typeof setInterval> }>()
/** Stock and its reservation expirer (a timer, and the sweep in flight so stop can wait for it). */
const stockState = pluginState<{ stock: StockService; expirer?: ReturnType<typeof setInterval>; expiring?: Promise<unknown> }>()

export default definePlugin({
  name: 'inventory',
  version: '1.0.0',
  dependsOn: ['auth'],
  description: 'stock, ledger, reservations, replenishment and warehouse devices over MQTT',
  schema,
  settings: {
    DEVICE_SWEEP_SECONDS: setting.int('how often devices are checked for silence beyond their heartbeat timeout', 5, 1, 3600),
    RESERVATION_TTL_SECONDS: setting.int('lifetime of a reservation made without ttlSeconds', 900, 1, 86_400),
    RESERVATION_SWEEP_MS: setting.int('how often reservations past their expiry are released', 1000, 50, 60_000),
  },
  setup(ctx) {
    const ledger = new Ledger(ctx.db, ctx.tables, ctx.events)
    const devices = new DeviceRegistry(ctx.db, ctx.tables, ctx.events, ctx.mqtt)
    const ingest = new Ingest(ctx.db, ctx.tables, ledger, devices, ctx.metrics, ctx.log)
    state.set(ctx, { devices, ingest })
    ctx.mqtt.authorize(devices)
    ctx.mqtt.consume('warehouses/+/devices/+/readings', ingest.handle)
    ctx.mqtt.consume('warehouses/+/devices/+/status', (message) => deviceStatus(ctx, devices, message))
    ctx.mount(deviceRoutes(ctx, devices))

    const stock = new StockService({ db: ctx.db, t: ctx.tables, ledger, defaultTtlSeconds: ctx.config.RESERVATION_TTL_SECONDS })
    stockState.set(ctx, { stock })
    ctx.mount(stockRoutes(ctx, stock))
    // Errors are the shared kinds already (NotFound, Conflict OUT_OF_STOCK, …), so callers see them as such.
    ctx.provide('inventory.reserve', (input) => stock.reserve(input))
    ctx.provide('inventory.commit', ({ id }) => stock.commit(id))
    ctx.provide('inventory.release', ({ id }) => stock.release(id))
    const allocations = new Allocations({ db: ctx.db, t: ctx.tables, ledger, stock, defaultTtlSeconds: ctx.config.RESERVATION_TTL_SECONDS })
    ctx.provide('inventory.reserveLines', async (input) => ({ reservations: await allocations.reserveLines(input) }))
    ctx.provide('inventory.commitReference', async ({ reference }) => ({ reservations: await allocations.commitReference(reference) }))
    ctx.provide('inventory.releaseReference', async ({ reference }) => ({ reservations: await allocations.releaseReference(reference) }))
    ctx.provide('inventory.restock', async (input) => ({ items: await allocations.restock(input) }))
    ctx.provide('inventory.getStock', async ({ sku, warehouse }) => ({ items: await stock.stock({ sku: sku || undefined, warehouse: warehouse || undefined }) }))
  },
  async start(ctx) {
    const s = state.get(ctx)
    s.ingest.start()
    s.sweeper = setInterval(
      () => s.devices.sweepSilent().catch((error) => ctx.log.error({ err: error }, 'device sweep failed')),
      ctx.config.DEVICE_SWEEP_SECONDS * 1000,
    )
    const st = stockState.get(ctx)
    st.expirer = setInterval(() => {
      if (st.expiring) return // the previous sweep is still running
      st.expiring = st.stock
        .expireDue()
        .catch((error) => ctx.log.error({ err: error }, 'reservation expiry sweep failed'))
        .finally(() => (st.expiring = undefined))
    }, ctx.config.RESERVATION_SWEEP_MS)
  },
  async stop(ctx) {
    const s = state.get(ctx)
    clearInterval(s.sweeper)
    const st = stockState.get(ctx)
    clearInterval(st.expirer)
    await st.expiring
    await s.ingest.stop()
  },
})
