/**
 * A warehouse sensor speaking CONTRACT.md §5: readings go out as QoS 1 publishes on
 * `warehouses/{warehouse}/devices/{deviceId}/readings`, the retained `online`/`offline` status (and
 * the last will) on `.../status`.
 *
 * Delivery: a reading counts as delivered only when the broker's PUBACK arrives. Until then it
 * waits in this device's outbox. The outbox is the only owner of retransmission: when a connection
 * drops, every unacknowledged publish is taken back from mqtt.js' own in-flight store (so mqtt.js
 * re-sends nothing by itself) and re-published, with its original payload and seq, after the next
 * CONNACK. A reading is therefore never lost while the device lives, and every duplicate the server
 * sees is a re-send of the same (deviceId, seq).
 */
import { EventEmitter } from 'node:events'
import mqtt, { type IClientOptions, type IConnackPacket, type MqttClient, ReasonCodes } from 'mqtt'

export type ReadingType = 'delta' | 'count'

/** What a caller hands to `send`: `ts` defaults to the time it was queued. */
export interface Reading {
  sku: string
  type: ReadingType
  value: number
  ts?: number
}

/** The wire shape of one reading. */
export interface WireReading {
  seq: number
  ts: number
  sku: string
  type: ReadingType
  value: number
}

export interface DeviceOptions {
  /** Broker URL, e.g. `mqtt://127.0.0.1:1883`. */
  url: string
  deviceId: string
  secret: string
  /** Warehouse code (the topic segment). */
  warehouse: string
  /** 4 = MQTT 3.1.1 (default), 5 = MQTT 5. */
  protocolVersion?: 4 | 5
  /** Publishes awaiting their PUBACK at once (default 100); MQTT 5 also honours the broker's receive maximum. */
  maxInFlight?: number
  /** Readings per publish: 1 (default) sends a JSON object, more sends a JSON array. */
  batchSize?: number
  /** First seq; defaults to Date.now() * 1000 so a restarted device never reuses an applied seq. */
  startSeq?: number
  /** When set, `online` is re-published after this long without any publish (the server's liveness signal). */
  heartbeatMs?: number
  /** Delay between reconnect attempts (default 250 ms). */
  reconnectPeriod?: number
  /** `connect()` gives up when the first CONNACK has not arrived by then (default 10 s). */
  connectTimeoutMs?: number
  /** MQTT keep-alive in seconds (default 30). */
  keepalive?: number
}

export interface DeviceStats {
  /** Readings published for the first time. */
  sent: number
  /** Readings the broker acknowledged. */
  acknowledged: number
  /** Re-publications of readings after a connection dropped. */
  resent: number
  /** Readings an MQTT 5 broker refused with a negative PUBACK (not retried). */
  rejected: number
  /** Readings queued or in flight, not yet acknowledged. */
  pending: number
  /** Publishes awaiting their PUBACK. */
  inFlight: number
  /** Successful CONNACKs so far. */
  connects: number
  online: boolean
}

/** The broker refused the CONNECT (bad credentials, not authorized, banned...). */
export class ConnectionRefusedError extends Error {
  constructor(
    readonly deviceId: string,
    readonly code: number,
  ) {
    super(`device ${deviceId}: broker refused the connection: ${ReasonCodes[code as keyof typeof ReasonCodes] ?? 'unknown reason'} (code ${code})`)
    this.name = 'ConnectionRefusedError'
  }
}

/** Readings that share one `send`/`sendMany` promise. */
interface Waiter {
  left: number
  resolve: () => void
  reject: (error: Error) => void
}

interface Item {
  reading: WireReading
  waiter?: Waiter
}

/** One publish: its readings and payload never change, so a re-send carries the original seqs. */
interface Message {
  items: Item[]
  payload: string
  attempts: number
  /** The current client.publish call; callbacks of an earlier one are stale. */
  call: number
  messageId: number
  done: boolean
}

/** A FIFO whose shift is O(1), for queues that hold many thousands of readings. */
class Fifo<T> {
  private items: T[] = []
  private head = 0

