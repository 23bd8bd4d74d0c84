/**
 * Load process of scripts/bench/chat.ts (IPC child): holds every client socket, so a message's
 * send time and its arrival at the other party are read from one clock. Protocol (IPC messages):
 * `setup` → `ready` once every pair sits in its conversation; `closed` (each pair ping-pongs as
 * fast as replies come back) and `rate` (a fixed total rate, open loop) → `result`; then `exit`.
 */
import { io, type Socket } from 'socket.io-client'

export interface SetupMessage {
  type: 'setup'
  url: string
  mode: 'bare' | 'tessera'
  /** tessera: tokens of 1,000 customers and 1,000 agents; bare: only the count matters */
  customers: string[]
  agents: string[]
}
export interface RunMessage {
  type: 'closed' | 'rate'
  warmupMs: number
  durationMs: number
  /** rate: messages per second across all pairs */
  perSecond?: number
  /** closed: messages in flight per pair */
  window?: number
}
export interface RunResult {
  delivered: number
  sent: number
  seconds: number
  p50Ms: number
  p99Ms: number
  errors: number
  cpuPercent: number
}

interface Pair {
  conversationId: string
  customer: Socket
  agent: Socket
  /** next clientId number per side */
  n: number
}

const CONCURRENCY = 50
const pairs: Pair[] = []
let mode: 'bare' | 'tessera' = 'bare'
let onDelivered: ((pair: Pair, toRole: 'c' | 'a', sentAt: number) => void) | undefined
let errors = 0

const send = (process as unknown as { send(m: unknown): void }).send.bind(process)

function open(url: string, token?: string): Promise<Socket> {
  const socket = io(`${url}/chat`, { auth: token ? { token } : {}, transports: ['websocket'], reconnection: false, timeout: 30_000 })
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket))
    socket.once('connect_error', reject)
  })
}

async function inBatches<T>(items: T[], fn: (item: T, i: number) => Promise<void>) {
  for (let i = 0; i < items.length; i += CONCURRENCY) await Promise.all(items.slice(i, i + CONCURRENCY).map((item, j) => fn(item, i + j)))
}

/** Arrivals: the body carries the sender's role and send time (`c|12.5`); a party ignores its own. */
function listen(pair: Pair, socket: Socket, role: 'c' | 'a') {
  socket.on('message:new', ({ message }: { message: { body: string } }) => {
    const bar = message.body.indexOf('|')
    const from = message.body.slice(0, bar)
    if (from === role) return
    onDelivered?.(pair, role, Number(message.body.slice(bar + 1)))
  })
}

async function setup(m: SetupMessage) {
  mode = m.mode
  const count = m.customers.length
  if (mode === 'bare') {
    const built: Pair[] = []
    await inBatches(Array.from({ length: count }, (_, i) => i), async (i) => {
      const [customer, agent] = await Promise.all([open(m.url), open(m.url)])
      const pair = { conversationId: `pair-${i}`, customer, agent, n: 0 }
      await Promise.all([customer.emitWithAck('conversation:join', { conversationId: pair.conversationId }), agent.emitWithAck('conversation:join', { conversationId: pair.conversationId })])
      built.push(pair)
    })
    pairs.push(...built)
  } else {
    // Agents first; each joins the conversation it is assigned, which may be any customer's.
    const agentOf = new Map<string, Socket>()
    const waiting = new Map<string, (agent: Socket) => void>()
    await inBatches(m.agents, async (token) => {
      const agent = await open(m.url, token)
      agent.on('conversation:assigned', async ({ conversation }: { conversation: { id: string } }) => {
        await agent.emitWithAck('conversation:join', { conversationId: conversation.id })
        agentOf.set(conversation.id, agent)
        waiting.get(conversation.id)?.(agent)
      })
      for (;;) {
        const ack = await agent.emitWithAck('presence:set', { status: 'online' })
        if (ack.status === 'online') break
        await Bun.sleep(20)
      }
    })
    await inBatches(m.customers, async (token) => {
      const customer = await open(m.url, token)
      const { conversation, error } = await customer.emitWithAck('conversation:start', {})
      if (error) throw new Error(`conversation:start: ${error.code} ${error.message}`)
      if (!conversation.agentId) throw new Error('a conversation was queued: raise CHAT_AGENT_CAPACITY or start fewer')
      const agent = agentOf.get(conversation.id) ?? (await new Promise<Socket>((resolve) => waiting.set(conversation.id, resolve)))
      pairs.push({ conversationId: conversation.id, customer, agent, n: 0 })
    })
  }
  for (const pair of pairs) {
    listen(pair, pair.customer, 'c')
    listen(pair, pair.agent, 'a')
  }
  send({ type: 'ready', pairs: pairs.length })
}

