/**
 * The embedded broker (aedes, MQTT 3.1.1) for the one-process topology. Consumers run inside
 * aedes' authorizePublish step, which precedes the PUBACK: a device's QoS 1 reading is acknowledged
 * only after the handler stored it, so a crash before that makes the device send it again.
 */
import { createServer, type Server, type Socket } from 'node:net'
import { Aedes } from 'aedes'
import type { Logger } from 'pino'
import { type MqttAuthority, type MqttHandler, type MqttPort, topicMatches } from './port'

const SERVER_UNAVAILABLE = 3
const BAD_CREDENTIALS = 4
const NOT_AUTHORIZED = 5
/** Where refused publishes go: nobody may subscribe to it (see authorizeSubscribe). */
const REFUSED_TOPIC = '$tessera/refused'
const TOPICS_KEPT = 100_000

/**
 * `portIsDefault`: the port was not chosen by the operator, so when it is taken (say a Mosquitto
 * runs on the machine) a free one is used instead and logged, rather than refusing to start.
 */
export function embeddedBroker(port: number, log: Logger, host = '0.0.0.0', portIsDefault = false): MqttPort {
  const consumers: { filter: string; handler: MqttHandler }[] = []
  let authority: MqttAuthority | undefined
  let broker: Aedes | undefined
  let server: Server | undefined
  let listening = 0
  const inFlight = new Set<Promise<void>>()
  const sockets = new Set<Socket>()

  /** Each topic's consumer (or none), looked up once: a client publishes to the same few topics all day. */
  const consumerOf = new Map<string, { filter: string; handler: MqttHandler } | null>()
  const consumerFor = (topic: string) => {
    let consumer = consumerOf.get(topic)
    if (consumer === undefined) {
      consumer = consumers.find((c) => topicMatches(c.filter, topic)) ?? null
      // Only the topics of clients that may publish there reach this; emptied when full, as a bound.
      if (consumerOf.size >= TOPICS_KEPT) consumerOf.clear()
      consumerOf.set(topic, consumer)
    }
    return consumer
  }
  /** Client messages a consumer took or the broker dropped: acknowledged, never routed (see start). */
  const ended = new WeakSet<object>()

  return {
    get port() {
      return listening
    },
    consume(_group, filter, handler) {
      consumers.push({ filter, handler })
    },
    authorize(a) {
      authority = a
    },
    async grant() {},
    async publish(topic, payload, options = {}) {
      if (!broker) throw new Error('the embedded MQTT broker is not running')
      const b = broker
      await new Promise<void>((resolve, reject) =>
        b.publish(
          { cmd: 'publish', topic, payload: typeof payload === 'string' ? Buffer.from(payload) : payload, qos: options.qos ?? 0, retain: options.retain ?? false, dup: false },
          (error) => (error ? reject(error) : resolve()),
        ),
      )
    },
    async start() {
      broker = await Aedes.createBroker({
        authenticate(client, username, password, done) {
          const refuse = (code: number) => done(Object.assign(new Error('not authorized'), { returnCode: code }), false)
          // "Server unavailable" makes devices retry; "bad credentials" and "not authorized" stop them.
          if (!authority) return refuse(SERVER_UNAVAILABLE)
          if (!username || !password) return refuse(NOT_AUTHORIZED)
          authority.authenticate(username, password.toString()).then(
            (ok) => (ok ? done(null, true) : refuse(BAD_CREDENTIALS)),
            (error) => {
              log.error({ err: error }, 'MQTT authentication failed')
              refuse(SERVER_UNAVAILABLE)
            },
          )
          ;(client as unknown as { username?: string }).username = username
        },
        authorizePublish(client, packet, callback) {
          const username = (client as unknown as { username?: string } | null)?.username
          if (client && (!authority || !username || !authority.mayPublish(username, packet.topic))) {
            // As Mosquitto does with MQTT 3.1.1: acknowledged and dropped. Refusing would close the
            // connection, and the device would re-send it after reconnecting, forever.
            log.warn({ username, topic: packet.topic }, 'MQTT publish outside the client’s topics dropped')
            packet.topic = REFUSED_TOPIC
            packet.retain = false
            if (client) ended.add(packet)
            return callback(null)
          }
          const consumer = consumerFor(packet.topic)
          if (!consumer) return callback(null)
          if (client) ended.add(packet)
          const handled = consumer.handler({ topic: packet.topic, payload: Buffer.from(packet.payload), username })
          inFlight.add(handled)
          handled
            .then(
              () => callback(null),
              (error) => {
                // Not acknowledged: the device keeps the reading and sends it again after reconnecting.
                log.warn({ err: error, topic: packet.topic }, 'MQTT message not stored; left unacknowledged')
                callback(error instanceof Error ? error : new Error(String(error)))
              },
            )
            .finally(() => inFlight.delete(handled))
        },
        authorizeSubscribe(client, subscription, callback) {
          const username = (client as unknown as { username?: string }).username
          if (authority && username && authority.maySubscribe(username, subscription.topic)) return callback(null, subscription)
          callback(new Error(`not allowed to subscribe to ${subscription.topic}`))
        },
      })
      const b = broker
      // aedes routes every message it acknowledged: retained store, persistent sessions, subscribers.
      // A client's message on a consumed topic belongs to its consumer (MqttPort.consume), and a
      // dropped one to nobody, so those end at their acknowledgement: the routing cost 3.8 % of the
      // server's CPU samples under a steady stream and delivered nothing (BENCHMARKS.md, tenth
      // session). The broker's own messages (publish above) are routed as before.
      const route = b.publish.bind(b)
      b.publish = ((packet: Parameters<Aedes['publish']>[0], client: unknown, done?: (error?: Error) => void) => {
        if (typeof client === 'function') return route(packet, client as (error?: Error) => void)
        if (ended.has(packet)) {
          ended.delete(packet)
          return done?.()
        }
        return (route as (...args: unknown[]) => void)(packet, client, done)
      }) as Aedes['publish']
      server = createServer((socket) => {
        socket.setNoDelay(true)
        sockets.add(socket)
        socket.once('close', () => sockets.delete(socket))
        b.handle(socket)
      })
      const listen = (p: number) =>
        new Promise<void>((resolve, reject) => {
          server!.once('error', reject)
          server!.listen(p, host, () => resolve())
        })
      await listen(port).catch(async (error: NodeJS.ErrnoException) => {
        if (error.code !== 'EADDRINUSE' || !portIsDefault) throw error
        log.warn({ port }, 'MQTT_PORT (default) is taken; the embedded broker uses a free port instead, set MQTT_PORT to choose one')
        await listen(0)
      })
      listening = (server.address() as { port: number }).port
      log.info({ port: listening }, 'embedded MQTT broker listening')
    },
    async stop() {
      // Stop accepting devices, close the ones connected (their wills are handled too), then drain.
      const closed = new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()))
      if (broker) await new Promise<void>((resolve) => broker!.close(() => resolve()))
      for (const socket of sockets) socket.destroy()
      await Promise.allSettled([...inFlight])
      await closed
      broker = undefined
    },
    health() {
      return broker ? { status: 'up' } : { status: 'down', detail: 'embedded MQTT broker not running' }
    },
  }
}
