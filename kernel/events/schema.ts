/** The kernel's own tables: the outbox, processed-event records and dead letters. */
import { table } from '../db/schema'

export const schema = {
  outbox: table(
    'tessera_outbox',
    (c) => ({
      id: c.id(),
      type: c.text('type').notNull(),
      source: c.text('source').notNull(),
      payload: c.json<unknown>('payload').notNull(),
      headers: c.json<Record<string, string>>('headers').notNull(),
      occurredAt: c.timestamp('occurred_at').notNull(),
      publishedAt: c.timestamp('published_at'),
      /** A relay that claimed the row owns it until then; another relay may take it over after. */
      leaseUntil: c.timestamp('lease_until'),
    }),
    (c) => (t) => [c.index('tessera_outbox_pending').on(t.publishedAt, t.id)],
  ),
  processed: table(
    'tessera_processed_events',
    (c) => ({
      consumer: c.text('consumer').notNull(),
      eventId: c.text('event_id').notNull(),
      processedAt: c.timestamp('processed_at').notNull(),
    }),
    (c) => (t) => [c.primaryKey({ columns: [t.consumer, t.eventId] })],
  ),
  deadLetters: table(
    'tessera_dead_letters',
    (c) => ({
      id: c.id(),
      consumer: c.text('consumer').notNull(),
      eventId: c.text('event_id').notNull(),
      type: c.text('type').notNull(),
      source: c.text('source').notNull(),
      payload: c.json<unknown>('payload').notNull(),
      headers: c.json<Record<string, string>>('headers').notNull(),
      occurredAt: c.timestamp('occurred_at').notNull(),
      error: c.text('error').notNull(),
      attempts: c.integer('attempts').notNull(),
      failedAt: c.timestamp('failed_at').notNull(),
      replayedAt: c.timestamp('replayed_at'),
    }),
    (c) => (t) => [c.uniqueIndex('tessera_dead_letters_consumer_event').on(t.consumer, t.eventId)],
  ),
}

export const eventTables = schema
