/**
 * Warehouse sensors over MQTT (CONTRACT.md section 5), black-box: real MQTT clients against the
 * embedded broker, and in the real-services run also against Mosquitto started from
 * deploy/mosquitto/mosquitto.conf (device credentials provisioned through dynamic security).
 * Each case states the stock and ledger it must leave behind, read over HTTP.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import mqtt, { type MqttClient } from 'mqtt'
import { adminToken, client, eventually, expectError, services, startServer, type TestServer, variant } from './harness'
import { startMosquitto, type TestBroker } from './mosquitto'

const brokers = ['embedded', ...(services.databaseUrl ? ['mosquitto'] : [])] as const
const INV = '/api/v1/inventory'
let n = 0
const uid = () => `${Date.now().toString(36)}${(n++).toString(36)}`

for (const kind of brokers) {
  describe(`MQTT ingestion via the ${kind} broker (${variant})`, () => {
    let server: TestServer
    let broker: TestBroker | undefined
    let token: string
    let brokerUrl: string
    const clients: MqttClient[] = []
    const api = () => client(server.url)

    beforeAll(async () => {
      if (kind === 'mosquitto') broker = await startMosquitto()
      server = await startServer({
        DEVICE_SWEEP_SECONDS: '1',
        ...(broker ? { MQTT_URL: broker.adminUrl, MQTT_PROVISIONING: 'mosquitto-dynsec', MQTT_INSTANCE: `test-${uid()}` } : {}),
      })
      brokerUrl = broker ? broker.url : `mqtt://127.0.0.1:${server.kernel.mqttPort}`
      token = await adminToken(server.url)
    })
    afterAll(async () => {
      for (const c of clients) c.end(true)
      await server.stop()
      await broker?.stop()
    })

    /** A warehouse, an item and a device, created over HTTP; the device connected over MQTT. */
    async function setup(options: { heartbeatSeconds?: number; will?: boolean } = {}) {
      const warehouse = `W${uid()}`
      const sku = `SKU-${uid()}`
      expect((await api().post(`${INV}/warehouses`, { code: warehouse, name: 'test' }, token)).status).toBe(201)
      expect((await api().post(`${INV}/items`, { sku, name: 'thing' }, token)).status).toBe(201)
      const device = (await api().post(`${INV}/devices`, { warehouse, name: 'gate', heartbeatSeconds: options.heartbeatSeconds }, token)).body
      const statusTopic = `warehouses/${warehouse}/devices/${device.id}/status`
      const conn = await mqtt.connectAsync(brokerUrl, {
        username: device.id,
        password: device.secret,
        clientId: `dev-${device.id}`,
        reconnectPeriod: 0,
        will: options.will ? { topic: statusTopic, payload: Buffer.from('offline'), qos: 1, retain: true } : undefined,
      })
      clients.push(conn)
      const topic = `warehouses/${warehouse}/devices/${device.id}/readings`
      const send = (payload: unknown) => conn.publishAsync(topic, typeof payload === 'string' ? payload : JSON.stringify(payload), { qos: 1 })
      return { warehouse, sku, device, conn, topic, statusTopic, send }
    }

    const stock = async (sku: string, warehouse: string) =>
      (await api().get(`${INV}/stock?sku=${sku}&warehouse=${warehouse}`, token)).body.items[0] ?? { onHand: 0 }
    /**
     * onHand once the device's readings are stored. The embedded broker acknowledges a reading
     * only after commit, so it must hold at once; Mosquitto acknowledges on receipt, so we wait.
     */
    const settledOnHand = async (sku: string, warehouse: string, expected: number) => {
      if (kind === 'embedded') return (await stock(sku, warehouse)).onHand
      await eventually(async () => (await stock(sku, warehouse)).onHand === expected)
      await Bun.sleep(100) // and nothing more arrives
      return (await stock(sku, warehouse)).onHand
    }
    const movements = async (sku: string, warehouse: string) =>
      (await api().get(`${INV}/movements?sku=${sku}&warehouse=${warehouse}&limit=200`, token)).body.items as { delta: number; onHandAfter: number; source: string }[]
    const readings = async (deviceId: string) =>
      (await api().get(`${INV}/devices/${deviceId}/readings?limit=200`, token)).body.items as { seq: number | null; status: string; reason: string | null; raw: string | null }[]
    const reading = (seq: number, sku: string, type: 'delta' | 'count', value: number, ts = Date.now()) => ({ seq, ts, sku, type, value })

    test('delta readings add up; each is one ledger movement from the sensor, acknowledged after it is stored', async () => {
      const d = await setup()
      await d.send(reading(1, d.sku, 'delta', 10))
      await d.send(reading(2, d.sku, 'delta', -3))
      await d.send(reading(3, d.sku, 'delta', 5))
      expect(await settledOnHand(d.sku, d.warehouse, 12)).toBe(12)
      const ledger = await movements(d.sku, d.warehouse)
      // Mosquitto spreads a device's messages over several consumer connections, so only the
      // embedded broker keeps their order; the sum is the same either way.
      if (kind === 'embedded') expect(ledger.map((m) => [m.delta, m.onHandAfter]).reverse()).toEqual([[10, 10], [-3, 7], [5, 12]])
      else expect(ledger.map((m) => m.delta).sort((a, b) => a - b)).toEqual([-3, 5, 10])
      expect(new Set(ledger.map((m) => m.source))).toEqual(new Set([`sensor:${d.device.id}`]))
    })

    test('a count sets onHand and is recorded as the difference; an older count is stale and ignored', async () => {
      const d = await setup()
      await d.send(reading(1, d.sku, 'delta', 4))
      const now = Date.now()
      await d.send(reading(2, d.sku, 'count', 9, now))
      expect(await settledOnHand(d.sku, d.warehouse, 9)).toBe(9)
      await d.send(reading(3, d.sku, 'count', 1, now - 60_000))
      expect(await settledOnHand(d.sku, d.warehouse, 9)).toBe(9)
      expect((await movements(d.sku, d.warehouse)).reduce((sum, m) => sum + m.delta, 0)).toBe(9)
      expect(await eventually(async () => (await readings(d.device.id)).find((r) => r.seq === 3)?.status)).toBe('stale')
    })

    test('a re-sent seq is applied once, and readings out of seq order are all applied', async () => {
      const d = await setup()
      await d.send(reading(7, d.sku, 'delta', 1))
      await d.send(reading(7, d.sku, 'delta', 1))
      await d.send(reading(5, d.sku, 'delta', 2))
      await d.send([reading(6, d.sku, 'delta', 3), reading(6, d.sku, 'delta', 3), reading(5, d.sku, 'delta', 2)])
      expect(await settledOnHand(d.sku, d.warehouse, 6)).toBe(6)
      expect(await movements(d.sku, d.warehouse)).toHaveLength(3)
    })

    test('readings stay exact across the move out of the recent tables: a re-send of a moved one is a duplicate, a late one is applied, and listings show both', async () => {
      // On SQLite, small batches stage readings and movements by part, and each part is moved into
      // the indexed tables within a second or so (plugins/inventory/staging.ts); the sleeps
      // straddle that. On PostgreSQL nothing is staged, and the same must hold.
      const d = await setup()
      for (const seq of [1, 2, 3, 4, 5]) await d.send(reading(seq, d.sku, 'delta', 1))
      await Bun.sleep(2500)
      await d.send(reading(3, d.sku, 'delta', 1)) // stored, and moved by now: a duplicate
      await d.send(reading(7, d.sku, 'delta', 1))
      await d.send(reading(0, d.sku, 'delta', 1)) // below the highest seq, never seen: applied
      await d.send(reading(7, d.sku, 'delta', 1)) // stored, still staged: a duplicate
      expect(await settledOnHand(d.sku, d.warehouse, 7)).toBe(7)
      await Bun.sleep(1200)
      await d.send([reading(6, d.sku, 'delta', 1), reading(0, d.sku, 'delta', 1), reading(2, d.sku, 'delta', 1)])
      expect(await settledOnHand(d.sku, d.warehouse, 8)).toBe(8)
      await Bun.sleep(200)
      const ledger = await movements(d.sku, d.warehouse)
      expect(ledger.map((m) => m.delta)).toEqual(Array(8).fill(1))
      if (kind === 'embedded') expect(ledger.map((m) => m.onHandAfter)).toEqual([8, 7, 6, 5, 4, 3, 2, 1])
      const history = await readings(d.device.id)
      expect(history.map((r) => r.seq)).toEqual([7, 6, 5, 4, 3, 2, 1, 0])
      expect(new Set(history.map((r) => r.status))).toEqual(new Set(['applied']))
      // Pages of the ledger chain across both tables.
      const pages: number[] = []
      let before = ''
      for (;;) {
        const body = (await api().get(`${INV}/movements?sku=${d.sku}&warehouse=${d.warehouse}&limit=3${before ? `&cursor=${before}` : ''}`, token)).body
        pages.push(body.items.length)
        if (!body.nextCursor) break
        before = body.nextCursor
      }
      expect(pages).toEqual([3, 3, 2])
    })

    test('the outcome does not depend on arrival order: a count includes the deltas before it, and the ones recorded after it stay', async () => {
      const d = await setup()
      const t0 = Date.now() - 10_000
      // Arrival order: a late delta (after the count), the count, then an early delta (before it).
      await d.send(reading(3, d.sku, 'delta', 2, t0 + 3000))
      await d.send(reading(2, d.sku, 'count', 10, t0 + 2000))
      await d.send(reading(1, d.sku, 'delta', 7, t0 + 1000))
      // At t0+2000 there were 10; 2 more came in later: 12. The early +7 is part of the count.
      expect(await settledOnHand(d.sku, d.warehouse, 12)).toBe(12)
      expect(await eventually(async () => (await readings(d.device.id)).find((r) => r.seq === 1)?.status)).toBe('stale')
    })

    test('readings that keep arriving a millisecond or so apart are stored together, in one transaction or two', async () => {
      // The embedded broker acknowledges after commit, so the acknowledgements say when all are stored.
      if (kind !== 'embedded') return
      const devices = await Promise.all(Array.from({ length: 12 }, () => setup()))
      const transactions = async () => Number((await (await fetch(`${server.url}/metrics`)).text()).match(/^inventory_ingest_batch_size_count(?:\{[^}]*\})? (\d+)/m)?.[1] ?? 0)
      const before = await transactions()
      const sent: Promise<unknown>[] = []
      for (const d of devices) {
        sent.push(d.send(reading(1, d.sku, 'delta', 1)))
        await Bun.sleep(1)
      }
      await Promise.all(sent)
      expect((await transactions()) - before).toBeLessThanOrEqual(2)
      for (const d of devices) expect((await stock(d.sku, d.warehouse)).onHand).toBe(1)
    })

    test('a burst of more readings than one batch holds is stored completely and exactly once (PostgreSQL writes two batches at a time then)', async () => {
      if (kind !== 'embedded') return
      const devices = await Promise.all(Array.from({ length: 30 }, () => setup()))
      const metrics = async () => (await (await fetch(`${server.url}/metrics`)).text()).split('\n')
      const count = (lines: string[], prefix: string) => Number(lines.find((l) => l.startsWith(prefix))?.split(' ').pop() ?? 0)
      const before = await metrics()
      const each = 150
      await Promise.all(devices.flatMap((d) => Array.from({ length: each }, (_, i) => d.send(reading(i + 1, d.sku, 'delta', (i % 3) + 1)))))
      const after = await metrics()
      // 4,500 messages: more than a full batch (2,500 on SQLite, 4,000 on PostgreSQL), so at least one batch was a large one.
      const large = (lines: string[]) => count(lines, 'inventory_ingest_batch_size_count') - count(lines, 'inventory_ingest_batch_size_bucket{le="500"}')
      expect(large(after) - large(before)).toBeGreaterThan(0)
      const expected = Array.from({ length: each }, (_, i) => (i % 3) + 1).reduce((a, b) => a + b, 0)
      for (const d of devices) {
        expect((await stock(d.sku, d.warehouse)).onHand).toBe(expected)
        expect(await movements(d.sku, d.warehouse)).toHaveLength(each)
      }
    }, 60_000)

    test('an array payload is a batch of readings', async () => {
      const d = await setup()
      await d.send(Array.from({ length: 50 }, (_, i) => reading(i + 1, d.sku, 'delta', 2)))
      expect(await settledOnHand(d.sku, d.warehouse, 100)).toBe(100)
      expect(await movements(d.sku, d.warehouse)).toHaveLength(50)
    })

    test('bad readings are rejected, kept with the reason, and change nothing; the stream goes on', async () => {
      const d = await setup()
      await d.send(reading(1, 'NO-SUCH-SKU', 'delta', 5))
      await d.send('{"seq": 2, "ts": 1, "sku":')
      await d.send({ seq: 3, ts: Date.now(), sku: d.sku, type: 'delta', value: 'seven' })
      await d.send({ seq: 4, ts: Date.now(), sku: d.sku, type: 'teleport', value: 1 })
      await d.send([])
      await d.send(JSON.stringify({ seq: 5, ts: Date.now(), sku: d.sku, type: 'delta', value: 1, pad: 'x'.repeat(70_000) }))
      await d.send(reading(6, d.sku, 'delta', 2))
      expect(await settledOnHand(d.sku, d.warehouse, 2)).toBe(2)
      expect(await movements(d.sku, d.warehouse)).toHaveLength(1)
      const kept = (await eventually(async () => {
        const all = await readings(d.device.id)
        return all.filter((r) => r.status === 'rejected').length >= 6 ? all : undefined
      }))!
      const reasons = kept.filter((r) => r.status === 'rejected').map((r) => r.reason ?? '')
      expect(reasons).toHaveLength(6)
      expect(reasons.some((r) => r.includes('unknown SKU'))).toBe(true)
      expect(reasons.some((r) => r.includes('malformed JSON'))).toBe(true)
      expect(reasons.some((r) => r.includes('payload over'))).toBe(true)
      expect(reasons.filter((r) => r.startsWith('invalid reading') || r.includes('1 to'))).toHaveLength(3)
      expect(kept.find((r) => r.reason === 'malformed JSON')?.raw).toBe('{"seq": 2, "ts": 1, "sku":')
      const metrics = await (await fetch(`${server.url}/metrics`)).text()
      expect(metrics).toMatch(/inventory_readings_total\{outcome="rejected"\} \d+/)
    })

    test('the history lists readings newest first by seq, merged by arrival with refused messages, and its pages chain', async () => {
      // The embedded broker acknowledges after commit, so each message below is stored before the next is sent.
      if (kind !== 'embedded') return
      const d = await setup()
      const sent: [string, unknown][] = [
        ['2', reading(2, d.sku, 'delta', 1)],
        ['1', reading(1, d.sku, 'delta', 1)],
        ['x', 'not json x'],
        ['4', reading(4, d.sku, 'delta', 1)],
        ['3', reading(3, d.sku, 'delta', 1)],
        ['y', 'not json y'],
        ['5', reading(5, d.sku, 'delta', 1)],
      ]
      for (const [, payload] of sent) {
        await d.send(payload)
        await Bun.sleep(3) // a later arrival time for each
      }
      const label = (r: { seq: number | null; raw: string | null }) => (r.seq === null ? r.raw!.slice(-1) : String(r.seq))
      // By seq: 5 4 3 2 1; refused, by arrival: y x. Merged by arrival: 5 (last) y 4 3 (after x) x 2 1.
      expect((await readings(d.device.id)).map(label)).toEqual(['5', 'y', '4', '3', 'x', '2', '1'])
      const pages: string[][] = []
      let cursor: string | null = ''
      while (cursor !== null) {
        const body: { items: Parameters<typeof label>[0][]; nextCursor: string | null } = (
          await api().get(`${INV}/devices/${d.device.id}/readings?limit=2${cursor ? `&cursor=${cursor}` : ''}`, token)
        ).body
        pages.push(body.items.map(label))
        cursor = body.nextCursor
      }
      expect(pages).toEqual([['5', 'y'], ['4', '3'], ['x', '2'], ['1']])
      for (const bad of ['{"seq":"5"}', '{"refused":7}', '{"seq":1,"other":2}', '"an-id"'].map((k) => Buffer.from(k).toString('base64url'))) {
        expectError(await api().get(`${INV}/devices/${d.device.id}/readings?cursor=${bad}`, token), 400, 'INVALID_CURSOR')
      }
    })

    test("a device cannot publish under another device's topic", async () => {
      const a = await setup()
      const b = await setup()
      const foreign = `warehouses/${b.warehouse}/devices/${b.device.id}/readings`
      // Refused by the broker: the embedded one drops the connection, Mosquitto drops the message.
      await Promise.race([a.conn.publishAsync(foreign, JSON.stringify(reading(1, b.sku, 'delta', 100)), { qos: 1 }).catch(() => {}), Bun.sleep(500)])
      await b.send(reading(1, b.sku, 'delta', 1))
      expect(await settledOnHand(b.sku, b.warehouse, 1)).toBe(1)
      expect((await readings(b.device.id)).map((r) => r.seq)).toEqual([1])
    })

    test('wrong credentials are refused at connect', async () => {
      const d = await setup()
      const refused = await mqtt.connectAsync(brokerUrl, { username: d.device.id, password: 'not-the-secret', reconnectPeriod: 0 }).then(
        (c) => (c.end(true), 'connected'),
        (e: Error) => e.message,
      )
      expect(refused).toMatch(/not authorized|bad username or password/i)
      const stranger = await mqtt.connectAsync(brokerUrl, { reconnectPeriod: 0 }).then(
        (c) => (c.end(true), 'connected'),
        (e: Error) => e.message,
      )
      expect(stranger).not.toBe('connected')
    })

    test('status: online when the device says so, offline from its last will, with an alert', async () => {
      const d = await setup({ will: true })
      await d.conn.publishAsync(d.statusTopic, 'online', { qos: 1, retain: true })
      expect(await eventually(async () => (await api().get(`${INV}/devices/${d.device.id}`, token)).body.status === 'online')).toBe(true)
      d.conn.stream.destroy()
      expect(await eventually(async () => (await api().get(`${INV}/devices/${d.device.id}`, token)).body.status === 'offline')).toBe(true)
      const alerts = (await api().get(`${INV}/alerts`, token)).body.items as { type: string; deviceId: string | null }[]
      expect(alerts.filter((a) => a.type === 'device_offline' && a.deviceId === d.device.id)).toHaveLength(1)
    })

    test('a device silent for longer than its heartbeat timeout is marked offline', async () => {
      const d = await setup({ heartbeatSeconds: 1 })
      await d.send(reading(1, d.sku, 'delta', 1))
      expect(await eventually(async () => (await api().get(`${INV}/devices/${d.device.id}`, token)).body.status === 'online')).toBe(true)
      expect(await eventually(async () => (await api().get(`${INV}/devices/${d.device.id}`, token)).body.status === 'offline', 5000)).toBe(true)
    })
  })
}
