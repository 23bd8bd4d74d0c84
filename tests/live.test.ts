/**
 * The `/live` namespace (CONTRACT.md §6), black-box: managers and admins watch stock, devices and
 * alerts change. Changes are made the way they happen for real: a provisioned device publishing
 * over MQTT (iot/device.ts), and adjustments over HTTP; what the dashboards receive is asserted.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { connectDevice, type Device } from '../iot/device'
import { adminToken, client, startServer, type TestServer, userWithRole, variant } from './harness'
import { type Client, closeAll, connect, refusal, waitFor } from './realtime-client'

const INV = '/api/v1/inventory'
const LIVE = '/live'
let n = 0
const uid = () => `${Date.now().toString(36)}${(n++).toString(36)}`.toUpperCase()

describe(`/live dashboards (${variant})`, () => {
  let server: TestServer
  let admin: string
  let manager: string
  const devices: Device[] = []
  const api = () => client(server.url)

  beforeAll(async () => {
    server = await startServer()
    admin = await adminToken(server.url)
    manager = (await userWithRole(server.url, 'manager', admin)).token
  })
  afterAll(async () => {
    closeAll()
    await Promise.all(devices.map((d) => d.abort()))
    await server.stop()
  })

  /** A warehouse with an item, created over HTTP. */
  async function warehouseWithItem(item: { reorderPoint?: number } = {}) {
    const warehouse = `W${uid()}`
    const sku = `SKU-${uid()}`
    expect((await api().post(`${INV}/warehouses`, { code: warehouse, name: 'test' }, admin)).status).toBe(201)
    expect((await api().post(`${INV}/items`, { sku, name: 'thing', ...item }, admin)).status).toBe(201)
    return { warehouse, sku }
  }

  /** A device registered over HTTP and connected over MQTT with its credentials. */
  async function deviceIn(warehouse: string) {
    const created = (await api().post(`${INV}/devices`, { warehouse, name: 'gate' }, admin)).body
    const device = await connectDevice({ url: `mqtt://127.0.0.1:${server.kernel.mqttPort}`, deviceId: created.id, secret: created.secret, warehouse })
    devices.push(device)
    return device
  }

  /** A dashboard subscribed to `warehouses` (or to everything, the default, when none are given). */
  async function dashboard(warehouses?: string[]): Promise<Client> {
    const c = await connect(server.url, LIVE, manager)
    if (warehouses) expect(await c.emitWithAck('subscribe', { warehouses })).toEqual({ ok: true, warehouses: [...warehouses].sort() })
    return c
  }

  test('only managers and admins may connect; customers and agents are refused', async () => {
    for (const role of ['customer', 'agent'] as const) {
      const error = await refusal(server.url, LIVE, (await userWithRole(server.url, role, admin)).token)
      expect(error.message).toBe('unauthorized')
      expect(error.data?.code).toBe('FORBIDDEN')
    }
    expect((await refusal(server.url, LIVE, undefined)).message).toBe('unauthorized')
    expect((await connect(server.url, LIVE, manager)).connected).toBe(true)
    expect((await connect(server.url, LIVE, admin)).connected).toBe(true)
  })

  test('a sensor reading over MQTT shows up as stock:changed on dashboards of that warehouse, not of another', async () => {
    const { warehouse, sku } = await warehouseWithItem()
    const other = await warehouseWithItem()
    const mine = await dashboard([warehouse])
    const theirs = await dashboard([other.warehouse])
    const everything = await dashboard()

    const device = await deviceIn(warehouse)
    await device.send({ sku, type: 'delta', value: 5 })

    const expected = { sku, warehouse, onHand: 5, reserved: 0, available: 5 }
    expect(await waitFor(mine, 'stock:changed')).toEqual([expected])
    expect((await waitFor(everything, 'stock:changed')).filter((e) => e.sku === sku)).toEqual([expected])
    await Bun.sleep(200)
    expect(theirs.received('stock:changed')).toEqual([])
  })

  test('a device coming online shows up as device:status in its warehouse', async () => {
    const { warehouse } = await warehouseWithItem()
    const watching = await dashboard([warehouse])
    const device = await deviceIn(warehouse)
    expect(await waitFor(watching, 'device:status')).toEqual([{ deviceId: device.deviceId, warehouse, status: 'online' }])
  })

  test('stock adjusted below the reorder point shows up as alert:new with the alert GET /alerts lists', async () => {
    const { warehouse, sku } = await warehouseWithItem({ reorderPoint: 10 })
    const watching = await dashboard([warehouse])
    expect((await api().post(`${INV}/adjustments`, { sku, warehouse, delta: 20, reason: 'delivery' }, manager)).status).toBe(201)
    expect((await api().post(`${INV}/adjustments`, { sku, warehouse, delta: -15, reason: 'picked' }, manager)).status).toBe(201)

    const [{ alert }] = await waitFor(watching, 'alert:new')
    expect(alert.type).toBe('low_stock')
    expect(alert.sku).toBe(sku)
    expect(alert.warehouse).toBe(warehouse)
    const listed = (await api().get(`${INV}/alerts`, manager)).body.items.find((a: { id: string }) => a.id === alert.id)
    expect(listed).toEqual(alert)
    expect((await waitFor(watching, 'stock:changed', 2)).map((s) => s.onHand)).toEqual([20, 5])
  })

  test('subscribe adds warehouses, unsubscribe removes them; each ack names what is in force', async () => {
    const a = await warehouseWithItem()
    const b = await warehouseWithItem()
    const c = await connect(server.url, LIVE, manager)
    expect(await c.emitWithAck('subscribe', { warehouses: [a.warehouse] })).toEqual({ ok: true, warehouses: [a.warehouse] })
    expect(await c.emitWithAck('subscribe', { warehouses: [b.warehouse] })).toEqual({ ok: true, warehouses: [a.warehouse, b.warehouse].sort() })
    expect(await c.emitWithAck('unsubscribe', { warehouses: [a.warehouse] })).toEqual({ ok: true, warehouses: [b.warehouse] })

    await api().post(`${INV}/adjustments`, { sku: a.sku, warehouse: a.warehouse, delta: 1, reason: 'count' }, manager)
    await api().post(`${INV}/adjustments`, { sku: b.sku, warehouse: b.warehouse, delta: 2, reason: 'count' }, manager)
    expect(await waitFor(c, 'stock:changed')).toEqual([{ sku: b.sku, warehouse: b.warehouse, onHand: 2, reserved: 0, available: 2 }])
    await Bun.sleep(200)
    expect(c.received('stock:changed')).toHaveLength(1)

    expect(await c.emitWithAck('subscribe', { warehouses: ['*'] })).toEqual({ ok: true, warehouses: ['*'] })
    await api().post(`${INV}/adjustments`, { sku: a.sku, warehouse: a.warehouse, delta: 1, reason: 'count' }, manager)
    expect((await waitFor(c, 'stock:changed', 2))[1]).toEqual({ sku: a.sku, warehouse: a.warehouse, onHand: 2, reserved: 0, available: 2 })
  })

  test('a malformed subscribe gets VALIDATION_FAILED and changes nothing', async () => {
    const c = await connect(server.url, LIVE, manager)
    for (const bad of [{}, { warehouses: [] }, { warehouses: 'W1' }, { warehouses: ['W1'], extra: 1 }, { warehouses: ['has space'] }])
      expect((await c.emitWithAck('subscribe', bad)).error.code).toBe('VALIDATION_FAILED')
    expect(await c.emitWithAck('unsubscribe', { warehouses: ['NONE'] })).toEqual({ ok: true, warehouses: ['*'] })
  })
})
