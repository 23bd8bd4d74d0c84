/**
 * The device registry: credentials (a random secret shown once, stored as a SHA-256 hash: the
 * secret has 256 bits of entropy, so a slow password hash would only slow reconnect storms), the
 * MQTT authority (a device may publish only under its own topic prefix), online/offline status from
 * the status topic, last will and heartbeat timeout, with an alert when a device goes offline.
 */
import { timingSafeEqual } from 'node:crypto'
import { and, desc, eq, isNotNull, isNull, lt, sql } from 'drizzle-orm'
import { type Database, type Db, inListed, type Params, type Tables } from '../../kernel/db'
import type { MqttAuthority } from '../../kernel/mqtt'
import type { PluginContext } from '../../kernel/plugin'
import { NotFound } from '../../shared/errors'
import { raiseAlert } from './alerts'
import type { InventorySchema } from './schema'
import { newestFirst, partOf } from './staging'

type DeviceRow = Tables<InventorySchema>['devices']['$inferSelect']
type ReadingRow = Tables<InventorySchema>['readings']['$inferSelect']

/** Where a page of a device's history stopped: below `seq` among its readings, below the id `refused` among its refused messages. */
export interface HistoryCursor {
  seq?: number
  refused?: string
}

export const isHistoryCursor = (k: unknown): k is HistoryCursor => {
  if (typeof k !== 'object' || k === null || Array.isArray(k)) return false
  const { seq, refused, ...rest } = k as Record<string, unknown>
  return (
    Object.keys(rest).length === 0 &&
    (seq === undefined || Number.isSafeInteger(seq)) &&
    (refused === undefined || (typeof refused === 'string' && refused.length > 0 && refused.length < 200))
  )
}

export interface DeviceView {
  id: string
  warehouse: string
  name: string
  status: 'online' | 'offline'
  lastSeenAt: string | null
  heartbeatSeconds: number
}

export const toDeviceView = (d: DeviceRow): DeviceView => ({
  id: d.id,
  warehouse: d.warehouse,
  name: d.name,
  status: d.status as 'online' | 'offline',
  lastSeenAt: d.lastSeenAt ? d.lastSeenAt.toISOString() : null,
  heartbeatSeconds: d.heartbeatSeconds,
})

const sha256 = (text: string) => new Bun.CryptoHasher('sha256').update(text).digest()
const TOPIC = /^warehouses\/([^/]+)\/devices\/([^/]+)\/(readings|status)$/

export interface DeviceTopic {
  warehouse: string
  deviceId: string
  kind: 'readings' | 'status'
}

/**
 * Parsed topics, by topic: a fleet publishes on a few topics each, every reading is parsed twice
 * (authorisation, ingestion), and the regular expression was 1.5 % of the server's CPU while
 * sensors streamed. Only device topics are kept, and the map is emptied when full, so topics of
 * made-up devices cannot pile up.
 */
const topics = new Map<string, DeviceTopic>()
const TOPICS_KEPT = 100_000

/** `warehouses/{code}/devices/{id}/{kind}` → its parts, or undefined. The result is shared: do not change it. */
export function parseDeviceTopic(topic: string): Readonly<DeviceTopic> | undefined {
  const known = topics.get(topic)
  if (known) return known
  const m = TOPIC.exec(topic)
  if (!m) return undefined
  const parts: DeviceTopic = { warehouse: m[1]!, deviceId: m[2]!, kind: m[3] as DeviceTopic['kind'] }
  if (topics.size >= TOPICS_KEPT) topics.clear()
  topics.set(topic, parts)
  return parts
}

/** The longest a device's stored lastSeenAt may lag behind its last reading (see `seen`). */
const SEEN_EVERY_MAX_MS = 1000

export class DeviceRegistry implements MqttAuthority {
  /** Credentials and binding of devices seen, so a reconnect storm does not become a query storm. */
  private readonly known = new Map<string, { secretHash: Buffer; warehouse: string; heartbeatMs: number }>()
  /**
   * When this process last stored each device's lastSeenAt (ms). It is stored again only once
   * SEEN_EVERY of the heartbeat has passed, not on every batch: with hundreds of devices in every
   * batch those updates were a good part of the batch's writes.
   */
  private readonly lastStored = new Map<string, number>()

  /** `seen`'s two statements, built once: the devices bound as one JSON array, whatever their number. */
  private readonly q

