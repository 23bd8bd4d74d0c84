/**
 * inventory: warehouses, items, stock levels with an append-only ledger, reservations, replenishment,
 * and the warehouse devices that stream readings over MQTT (CONTRACT.md sections 4 and 5).
 */
import { setting } from '../../kernel/config'
import { definePlugin, pluginState } from '../../kernel/plugin'
import { deviceRoutes } from './device-routes'
import { DeviceRegistry } from './devices'
import { deviceStatus } from './events'
import { Ingest } from './ingest'
import { Ledger } from './ledger'
import { schema } from './schema'

const state = pluginState<{ devices: DeviceRegistry; ingest: Ingest; sweeper?: ReturnType<typeof setInterval> }>()

export default definePlugin({
  name: 'inventory',
  version: '1.0.0',
  dependsOn: ['auth'],
  description: 'stock, ledger, reservations, replenishment and warehouse devices over MQTT',
  schema,
  settings: {
    DEVICE_SWEEP_SECONDS: setting.int('how often devices are checked for silence beyond their heartbeat timeout', 5, 1, 3600),
  },
  setup(ctx) {
    const ledger = new Ledger(ctx.tables, ctx.events)
    const devices = new DeviceRegistry(ctx.db, ctx.tables, ctx.events, ctx.mqtt)
    const ingest = new Ingest(ctx.db, ctx.tables, ledger, devices, ctx.metrics, ctx.log)
    state.set(ctx, { devices, ingest })
    ctx.mqtt.authorize(devices)
    ctx.mqtt.consume('warehouses/+/devices/+/readings', ingest.handle)
    ctx.mqtt.consume('warehouses/+/devices/+/status', (message) => deviceStatus(ctx, devices, message))
    ctx.mount(deviceRoutes(ctx, devices))
  },
  async start(ctx) {
    const s = state.get(ctx)
    s.sweeper = setInterval(
      () => s.devices.sweepSilent().catch((error) => ctx.log.error({ err: error }, 'device sweep failed')),
      ctx.config.DEVICE_SWEEP_SECONDS * 1000,
    )
  },
  async stop(ctx) {
    const s = state.get(ctx)
    clearInterval(s.sweeper)
    await s.ingest.stop()
  },
})
