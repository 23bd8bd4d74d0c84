/**
 * Upgrading a SQLite database whose readings were de-duplicated by the unique index alone (before
 * inventory migration 0003): the migration sets each device's highest stored seq from its
 * readings, so a re-send of a reading stored before the upgrade is still a duplicate. Also: staged
 * rows are all moved into the indexed tables once readings stop (plugins/inventory/staging.ts).
 * SQLite only: PostgreSQL de-duplicates by the unique index and stages nothing.
 */
import { Database } from 'bun:sqlite'
import { afterAll, describe, expect, test } from 'bun:test'
import { rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import mqtt from 'mqtt'
import { adminToken, client, services, startServer } from './harness'

const INV = '/api/v1/inventory'
const file = join(tmpdir(), `tessera-upgrade-${Bun.randomUUIDv7()}.db`)
afterAll(() => {
  for (const suffix of ['', '-wal', '-shm']) rmSync(file + suffix, { force: true })
})

describe.skipIf(Boolean(services.databaseUrl))('inventory upgrade (SQLite)', () => {
  test('a re-send of a reading stored before migration 0003 is a duplicate after it; staged rows are moved once readings stop', async () => {
    const env = { DATABASE_URL: `sqlite:${file}` }
    const run = async (body: (s: { send: (seq: number) => Promise<unknown>; onHand: () => Promise<number> }) => Promise<void>) => {
      const server = await startServer(env, { keep: true })
      try {
        const api = client(server.url)
        const token = await adminToken(server.url)
        const device = await ensureDevice(api, token)
        const conn = await mqtt.connectAsync(`mqtt://127.0.0.1:${server.kernel.mqttPort}`, {
          username: device.id,
          password: device.secret,
          clientId: `upgrade-${device.id}`,
          reconnectPeriod: 0,
        })
        try {
          const topic = `warehouses/UPG/devices/${device.id}/readings`
          // The embedded broker acknowledges after commit.
          const send = (seq: number) => conn.publishAsync(topic, JSON.stringify({ seq, ts: Date.now(), sku: 'UPG-1', type: 'delta', value: 1 }), { qos: 1 })
          const onHand = async () => (await api.get(`${INV}/stock?sku=UPG-1&warehouse=UPG`, token)).body.items[0]?.onHand ?? 0
          await body({ send, onHand })
        } finally {
          await conn.endAsync(true)
        }
      } finally {
        await server.stop()
      }
    }

    await run(async ({ send, onHand }) => {
      for (const seq of [1, 2, 3]) await send(seq)
      expect(await onHand()).toBe(3)
      // Two rotations of the parts after the last batch: every staged row is in the indexed tables.
      await Bun.sleep(2500)
    })

    const db = new Database(file)
    try {
      const count = (table: string) => (db.query(`select count(*) as n from ${table}`).get() as { n: number }).n
      expect(count('inventory_readings_recent')).toBe(0)
      expect(count('inventory_movements_recent')).toBe(0)
      expect(count('inventory_readings')).toBe(3)
      expect(count('inventory_movements')).toBe(3)
      // Back to the schema before migration 0003, as an older release left it.
      db.run('drop table inventory_device_seqs')
      db.run('drop table inventory_readings_recent')
      db.run('drop table inventory_movements_recent')
      db.run('delete from __migrations_inventory where created_at = (select max(created_at) from __migrations_inventory)')
    } finally {
      db.close()
    }

    await run(async ({ send, onHand }) => {
      await send(2) // stored before the upgrade
      await send(4)
      expect(await onHand()).toBe(4)
    })
  })
})

let created: { id: string; secret: string } | undefined

/** The warehouse, item and device, created once over HTTP; the same on the second start. */
async function ensureDevice(api: ReturnType<typeof client>, token: string) {
  if (created) return created
  expect((await api.post(`${INV}/warehouses`, { code: 'UPG', name: 'upgrade' }, token)).status).toBe(201)
  expect((await api.post(`${INV}/items`, { sku: 'UPG-1', name: 'thing' }, token)).status).toBe(201)
  const body = (await api.post(`${INV}/devices`, { warehouse: 'UPG', name: 'gate' }, token)).body
  created = { id: body.id, secret: body.secret }
  return created
}
