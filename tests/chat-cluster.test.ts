/**
 * Two server processes (this one and a child) sharing the database and Redis (issue 4 acceptance, run with TEST_REDIS_URL;
 * `CI=true npm test` requires it): a customer on one and the agent on the other converse normally,
 * presence is the same from both, and assignment across both never exceeds an agent's capacity.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { Kernel } from '../kernel/kernel'
import { adminToken, baseEnv, type ChildServer, client, eventually, isolatedStore, services, spawnServer, userWithRole, variant } from './harness'
import { type Client, closeAll, connect, waitFor } from './realtime-client'

const CHAT = '/api/v1/chat'

async function ack<T = any>(socket: Client, event: string, payload: unknown): Promise<T> {
  return socket.timeout(5000).emitWithAck(event, payload)
}

describe.skipIf(!services.redisUrl)(`chat across two processes (${variant})`, () => {
  const store = isolatedStore()
  let a: Kernel
  /** the second process: `bun kernel/main.ts` as a child */
  let b: ChildServer
  let admin: string

  beforeAll(async () => {
    const env = baseEnv({ ...store.env, CHAT_AGENT_CAPACITY: '2', CHAT_OFFLINE_GRACE_SECONDS: '0', CHAT_SWEEP_MS: '200' })
    a = await Kernel.start({ env })
    b = await spawnServer(env)
    admin = await adminToken(a.url)
  })
  afterAll(async () => {
    closeAll()
    await a?.stop()
    b?.proc.kill('SIGTERM')
    await b?.proc.exited
    await store.cleanup()
  })

  const presenceAt = async (url: string, userId: string) =>
    (await client(url).get(`${CHAT}/agents`, admin)).body.items.find((x: any) => x.userId === userId)?.status ?? 'offline'

  test('a customer on one process and the agent on the other converse; presence is the same from both', async () => {
    const manager = await connect(a.url, '/chat', (await userWithRole(a.url, 'manager', admin)).token)
    const agentUser = await userWithRole(a.url, 'agent', admin)
    const agent = await connect(b.url, '/chat', agentUser.token)
    // The agent connected to B; the manager on A hears it, and both processes report it.
    await eventually(async () => manager.received('presence').some((p) => p.userId === agentUser.id && p.status === 'online'))
    expect(await presenceAt(a.url, agentUser.id)).toBe('online')
    expect(await presenceAt(b.url, agentUser.id)).toBe('online')

    const customerUser = await userWithRole(a.url, 'customer', admin)
    const customer = await connect(a.url, '/chat', customerUser.token)
    const { conversation } = await ack(customer, 'conversation:start', { subject: 'cross-process' })
    expect(conversation.agentId).toBe(agentUser.id)
    expect((await waitFor(agent, 'conversation:assigned'))[0].conversation.id).toBe(conversation.id)
    await ack(agent, 'conversation:join', { conversationId: conversation.id })

    await ack(customer, 'typing', { conversationId: conversation.id, typing: true })
    expect((await waitFor(agent, 'typing'))[0].userId).toBe(customerUser.id)
    const question = await ack(customer, 'message:send', { conversationId: conversation.id, clientId: 'q1', body: 'Hello from A' })
    expect((await waitFor(agent, 'message:new'))[0].message).toEqual(question.message)
    const answer = await ack(agent, 'message:send', { conversationId: conversation.id, clientId: 'a1', body: 'Hello from B' })
    const atCustomer = await waitFor(customer, 'message:new', 2)
    expect(atCustomer.map((e) => e.message.body)).toEqual(['Hello from A', 'Hello from B'])
    await ack(agent, 'message:read', { conversationId: conversation.id, messageId: question.message.id })
    expect((await waitFor(customer, 'message:read'))[0]).toEqual({ conversationId: conversation.id, userId: agentUser.id, messageId: question.message.id })
    expect(agent.received('message:read')).toEqual([])
    expect(customer.received('typing')).toEqual([])
    expect(answer.message.seq).toBe(2)

    agent.close()
    await eventually(async () => manager.received('presence').some((p) => p.userId === agentUser.id && p.status === 'offline'))
    expect(await presenceAt(a.url, agentUser.id)).toBe('offline')
    expect(await presenceAt(b.url, agentUser.id)).toBe('offline')
    // Handed back: the customer on A hears it.
    await eventually(async () => customer.received('conversation:updated').some((e) => e.conversation.id === conversation.id && e.conversation.status === 'open'))
  })

  test('conversations started on both processes at once never push an agent beyond capacity', async () => {
    const agents = [await userWithRole(a.url, 'agent', admin), await userWithRole(a.url, 'agent', admin)]
    await connect(a.url, '/chat', agents[0].token)
    await connect(b.url, '/chat', agents[1].token)
    await eventually(async () => (await presenceAt(a.url, agents[0].id)) === 'online' && (await presenceAt(a.url, agents[1].id)) === 'online')
    const customers = await Promise.all(
      [a, b, a, b, a, b].map(async (k) => connect(k.url, '/chat', (await userWithRole(a.url, 'customer', admin)).token)),
    )
    await Promise.all(customers.flatMap((c) => [ack(c, 'conversation:start', {}), ack(c, 'conversation:start', {})]))
    await Bun.sleep(500) // both processes' sweeps have run
    const all = (await client(a.url).get(`${CHAT}/conversations?limit=200&status=assigned`, admin)).body.items
    for (const agent of agents) expect(all.filter((c: any) => c.agentId === agent.id).length).toBe(2)
  })
})
