/**
 * live: the `/live` Socket.IO namespace (CONTRACT.md §6) where managers and admins watch stock,
 * devices and alerts change. It never imports inventory: it observes inventory's events through
 * the bus, so it runs beside inventory or in a process of its own.
 *
 * Subscriptions, per warehouse code: a new connection gets every warehouse's events until it
 * sends `subscribe`; then only those warehouses' (plus later `subscribe`s; `*` means every
 * warehouse again). `unsubscribe` removes warehouses; with none left the socket gets nothing.
 * Both ack `{ ok: true, warehouses }`, the full list now in force (`["*"]` for everything).
 * Subscriptions survive a brief drop (connection state recovery keeps the rooms).
 */
import { t } from 'elysia'
import { definePlugin } from '../../kernel/plugin'
import type { RealtimeSocket } from '../../kernel/realtime'
import { EVERY_WAREHOUSE, relayInventory, warehouseRoom } from './events'

const Warehouses = t.Object(
  { warehouses: t.Array(t.String({ minLength: 1, maxLength: 32, pattern: '^[^\\s]+$' }), { minItems: 1, maxItems: 200, uniqueItems: true }) },
  { additionalProperties: false },
)

const subscribed = (socket: RealtimeSocket) => {
  if (socket.rooms.has(EVERY_WAREHOUSE)) return ['*']
  const prefix = warehouseRoom('')
  return [...socket.rooms].filter((r) => r.startsWith(prefix)).map((r) => r.slice(prefix.length)).sort()
}

export default definePlugin({
  name: 'live',
  version: '1.0.0',
  description: 'live stock, device and alert feed for managers and admins (Socket.IO /live)',
  setup(ctx) {
    const live = ctx.realtime.namespace('/live', { roles: ['manager', 'admin'] })
    live.onConnect(async (socket) => {
      if (!socket.recovered) await socket.join(EVERY_WAREHOUSE)
    })
    live.on('subscribe', { body: Warehouses }, async (socket, { warehouses }) => {
      if (warehouses.includes('*')) await socket.join(EVERY_WAREHOUSE)
      else {
        await socket.leave(EVERY_WAREHOUSE)
        await socket.join(warehouses.map(warehouseRoom))
      }
      return { ok: true, warehouses: subscribed(socket) }
    })
    live.on('unsubscribe', { body: Warehouses }, async (socket, { warehouses }) => {
      for (const code of warehouses) await socket.leave(code === '*' ? EVERY_WAREHOUSE : warehouseRoom(code))
      return { ok: true, warehouses: subscribed(socket) }
    })
    relayInventory(ctx, live)
  },
})
