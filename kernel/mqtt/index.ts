import type { Logger } from 'pino'
import type { KernelConfig } from '../config'
import { embeddedBroker } from './embedded'
import { externalBroker } from './external'
import type { MqttPort } from './port'

export function openMqtt(config: KernelConfig, log: Logger, portIsDefault: boolean): MqttPort & { readonly inUse: boolean } {
  const port = config.MQTT_URL
    ? externalBroker({ url: config.MQTT_URL, consumers: config.MQTT_CONSUMERS, sessionExpirySeconds: config.MQTT_SESSION_EXPIRY_SECONDS, instance: config.MQTT_INSTANCE, provisioning: config.MQTT_PROVISIONING }, log)
    : embeddedBroker(config.MQTT_PORT, log, config.HOST, portIsDefault)
  return onlyWhenUsed(port)
}

/**
 * The broker (embedded) or the connections (external) start only when a hosted plugin consumes
 * topics or authorizes devices in its setup: a gateway or an auth process opens no MQTT port and
 * leaves no session on the broker.
 */
function onlyWhenUsed(port: MqttPort): MqttPort & { readonly inUse: boolean } {
  let used = false
  let started = false
  return {
    get inUse() {
      return used
    },
    get port() {
      return started ? port.port : 0
    },
    consume(group, filter, handler) {
      used = true
      port.consume(group, filter, handler)
    },
    authorize(authority) {
      used = true
      port.authorize(authority)
    },
    publish: (topic, payload, options) =>
      started ? port.publish(topic, payload, options) : Promise.reject(new Error('MQTT is not started: no hosted plugin consumes topics or authorizes devices')),
    grant: (client) => port.grant(client),
    async start() {
      if (!used) return
      await port.start()
      started = true
    },
    async stop() {
      if (started) await port.stop()
    },
    health: () => (used ? port.health() : { status: 'up', detail: 'not used by the plugins hosted here' }),
  }
}

export { topicMatches, type MqttAuthority, type MqttGrant, type MqttHandler, type MqttMessage, type MqttPort } from './port'