function emit(pair: Pair, from: 'c' | 'a') {
  const socket = from === 'c' ? pair.customer : pair.agent
  const clientId = `${from}${pair.n++}`
  socket.emit('message:send', { conversationId: pair.conversationId, clientId, body: `${from}|${performance.now()}` }, (ack: { error?: unknown }) => {
    if (ack?.error) errors++
  })
}

function percentile(sorted: number[], p: number) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : 0
}

async function run(m: RunMessage): Promise<RunResult> {
  const latencies: number[] = []
  let delivered = 0
  let sent = 0
  let measuring = false
  let running = true
  errors = 0
  const startErrors = () => (errors = 0)
  let lastArrival = performance.now()
  onDelivered = (pair, toRole, sentAt) => {
    lastArrival = performance.now()
    if (measuring) {
      delivered++
      latencies.push(performance.now() - sentAt)
    }
    // Closed loop: the receiver answers at once.
    if (m.type === 'closed' && running) {
      emit(pair, toRole)
      if (measuring) sent++
    }
  }
  let timer: ReturnType<typeof setInterval> | undefined
  if (m.type === 'closed') {
    // `window` messages in flight per pair, so the server, not the round trip, sets the pace.
    for (const pair of pairs) for (let i = 0; i < (m.window ?? 1); i++) emit(pair, 'c')
  } else {
    // Owed = rate × elapsed − sent: timer drift never lowers the offered rate.
    const start = performance.now()
    let emitted = 0
    let next = 0
    timer = setInterval(() => {
      const owed = Math.floor(((performance.now() - start) / 1000) * m.perSecond!) - emitted
      for (let i = 0; i < owed; i++) {
        const pair = pairs[next++ % pairs.length]
        emit(pair, next % 2 === 0 ? 'c' : 'a')
        emitted++
        if (measuring) sent++
      }
    }, 2)
  }
  await Bun.sleep(m.warmupMs)
  startErrors()
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  measuring = true
  await Bun.sleep(m.durationMs)
  measuring = false
  const seconds = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  running = false
  clearInterval(timer)
  // Let everything in flight land before the next run starts (a backlog must not leak into it).
  const drainDeadline = performance.now() + 60_000
  while (performance.now() - lastArrival < 1000 && performance.now() < drainDeadline) await Bun.sleep(100)
  latencies.sort((a, b) => a - b)
  return {
    delivered,
    sent,
    seconds,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    errors,
    cpuPercent: ((cpu.user + cpu.system) / 1000 / (seconds * 1000)) * 100,
  }
}

process.on('message', async (m: SetupMessage | RunMessage | { type: 'exit' }) => {
  try {
    if (m.type === 'setup') await setup(m)
    else if (m.type === 'closed' || m.type === 'rate') send({ type: 'result', result: await run(m) })
    else if (m.type === 'exit') {
      for (const p of pairs) {
        p.customer.close()
        p.agent.close()
      }
      process.exit(0)
    }
  } catch (error) {
    send({ type: 'error', message: error instanceof Error ? error.message : String(error) })
  }
})