  constructor(
    private readonly db: Database,
    private readonly t: Tables<InventorySchema>,
    private readonly events: PluginContext['events'],
    private readonly mqtt: PluginContext['mqtt'],
  ) {
    const { devices } = t
    type Seen = { ids: string; at: Date }
    const these = (p: Params<Seen>, status: 'online' | 'offline') => and(inListed(db.dialect, devices.id, sql`${p('ids')}`), eq(devices.status, status))
    this.q = {
      online: db.prepare('inventory.devicesOnline', (q, p: Params<Seen>) =>
        q
          .update(devices)
          .set({ status: 'online', lastSeenAt: p('at', devices.lastSeenAt) })
          .where(these(p, 'offline'))
          .returning({ id: devices.id, warehouse: devices.warehouse }),
      ),
      seen: db.prepare('inventory.devicesSeen', (q, p: Params<Seen>) => q.update(devices).set({ lastSeenAt: p('at', devices.lastSeenAt) }).where(these(p, 'online'))),
    }
  }

  async create(input: { warehouse: string; name: string; heartbeatSeconds?: number }) {
    const { warehouses, devices } = this.t
    const [warehouse] = await this.db.read.select().from(warehouses).where(eq(warehouses.code, input.warehouse))
    if (!warehouse) throw new NotFound(`no warehouse ${input.warehouse}`, 'WAREHOUSE_NOT_FOUND')
    const id = Bun.randomUUIDv7()
    const secret = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64url')
    const row = await this.db.transaction(async (tx) => {
      const [created] = await tx
        .insert(devices)
        .values({
          id,
          warehouse: input.warehouse,
          name: input.name,
          secretHash: sha256(secret).toString('hex'),
          status: 'offline',
          heartbeatSeconds: input.heartbeatSeconds ?? 60,
          createdAt: new Date(),
        })
        .returning()
      if (this.db.dialect === 'sqlite') await tx.insert(this.t.deviceSeqs).values({ deviceId: id, seqHigh: null })
      // An external broker learns the credentials before the device exists here (the secret is in
      // clear only in this call); if the broker refuses, the device is not created.
      await this.mqtt.grant({ username: id, password: secret, publish: [`warehouses/${input.warehouse}/devices/${id}/#`] })
      return created
    })
    return { ...toDeviceView(row), secret }
  }

  async get(id: string): Promise<DeviceView> {
    const [row] = await this.db.read.select().from(this.t.devices).where(eq(this.t.devices.id, id))
    if (!row) throw new NotFound(`no device ${id}`)
    return toDeviceView(row)
  }

  async list(limit: number, after?: string) {
    const { devices } = this.t
    const rows = await this.db.read.select().from(devices).where(after ? lt(devices.id, after) : undefined).orderBy(desc(devices.id)).limit(limit)
    return rows
  }

  /**
   * A device's history, newest first: its readings by seq, descending, merged by arrival with the
   * messages refused before a seq could be read (those have none). Each row comes with the cursor
   * that continues after it: how far down each of the two lists the page went.
   */
  async readings(deviceId: string, limit: number, after: HistoryCursor = {}) {
    await this.get(deviceId)
    const { readings, readingsRecent } = this.t
    // Each list newest first, from where the cursor left it; those with a seq may still be staged.
    const [sequenced, refused] = await Promise.all([
      newestFirst(
        this.db.read,
        readings,
        readingsRecent,
        (r, staged) =>
          and(
            staged ? eq(readingsRecent.part, partOf(deviceId)) : undefined,
            eq(r.deviceId, deviceId),
            isNotNull(r.seq),
            after.seq === undefined ? undefined : lt(r.seq, after.seq),
          ),
        'seq',
        limit,
      ),
      this.db.read
        .select()
        .from(readings)
        .where(and(eq(readings.deviceId, deviceId), isNull(readings.seq), after.refused === undefined ? undefined : lt(readings.id, after.refused)))
        .orderBy(desc(readings.id))
        .limit(limit),
    ])
    const page: { row: ReadingRow; cursor: HistoryCursor }[] = []
    const cursor = { ...after }
    let [i, j] = [0, 0]
    while (page.length < limit && (i < sequenced.length || j < refused.length)) {
      const a = sequenced[i]
      const b = refused[j]
      const row = a && (!b || a.receivedAt >= b.receivedAt) ? sequenced[i++]! : refused[j++]!
      if (row.seq === null) cursor.refused = row.id
      else cursor.seq = row.seq
      page.push({ row, cursor: { ...cursor } })
    }
    return page
  }

