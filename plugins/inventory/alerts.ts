/**
 * Alerts: low-stock and device-offline, stored for GET /alerts and announced as
 * `inventory.alert.raised` in the same transaction (live dashboards show them as they happen).
 */
import type { Static } from '@sinclair/typebox'
import type { Db, Tables } from '../../kernel/db'
import type { PluginContext } from '../../kernel/plugin'
import type { Alert } from '../../shared/contracts/inventory'
import type { InventorySchema } from './schema'

type AlertRow = Tables<InventorySchema>['alerts']['$inferSelect']
export type AlertView = Static<typeof Alert>

export const toAlertView = (a: AlertRow): AlertView => ({
  id: a.id,
  type: a.type as AlertView['type'],
  sku: a.sku,
  warehouse: a.warehouse,
  deviceId: a.deviceId,
  message: a.message,
  createdAt: a.createdAt.toISOString(),
})

export interface NewAlert {
  type: AlertView['type']
  sku?: string
  warehouse: string
  deviceId?: string
  message: string
}

export async function raiseAlert(tx: Db, t: Tables<InventorySchema>, events: PluginContext['events'], alert: NewAlert) {
  const [row] = await tx
    .insert(t.alerts)
    .values({ id: Bun.randomUUIDv7(), sku: null, deviceId: null, ...alert, createdAt: new Date() })
    .returning()
  await events.publish('inventory.alert.raised', { alert: toAlertView(row!) })
}
