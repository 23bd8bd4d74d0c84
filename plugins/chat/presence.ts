/**
 * Agent presence, shared by every process through the database. Each connected agent socket is a
 * row with an expiry; the process holding the socket keeps pushing the expiry forward (and so does
 * the client's `presence:heartbeat`). An agent is offline when none of their rows is live: after
 * their last socket disconnects (plus a short grace, so a brief network drop or a recovered
 * connection costs nothing), or when a process died and stopped refreshing its rows. Going offline
 * hands the agent's assigned conversations back to the queue.
 *
 * Races between a connect and an offline check are settled by the agent row: both touch it first,
 * so one waits for the other and then sees its effect.
 */
import { and, eq, gt, inArray, lte, ne, notExists, sql } from 'drizzle-orm'
import type { Database, Tables } from '../../kernel/db'
import type { PluginContext } from '../../kernel/plugin'
import type { ChatSchema } from './schema'
import { type ConversationRow, type Notify, toConversationView } from './service'

type T = Tables<ChatSchema>
type Publish = PluginContext['events']['publish']
export type Chosen = 'online' | 'away'

export interface PresenceSettings {
  /** a connection not refreshed for this long is dead */
  timeoutSeconds: number
  /** after the last socket is gone, how long before the agent is offline */
  graceSeconds: number
}

const CHUNK = 500

export class Presence {
  constructor(
    private readonly db: Database,
    private readonly t: T,
    private readonly publish: Publish,
    private readonly settings: PresenceSettings,
    private readonly notify: () => Notify,
    private readonly assign: () => Promise<void>,
  ) {}

  private expiry(seconds = this.settings.timeoutSeconds) {
    return new Date(Date.now() + seconds * 1000)
  }

  /** An agent socket connected (or was recovered): online unless they chose away. */
  async connect(socketId: string, userId: string): Promise<void> {
    const { agents, connections } = this.t
    const now = new Date()
    const changed = await this.db.transaction(async (tx) => {
      // The agent row first: it orders this against a concurrent offline check.
      const [before] = await tx
        .insert(agents)
        .values({ userId, status: 'offline', chosen: 'online', load: 0, lastAssigned: 0, updatedAt: now })
        .onConflictDoUpdate({ target: agents.userId, set: { updatedAt: now } })
        .returning()
      await tx
        .insert(connections)
        .values({ socketId, userId, connectedAt: now, expiresAt: this.expiry() })
        .onConflictDoUpdate({ target: connections.socketId, set: { expiresAt: this.expiry() } })
      if (before.status !== 'offline') return undefined
      // Coming back from offline: online (a new session starts available).
      await tx.update(agents).set({ status: 'online', chosen: 'online', load: 0, updatedAt: now }).where(eq(agents.userId, userId))
      return 'online' as const
    })
    if (changed) {
      this.notify().presence(userId, changed)
      void this.assign()
    }
  }

  /** An agent chose online or away (only while connected). Returns the status now in force. */
  async choose(userId: string, chosen: Chosen): Promise<'online' | 'away' | 'offline'> {
    const { agents } = this.t
    const [row] = await this.db.transaction((tx) =>
      tx
        .update(agents)
        .set({ chosen, status: chosen, updatedAt: new Date() })
        .where(and(eq(agents.userId, userId), ne(agents.status, 'offline')))
        .returning(),
    )
    if (!row) return 'offline'
    this.notify().presence(userId, chosen)
    if (chosen === 'online') void this.assign()
    return chosen
  }

  /** Pushes the expiry of these connections forward (the holding process, or the client's heartbeat). */
  async refresh(socketIds: string[]): Promise<void> {
    const { connections } = this.t
    for (let i = 0; i < socketIds.length; i += CHUNK) {
      const ids = socketIds.slice(i, i + CHUNK)
      await this.db.transaction((tx) => tx.update(connections).set({ expiresAt: this.expiry() }).where(inArray(connections.socketId, ids)))
    }
  }

  /** A socket disconnected: its row lives on for the grace period, then the agent may be offline. */
  async disconnect(socketId: string, userId: string): Promise<void> {
    const { connections } = this.t
    const grace = this.settings.graceSeconds
    await this.db.transaction((tx) =>
      grace > 0
        ? tx.update(connections).set({ expiresAt: this.expiry(grace) }).where(eq(connections.socketId, socketId))
        : tx.delete(connections).where(eq(connections.socketId, socketId)),
    )
    if (grace === 0) await this.settle(userId)
  }

  /**
   * If `userId` has no live connection left: offline, load 0, and their assigned conversations go
   * back to the queue (oldest first, as they were).
   */
  async settle(userId: string): Promise<void> {
    const { agents, connections, conversations } = this.t
    const now = new Date()
    const handedBack = await this.db.transaction(async (tx) => {
      const [agent] = await tx.update(agents).set({ updatedAt: now }).where(eq(agents.userId, userId)).returning()
      if (!agent || agent.status === 'offline') return undefined
      const [live] = await tx
        .select({ n: sql<number>`count(*)` })
        .from(connections)
        .where(and(eq(connections.userId, userId), gt(connections.expiresAt, now)))
      if (Number(live.n) > 0) return undefined
      await tx.delete(connections).where(and(eq(connections.userId, userId), lte(connections.expiresAt, now)))
      await tx.update(agents).set({ status: 'offline', load: 0, updatedAt: now }).where(eq(agents.userId, userId))
      const back: ConversationRow[] = await tx
        .update(conversations)
        .set({ status: 'open', agentId: null, assignedAt: null, updatedAt: now })
        .where(and(eq(conversations.agentId, userId), eq(conversations.status, 'assigned')))
        .returning()
      for (const c of back) await this.publish('chat.conversation.opened', { conversation: toConversationView(c), reason: 'handed_back' })
      return back
    })
    if (!handedBack) return
    const notify = this.notify()
    notify.presence(userId, 'offline')
    for (const c of handedBack) notify.updated(c)
    if (handedBack.length) void this.assign()
  }

  /** Settles every agent who looks present but has no live connection (dead sockets, dead processes). */
  async sweep(): Promise<void> {
    const { agents, connections } = this.t
    const now = new Date()
    const stale = await this.db.read
      .select({ userId: agents.userId })
      .from(agents)
      .where(
        and(
          ne(agents.status, 'offline'),
          notExists(
            this.db.read
              .select({ one: sql`1` })
              .from(connections)
              .where(and(eq(connections.userId, agents.userId), gt(connections.expiresAt, now))),
          ),
        ),
      )
    for (const { userId } of stale) await this.settle(userId)
    // Dead rows of agents who are still online through another connection.
    await this.db.transaction((tx) => tx.delete(connections).where(lte(connections.expiresAt, now)))
  }

  /** Agents and their presence, for the REST list. */
  list() {
    return this.db.read.select().from(this.t.agents)
  }
}