  get size() {
    return this.items.length - this.head
  }
  push(item: T) {
    this.items.push(item)
  }
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined
    const item = this.items[this.head++]
    // Compact now and then so the backing array does not grow forever.
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return item
  }
  drainAll(): T[] {
    const rest = this.items.slice(this.head)
    this.items = []
    this.head = 0
    return rest
  }
}

type DeviceEvents = {
  online: []
  offline: []
  /** The broker refused the connection; the device has stopped. */
  failed: [error: Error]
  acknowledged: [readings: WireReading[]]
  rejected: [readings: WireReading[], error: Error]
}

export class Device extends EventEmitter<DeviceEvents> {
  readonly deviceId: string
  readonly warehouse: string
  readonly readingsTopic: string
  readonly statusTopic: string
  readonly clientId: string

  private readonly options: Required<Omit<DeviceOptions, 'heartbeatMs'>> & { heartbeatMs?: number }
  private client?: MqttClient
  private nextSeq: number
  private readonly queue = new Fifo<Item>()
  private retry: Message[] = []
  private readonly inFlight = new Map<number, Message>()
  /** Every QoS 1 message id mqtt.js holds for us (readings and status). */
  private readonly outstanding = new Set<number>()
  private publishCalls = 0
  private receiveMaximum = Infinity
  private lastPublishAt = 0
  private heartbeat?: ReturnType<typeof setInterval>
  private drainWaiters: Waiter[] = []
  private ready?: Promise<void>
  private pendingConnect?: { timer: ReturnType<typeof setTimeout>; reject: (error: Error) => void }
  private failure?: Error
  private closed = false
  private counters = { sent: 0, acknowledged: 0, resent: 0, rejected: 0, pending: 0, connects: 0 }
  private online = false

  constructor(options: DeviceOptions) {
    super()
    // Options passed as undefined take the default too.
    const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as DeviceOptions
    this.options = {
      protocolVersion: 4,
      maxInFlight: 100,
      batchSize: 1,
      startSeq: Date.now() * 1000,
      reconnectPeriod: 250,
      connectTimeoutMs: 10_000,
      keepalive: 30,
      ...given,
    }
    assertPositiveInteger('maxInFlight', this.options.maxInFlight)
    assertPositiveInteger('batchSize', this.options.batchSize)
    if (!Number.isSafeInteger(this.options.startSeq)) throw new Error(`startSeq must be a safe integer (got ${this.options.startSeq})`)
    this.deviceId = options.deviceId
    this.warehouse = options.warehouse
    this.clientId = `device-${options.deviceId}`
    this.readingsTopic = `warehouses/${options.warehouse}/devices/${options.deviceId}/readings`
    this.statusTopic = `warehouses/${options.warehouse}/devices/${options.deviceId}/status`
    this.nextSeq = this.options.startSeq
  }

  /** Resolves on the first CONNACK; rejects when the broker refuses or cannot be reached in time. */
  connect(): Promise<void> {
    this.ready ??= this.open()
    return this.ready
  }

