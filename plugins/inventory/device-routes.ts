/** HTTP face of the device registry (CONTRACT.md section 4, devices). */
import { t } from 'elysia'
import type { PluginContext } from '../../kernel/plugin'
import { ListQuery, Page, decodeCursor, isString, page } from '../../shared/pagination'
import { type DeviceRegistry, isHistoryCursor, toDeviceView } from './devices'

const Code = t.String({ pattern: '^[A-Za-z0-9_-]{1,32}$', error: 'warehouse must be a warehouse code (letters, digits, _ and -, up to 32)' })
const Device = t.Object({
  id: t.String(),
  warehouse: t.String(),
  name: t.String(),
  status: t.Union([t.Literal('online'), t.Literal('offline')]),
  lastSeenAt: t.Union([t.String({ format: 'date-time' }), t.Null()]),
  heartbeatSeconds: t.Integer(),
})
const ReadingView = t.Object({
  id: t.String(),
  seq: t.Union([t.Integer(), t.Null()]),
  ts: t.Union([t.Integer(), t.Null()]),
  sku: t.Union([t.String(), t.Null()]),
  type: t.Union([t.String(), t.Null()]),
  value: t.Union([t.Integer(), t.Null()]),
  status: t.Union([t.Literal('applied'), t.Literal('stale'), t.Literal('rejected')]),
  reason: t.Union([t.String(), t.Null()]),
  raw: t.Union([t.String(), t.Null()]),
  receivedAt: t.String({ format: 'date-time' }),
})
const Id = t.Object({ id: t.String({ maxLength: 64 }) })

export function deviceRoutes(ctx: PluginContext, devices: DeviceRegistry) {
  return ctx
    .router()
    .post('/devices', ({ body }) => devices.create(body), {
      auth: ['manager', 'admin'],
      creates: true,
      body: t.Object({
        warehouse: Code,
        name: t.String({ minLength: 1, maxLength: 100 }),
        heartbeatSeconds: t.Optional(t.Integer({ minimum: 1, maximum: 86_400 })),
      }),
      response: { 201: t.Composite([Device, t.Object({ secret: t.String() })]) },
      detail: { summary: 'Register a device; its MQTT password (secret) is shown in this answer only' },
    })
    .get(
      '/devices',
      async ({ query }) => {
        const limit = query.limit ?? 50
        return page(await devices.list(limit + 1, decodeCursor(query.cursor, isString)), limit, toDeviceView, (d) => d.id)
      },
      { auth: true, query: ListQuery, response: { 200: Page(Device) }, detail: { summary: 'Devices, newest first' } },
    )
    .get('/devices/:id', ({ params }) => devices.get(params.id), {
      auth: true,
      params: Id,
      response: { 200: Device },
      detail: { summary: 'A device and whether it is online' },
    })
    .get(
      '/devices/:id/readings',
      async ({ params, query }) => {
        const limit = query.limit ?? 50
        const rows = await devices.readings(params.id, limit + 1, decodeCursor(query.cursor, isHistoryCursor))
        return page(
          rows,
          limit,
          ({ row: r }) => ({ ...r, status: r.status as 'applied' | 'stale' | 'rejected', receivedAt: r.receivedAt.toISOString() }),
          (r) => r.cursor,
        )
      },
      {
        auth: true,
        params: Id,
        query: ListQuery,
        response: { 200: Page(ReadingView) },
        detail: {
          summary: 'The readings a device sent, newest first, rejected ones included with the reason',
          description:
            'Readings in descending `seq` (the device’s own order, whatever order they arrived in), merged by arrival with the messages refused before a `seq` could be read from them (malformed JSON, an invalid reading, an oversized payload, a warehouse not the device’s), which have `seq: null`.',
        },
      },
    )
}
