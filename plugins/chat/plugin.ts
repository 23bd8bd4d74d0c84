/**
 * chat: customers talk to support agents in real time (CONTRACT.md §6): conversations with
 * automatic round-robin assignment under a per-agent capacity, messages stored before they are
 * acknowledged and de-duplicated by clientId, history, typing and read receipts, agent presence
 * shared by every process, canned responses, and inbound channels (signed webhooks, LINE,
 * Messenger) whose replies go out with retries.
 */
import { setting } from '../../kernel/config'
import { definePlugin, pluginState } from '../../kernel/plugin'
import { Assigner } from './assignment'
import { channelsSetting } from './channels'
import { Deliveries } from './deliveries'
import { Presence } from './presence'
import { chatRoutes } from './routes'
import { schema } from './schema'
import { CannedResponses } from './canned'
import { MessageLog } from './messages'
import { ChatService, type Notify, silent } from './service'
import { chatNamespace, chatSockets, notifier } from './sockets'

interface ChatState {
  presence: Presence
  assigner: Assigner
  deliveries: Deliveries
  /** agent sockets this process holds, whose connection rows it keeps alive */
  local: Map<string, string>
  timers: Set<ReturnType<typeof setTimeout>>
  intervals: ReturnType<typeof setInterval>[]
  /** the periodic pass in flight, so stop can wait for it */
  sweeping?: Promise<unknown>
  /** presence writes of disconnects still running */
  pending: Set<Promise<unknown>>
}

const state = pluginState<ChatState>()