  /** Queues one reading and resolves when the broker has acknowledged it. */
  send(reading: Reading): Promise<WireReading> {
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { left: 1, resolve: () => resolve(wire), reject }
      const wire = this.push(reading, waiter)
    })
  }

  /** Queues readings and resolves when the broker has acknowledged all of them. */
  sendMany(readings: Reading[]): Promise<WireReading[]> {
    if (readings.length === 0) return Promise.resolve([])
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { left: readings.length, resolve: () => resolve(wires), reject }
      const wires = readings.map((r) => this.push(r, waiter))
    })
  }

  /** Fire and forget: queues the reading and returns it with its seq; `drain()` waits for the ack. */
  enqueue(reading: Reading): WireReading {
    return this.push(reading)
  }

  /** Resolves when everything queued so far has been acknowledged (or rejected by the broker). */
  drain(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure)
    if (this.counters.pending === 0) return Promise.resolve()
    return new Promise((resolve, reject) => this.drainWaiters.push({ left: 1, resolve, reject }))
  }

  stats(): DeviceStats {
    return { ...this.counters, inFlight: this.inFlight.size, online: this.online }
  }

  /**
   * Clean shutdown: waits (up to `timeoutMs`) for the outbox to drain, publishes the retained
   * `offline` status, then disconnects. Readings still unacknowledged after that are rejected.
   */
  async close(timeoutMs = 5000): Promise<void> {
    if (this.closed || !this.client) return this.stopWith(new Error(`device ${this.deviceId} closed`))
    const deadline = Date.now() + timeoutMs
    await withinMs(this.drain(), timeoutMs).catch(() => {})
    if (this.online) await withinMs(this.publishStatus('offline'), Math.max(0, deadline - Date.now())).catch(() => {})
    this.stopWith(new Error(`device ${this.deviceId} closed before these readings were acknowledged`))
    this.releaseOutstanding()
    await new Promise<void>((resolve) => this.client!.end(false, () => resolve()))
  }

  /** Drops the connection without a DISCONNECT, as a crash or power cut would: the broker publishes the last will. */
  async abort(): Promise<void> {
    this.stopWith(new Error(`device ${this.deviceId} aborted before these readings were acknowledged`))
    if (this.client) await new Promise<void>((resolve) => this.client!.end(true, () => resolve()))
  }

  private open(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let lastError: Error | undefined
      let refusal: ConnectionRefusedError | undefined
      const timer = setTimeout(() => this.fail(new Error(`device ${this.deviceId}: no CONNACK from ${this.options.url} within ${this.options.connectTimeoutMs} ms (${lastError?.message ?? 'no answer'})`)), this.options.connectTimeoutMs)
      this.pendingConnect = { timer, reject }
      this.client = mqtt.connect(this.clientOptions())
      this.client.on('connect', (connack) => {
        clearTimeout(timer)
        this.pendingConnect = undefined
        this.onConnect(connack)
        resolve()
      })
      this.client.on('close', () => this.onDisconnect())
      this.client.on('packetreceive', (packet) => {
        if (packet.cmd === 'connack' && isFatalRefusal(refusalCode(packet))) refusal = new ConnectionRefusedError(this.deviceId, refusalCode(packet))
      })
      // mqtt.js reports a refused CONNACK here after closing the socket; it retries network errors and
      // "try again later" refusals by itself (reconnectOnConnackError).
      this.client.on('error', (error) => (refusal ? this.fail(refusal) : (lastError = error)))
    })
  }

  private clientOptions(): IClientOptions {
    const { deviceId, secret, protocolVersion, reconnectPeriod, connectTimeoutMs, keepalive } = this.options
    return {
      ...brokerAddress(this.options.url),
      clientId: this.clientId,
      username: deviceId,
      password: secret,
      protocolVersion,
      // The outbox re-sends after every reconnect, so no broker-side session is needed.
      clean: true,
      reconnectPeriod,
      connectTimeout: connectTimeoutMs,
      keepalive,
      resubscribe: false,
      queueQoSZero: false,
      reconnectOnConnackError: true,
      will: { topic: this.statusTopic, payload: Buffer.from('offline'), qos: 1, retain: true },
    }
  }

  private onConnect(connack: IConnackPacket) {
    this.online = true
    this.counters.connects++
    // MQTT 5 brokers cap un-acknowledged publishes per client; one slot stays free for the status.
    const max = connack.properties?.receiveMaximum
    this.receiveMaximum = max ? Math.max(1, max - 1) : Infinity
    this.publishStatus('online').catch(() => {})
    this.startHeartbeat()
    this.emit('online')
    this.pump()
  }

  /** Takes every unacknowledged publish back from mqtt.js and queues it for a re-send, oldest first. */
  private onDisconnect() {
    const wasOnline = this.online
    this.online = false
    this.stopHeartbeat()
    for (const message of this.inFlight.values()) message.call = 0
    this.retry = [...this.inFlight.values(), ...this.retry].sort((a, b) => a.items[0].reading.seq - b.items[0].reading.seq)
    this.inFlight.clear()
    this.releaseOutstanding()
    if (wasOnline) this.emit('offline')
  }

  /** Empties mqtt.js' in-flight store so it never re-sends on its own; its callbacks become stale. */
  private releaseOutstanding() {
    for (const id of this.outstanding) this.client?.removeOutgoingMessage(id)
    this.outstanding.clear()
  }

  private push(reading: Reading, waiter?: Waiter): WireReading {
    if (this.failure) throw this.failure
    const wire: WireReading = { seq: this.nextSeq++, ts: reading.ts ?? Date.now(), sku: reading.sku, type: reading.type, value: reading.value }
    this.queue.push({ reading: wire, waiter })
    this.counters.pending++
    this.pump()
    return wire
  }

  /** Publishes re-sends first, then new batches, while the in-flight window has room. */
  private pump() {
    const window = Math.min(this.options.maxInFlight, this.receiveMaximum)
    // mqtt.js refuses publishes once end() has begun; they would bounce straight back into `retry`.
    while (this.online && !this.closed && !this.client!.disconnecting && this.inFlight.size < window) {
      const message = this.retry.shift() ?? this.nextBatch()
      if (!message) return
      this.publish(message)
    }
  }

  private nextBatch(): Message | undefined {
    const items: Item[] = []
    while (items.length < this.options.batchSize && this.queue.size > 0) items.push(this.queue.shift()!)
    if (items.length === 0) return undefined
    const readings = items.map((i) => i.reading)
    const payload = JSON.stringify(this.options.batchSize === 1 ? readings[0] : readings)
    return { items, payload, attempts: 0, call: 0, messageId: 0, done: false }
  }

  private publish(message: Message) {
    const client = this.client!
    if (message.attempts++ === 0) this.counters.sent += message.items.length
    else this.counters.resent += message.items.length
    const call = ++this.publishCalls
    message.call = call
    client.publish(this.readingsTopic, message.payload, { qos: 1 }, (error) => this.onPublished(message, call, error))
    // Online means mqtt.js' store replay is over, so the publish went out synchronously with this id.
    message.messageId = client.getLastMessageId()
    this.inFlight.set(message.messageId, message)
    this.outstanding.add(message.messageId)
    this.lastPublishAt = Date.now()
  }

  private onPublished(message: Message, call: number, error?: Error) {
    if (message.done) return
    if (!error) return this.settle(message)
    if (call !== message.call) return
    this.forget(message)
    if (isNegativeAck(error)) return this.settle(message, error)
    // It never reached the wire (e.g. the connection was closing): send it again after the next connect.
    this.retry.unshift(message)
  }

  private forget(message: Message) {
    if (this.inFlight.get(message.messageId) === message) this.inFlight.delete(message.messageId)
    this.outstanding.delete(message.messageId)
  }

  /** An acknowledgement (or, with `error`, a broker refusal) ends a message's life. */
  private settle(message: Message, error?: Error) {
    message.done = true
    this.forget(message)
    const readings = message.items.map((i) => i.reading)
    this.counters.pending -= readings.length
    if (error) this.counters.rejected += readings.length
    else this.counters.acknowledged += readings.length
    for (const item of message.items) if (item.waiter && --item.waiter.left === 0) error ? item.waiter.reject(error) : item.waiter.resolve()
    if (error) this.emit('rejected', readings, error)
    else if (this.listenerCount('acknowledged') > 0) this.emit('acknowledged', readings)
    if (this.counters.pending === 0) this.resolveDrains()
    this.pump()
  }

  private publishStatus(status: 'online' | 'offline'): Promise<void> {
    const client = this.client!
    let id = 0
    return new Promise((resolve, reject) => {
      client.publish(this.statusTopic, status, { qos: 1, retain: true }, (error) => {
        this.outstanding.delete(id)
        error ? reject(error) : resolve()
      })
      id = client.getLastMessageId()
      this.outstanding.add(id)
      this.lastPublishAt = Date.now()
    })
  }

  private startHeartbeat() {
    const every = this.options.heartbeatMs
    if (!every || this.heartbeat) return
    this.heartbeat = setInterval(() => {
      if (this.online && Date.now() - this.lastPublishAt >= every) this.publishStatus('online').catch(() => {})
    }, Math.max(50, Math.floor(every / 4)))
    this.heartbeat.unref?.()
  }

  private stopHeartbeat() {
    clearInterval(this.heartbeat)
    this.heartbeat = undefined
  }

  private resolveDrains() {
    const waiters = this.drainWaiters
    this.drainWaiters = []
    for (const w of waiters) w.resolve()
  }

  /** Refused for good or never reached: stop instead of retrying with credentials that will not work. */
  private fail(error: Error) {
    if (this.failure) return
    this.stopWith(error)
    this.client?.end(true)
    if (this.listenerCount('failed') > 0) this.emit('failed', error)
  }

  /** Rejects everything still waiting (a pending connect() included) and refuses new readings. */
  private stopWith(error: Error) {
    this.closed = true
    this.failure ??= error
    this.online = false
    this.stopHeartbeat()
    if (this.pendingConnect) {
      clearTimeout(this.pendingConnect.timer)
      this.pendingConnect.reject(error)
      this.pendingConnect = undefined
    }
    const items = [...this.retry.flatMap((m) => m.items), ...[...this.inFlight.values()].flatMap((m) => m.items), ...this.queue.drainAll()]
    this.retry = []
    for (const m of this.inFlight.values()) m.done = true
    this.inFlight.clear()
    const waiters = new Set(items.map((i) => i.waiter).filter((w): w is Waiter => !!w))
    for (const w of [...waiters, ...this.drainWaiters]) w.reject(error)
    this.drainWaiters = []
  }
}