  /** The binding of a device this process knows already (see `binding`), without waiting. */
  knownBinding(deviceId: string) {
    return this.known.get(deviceId)
  }

  /** The device's binding, from memory or the database; undefined for an unknown device. */
  async binding(deviceId: string) {
    const cached = this.known.get(deviceId)
    if (cached) return cached
    const [row] = await this.db.read.select().from(this.t.devices).where(eq(this.t.devices.id, deviceId))
    if (!row) return undefined
    const binding = { secretHash: Buffer.from(row.secretHash, 'hex'), warehouse: row.warehouse, heartbeatMs: row.heartbeatSeconds * 1000 }
    this.known.set(deviceId, binding)
    return binding
  }

  // --- MqttAuthority -------------------------------------------------------------------------

  async authenticate(username: string, password: string) {
    const binding = await this.binding(username)
    if (!binding) return false
    return timingSafeEqual(binding.secretHash, sha256(password))
  }

  mayPublish(username: string, topic: string) {
    const parts = parseDeviceTopic(topic)
    const binding = this.known.get(username)
    return Boolean(parts && binding && parts.deviceId === username && parts.warehouse === binding.warehouse)
  }

  maySubscribe() {
    return false
  }

  // --- status ---------------------------------------------------------------------------------

  /**
   * Records that these devices were heard from; turns the offline ones online (announcing it). Two
   * statements, for the devices whose lastSeenAt this process stored longer ago than a tenth of
   * their heartbeat timeout (at most a second): lastSeenAt lags by that much at most, far inside the
   * timeout. A device turned offline here is stored again on its next reading (offline forgets it);
   * one turned offline by another replica, within a second.
   */
  async seen(tx: Db, deviceIds: string[], at: Date) {
    const now = at.getTime()
    const due = deviceIds
      .filter((id) => {
        const stored = this.lastStored.get(id)
        const every = Math.min(SEEN_EVERY_MAX_MS, (this.known.get(id)?.heartbeatMs ?? 0) / 10)
        return stored === undefined || now - stored >= every
      })
      .sort() // rows locked in the same order by every batch
    if (due.length === 0) return
    const ids = JSON.stringify(due)
    // Sent together, run in this order: the second also touches the rows the first turned online.
    const [flipped] = await Promise.all([this.q.online(tx, { ids, at }), this.q.seen(tx, { ids, at })])
    if (flipped.length) await this.events.publishAll('inventory.device.status', flipped.map((d) => ({ deviceId: d.id, warehouse: d.warehouse, status: 'online' as const })))
    this.db.afterCommit(() => {
      for (const id of due) if ((this.lastStored.get(id) ?? -Infinity) < now) this.lastStored.set(id, now)
    })
  }

  /** Marks the device offline (last will, its own status message, or silence), raising an alert once. */
  async offline(tx: Db, deviceId: string, why: string) {
    const { devices } = this.t
    // Its next reading turns it online again, whenever that comes (and once this has committed).
    this.lastStored.delete(deviceId)
    this.db.afterCommit(() => this.lastStored.delete(deviceId))
    const [flipped] = await tx
      .update(devices)
      .set({ status: 'offline' })
      .where(and(eq(devices.id, deviceId), eq(devices.status, 'online')))
      .returning()
    if (!flipped) return
    await raiseAlert(tx, this.t, this.events, {
      type: 'device_offline',
      warehouse: flipped.warehouse,
      deviceId,
      message: `device ${flipped.name} (${deviceId}) in ${flipped.warehouse} went offline: ${why}`,
    })
    await this.events.publish('inventory.device.status', { deviceId, warehouse: flipped.warehouse, status: 'offline' })
  }

  /** Devices silent for longer than their heartbeat timeout go offline. */
  async sweepSilent(now = Date.now()) {
    const { devices } = this.t
    const online = await this.db.read.select().from(devices).where(eq(devices.status, 'online'))
    for (const d of online)
      if (!d.lastSeenAt || d.lastSeenAt.getTime() + d.heartbeatSeconds * 1000 < now)
        await this.db.transaction((tx) => this.offline(tx, d.id, `silent for more than ${d.heartbeatSeconds} s`))
  }
}
