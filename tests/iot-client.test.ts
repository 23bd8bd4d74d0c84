/**
 * The device client (iot/device.ts) against a real Mosquitto, observed by a real mqtt.js
 * subscriber: topics and payload shapes, monotonic seq, the in-flight window, retained status and
 * last will, refused credentials and publishes, "try again later" refusals (aedes, the embedded
 * broker's engine), and no gap in the seqs after the broker is SIGKILLed and restarted mid-stream.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { createServer } from 'node:net'
import { Aedes } from 'aedes'
import mqtt, { type MqttClient } from 'mqtt'
import { ConnectionRefusedError, Device, type DeviceOptions, type WireReading } from '../iot/device'
import { freePort, type Mosquitto, startMosquitto } from '../iot/mosquitto'

const READING_KEYS = ['seq', 'sku', 'ts', 'type', 'value']

interface Received {
  topic: string
  payload: string
  retain: boolean
}

/** A subscriber that records everything it receives. */
async function watch(url: string, filter: string, options: mqtt.IClientOptions = {}) {
  const received: Received[] = []
  const { hostname, port } = new URL(url)
  const client = await mqtt.connectAsync({ host: hostname, port: Number(port), reconnectPeriod: 50, ...options })
  client.on('message', (topic, payload, packet) => received.push({ topic, payload: payload.toString(), retain: packet.retain }))
  await client.subscribeAsync(filter, { qos: 1 })
  return { client, received }
}

/** The readings a subscriber received, flattened from object and array payloads. */
const readingsOf = (received: Received[]) => received.filter((m) => m.topic.endsWith('/readings')).flatMap((m) => [JSON.parse(m.payload)].flat() as WireReading[])

async function eventually(check: () => boolean, ms = 5000) {
  const deadline = Date.now() + ms
  while (!check() && Date.now() < deadline) await Bun.sleep(20)
  return check()
}

const reading = (i: number) => ({ sku: `SKU-${i % 3}`, type: i % 10 === 9 ? ('count' as const) : ('delta' as const), value: i % 10 === 9 ? 100 : (i % 2 ? 1 : -2) })

