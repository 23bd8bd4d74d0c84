/**
 * What the inventory plugin announces: `inventory.stock.changed` and `inventory.stock.low` (from
 * the ledger), `inventory.device.status` (from the registry). What it handles: device status
 * messages from MQTT (online, offline, and the broker's last will, which says offline).
 */
import type { MqttMessage } from '../../kernel/mqtt'
import type { PluginContext } from '../../kernel/plugin'
import { type DeviceRegistry, parseDeviceTopic } from './devices'

export async function deviceStatus(ctx: PluginContext, devices: DeviceRegistry, message: MqttMessage) {
  const topic = parseDeviceTopic(message.topic)
  if (!topic) return
  const binding = await devices.binding(topic.deviceId)
  if (!binding || binding.warehouse !== topic.warehouse) return
  const status = message.payload.toString('utf8').trim()
  if (status === 'online') await ctx.db.transaction((tx) => devices.seen(tx, [topic.deviceId], new Date()))
  else if (status === 'offline') await ctx.db.transaction((tx) => devices.offline(tx, topic.deviceId, 'it said so, or its last will did'))
  else ctx.log.warn({ topic: message.topic, status: status.slice(0, 50) }, 'unknown device status ignored')
}
