/**
 * inventory: warehouses, items, stock levels with an append-only ledger, reservations, replenishment,
 * and the warehouse devices that stream readings over MQTT (CONTRACT.md sections 4 and 5).
 */
import { definePlugin } from '../../kernel/plugin'
import { Ledger } from './ledger'
import { schema } from './schema'

export default definePlugin({
  name: 'inventory',
  version: '1.0.0',
  dependsOn: ['auth'],
  description: 'stock, ledger, reservations, replenishment and warehouse devices over MQTT',
  schema,
  settings: {},
  setup(ctx) {
    const ledger = new Ledger(ctx.tables, ctx.events)
    void ledger
  },
})
