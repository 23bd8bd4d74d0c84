/**
 * What the live plugin handles: inventory's stock, device and alert events, turned into the `/live`
 * emits of CONTRACT.md §6 and sent to the rooms of their warehouse. It observes them (best-effort,
 * no database write per event): a dashboard feed needs the latest state soon, not exactly-once,
 * and `inventory.stock.changed` comes by the hundred per second while sensors stream.
 */
import type { PluginContext } from '../../kernel/plugin'
import type { RealtimeNamespace } from '../../kernel/realtime'

/** Sockets here get every warehouse's events: the default until a client subscribes, or after `*`. */
export const EVERY_WAREHOUSE = 'warehouses:*'
export const warehouseRoom = (code: string) => `warehouse:${code}`

export function relayInventory(ctx: PluginContext, live: RealtimeNamespace) {
  /** Rooms that care about `warehouse` (every event has one, except an alert without it). */
  const audience = (warehouse: string | null) => (warehouse === null ? [EVERY_WAREHOUSE] : [EVERY_WAREHOUSE, warehouseRoom(warehouse)])

  ctx.events.observe('inventory.stock.changed', ({ payload: { sku, warehouse, onHand, reserved, available } }) => {
    live.to(audience(warehouse)).emit('stock:changed', { sku, warehouse, onHand, reserved, available })
  })
  ctx.events.observe('inventory.device.status', ({ payload: { deviceId, warehouse, status } }) => {
    live.to(audience(warehouse)).emit('device:status', { deviceId, warehouse, status })
  })
  ctx.events.observe('inventory.alert.raised', ({ payload: { alert } }) => {
    live.to(audience(alert.warehouse)).emit('alert:new', { alert })
  })
}
