/**
 * Inbound channels (issue 4, item 4): webhooks whose HMAC signature over the raw body is checked
 * before anything is stored (generic signed webhook with a timestamp against replays, LINE- and
 * Messenger-shaped), inbound messages becoming conversation messages, and agents' replies going out
 * to a real local HTTP receiver, signed, with retries.
 */
import { createHmac } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { adminToken, client, eventually, expectError, expectStatus, startServer, type TestServer, userWithRole, variant } from './harness'
import { type Client, closeAll, connect } from './realtime-client'

const CHAT = '/api/v1/chat'
const SECRETS = { shop: 'shop-secret-0123', line: 'line-secret-0123', fb: 'fb-app-secret-01' }

interface Received {
  path: string
  headers: Headers
  body: string
}

describe(`chat inbound channels (${variant})`, () => {
  let server: TestServer
  let receiver: ReturnType<typeof Bun.serve>
  const received: Received[] = []
  /** how many of the next requests the receiver refuses with a 503 */
  let failNext = 0
  let admin: string
  let api: ReturnType<typeof client>
  let agent: Client
  let agentUser: Awaited<ReturnType<typeof userWithRole>>

  beforeAll(async () => {
    receiver = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      async fetch(request) {
        const body = await request.text()
        if (failNext > 0) {
          failNext--
          return new Response('busy', { status: 503 })
        }
        received.push({ path: new URL(request.url).pathname, headers: request.headers, body })
        return Response.json({ ok: true })
      },
    })
    const base = `http://127.0.0.1:${receiver.port}`
    server = await startServer({
      CHAT_SWEEP_MS: '100',
      CHAT_DELIVERY_RETRY_BASE_MS: '100',
      CHAT_CHANNELS: JSON.stringify({
        shop: { kind: 'signed', secret: SECRETS.shop, url: `${base}/replies` },
        line: { kind: 'line', secret: SECRETS.line, url: `${base}/line`, token: 'line-token' },
        fb: { kind: 'messenger', secret: SECRETS.fb, url: `${base}/fb`, token: 'fb-token', verifyToken: 'verify-me' },
      }),
    })
    admin = await adminToken(server.url)
    api = client(server.url)
    agentUser = await userWithRole(server.url, 'agent', admin)
    agent = await connect(server.url, '/chat', agentUser.token)
    await eventually(async () => (await api.get(`${CHAT}/agents`, admin)).body.items.some((a: any) => a.status === 'online'))
  })
  afterAll(async () => {
    closeAll()
    await server.stop()
    receiver.stop(true)
  })

  const hex = (secret: string, data: string) => createHmac('sha256', secret).update(data).digest('hex')
  const signed = (body: string, secret = SECRETS.shop, timestamp = Math.floor(Date.now() / 1000)) => ({
    'content-type': 'application/json',
    'x-tessera-timestamp': String(timestamp),
    'x-tessera-signature': `sha256=${hex(secret, `${timestamp}.${body}`)}`,
  })
  const post = (channel: string, body: string, headers: Record<string, string>) =>
    fetch(`${server.url}${CHAT}/channels/${channel}/webhook`, { method: 'POST', body, headers }).then(async (r) => ({ status: r.status, body: await r.json(), headers: r.headers }))
  const external = async (channel: string, from: string) =>
    (await api.get(`${CHAT}/conversations?limit=200`, admin)).body.items.find((c: any) => c.channel === channel && c.customerId === `ext:${channel}:${from}`)
  const messages = async (conversationId: string) => (await api.get(`${CHAT}/conversations/${conversationId}/messages?limit=200`, admin)).body.items

  test('a signed webhook becomes a conversation message; a replay inside the window stores nothing new', async () => {
    // Spacing and key order as a sender might write them: the signature is over these exact bytes.
    const body = '{ "id": "ext-1", "from": { "id": "u-1", "name": "Ann" },  "text": "Hello from the shop" }'
    const first = await post('shop', body, signed(body))
    expectStatus(first, 200)
    expect(first.body).toEqual({ received: 1 })
    const conversation = await external('shop', 'u-1')
    expect(conversation.channel).toBe('shop')
    expect((await messages(conversation.id)).map((m: any) => m.body)).toEqual(['Hello from the shop'])
    await eventually(async () => (await api.get(`${CHAT}/conversations/${conversation.id}`, admin)).body.agentId === agentUser.id)

    const replay = await post('shop', body, signed(body))
    expect(replay.body).toEqual({ received: 0 })
    expect((await messages(conversation.id)).length).toBe(1)
  })

  test('a bad, missing, tampered or stale signature is a 401 and nothing is stored', async () => {
    const body = JSON.stringify({ id: 'ext-bad', from: { id: 'u-bad' }, text: 'forged' })
    expectError(await post('shop', body, signed(body, 'wrong-secret-0000')), 401, 'BAD_SIGNATURE')
    expectError(await post('shop', body, { 'content-type': 'application/json' }), 401, 'BAD_SIGNATURE')
    const headers = signed(body)
    expectError(await post('shop', body.replace('forged', 'FORGED'), headers), 401, 'BAD_SIGNATURE')
    expectError(await post('shop', body, signed(body, SECRETS.shop, Math.floor(Date.now() / 1000) - 3600)), 401, 'STALE_WEBHOOK')
    expectError(await post('nowhere', body, signed(body)), 404, 'CHANNEL_NOT_FOUND')
    expect(await external('shop', 'u-bad')).toBeUndefined()
    // A well-signed body of the wrong shape is a 422, also storing nothing.
    const wrong = JSON.stringify({ hello: 'world' })
    expectError(await post('shop', wrong, signed(wrong)), 422)
  })

  test("an agent's reply goes out to the channel, signed, and is retried until the receiver takes it", async () => {
    const body = JSON.stringify({ id: 'ext-2', from: { id: 'u-2' }, text: 'Is it in stock?' })
    expectStatus(await post('shop', body, signed(body)), 200)
    const conversation = await external('shop', 'u-2')
    await eventually(async () => (await api.get(`${CHAT}/conversations/${conversation.id}`, admin)).body.agentId === agentUser.id)
    const joined = await agent.timeout(5000).emitWithAck('conversation:join', { conversationId: conversation.id })
    expect(joined.messages.map((m: any) => m.body)).toEqual(['Is it in stock?'])

    failNext = 4 // the first round (3 tries) fails, the second round gets through
    const before = received.length
    const reply = await agent.timeout(5000).emitWithAck('message:send', { conversationId: conversation.id, clientId: 'reply-1', body: 'Yes, 12 left.' })
    expect(reply.message.body).toBe('Yes, 12 left.')
    await eventually(async () => received.length > before, 8000)
    const out = received.slice(before)
    expect(out.length).toBe(1)
    expect(out[0].path).toBe('/replies')
    const timestamp = out[0].headers.get('x-tessera-timestamp')!
    expect(out[0].headers.get('x-tessera-signature')).toBe(`sha256=${hex(SECRETS.shop, `${timestamp}.${out[0].body}`)}`)
    expect(JSON.parse(out[0].body)).toEqual({ id: reply.message.id, to: 'u-2', text: 'Yes, 12 left.', conversationId: conversation.id, createdAt: reply.message.createdAt })
    // Marked delivered once the receiver's answer is in.
    const mine = await eventually(async () => {
      const d = (await api.get(`${CHAT}/deliveries`, admin)).body.items.find((x: any) => x.messageId === reply.message.id)
      return d?.status === 'delivered' && d
    })
    expect(mine.status).toBe('delivered')
    expect(mine.attempts).toBe(2)
    // The customer's own messages are not sent back to them.
    await Bun.sleep(300)
    expect(received.slice(before).length).toBe(1)
  }, 15_000)

  test('LINE-shaped webhooks: base64 signature over the raw body; replies use the push API shape', async () => {
    const body = JSON.stringify({
      destination: 'Ubot',
      events: [
        { type: 'message', webhookEventId: 'w1', timestamp: Date.now(), source: { type: 'user', userId: 'Uline1' }, message: { type: 'text', id: 'lm-1', text: 'こんにちは' } },
        { type: 'follow', webhookEventId: 'w2', timestamp: Date.now(), source: { type: 'user', userId: 'Uline1' } },
      ],
    })
    const signature = createHmac('sha256', SECRETS.line).update(body).digest('base64')
    expectError(await post('line', body, { 'content-type': 'application/json', 'x-line-signature': 'AAAA' }), 401, 'BAD_SIGNATURE')
    const ok = await post('line', body, { 'content-type': 'application/json', 'x-line-signature': signature })
    expect(ok.body).toEqual({ received: 1 })
    const conversation = await external('line', 'Uline1')
    expect((await messages(conversation.id)).map((m: any) => m.body)).toEqual(['こんにちは'])
    await eventually(async () => (await api.get(`${CHAT}/conversations/${conversation.id}`, admin)).body.agentId === agentUser.id)
    await agent.timeout(5000).emitWithAck('conversation:join', { conversationId: conversation.id })
    const before = received.length
    await agent.timeout(5000).emitWithAck('message:send', { conversationId: conversation.id, clientId: 'line-reply', body: 'Hi!' })
    await eventually(async () => received.length > before, 5000)
    const out = received.slice(before)[0]
    expect(out.path).toBe('/line')
    expect(out.headers.get('authorization')).toBe('Bearer line-token')
    expect(out.headers.get('x-line-retry-key')).toBeTruthy()
    expect(JSON.parse(out.body)).toEqual({ to: 'Uline1', messages: [{ type: 'text', text: 'Hi!' }] })
  })

  test('Messenger-shaped webhooks: sha256= hex signature, echoes ignored, verification challenge', async () => {
    const verify = await fetch(`${server.url}${CHAT}/channels/fb/webhook?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=12345`)
    expect(verify.status).toBe(200)
    expect(await verify.text()).toBe('12345')
    const refused = await fetch(`${server.url}${CHAT}/channels/fb/webhook?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1`)
    expect(refused.status).toBe(422)
    const body = JSON.stringify({
      object: 'page',
      entry: [
        {
          id: 'page',
          time: Date.now(),
          messaging: [
            { sender: { id: 'psid-1' }, recipient: { id: 'page' }, timestamp: Date.now(), message: { mid: 'mid.1', text: 'Hi page' } },
            { sender: { id: 'page' }, recipient: { id: 'psid-1' }, timestamp: Date.now(), message: { mid: 'mid.2', text: 'echo', is_echo: true } },
          ],
        },
      ],
    })
    const sig = `sha256=${hex(SECRETS.fb, body)}`
    expectError(await post('fb', body, { 'content-type': 'application/json', 'x-hub-signature-256': `sha256=${hex('wrong', body)}` }), 401, 'BAD_SIGNATURE')
    const ok = await post('fb', body, { 'content-type': 'application/json', 'x-hub-signature-256': sig })
    expect(ok.body).toEqual({ received: 1 })
    const conversation = await external('fb', 'psid-1')
    expect((await messages(conversation.id)).map((m: any) => m.body)).toEqual(['Hi page'])
  })
})
