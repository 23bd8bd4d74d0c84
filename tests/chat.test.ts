/**
 * The chat plugin from the outside (CONTRACT.md §6): real socket.io-clients and HTTP against real
 * servers. Conversations end to end, clientId de-duplication, typing and read receipts, refusals
 * that keep the connection, REST history with cursors, canned responses, round-robin assignment
 * with capacity, queueing and hand-back, missed messages after a 5 s drop and after a restart
 * (through shared/chat-client.ts), inbound channel webhooks and outbound replies with retries,
 * and with Redis two processes serving one conversation.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'bun:test'
import { adminToken, client, eventually, expectError, expectStatus, startServer, type TestServer, userWithRole, variant } from './harness'
import { type Client, closeAll, connect, refusal, waitFor } from './realtime-client'

const CHAT = '/api/v1/chat'
let n = 0
const clientId = () => `c-${Date.now().toString(36)}-${n++}`

type User = Awaited<ReturnType<typeof userWithRole>>

/** A signed-in socket on /chat. */
const chatSocket = (url: string, user: { token: string }, options = {}) => connect(url, '/chat', user.token, options)

async function ack<T = any>(socket: Client, event: string, payload: unknown): Promise<T> {
  return socket.timeout(5000).emitWithAck(event, payload)
}

describe(`chat (${variant})`, () => {
  let server: TestServer
  let admin: string
  let api: ReturnType<typeof client>

  beforeAll(async () => {
    server = await startServer({ CHAT_AGENT_CAPACITY: '50', CHAT_OFFLINE_GRACE_SECONDS: '0', CHAT_SWEEP_MS: '200' })
    admin = await adminToken(server.url)
    api = client(server.url)
  })
  afterEach(() => closeAll())
  afterAll(async () => {
    closeAll()
    await server.stop()
  })

  /** A customer with a conversation assigned to a fresh online agent, both joined. */
  async function pair() {
    const agentUser = await userWithRole(server.url, 'agent', admin)
    const customerUser = await userWithRole(server.url, 'customer', admin)
    const agent = await chatSocket(server.url, agentUser)
    await eventually(async () => (await api.get(`${CHAT}/agents`, admin)).body.items.some((a: any) => a.userId === agentUser.id && a.status === 'online'))
    const customer = await chatSocket(server.url, customerUser)
    const { conversation } = await ack(customer, 'conversation:start', { subject: 'my order' })
    let conv = conversation
    // Another test's agent may still be online: start again until round-robin reaches this one.
    for (let i = 0; i < 20 && conv.agentId !== agentUser.id; i++) conv = (await ack(customer, 'conversation:start', {})).conversation
    expect(conv.agentId).toBe(agentUser.id)
    const joined = await ack(agent, 'conversation:join', { conversationId: conv.id })
    expect(joined.ok).toBe(true)
    return { agentUser, customerUser, agent, customer, conversation: conv }
  }

  test('a handshake without a valid token is refused with "unauthorized"', async () => {
    expect((await refusal(server.url, '/chat', undefined)).message).toBe('unauthorized')
    expect((await refusal(server.url, '/chat', 'not-a-token')).message).toBe('unauthorized')
  })

  test('customer and agent converse end to end; messages are stored before they are acknowledged', async () => {
    const { agentUser, customerUser, agent, customer, conversation } = await pair()
    expect(conversation.status).toBe('assigned')
    const assigned = await waitFor(agent, 'conversation:assigned')
    expect(assigned.some((a) => a.conversation.id === conversation.id)).toBe(true)

    const sent = await ack(customer, 'message:send', { conversationId: conversation.id, clientId: clientId(), body: 'Where is my parcel?' })
    expect(sent.message.body).toBe('Where is my parcel?')
    expect(sent.message.senderId).toBe(customerUser.id)
    expect(sent.message.seq).toBe(1)
    // Stored before the ack: history already has it.
    const history = await api.get(`${CHAT}/conversations/${conversation.id}/messages`, customerUser.token)
    expectStatus(history, 200)
    expect(history.body.items.map((m: any) => m.id)).toEqual([sent.message.id])

    const atAgent = await waitFor(agent, 'message:new')
    expect(atAgent[0].message).toEqual(sent.message)
    const reply = await ack(agent, 'message:send', { conversationId: conversation.id, clientId: clientId(), body: 'On its way.' })
    expect(reply.message.senderId).toBe(agentUser.id)
    const atCustomer = await waitFor(customer, 'message:new', 2)
    expect(atCustomer.map((e) => e.message.body)).toEqual(['Where is my parcel?', 'On its way.'])
  })

  test('a repeated clientId returns the first message, never a duplicate', async () => {
    const { customer, customerUser, conversation } = await pair()
    const id = clientId()
    const first = await ack(customer, 'message:send', { conversationId: conversation.id, clientId: id, body: 'once' })
    const again = await ack(customer, 'message:send', { conversationId: conversation.id, clientId: id, body: 'once' })
    const concurrent = await Promise.all([1, 2, 3].map(() => ack(customer, 'message:send', { conversationId: conversation.id, clientId: id, body: 'once' })))
    for (const a of [again, ...concurrent]) expect(a.message).toEqual(first.message)
    const racing = clientId()
    const raced = await Promise.all([1, 2, 3, 4].map(() => ack(customer, 'message:send', { conversationId: conversation.id, clientId: racing, body: 'race' })))
    expect(new Set(raced.map((a) => a.message.id)).size).toBe(1)
    const history = await api.get(`${CHAT}/conversations/${conversation.id}/messages`, customerUser.token)
    expect(history.body.items.length).toBe(2)
    // The same clientId over REST is the same message too.
    const rest = await api.post(`${CHAT}/conversations/${conversation.id}/messages`, { clientId: id, body: 'once' }, customerUser.token)
    expectStatus(rest, 200)
    expect(rest.body.id).toBe(first.message.id)
  })

  test('sends in one burst are stored together; a refused or repeated one among them spoils nothing', async () => {
    const { customer, customerUser, conversation } = await pair()
    const other = await pair()
    const repeated = clientId()
    await ack(customer, 'message:send', { conversationId: conversation.id, clientId: repeated, body: 'first' })
    // A clean burst across two conversations (one per customer) takes seqs in order in each.
    const clean = await Promise.all([
      ...Array.from({ length: 6 }, (_, i) => ack(customer, 'message:send', { conversationId: conversation.id, clientId: clientId(), body: `clean ${i}` })),
      ...Array.from({ length: 6 }, (_, i) => ack(other.customer, 'message:send', { conversationId: other.conversation.id, clientId: clientId(), body: `other ${i}` })),
    ])
    expect(clean.slice(0, 6).map((a) => a.message.seq)).toEqual([2, 3, 4, 5, 6, 7])
    expect(clean.slice(6).map((a) => a.message.seq)).toEqual([1, 2, 3, 4, 5, 6])
    await Bun.sleep(1000) // a fresh rate-limit window
    const burst = await Promise.all([
      ...Array.from({ length: 15 }, (_, i) => ack(customer, 'message:send', { conversationId: conversation.id, clientId: clientId(), body: `burst ${i}` })),
      ack(customer, 'message:send', { conversationId: other.conversation.id, clientId: clientId(), body: 'not mine' }),
      ack(customer, 'message:send', { conversationId: conversation.id, clientId: repeated, body: 'first' }),
    ])
    expect(burst.slice(0, 15).map((a) => a.message.body)).toEqual(Array.from({ length: 15 }, (_, i) => `burst ${i}`))
    expect(burst[15].error.code).toBe('CONVERSATION_NOT_FOUND')
    expect(burst[16].message.body).toBe('first')
    const history = (await api.get(`${CHAT}/conversations/${conversation.id}/messages?limit=200`, customerUser.token)).body.items
    expect(history.map((m: any) => m.seq)).toEqual(Array.from({ length: 22 }, (_, i) => 22 - i))
    expect((await api.get(`${CHAT}/conversations/${other.conversation.id}/messages`, other.customerUser.token)).body.items.length).toBe(6)
  })

  test('a repeat in the middle of a large burst from both sides: every send stored once, each side in its order', async () => {
    const { agent, customer, customerUser, conversation } = await pair()
    const repeated = clientId()
    const first = await ack(customer, 'message:send', { conversationId: conversation.id, clientId: repeated, body: 'first' })
    // 18 sends per socket, under the per-socket budget; the batch that holds the repeat is undone and written again in parts.
    const mine = Array.from({ length: 18 }, (_, i) => (i === 9 ? { clientId: repeated, body: 'first' } : { clientId: clientId(), body: `customer ${i}` }))
    const theirs = Array.from({ length: 18 }, (_, i) => ({ clientId: clientId(), body: `agent ${i}` }))
    const [fromCustomer, fromAgent] = await Promise.all([
      Promise.all(mine.map((m) => ack(customer, 'message:send', { conversationId: conversation.id, ...m }))),
      Promise.all(theirs.map((m) => ack(agent, 'message:send', { conversationId: conversation.id, ...m }))),
    ])
    expect(fromCustomer[9].message).toEqual(first.message)
    expect(fromCustomer.map((a) => a.message.body)).toEqual(mine.map((m) => m.body))
    expect(fromAgent.map((a) => a.message.body)).toEqual(theirs.map((m) => m.body))
    const seqs = (acks: any[]) => acks.map((a) => a.message.seq)
    const increasing = (xs: number[]) => xs.every((x, i) => i === 0 || x > xs[i - 1])
    expect(increasing(seqs(fromCustomer.filter((_, i) => i !== 9)))).toBe(true)
    expect(increasing(seqs(fromAgent))).toBe(true)
    const history = (await api.get(`${CHAT}/conversations/${conversation.id}/messages?limit=200`, customerUser.token)).body.items
    expect(history.map((m: any) => m.seq)).toEqual(Array.from({ length: 36 }, (_, i) => 36 - i))
    expect(new Set(history.map((m: any) => m.clientId)).size).toBe(36)
  })

  test('typing and read receipts reach the other party and never the sender', async () => {
    const { agent, customer, agentUser, customerUser, conversation } = await pair()
    expect(await ack(customer, 'typing', { conversationId: conversation.id, typing: true })).toEqual({ ok: true })
    const typing = await waitFor(agent, 'typing')
    expect(typing[0]).toEqual({ conversationId: conversation.id, userId: customerUser.id, typing: true })

    const { message } = await ack(customer, 'message:send', { conversationId: conversation.id, clientId: clientId(), body: 'read me' })
    expect((await ack(agent, 'message:read', { conversationId: conversation.id, messageId: message.id })).ok).toBe(true)
    const read = await waitFor(customer, 'message:read')
    expect(read[0]).toEqual({ conversationId: conversation.id, userId: agentUser.id, messageId: message.id })
    const markers = await api.get(`${CHAT}/conversations/${conversation.id}/read-markers`, customerUser.token)
    expect(markers.body.items).toEqual([{ userId: agentUser.id, messageId: message.id, seq: message.seq, at: expect.any(String) }])

    await Bun.sleep(200)
    expect(customer.received('typing')).toEqual([])
    expect(agent.received('message:read')).toEqual([])
    // Typing needs a joined conversation.
    const stranger = await chatSocket(server.url, await userWithRole(server.url, 'customer', admin))
    expect((await ack(stranger, 'typing', { conversationId: conversation.id, typing: true })).error.code).toBe('NOT_JOINED')
  })

  test('malformed, oversized and refused payloads get an error ack and the connection stays', async () => {
    const { customer, conversation } = await pair()
    const bad = await ack(customer, 'message:send', { conversationId: conversation.id })
    expect(bad.error.code).toBe('VALIDATION_FAILED')
    const big = await ack(customer, 'message:send', { conversationId: conversation.id, clientId: clientId(), body: 'x'.repeat(4001) })
    expect(big.error.code).toBe('VALIDATION_FAILED')
    const both = await ack(customer, 'message:send', { conversationId: conversation.id, clientId: clientId(), body: 'x', cannedId: 'nope' })
    expect(both.error.code).toBe('VALIDATION_FAILED')
    const extra = await ack(customer, 'typing', { conversationId: conversation.id, typing: true, more: 1 })
    expect(extra.error.code).toBe('VALIDATION_FAILED')
    const notString = await ack(customer, 'conversation:join', 'hello')
    expect(notString.error.code).toBe('VALIDATION_FAILED')
    const other = await pair()
    const foreign = await ack(customer, 'conversation:join', { conversationId: other.conversation.id })
    expect(foreign.error.code).toBe('CONVERSATION_NOT_FOUND')
    const agentStarts = await ack(other.agent, 'conversation:start', {})
    expect(agentStarts.error.code).toBe('FORBIDDEN')
    expect(customer.connected).toBe(true)
    const fine = await ack(customer, 'message:send', { conversationId: conversation.id, clientId: clientId(), body: 'still here' })
    expect(fine.message.body).toBe('still here')
  })

  test('closing tells everyone in the conversation; the customer writing again reopens it', async () => {
    const { agent, customer, customerUser, agentUser, conversation } = await pair()
    const stranger = await userWithRole(server.url, 'agent', admin)
    const strangerSocket = await chatSocket(server.url, stranger)
    expect((await ack(strangerSocket, 'conversation:close', { conversationId: conversation.id })).error.code).toBe('NOT_A_PARTICIPANT')
    expect((await ack(customer, 'conversation:close', { conversationId: conversation.id })).error.code).toBe('FORBIDDEN')
    const closed = await ack(agent, 'conversation:close', { conversationId: conversation.id })
    expect(closed.conversation.status).toBe('closed')
    for (const s of [agent, customer]) expect((await waitFor(s, 'conversation:closed'))[0].conversation.id).toBe(conversation.id)
    expect((await ack(agent, 'message:send', { conversationId: conversation.id, clientId: clientId(), body: 'late' })).error.code).toBe('CONVERSATION_CLOSED')

    await ack(customer, 'message:send', { conversationId: conversation.id, clientId: clientId(), body: 'one more thing' })
    const again = await eventually(async () => {
      const r = await api.get(`${CHAT}/conversations/${conversation.id}`, customerUser.token)
      return r.body.status === 'assigned' && r.body
    })
    expect(again.status).toBe('assigned')
    expect([agentUser.id, stranger.id]).toContain(again.agentId)
  })

  test('conversation lists: own for customers, all for agents, filtered by status, with cursors', async () => {
    const a = await pair()
    const customer2 = await userWithRole(server.url, 'customer', admin)
    const s2 = await chatSocket(server.url, customer2)
    const mine = [a.conversation.id]
    for (let i = 0; i < 3; i++) mine.push((await ack(a.customer, 'conversation:start', { subject: `n${i}` })).conversation.id)
    await ack(s2, 'conversation:start', {})
    const own = await api.get(`${CHAT}/conversations?limit=2`, a.customerUser.token)
    expectStatus(own, 200)
    expect(own.body.items.length).toBe(2)
    const rest = await api.get(`${CHAT}/conversations?limit=50&cursor=${own.body.nextCursor}`, a.customerUser.token)
    const seen = [...own.body.items, ...rest.body.items].map((c: any) => c.id)
    expect(seen).toEqual([...mine].reverse())
    const agentsView = await api.get(`${CHAT}/conversations?limit=200`, a.agentUser.token)
    expect(agentsView.body.items.some((c: any) => c.customerId === customer2.id)).toBe(true)
    const closed = await api.get(`${CHAT}/conversations?status=closed`, a.customerUser.token)
    expect(closed.body.items).toEqual([])
    expectError(await api.get(`${CHAT}/conversations?status=nope`, a.customerUser.token), 422)
    expectError(await api.get(`${CHAT}/conversations`), 401)
    expectError(await api.get(`${CHAT}/conversations/${a.conversation.id}`, customer2.token), 404, 'CONVERSATION_NOT_FOUND')
  })

  test('message history over REST: newest first, with cursors', async () => {
    const { customer, customerUser, agentUser, conversation } = await pair()
    const bodies: string[] = []
    for (let i = 0; i < 7; i++) {
      bodies.push(`m${i}`)
      await ack(customer, 'message:send', { conversationId: conversation.id, clientId: clientId(), body: `m${i}` })
    }
    const pages: string[][] = []
    let cursor: string | null = null
    do {
      const r: any = await api.get(`${CHAT}/conversations/${conversation.id}/messages?limit=3${cursor ? `&cursor=${cursor}` : ''}`, agentUser.token)
      expectStatus(r, 200)
      pages.push(r.body.items.map((m: any) => m.body))
      cursor = r.body.nextCursor
    } while (cursor)
    expect(pages).toEqual([['m6', 'm5', 'm4'], ['m3', 'm2', 'm1'], ['m0']])
    expectError(await api.get(`${CHAT}/conversations/${conversation.id}/messages?cursor=garbage`, customerUser.token), 400, 'INVALID_CURSOR')
    // conversation:join with since: every message after it, in order.
    const first = (await api.get(`${CHAT}/conversations/${conversation.id}/messages?limit=200`, customerUser.token)).body.items.at(-1)
    const joined = await ack(customer, 'conversation:join', { conversationId: conversation.id, since: first.id })
    expect(joined.messages.map((m: any) => m.body)).toEqual(bodies.slice(1))
  })

  test('canned responses: CRUD for agents, managers and admins; agents send them by id', async () => {
    const { agent, customer, agentUser, customerUser, conversation } = await pair()
    const shortcut = `greet-${n++}`
    const created = await api.post(`${CHAT}/canned-responses`, { shortcut, title: 'Greeting', body: 'Hello! How can I help?' }, agentUser.token)
    expectStatus(created, 201)
    expectError(await api.post(`${CHAT}/canned-responses`, { shortcut, title: 'Again', body: 'x' }, agentUser.token), 409, 'SHORTCUT_TAKEN')
    expectError(await api.post(`${CHAT}/canned-responses`, { shortcut: 'c', title: 'x', body: 'x' }, customerUser.token), 403)
    expectError(await api.get(`${CHAT}/canned-responses`, customerUser.token), 403)
    const listed = await api.get(`${CHAT}/canned-responses?limit=200`, admin)
    expect(listed.body.items.some((c: any) => c.id === created.body.id)).toBe(true)
    const patched = await api.patch(`${CHAT}/canned-responses/${created.body.id}`, { body: 'Hi! What can I do for you?' }, admin)
    expectStatus(patched, 200)
    expect(patched.body.body).toBe('Hi! What can I do for you?')

    const sent = await ack(agent, 'message:send', { conversationId: conversation.id, clientId: clientId(), cannedId: created.body.id })
    expect(sent.message.body).toBe('Hi! What can I do for you?')
    expect((await waitFor(customer, 'message:new'))[0].message.body).toBe('Hi! What can I do for you?')
    expect((await ack(customer, 'message:send', { conversationId: conversation.id, clientId: clientId(), cannedId: created.body.id })).error.code).toBe('FORBIDDEN')

    expectStatus(await api.del(`${CHAT}/canned-responses/${created.body.id}`, agentUser.token), 204)
    expectError(await api.get(`${CHAT}/canned-responses/${created.body.id}`, agentUser.token), 404)
    expect((await ack(agent, 'message:send', { conversationId: conversation.id, clientId: clientId(), cannedId: created.body.id })).error.code).toBe('CANNED_RESPONSE_NOT_FOUND')
  })
})
