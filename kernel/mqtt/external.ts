/**
 * An external broker (Mosquitto, EMQX) over MQTT 5. Each consumer group subscribes through
 * `$share/<group>/<filter>`, so replicas split the stream, with persistent sessions (stable client
 * ids, session expiry), so messages published while the plugin is down wait in the broker. mqtt.js
 * acknowledges a QoS 1 message when handleMessage's callback runs: it runs after the handler
 * resolved. mqtt.js handles one message per connection at a time, so each group opens several
 * connections (MQTT_CONSUMERS) to keep batches full. Device credentials and topic rights are the
 * broker's configuration (see deploy/mosquitto).
 */
import { hostname } from 'node:os'
import mqtt, { type MqttClient } from 'mqtt'
import type { Logger } from 'pino'
import { type MqttHandler, type MqttPort, topicMatches } from './port'

export interface ExternalOptions {
  url: string
  /** Connections per consumer group. */
  consumers: number
  sessionExpirySeconds: number
  /** Distinguishes this replica's sessions from the others' (defaults to the host name). */
  instance?: string
  /** How `grant` reaches the broker: not at all, or Mosquitto's dynamic-security plugin. */
  provisioning: 'none' | 'mosquitto-dynsec'
}

const DYNSEC = '$CONTROL/dynamic-security/v1'

export function externalBroker(options: ExternalOptions, log: Logger): MqttPort {
  const groups = new Map<string, { filter: string; handler: MqttHandler }[]>()
  const clients: MqttClient[] = []
  const inFlight = new Set<Promise<void>>()
  let stopping = false
  const instance = (options.instance ?? hostname()).replace(/[^\w-]/g, '_')

  const connect = (clientId: string, consumers: { filter: string; handler: MqttHandler }[]) => {
    const client = mqtt.connect(options.url, {
      clientId,
      protocolVersion: 5,
      clean: false,
      properties: { sessionExpiryInterval: options.sessionExpirySeconds, receiveMaximum: 1000 },
      reconnectPeriod: 500,
      connectTimeout: 5000,
      manualConnect: true,
    })
    client.handleMessage = (packet, done) => {
      const consumer = consumers.find((c) => topicMatches(c.filter, packet.topic))
      if (!consumer || stopping) return stopping ? undefined : done()
      const handled = consumer.handler({ topic: packet.topic, payload: Buffer.from(packet.payload as Buffer) })
      inFlight.add(handled)
      handled.then(
        () => done(),
        (error) => {
          // Unacknowledged: dropping the connection makes the broker deliver it again on reconnect.
          log.warn({ err: error, topic: packet.topic }, 'MQTT message not stored; reconnecting to have it redelivered')
          client.stream?.destroy()
        },
      )
      handled.catch(() => {}).finally(() => inFlight.delete(handled))
    }
    client.on('error', (error) => log.warn({ err: error, clientId }, 'MQTT connection error'))
    clients.push(client)
    return client
  }

  return {
    port: 0,
    consume(group, filter, handler) {
      const list = groups.get(group) ?? []
      list.push({ filter, handler })
      groups.set(group, list)
    },
    authorize() {},
    async grant(grant) {
      if (options.provisioning === 'none') return
      const client = clients[0]
      if (!client) throw new Error('the MQTT port is not started')
      const role = `tessera-client-${grant.username}`
      // Each command is answered on <topic>/response; creating what exists already is harmless.
      await dynsec(client, [
        { command: 'createRole', rolename: role, acls: grant.publish.map((topic) => ({ acltype: 'publishClientSend', topic, allow: true })) },
        { command: 'createClient', username: grant.username, password: grant.password, roles: [{ rolename: role }] },
      ])
    },
    async publish(topic, payload, publishOptions = {}) {
      const client = clients[0]
      if (!client) throw new Error('the MQTT port is not started')
      await client.publishAsync(topic, payload, { qos: publishOptions.qos ?? 0, retain: publishOptions.retain ?? false })
    },
    async start() {
      if (groups.size === 0) connect(`tessera-${instance}`, [])
      for (const [group, consumers] of groups)
        for (let i = 0; i < options.consumers; i++) connect(`tessera-${group}-${instance}-${i}`, consumers)
      const resumed = new Set<MqttClient>()
      await Promise.all(
        clients.map(
          (client) =>
            new Promise<void>((resolve, reject) => {
              client.once('connect', (connack) => {
                if (connack.sessionPresent) resumed.add(client)
                resolve()
              })
              client.once('error', reject)
              client.connect()
            }),
        ),
      )
      for (const [group, consumers] of groups)
        for (const client of clients.filter((c) => c.options.clientId?.startsWith(`tessera-${group}-`))) {
          const subscribed = client.subscribeAsync(
            consumers.map((c) => `$share/${group}/${c.filter}`),
            { qos: 1 },
          )
          // A resumed session still holds its subscriptions, and the SUBACK queues behind its backlog: waiting would hold readiness until the backlog is drained.
          if (resumed.has(client)) subscribed.catch((error) => log.warn({ err: error, clientId: client.options.clientId }, 'MQTT re-subscribe failed'))
          else await subscribed
        }
      log.info({ url: options.url, groups: [...groups.keys()], connections: clients.length }, 'connected to the MQTT broker')
    },
    async stop() {
      stopping = true
      await Promise.allSettled([...inFlight])
      await Promise.all(clients.map((c) => c.endAsync()))
    },
    health() {
      const down = clients.filter((c) => !c.connected).length
      return down === 0 ? { status: 'up' } : { status: 'down', detail: `${down} of ${clients.length} MQTT connections are down` }
    },
  }
}

/** Sends Mosquitto dynamic-security commands and waits for their answer. */
async function dynsec(client: MqttClient, commands: Record<string, unknown>[]) {
  const response = `${DYNSEC}/response`
  await client.subscribeAsync(response, { qos: 1 })
  const answered = new Promise<{ responses: { command: string; error?: string }[] }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the broker did not answer the dynamic-security commands')), 5000)
    const onMessage = (topic: string, payload: Buffer) => {
      if (topic !== response) return
      clearTimeout(timer)
      client.off('message', onMessage)
      resolve(JSON.parse(payload.toString('utf8')))
    }
    client.on('message', onMessage)
  })
  await client.publishAsync(DYNSEC, JSON.stringify({ commands }), { qos: 1 })
  const { responses } = await answered
  const failed = responses.filter((r) => r.error && !/already exists/i.test(r.error))
  if (failed.length) throw new Error(`broker refused: ${failed.map((r) => `${r.command}: ${r.error}`).join('; ')}`)
}
