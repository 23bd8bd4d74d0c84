/**
 * What the live plugin handles: inventory's stock, device and alert events, turned into the `/live`
 * emits of CONTRACT.md §6 and sent to the rooms of their warehouse. It observes them (best-effort,
 * no database write per event): a dashboard feed needs the latest state soon, not exactly-once,
 * and `inventory.stock.changed` comes by the thousand per second while sensors stream.
 */
import type { PluginContext } from '../../kernel/plugin'
import type { RealtimeNamespace } from '../../kernel/realtime'

/** Sockets here get every warehouse's events: the default until a client subscribes, or after `*`. */
export const EVERY_WAREHOUSE = 'warehouses:*'
export const warehouseRoom = (code: string) => `warehouse:${code}`

/**
 * A level's `stock:changed` goes out at once, unless one for that level went out less than this
 * long ago: then the latest state goes out when that time is up, and the ones in between are
 * skipped. Sensors change each level several times a second: 500 devices at 8,000 readings/s over
 * 1,000 levels sent a dashboard about 7,000 emits a second, 2,800 with this (BENCHMARKS.md, MQTT
 * ingestion, sixth session). Nobody reads a number that changes faster, and the last state always
 * arrives.
 */
export const STOCK_EMIT_EVERY_MS = 250

type Stock = { sku: string; warehouse: string; onHand: number; reserved: number; available: number }

/** Per level: emits at most one state per `everyMs`, always the latest, and always the last one. */
export class LevelThrottle {
  /** When each level last went out (only those within `everyMs`). */
  private readonly sent = new Map<string, number>()
  /** The latest state of levels waiting for their time. */
  private readonly waiting = new Map<string, Stock>()
  private timer: ReturnType<typeof setTimeout> | undefined

  constructor(
    private readonly everyMs: number,
    private readonly emit: (stock: Stock) => void,
  ) {}

  push(stock: Stock) {
    const key = `${stock.sku}\u0000${stock.warehouse}`
    if (this.waiting.has(key)) return void this.waiting.set(key, stock)
    const now = Date.now()
    const last = this.sent.get(key)
    if (last === undefined || now - last >= this.everyMs) {
      this.sent.set(key, now)
      return this.emit(stock)
    }
    this.waiting.set(key, stock)
    // One timer for every waiting level: each goes out at most everyMs after it began to wait.
    this.timer ??= setTimeout(() => this.flush(), this.everyMs)
  }

  private flush() {
    this.timer = undefined
    const now = Date.now()
    for (const [key, at] of this.sent) if (now - at >= this.everyMs) this.sent.delete(key)
    const due = [...this.waiting]
    this.waiting.clear()
    for (const [key, stock] of due) {
      this.sent.set(key, now)
      this.emit(stock)
    }
  }

  /** Sends what waits now (on shutdown). */
  stop() {
    clearTimeout(this.timer)
    this.flush()
  }
}

export function relayInventory(ctx: PluginContext, live: RealtimeNamespace) {
  /** Rooms that care about `warehouse` (every event has one, except an alert without it). */
  const audience = (warehouse: string | null) => (warehouse === null ? [EVERY_WAREHOUSE] : [EVERY_WAREHOUSE, warehouseRoom(warehouse)])

  const stock = new LevelThrottle(STOCK_EMIT_EVERY_MS, (s) => live.to(audience(s.warehouse)).emit('stock:changed', s))
  ctx.events.observe('inventory.stock.changed', ({ payload: { sku, warehouse, onHand, reserved, available } }) => {
    stock.push({ sku, warehouse, onHand, reserved, available })
  })
  ctx.events.observe('inventory.device.status', ({ payload: { deviceId, warehouse, status } }) => {
    live.to(audience(warehouse)).emit('device:status', { deviceId, warehouse, status })
  })
  ctx.events.observe('inventory.alert.raised', ({ payload: { alert } }) => {
    live.to(audience(alert.warehouse)).emit('alert:new', { alert })
  })
  return stock
}