/** Creates a device and waits for its first CONNACK. */
export async function connectDevice(options: DeviceOptions): Promise<Device> {
  const device = new Device(options)
  await device.connect()
  return device
}

/** Splits the URL with WHATWG URL (mqtt.js would use the deprecated url.parse and warn). */
function brokerAddress(url: string): Pick<IClientOptions, 'protocol' | 'host' | 'port' | 'path'> {
  const u = new URL(url)
  const protocol = u.protocol.replace(/:$/, '') as IClientOptions['protocol']
  const ws = protocol === 'ws' || protocol === 'wss'
  return { protocol, host: u.hostname, port: u.port ? Number(u.port) : undefined, ...(ws ? { path: u.pathname } : {}) }
}

function refusalCode(connack: IConnackPacket): number {
  return connack.reasonCode ?? connack.returnCode ?? 0
}

/** CONNACK codes that mean "try again later" (server unavailable or busy, quota or rate limits); any other refusal is final. */
const TRANSIENT_REFUSALS = new Set([3, 128, 131, 136, 137, 151, 159])

function isFatalRefusal(code: number): boolean {
  return code > 0 && !TRANSIENT_REFUSALS.has(code)
}

/** MQTT 5 PUBACK reason codes of 0x80 and above are the broker's "no" for that message. */
function isNegativeAck(error: Error): boolean {
  const code = (error as Error & { code?: unknown }).code
  return typeof code === 'number' && code >= 0x80
}

function assertPositiveInteger(name: string, value: number) {
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer (got ${value})`)
}

function withinMs<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout>
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms)))
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** The stats of many devices added up (`online` counts the devices that are online). */
export function fleetStats(devices: Device[]) {
  const t = { sent: 0, acknowledged: 0, resent: 0, rejected: 0, pending: 0, connects: 0, online: 0 }
  for (const d of devices) {
    const s = d.stats()
    t.sent += s.sent
    t.acknowledged += s.acknowledged
    t.resent += s.resent
    t.rejected += s.rejected
    t.pending += s.pending
    t.connects += s.connects
    t.online += s.online ? 1 : 0
  }
  return t
}
