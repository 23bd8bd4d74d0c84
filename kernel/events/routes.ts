/** Admin routes over the dead-letter store: list, inspect, replay. */
import { Elysia, t } from 'elysia'
import { NotFound, Unavailable } from '../../shared/errors'
import { ListQuery, decodeCursor, isString, page } from '../../shared/pagination'
import type { RouterBase } from '../http/router'
import type { DeadLetter, Delivery } from './delivery'

const DeadLetterView = t.Object({
  id: t.String(),
  consumer: t.String(),
  eventId: t.String(),
  type: t.String(),
  source: t.String(),
  payload: t.Unknown(),
  occurredAt: t.String({ format: 'date-time' }),
  error: t.String(),
  attempts: t.Integer(),
  failedAt: t.String({ format: 'date-time' }),
  replayedAt: t.Union([t.String({ format: 'date-time' }), t.Null()]),
})

const view = (d: DeadLetter) => ({
  id: d.id,
  consumer: d.consumer,
  eventId: d.eventId,
  type: d.type,
  source: d.source,
  payload: d.payload,
  occurredAt: d.occurredAt.toISOString(),
  error: d.error,
  attempts: d.attempts,
  failedAt: d.failedAt.toISOString(),
  replayedAt: d.replayedAt ? d.replayedAt.toISOString() : null,
})

export function deadLetterRoutes(base: RouterBase, delivery: Delivery) {
  const load = async (id: string) => {
    const row = await delivery.deadLetter(id)
    if (!row) throw new NotFound(`no dead letter ${id}`)
    return row
  }
  return new Elysia({ name: 'tessera.events', prefix: '/api/v1/events', detail: { tags: ['events'] } })
    .use(base)
    .get(
      '/dead-letters',
      async ({ query }) => {
        const limit = query.limit ?? 50
        const rows = await delivery.deadLetters(limit + 1, decodeCursor(query.cursor, isString))
        return page(rows, limit, view, (r) => r.id)
      },
      {
        auth: ['admin'],
        query: ListQuery,
        response: t.Object({ items: t.Array(DeadLetterView), nextCursor: t.Union([t.String(), t.Null()]) }),
        detail: { summary: 'Events whose handler failed every attempt, newest first' },
      },
    )
    .get('/dead-letters/:id', async ({ params }) => view(await load(params.id)), {
      auth: ['admin'],
      params: t.Object({ id: t.String({ maxLength: 64 }) }),
      response: DeadLetterView,
      detail: { summary: 'One dead letter' },
    })
    .post(
      '/dead-letters/:id/replay',
      async ({ params }) => {
        const outcome = await delivery.replay(await load(params.id))
        if (outcome === 'not_hosted') throw new Unavailable('the consumer of this event is not hosted by this process', 'CONSUMER_NOT_HOSTED')
        return { outcome, deadLetter: view(await load(params.id)) }
      },
      {
        auth: ['admin'],
        params: t.Object({ id: t.String({ maxLength: 64 }) }),
        response: t.Object({ outcome: t.Union([t.Literal('handled'), t.Literal('dead_lettered')]), deadLetter: DeadLetterView }),
        detail: { summary: 'Deliver a dead letter to its consumer again (with the full retry policy)' },
      },
    )
}
