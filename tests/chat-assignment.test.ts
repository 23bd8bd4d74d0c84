/**
 * Automatic assignment and agent presence (CONTRACT.md §6, issue 4): round-robin among online
 * agents under CHAT_AGENT_CAPACITY, queueing (oldest first) until capacity frees up or an agent
 * comes online, away agents skipped, hand-back when an agent goes offline (last socket gone, or
 * the process holding it died and stopped refreshing its presence). Each test has its own server,
 * so no other test's agents take part.
 */
import { afterEach, describe, expect, test } from 'bun:test'
import { adminToken, baseEnv, client, eventually, isolatedStore, spawnServer, startServer, type TestServer, userWithRole, variant } from './harness'
import { type Client, closeAll, connect, waitFor } from './realtime-client'

const CHAT = '/api/v1/chat'

async function ack<T = any>(socket: Client, event: string, payload: unknown): Promise<T> {
  return socket.timeout(5000).emitWithAck(event, payload)
}

describe(`chat assignment and presence (${variant})`, () => {
  const servers: TestServer[] = []
  afterEach(async () => {
    closeAll()
    for (const s of servers.splice(0)) await s.stop()
  })

  async function setup(env: Record<string, string> = {}) {
    const server = await startServer({ CHAT_AGENT_CAPACITY: '2', CHAT_OFFLINE_GRACE_SECONDS: '0', CHAT_SWEEP_MS: '200', ...env })
    servers.push(server)
    const admin = await adminToken(server.url)
    const api = client(server.url)
    const conversation = async (id: string) => (await api.get(`${CHAT}/conversations/${id}`, admin)).body
    const presenceOf = async (userId: string) => (await api.get(`${CHAT}/agents`, admin)).body.items.find((a: any) => a.userId === userId)?.status ?? 'offline'
    const agent = async () => {
      const user = await userWithRole(server.url, 'agent', admin)
      const socket = await connect(server.url, '/chat', user.token)
      await eventually(async () => (await presenceOf(user.id)) === 'online')
      return { user, socket }
    }
    const customer = async () => connect(server.url, '/chat', (await userWithRole(server.url, 'customer', admin)).token)
    const start = async (socket: Client) => (await ack(socket, 'conversation:start', {})).conversation
    return { server, admin, api, conversation, presenceOf, agent, customer, start }
  }

  test('round-robin among online agents under capacity; the queue waits, oldest first, until capacity frees up or an agent comes online', async () => {
    const { agent, customer, start, conversation } = await setup()
    const a1 = await agent()
    const a2 = await agent()
    const c = await customer()
    const assigned = [await start(c), await start(c), await start(c), await start(c)]
    const owners = assigned.map((x) => x.agentId)
    expect(owners[0]).not.toBe(owners[1])
    expect(owners[2]).toBe(owners[0])
    expect(owners[3]).toBe(owners[1])
    expect(new Set(owners)).toEqual(new Set([a1.user.id, a2.user.id]))
    expect(assigned.every((x) => x.status === 'assigned')).toBe(true)
    // conversation:assigned reaches each agent for their own conversations only.
    const first = await waitFor(a1.socket, 'conversation:assigned', 2)
    expect(first.every((e) => e.conversation.agentId === a1.user.id)).toBe(true)

    // Both are full: the next two wait.
    const q1 = await start(c)
    const q2 = await start(c)
    expect([q1.status, q2.status]).toEqual(['open', 'open'])
    expect(q1.agentId).toBeNull()

    // Closing one of a1's frees a slot: the oldest waiting one goes to a1.
    const mine = assigned.find((x) => x.agentId === a1.user.id)!
    await ack(a1.socket, 'conversation:close', { conversationId: mine.id })
    await eventually(async () => (await conversation(q1.id)).status === 'assigned')
    expect((await conversation(q1.id)).agentId).toBe(a1.user.id)
    expect((await conversation(q2.id)).status).toBe('open')

    // A new agent coming online takes the rest of the queue.
    const a3 = await agent()
    await eventually(async () => (await conversation(q2.id)).agentId === a3.user.id)
    expect((await waitFor(a3.socket, 'conversation:assigned'))[0].conversation.id).toBe(q2.id)
  })

  test('many conversations started at once never push an agent beyond capacity', async () => {
    const { agent, customer, start, api, admin } = await setup()
    const a1 = await agent()
    const a2 = await agent()
    const customers = await Promise.all([1, 2, 3, 4].map(() => customer()))
    const started = await Promise.all(customers.flatMap((c) => [start(c), start(c), start(c)]))
    expect(started.length).toBe(12)
    const all = (await api.get(`${CHAT}/conversations?limit=200`, admin)).body.items
    const load = (id: string) => all.filter((x: any) => x.agentId === id && x.status === 'assigned').length
    expect([load(a1.user.id), load(a2.user.id)]).toEqual([2, 2])
    expect(all.filter((x: any) => x.status === 'open').length).toBe(8)
  })

  test('away agents get nothing new; an agent going offline hands back their conversations; agents hear presence', async () => {
    const { agent, customer, start, conversation, presenceOf } = await setup()
    const a1 = await agent()
    const c = await customer()
    const x = await start(c)
    const y = await start(c)
    expect([x.agentId, y.agentId]).toEqual([a1.user.id, a1.user.id])

    const a2 = await agent()
    expect(await ack(a2.socket, 'presence:set', { status: 'away' })).toEqual({ status: 'away' })
    expect(await presenceOf(a2.user.id)).toBe('away')
    const presence = await waitFor(a1.socket, 'presence')
    expect(presence).toContainEqual({ userId: a2.user.id, status: 'away' })
    expect((await ack(c, 'conversation:start', {})).conversation.status).toBe('open') // a1 is full, a2 away

    // a1's last socket goes: offline, and both conversations go back to the queue.
    a1.socket.close()
    await eventually(async () => (await presenceOf(a1.user.id)) === 'offline')
    await eventually(async () => (await waitFor(a2.socket, 'presence')).some((p) => p.userId === a1.user.id && p.status === 'offline'))
    expect((await conversation(x.id)).status).toBe('open')
    expect((await conversation(x.id)).agentId).toBeNull()
    const updated = c.received('conversation:updated').filter((e) => e.conversation.id === x.id)
    expect(updated.at(-1)?.conversation.status).toBe('open')

    // a2 comes back online: the oldest two waiting (x and y) are theirs.
    expect(await ack(a2.socket, 'presence:set', { status: 'online' })).toEqual({ status: 'online' })
    await eventually(async () => (await conversation(x.id)).agentId === a2.user.id && (await conversation(y.id)).agentId === a2.user.id)
    // Customers and other roles have no presence.
    expect((await ack(c, 'presence:set', { status: 'online' })).error.code).toBe('FORBIDDEN')
  })

  test('an agent with two sockets stays online until the last one goes; a brief drop within the grace period hands nothing back', async () => {
    const { agent, customer, start, conversation, presenceOf, server } = await setup({ CHAT_OFFLINE_GRACE_SECONDS: '2' })
    const a1 = await agent()
    const second = await connect(server.url, '/chat', a1.user.token)
    const c = await customer()
    const x = await start(c)
    expect(x.agentId).toBe(a1.user.id)
    a1.socket.close()
    await Bun.sleep(2500)
    expect(await presenceOf(a1.user.id)).toBe('online')
    second.close()
    const again = await connect(server.url, '/chat', a1.user.token) // back within the grace period
    await Bun.sleep(2500)
    expect(await presenceOf(a1.user.id)).toBe('online')
    expect((await conversation(x.id)).agentId).toBe(a1.user.id)
    again.close()
    await eventually(async () => (await presenceOf(a1.user.id)) === 'offline', 6000)
    expect((await conversation(x.id)).status).toBe('open')
  }, 20_000)

  test('an agent whose server process died goes offline once its presence expires, and their conversations are handed back', async () => {
    const store = isolatedStore()
    const env = baseEnv({ ...store.env, CHAT_AGENT_CAPACITY: '2', CHAT_PRESENCE_TIMEOUT_SECONDS: '3', CHAT_SWEEP_MS: '200', CHAT_OFFLINE_GRACE_SECONDS: '0' })
    const { Kernel } = await import('../kernel/kernel')
    const main = await Kernel.start({ env })
    const child = await spawnServer({ ...env, PORT: '0' })
    try {
      const admin = await adminToken(main.url)
      const api = client(main.url)
      const user = await userWithRole(main.url, 'agent', admin)
      const socket = await connect(child.url, '/chat', user.token, { reconnection: false })
      const presenceOf = async () => (await api.get(`${CHAT}/agents`, admin)).body.items.find((a: any) => a.userId === user.id)?.status
      await eventually(async () => (await presenceOf()) === 'online')
      const customerSocket = await connect(main.url, '/chat', (await userWithRole(main.url, 'customer', admin)).token)
      const x = (await ack(customerSocket, 'conversation:start', {})).conversation
      expect(x.agentId).toBe(user.id)
      child.proc.kill('SIGKILL')
      await child.proc.exited
      socket.close()
      expect(await presenceOf()).toBe('online') // nobody told anyone
      await eventually(async () => (await presenceOf()) === 'offline', 8000)
      const back = (await api.get(`${CHAT}/conversations/${x.id}`, admin)).body
      expect(back.status).toBe('open')
    } finally {
      child.proc.kill('SIGKILL')
      closeAll()
      await main.stop()
      await store.cleanup()
    }
  }, 20_000)
})
