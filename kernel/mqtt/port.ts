/**
 * The MQTT port. Plugins consume topics and may decide who connects; the adapter is an embedded
 * broker (aedes) or an external one (Mosquitto, EMQX). Delivery guarantee for both: a message is
 * acknowledged to its sender (embedded) or to the broker (external) only after the consumer's
 * handler has resolved, i.e. after what it does with the message is stored.
 */

export interface MqttMessage {
  topic: string
  payload: Buffer
  /** The MQTT username of the publisher, when the adapter knows it (the embedded broker does). */
  username?: string
}

/** Resolves when the message is safely handled; rejects to leave it unacknowledged (redelivered). */
export type MqttHandler = (message: MqttMessage) => Promise<void>

/** Who may connect, publish and subscribe: supplied by the plugin that owns the devices. */
export interface MqttAuthority {
  authenticate(username: string, password: string): Promise<boolean>
  mayPublish(username: string, topic: string): boolean
  maySubscribe(username: string, filter: string): boolean
}

export interface MqttGrant {
  username: string
  password: string
  publish: string[]
}

export interface MqttPort {
  /**
   * Handles every message on `filter` (MQTT wildcards); replicas of one plugin share the stream. On
   * the embedded broker a client's message on a consumed topic goes to its consumer only: it is not
   * routed to subscribers nor kept as retained.
   */
  consume(group: string, filter: string, handler: MqttHandler): void
  /** The device authority; with an external broker the broker's own configuration decides instead. */
  authorize(authority: MqttAuthority): void
  publish(topic: string, payload: string | Buffer, options?: { qos?: 0 | 1; retain?: boolean }): Promise<void>
  /**
   * Lets a client log in and publish under `publish` (topic filters). The embedded broker asks the
   * authority instead, so this does nothing there; an external broker is told (MQTT_PROVISIONING).
   */
  grant(client: MqttGrant): Promise<void>
  start(): Promise<void>
  /** Stops taking messages and waits for the handlers in flight. */
  stop(): Promise<void>
  /** The embedded broker's port (0 with an external broker). */
  readonly port: number
  /** 'up' when connected (external) or listening (embedded). */
  health(): { status: 'up' | 'down'; detail?: string }
}

/** Whether `topic` matches the MQTT filter `filter` (`+` one level, `#` the rest). */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/')
  const t = topic.split('/')
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true
    if (i >= t.length || (f[i] !== '+' && f[i] !== t[i])) return false
  }
  return f.length === t.length
}
