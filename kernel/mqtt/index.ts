import type { Logger } from 'pino'
import type { KernelConfig } from '../config'
import { embeddedBroker } from './embedded'
import { externalBroker } from './external'
import type { MqttPort } from './port'

export function openMqtt(config: KernelConfig, log: Logger, portIsDefault: boolean): MqttPort {
  return config.MQTT_URL
    ? externalBroker({ url: config.MQTT_URL, consumers: config.MQTT_CONSUMERS, sessionExpirySeconds: config.MQTT_SESSION_EXPIRY_SECONDS, instance: config.MQTT_INSTANCE, provisioning: config.MQTT_PROVISIONING }, log)
    : embeddedBroker(config.MQTT_PORT, log, config.HOST, portIsDefault)
}

export { topicMatches, type MqttAuthority, type MqttGrant, type MqttHandler, type MqttMessage, type MqttPort } from './port'
