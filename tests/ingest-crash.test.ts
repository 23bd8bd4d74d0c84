/**
 * Nothing acknowledged is lost, nothing is applied twice: 50 devices publish 100,000 QoS 1 readings
 * to the embedded broker, the server is killed with SIGKILL in the middle, restarted on the same
 * ports and database, and the devices (iot/device.ts) re-send what was never acknowledged.
 */
import { afterAll, expect, test } from 'bun:test'
import { connectDevice, type Device } from '../iot/device'
import { adminToken, baseEnv, client, isolatedStore, spawnServer, variant } from './harness'
import { freePort } from '../scripts/free-port'

const DEVICES = 50
const PER_DEVICE = 2_000
const WAREHOUSES = 5
const SKUS = 20

const store = isolatedStore()
afterAll(() => store.cleanup())


test(`kill -9 during 100,000 readings from 50 devices: every reading counted exactly once (${variant})`, async () => {
  const env = baseEnv({ ...store.env, PORT: String(await freePort()), MQTT_PORT: String(await freePort()) })
  let server = await spawnServer(env)
  const api = client(server.url)
  const token = await adminToken(server.url)
  const warehouses = Array.from({ length: WAREHOUSES }, (_, i) => `CRASH${i}`)
  const skus = Array.from({ length: SKUS }, (_, i) => `CRASH-SKU-${i}`)
  for (const code of warehouses) expect((await api.post('/api/v1/inventory/warehouses', { code, name: code }, token)).status).toBe(201)
  for (const sku of skus) expect((await api.post('/api/v1/inventory/items', { sku, name: sku }, token)).status).toBe(201)
  const mqttUrl = `mqtt://127.0.0.1:${env.MQTT_PORT}`
  const devices: Device[] = []
  const expected = new Map<string, number>()
  for (let i = 0; i < DEVICES; i++) {
    const warehouse = warehouses[i % WAREHOUSES]
    const created = (await api.post('/api/v1/inventory/devices', { warehouse, name: `gate-${i}` }, token)).body
    devices.push(await connectDevice({ url: mqttUrl, deviceId: created.id, secret: created.secret, warehouse, maxInFlight: 50, reconnectPeriod: 100 }))
  }

  // Queue everything at once; the devices publish as fast as PUBACKs come back.
  devices.forEach((device, d) => {
    const warehouse = warehouses[d % WAREHOUSES]
    for (let r = 0; r < PER_DEVICE; r++) {
      const sku = skus[(d + r) % SKUS]
      const value = (r % 3) + 1
      expected.set(`${sku}@${warehouse}`, (expected.get(`${sku}@${warehouse}`) ?? 0) + value)
      device.enqueue({ sku, type: 'delta', value })
    }
  })

  const acknowledged = () => devices.reduce((n, d) => n + d.stats().acknowledged, 0)
  const deadline = Date.now() + 30_000
  while (acknowledged() < 25_000 && Date.now() < deadline) await Bun.sleep(10)
  const ackedBeforeKill = acknowledged()
  server.proc.kill('SIGKILL')
  await server.proc.exited
  expect(ackedBeforeKill).toBeGreaterThan(0)
  expect(ackedBeforeKill).toBeLessThan(DEVICES * PER_DEVICE)

  server = await spawnServer(env)
  try {
    await Promise.race([Promise.all(devices.map((d) => d.drain())), Bun.sleep(150_000).then(() => Promise.reject(new Error('devices did not drain')))])
    const after = client(server.url)
    const admin = await adminToken(server.url)
    const levels = (await after.get('/api/v1/inventory/stock?limit=200', admin)).body.items as { sku: string; warehouse: string; onHand: number }[]
    const actual = new Map(levels.filter((l) => l.sku.startsWith('CRASH-')).map((l) => [`${l.sku}@${l.warehouse}`, l.onHand]))
    expect(actual).toEqual(expected)
    const metrics = await (await fetch(`${server.url}/metrics`)).text()
    // The restarted process saw the re-sends of what the first one stored but never acknowledged.
    expect(metrics).toContain('inventory_readings_total')
    const resent = devices.reduce((n, d) => n + d.stats().resent, 0)
    expect(resent).toBeGreaterThan(0)
  } finally {
    await Promise.all(devices.map((d) => d.abort()))
    server.proc.kill('SIGTERM')
    await server.proc.exited
  }
}, 240_000)
