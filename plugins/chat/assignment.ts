/**
 * Automatic assignment: the oldest open conversation goes to the online agent who was assigned
 * longest ago (round-robin) among those under capacity. Settled in the database, so any number of
 * processes may run it at once: taking a slot is one conditional update of the agent's load
 * (`load < capacity`), and taking the conversation one conditional update of its status; if the
 * conversation was taken meanwhile, the transaction is undone and the slot with it.
 */
import { and, asc, eq, lt, sql } from 'drizzle-orm'
import type { Database, Tables } from '../../kernel/db'
import type { Logger } from '../../kernel/log'
import type { PluginContext } from '../../kernel/plugin'
import type { ChatSchema } from './schema'
import { type ConversationRow, type Notify, toConversationView } from './service'

type T = Tables<ChatSchema>
type Publish = PluginContext['events']['publish']

class Taken extends Error {}

export class Assigner {
  private running: Promise<void> | undefined
  private next: Promise<void> | undefined
  private lastTurn = 0
  private stopped = false

  constructor(
    private readonly db: Database,
    private readonly t: T,
    private readonly publish: Publish,
    private readonly capacity: number,
    private readonly notify: () => Notify,
    private readonly log: Logger,
  ) {}

  /**
   * Asks for an assignment pass. Passes never overlap in a process; the promise resolves once a pass
   * that began after this call has finished (so a caller sees its own conversation assigned).
   */
  nudge(): Promise<void> {
    if (this.stopped) return Promise.resolve()
    if (!this.running) return (this.running = this.pass())
    this.next ??= this.running.then(() => {
      this.next = undefined
      return (this.running = this.pass())
    })
    return this.next
  }

  private async pass(): Promise<void> {
    try {
      for (;;) {
        const outcome = await this.assignOne()
        if (outcome === 'idle') return
      }
    } catch (error) {
      this.log.error({ err: error }, 'assignment pass failed')
    } finally {
      this.running = undefined
    }
  }

  /** No new passes; resolves when the one in flight is done. */
  async stop() {
    this.stopped = true
    await this.next
    await this.running
  }

  /** A strictly increasing turn (ms × 1000 + a counter), so round-robin has no ties. */
  private nextTurn() {
    return (this.lastTurn = Math.max(this.lastTurn + 1, Date.now() * 1000))
  }

  /** Assigns the oldest open conversation, if an agent has room. */
  private async assignOne(): Promise<'assigned' | 'retry' | 'idle'> {
    const { conversations, agents } = this.t
    const [waiting] = await this.db.read
      .select({ id: conversations.id })
      .from(conversations)
      .where(eq(conversations.status, 'open'))
      .orderBy(asc(conversations.queuedAt), asc(conversations.id))
      .limit(1)
    if (!waiting) return 'idle'
    const candidates = await this.db.read
      .select({ userId: agents.userId })
      .from(agents)
      .where(and(eq(agents.status, 'online'), lt(agents.load, this.capacity)))
      .orderBy(asc(agents.lastAssigned), asc(agents.userId))
      .limit(3)
    if (candidates.length === 0) return 'idle'
    for (const { userId } of candidates) {
      let assigned: ConversationRow | undefined
      try {
        assigned = await this.db.transaction(async (tx) => {
          const [slot] = await tx
            .update(agents)
            .set({ load: sql`${agents.load} + 1`, lastAssigned: this.nextTurn(), updatedAt: new Date() })
            .where(and(eq(agents.userId, userId), eq(agents.status, 'online'), lt(agents.load, this.capacity)))
            .returning({ userId: agents.userId })
          if (!slot) return undefined // full or gone meanwhile: try the next agent
          const now = new Date()
          const [c] = await tx
            .update(conversations)
            .set({ status: 'assigned', agentId: userId, assignedAt: now, updatedAt: now })
            .where(and(eq(conversations.id, waiting.id), eq(conversations.status, 'open')))
            .returning()
          if (!c) throw new Taken()
          await this.publish('chat.conversation.assigned', { conversation: toConversationView(c) })
          return c
        })
      } catch (error) {
        if (error instanceof Taken) return 'retry'
        throw error
      }
      if (assigned) {
        const notify = this.notify()
        notify.assigned(assigned)
        notify.updated(assigned)
        return 'assigned'
      }
    }
    return 'retry'
  }
}