export default definePlugin({
  name: 'chat',
  version: '1.0.0',
  dependsOn: ['auth'],
  description: 'customer ↔ agent conversations over Socket.IO (/chat), assignment, presence, canned responses and inbound channels',
  schema,
  settings: {
    CHAT_AGENT_CAPACITY: setting.int('conversations an agent is assigned at most at once', 5, 1, 10_000),
    CHAT_PRESENCE_TIMEOUT_SECONDS: setting.int('an agent connection not refreshed for this long (its process died) counts as gone', 30, 3, 3600),
    CHAT_OFFLINE_GRACE_SECONDS: setting.int("after an agent's last socket disconnects, seconds before they are offline and hand back their conversations", 10, 0, 3600),
    CHAT_SWEEP_MS: setting.int('how often presence, the queue and outbound deliveries are checked', 1000, 50, 60_000),
    CHAT_MESSAGES_PER_SECOND: setting.int('message:send events per second per socket', 20, 1, 100_000),
    CHAT_CONNECTION_RECOVERY: setting.bool(
      'Socket.IO connection state recovery on /chat: every emit is kept for REALTIME_RECOVERY_SECONDS so a client back from a short drop gets its rooms and missed events replayed; off, a reconnecting client catches up with conversation:join since (messages) and GET /conversations',
      false,
    ),
    CHAT_CHANNELS: channelsSetting,
    CHAT_WEBHOOK_TOLERANCE_SECONDS: setting.int('largest distance between a signed webhook timestamp and now (replay protection)', 300, 1, 86_400),
    CHAT_DELIVERY_MAX_ATTEMPTS: setting.int('rounds of attempts to send a reply to an inbound channel before it is parked as failed', 8, 1, 100),
    CHAT_DELIVERY_RETRY_BASE_MS: setting.int('wait before the second round of a reply delivery; doubles each round (at most 10 minutes)', 1000, 10, 600_000),
    CHAT_DELIVERY_TIMEOUT_MS: setting.int('time limit of one HTTP attempt to deliver a reply', 5000, 100, 60_000),
  },
  setup(ctx) {
    const c = ctx.config
    let notify: Notify = silent
    const tell = () => notify
    const assigner = new Assigner(ctx.db, ctx.tables, ctx.events.publish, c.CHAT_AGENT_CAPACITY, tell, ctx.log)
    const assign = () => assigner.nudge()
    const deliveries = new Deliveries(
      ctx.db,
      ctx.tables,
      c.CHAT_CHANNELS,
      { maxAttempts: c.CHAT_DELIVERY_MAX_ATTEMPTS, retryBaseMs: c.CHAT_DELIVERY_RETRY_BASE_MS, timeoutMs: c.CHAT_DELIVERY_TIMEOUT_MS },
      ctx.log,
    )
    const deps = { db: ctx.db, t: ctx.tables, publish: ctx.events.publish, publishAll: ctx.events.publishAll, log: ctx.log, assign, deliveriesQueued: () => deliveries.nudge(), notify: tell }
    const canned = new CannedResponses(deps)
    const messages = new MessageLog(deps, canned)
    const chat = new ChatService(deps, messages)
    const presence = new Presence(
      ctx.db,
      ctx.tables,
      ctx.events.publish,
      { timeoutSeconds: c.CHAT_PRESENCE_TIMEOUT_SECONDS, graceSeconds: c.CHAT_OFFLINE_GRACE_SECONDS },
      tell,
      assign,
    )
    const s: ChatState = { presence, assigner, deliveries, local: new Map(), timers: new Set(), intervals: [], pending: new Set() }
    state.set(ctx, s)

    const ns = chatNamespace(ctx, c.CHAT_CONNECTION_RECOVERY)
    notify = notifier(ns)
    chatSockets(ns, {
      chat,
      messages,
      messagesPerSecond: c.CHAT_MESSAGES_PER_SECOND,
      presence,
      local: s.local,
      track(work) {
        s.pending.add(work)
        work.finally(() => s.pending.delete(work)).catch(() => {})
        return work
      },
      settleLater(userId) {
        if (c.CHAT_OFFLINE_GRACE_SECONDS === 0) return
        const timer = setTimeout(() => {
          s.timers.delete(timer)
          presence.settle(userId).catch((error) => ctx.log.error({ err: error, userId }, 'presence check failed'))
        }, c.CHAT_OFFLINE_GRACE_SECONDS * 1000 + 50)
        s.timers.add(timer)
      },
    })
    ctx.mount(
      chatRoutes(ctx, {
        chat,
        messages,
        canned,
        presence,
        deliveries,
        channels: c.CHAT_CHANNELS,
        capacity: c.CHAT_AGENT_CAPACITY,
        toleranceSeconds: c.CHAT_WEBHOOK_TOLERANCE_SECONDS,
        receiveInbound: (channel, messages) => chat.receive(channel, messages),
      }),
    )
  },
  async start(ctx) {
    const s = state.get(ctx)
    const c = ctx.config
    // Keeps this process's agent connections alive in the database; a dead process stops doing it.
    s.intervals.push(
      setInterval(
        () => void s.presence.refresh([...s.local.keys()]).catch((error) => ctx.log.error({ err: error }, 'presence refresh failed')),
        Math.max(1000, (c.CHAT_PRESENCE_TIMEOUT_SECONDS * 1000) / 3),
      ),
    )
    // The periodic pass catches what no nudge announced: dead connections, capacity freed by another
    // process, deliveries due for another attempt.
    s.intervals.push(
      setInterval(() => {
        if (s.sweeping) return
        s.sweeping = s.presence
          .sweep()
          .then(() => s.assigner.nudge())
          .then(() => s.deliveries.nudge())
          .catch((error) => ctx.log.error({ err: error }, 'chat sweep failed'))
          .finally(() => (s.sweeping = undefined))
      }, c.CHAT_SWEEP_MS),
    )
    s.deliveries.nudge()
    void s.assigner.nudge()
  },
  async stop(ctx) {
    const s = state.get(ctx)
    for (const i of s.intervals) clearInterval(i)
    for (const timer of s.timers) clearTimeout(timer)
    await s.sweeping
    await Promise.allSettled([...s.pending])
    await s.assigner.stop()
    await s.deliveries.stop()
  },
})