describe('iot device client', () => {
  let broker: Mosquitto
  const devices: Device[] = []
  const subscribers: MqttClient[] = []
  const device = (options: Partial<DeviceOptions> & { deviceId: string }) => {
    const d = new Device({ url: broker.url, secret: 'unused', warehouse: 'WH-1', startSeq: 1, ...options })
    devices.push(d)
    return d
  }
  const subscriber = async (filter: string) => {
    const w = await watch(broker.url, filter)
    subscribers.push(w.client)
    return w
  }

  beforeAll(async () => {
    broker = await startMosquitto()
  })
  afterAll(async () => {
    await Promise.all(devices.map((d) => d.abort()))
    await Promise.all(subscribers.map((s) => s.endAsync(true)))
    await broker?.stop()
  })

  for (const protocolVersion of [4, 5] as const) {
    test(`MQTT ${protocolVersion === 4 ? '3.1.1' : '5'}: single readings arrive as JSON objects with a monotonic seq on the device's topic`, async () => {
      const id = `single-v${protocolVersion}`
      const { received } = await subscriber(`warehouses/+/devices/${id}/readings`)
      const d = device({ deviceId: id, protocolVersion, startSeq: 41 })
      await d.connect()
      const first = await d.send({ sku: 'SKU-1', type: 'delta', value: -3, ts: 1767225600000 })
      expect(first).toEqual({ seq: 41, ts: 1767225600000, sku: 'SKU-1', type: 'delta', value: -3 })
      for (let i = 0; i < 200; i++) d.enqueue(reading(i))
      await d.drain()

      expect(await eventually(() => received.length === 201)).toBe(true)
      for (const m of received) {
        expect(m.topic).toBe(`warehouses/WH-1/devices/${id}/readings`)
        const body = JSON.parse(m.payload)
        expect(Array.isArray(body)).toBe(false)
        expect(Object.keys(body).sort()).toEqual(READING_KEYS)
        expect(typeof body.ts).toBe('number')
      }
      expect(readingsOf(received).map((r) => r.seq)).toEqual(Array.from({ length: 201 }, (_, i) => 41 + i))
      expect(d.stats()).toMatchObject({ sent: 201, acknowledged: 201, resent: 0, pending: 0, inFlight: 0, online: true })
    })
  }

  test('with batchSize > 1 every publish is a JSON array of at most batchSize readings, seqs contiguous', async () => {
    const { received } = await subscriber('warehouses/+/devices/batched/readings')
    const d = device({ deviceId: 'batched', batchSize: 5, maxInFlight: 2 })
    await d.connect()
    const sent = await d.sendMany(Array.from({ length: 23 }, (_, i) => reading(i)))
    expect(sent.map((r) => r.seq)).toEqual(Array.from({ length: 23 }, (_, i) => 1 + i))

    expect(await eventually(() => readingsOf(received).length === 23)).toBe(true)
    for (const m of received) {
      const body = JSON.parse(m.payload)
      expect(Array.isArray(body)).toBe(true)
      expect(body.length).toBeGreaterThanOrEqual(1)
      expect(body.length).toBeLessThanOrEqual(5)
      for (const r of body) expect(Object.keys(r).sort()).toEqual(READING_KEYS)
    }
    expect(readingsOf(received).map((r) => r.seq)).toEqual(sent.map((r) => r.seq))
    expect(d.stats()).toMatchObject({ sent: 23, acknowledged: 23, pending: 0 })
  })

  test('never has more than maxInFlight publishes awaiting their PUBACK', async () => {
    const d = device({ deviceId: 'windowed', maxInFlight: 7 })
    await d.connect()
    let peak = 0
    const sample = setInterval(() => (peak = Math.max(peak, d.stats().inFlight)), 1)
    for (let i = 0; i < 2000; i++) d.enqueue(reading(i))
    expect(d.stats().inFlight).toBe(7)
    await d.drain()
    clearInterval(sample)
    expect(peak).toBeLessThanOrEqual(7)
    expect(d.stats()).toMatchObject({ acknowledged: 2000, pending: 0, inFlight: 0 })
  })

  test('online is retained on connect, offline is retained on close() and as the last will when the connection dies', async () => {
    const retainedStatus = async (deviceId: string) => {
      const { received } = await subscriber(`warehouses/WH-1/devices/${deviceId}/status`)
      await eventually(() => received.length > 0, 1000)
      return received
    }
    const live = await subscriber('warehouses/WH-1/devices/+/status')
    const ours = new Set(['crashing', 'closing'])
    const statuses = (payload: string) => live.received.map((m) => ({ ...m, id: m.topic.split('/')[3] })).filter((m) => ours.has(m.id) && m.payload === payload).map((m) => m.id).sort()
    const crashing = device({ deviceId: 'crashing' })
    const closing = device({ deviceId: 'closing' })
    await Promise.all([crashing.connect(), closing.connect()])
    expect(await eventually(() => statuses('online').length === 2)).toBe(true)
    expect(await retainedStatus('crashing')).toEqual([{ topic: 'warehouses/WH-1/devices/crashing/status', payload: 'online', retain: true }])

    await crashing.abort()
    await closing.close()
    expect(await eventually(() => statuses('offline').length === 2)).toBe(true)
    expect(statuses('offline')).toEqual(['closing', 'crashing'])
    expect(await retainedStatus('crashing')).toEqual([{ topic: 'warehouses/WH-1/devices/crashing/status', payload: 'offline', retain: true }])
    expect(await retainedStatus('closing')).toEqual([{ topic: 'warehouses/WH-1/devices/closing/status', payload: 'offline', retain: true }])
  })

  test('uses the device id as username and a stable client id', async () => {
    const auth = await startMosquitto({ users: { 'dev-7': 'right-secret' } })
    try {
      const d = device({ url: auth.url, deviceId: 'dev-7', secret: 'right-secret' })
      await d.connect()
      await d.close()
      expect(auth.log()).toContain('as device-dev-7')
      expect(auth.log()).toContain("u'dev-7'")
    } finally {
      await auth.stop()
    }
  })

  test('wrong credentials reject connect() with the broker reason instead of retrying', async () => {
    const auth = await startMosquitto({ users: { 'dev-8': 'right-secret' } })
    try {
      const d = device({ url: auth.url, deviceId: 'dev-8', secret: 'wrong-secret', reconnectPeriod: 50 })
      const error = await d.connect().catch((e) => e)
      expect(error).toBeInstanceOf(ConnectionRefusedError)
      expect(error.message).toMatch(/refused the connection: Not authorized \(code 5\)/)
      expect(() => d.enqueue(reading(1))).toThrow(/refused/)
      // No retry loop: with reconnectPeriod 50 a loop would have been refused about six times by now.
      await Bun.sleep(300)
      expect(auth.log().match(/not authorised/g)).toHaveLength(1)
    } finally {
      await auth.stop()
    }
  })

  test('MQTT 5: a publish the broker refuses (negative PUBACK) rejects send() and is not retried', async () => {
    // Its status topic is allowed, its readings topic is not.
    const acl = 'user dev-10\ntopic readwrite warehouses/WH-1/devices/dev-10/status'
    const auth = await startMosquitto({ users: { 'dev-10': 'secret-10' }, acl })
    try {
      const d = device({ url: auth.url, deviceId: 'dev-10', secret: 'secret-10', protocolVersion: 5 })
      const rejected: number[] = []
      d.on('rejected', (readings) => rejected.push(...readings.map((r) => r.seq)))
      await d.connect()
      const error = await d.send(reading(1)).catch((e) => e)
      expect(error.message).toMatch(/Not authorized/)
      expect(rejected).toHaveLength(1)
      expect(d.stats()).toMatchObject({ sent: 1, acknowledged: 0, rejected: 1, resent: 0, pending: 0 })
      await d.close()
    } finally {
      await auth.stop()
    }
  })

  test('"server unavailable" refusals are retried until the broker lets the device in (aedes, the embedded broker)', async () => {
    let attempts = 0
    const aedes = await Aedes.createBroker({
      authenticate: (_client, username, password, done) => {
        if (++attempts <= 2) return done(Object.assign(new Error('not ready'), { returnCode: 3 }), false)
        done(null, username === 'dev-9' && password?.toString() === 'secret-9')
      },
    })
    const server = createServer(aedes.handle)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    try {
      const { port } = server.address() as { port: number }
      const d = device({ url: `mqtt://127.0.0.1:${port}`, deviceId: 'dev-9', secret: 'secret-9', reconnectPeriod: 50 })
      await d.connect()
      expect(attempts).toBe(3)
      expect((await d.sendMany([reading(1), reading(2)])).map((r) => r.seq)).toEqual([1, 2])
      await d.close()
    } finally {
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
      server.close()
    }
  })

  test('an unreachable broker rejects connect() after connectTimeoutMs', async () => {
    const port = await freePort()
    const d = device({ url: `mqtt://127.0.0.1:${port}`, deviceId: 'nowhere', connectTimeoutMs: 400, reconnectPeriod: 50 })
    const error = await d.connect().catch((e) => e)
    expect(error.message).toMatch(/no CONNACK .* within 400 ms \(.*ECONNREFUSED/)
  })

  test('broker SIGKILLed and restarted on the same port mid-stream: every seq arrives, duplicates only of sent seqs', async () => {
    // The observer's session is saved to disk before the crash (SIGUSR1) so that the restarted broker
    // queues readings for it even if the device reconnects first; the device's own session is never saved.
    const crashy = await startMosquitto({ persistence: true, config: ['max_inflight_messages 0'] })
    try {
      const { client: observer, received } = await watch(crashy.url, 'warehouses/+/devices/+/readings', { clientId: 'observer', clean: false })
      subscribers.push(observer)
      await crashy.save()
      const d = device({ url: crashy.url, deviceId: 'survivor', maxInFlight: 50, reconnectPeriod: 100 })
      await d.connect()
      const sent: number[] = []
      let producing = true
      // Produce faster than the broker acknowledges, so the in-flight window is full when the broker dies.
      const producer = (async () => {
        while (producing) {
          for (let i = 0; i < 100; i++) sent.push(d.enqueue(reading(i)).seq)
          await Bun.sleep(5)
        }
      })()

      await Bun.sleep(400)
      // Freeze first: the observer reads what the broker already wrote to it before SIGKILL resets its
      // socket (a reset drops unread data, a loss of the test's observer, not of the device).
      crashy.pause()
      await Bun.sleep(100)
      const inFlightAtCrash = d.stats().inFlight
      await crashy.kill()
      await Bun.sleep(300)
      expect(d.stats().online).toBe(false)
      await crashy.restart()
      await Bun.sleep(400)
      producing = false
      await producer
      await d.drain()

      const stats = d.stats()
      expect(inFlightAtCrash).toBe(50)
      expect(stats.connects).toBe(2)
      expect(stats.resent).toBe(50)
      expect(stats).toMatchObject({ sent: sent.length, acknowledged: sent.length, pending: 0 })

      const all = new Set(sent)
      const missing = () => {
        const seen = new Set(readingsOf(received).map((r) => r.seq))
        return sent.filter((s) => !seen.has(s))
      }
      expect(await eventually(() => missing().length === 0, 8000)).toBe(true)
      expect(missing()).toEqual([])
      expect(readingsOf(received).every((r) => all.has(r.seq))).toBe(true)
      await d.close()
    } finally {
      await crashy.stop()
    }
  }, 15_000)
})
