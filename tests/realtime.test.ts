/**
 * The realtime port (CONTRACT.md §6), black-box: real socket.io-client sockets against real
 * servers, through the `/echo` namespace of the test fixture plugin (tests/fixtures/plugins/echo).
 * Handshakes, acks, refusals, rate limits, rooms, connection state recovery, shutdown, and with
 * Redis two servers serving one namespace.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { Kernel } from '../kernel/kernel'
import { adminToken, baseEnv, client, eventually, isolatedStore, ROOT, services, startServer, type TestServer, userWithRole, variant } from './harness'
import { type Client, closeAll, connect, refusal, waitFor } from './realtime-client'

const ECHO = '/echo'
let n = 0
const room = () => `room-${Date.now().toString(36)}-${n++}`

describe(`Socket.IO realtime (${variant})`, () => {
  let server: TestServer
  let admin: string

  beforeAll(async () => {
    server = await startServer()
    admin = await adminToken(server.url)
  })
  afterAll(async () => {
    closeAll()
    await server.stop()
  })

  const metric = async (line: string) => {
    const text = await (await fetch(`${server.url}/metrics`)).text()
    const found = text.split('\n').find((l) => l.startsWith(line + ' '))
    return found ? Number(found.slice(line.length + 1)) : 0
  }

  describe('the handshake needs a valid access token', () => {
    test('without a token the connection fails with "unauthorized"', async () => {
      const error = await refusal(server.url, ECHO, undefined)
      expect(error.message).toBe('unauthorized')
      expect(error.data?.code).toBe('UNAUTHORIZED')
    })

    test('with a forged token it fails with "unauthorized"', async () => {
      const error = await refusal(server.url, ECHO, 'not-a-jwt')
      expect(error.message).toBe('unauthorized')
      expect(error.data?.code).toBe('INVALID_TOKEN')
    })

    test("a disabled user is disconnected at once, and the token stops opening connections", async () => {
      const user = await userWithRole(server.url, 'customer', admin)
      const before = await connect(server.url, ECHO, user.token)
      const other = await connect(server.url, ECHO, (await userWithRole(server.url, 'customer', admin)).token)
      expect(before.connected).toBe(true)
      const reasons: string[] = []
      before.on('disconnect', (reason) => reasons.push(reason))
      expect((await client(server.url).patch(`/api/v1/auth/users/${user.id}`, { disabled: true }, admin)).status).toBe(200)
      await eventually(async () => reasons.length > 0, 1_000)
      expect(reasons).toEqual(['io server disconnect'])
      expect(before.connected).toBe(false)
      expect(other.connected).toBe(true)
      const error = await refusal(server.url, ECHO, user.token)
      expect(error.message).toBe('unauthorized')
      expect(error.data?.code).toBe('TOKEN_REVOKED')
    })

    test('the default namespace is closed: every namespace belongs to a plugin', async () => {
      const error = await refusal(server.url, '/', admin)
      expect(error.message).toBe('unauthorized')
    })

    test('a namespace no plugin registered is refused', async () => {
      const error = await refusal(server.url, '/nowhere', admin)
      expect(error.message).toBe('Invalid namespace')
    })
  })

  describe('client events are answered through their ack', () => {
    test('a connected client is welcomed as its user, on the HTTP port, over WebSocket or long-polling', async () => {
      const user = await userWithRole(server.url, 'agent', admin)
      const ws = await connect(server.url, ECHO, user.token)
      const polling = await connect(server.url, ECHO, user.token, { transports: ['polling'] })
      for (const c of [ws, polling]) expect((await waitFor(c, 'welcome'))[0]).toEqual({ userId: user.id, recovered: false })
      expect(await polling.emitWithAck('echo', { text: 'over polling' })).toEqual({ text: 'over polling' })
    })

    test("the handler's return value is the ack", async () => {
      const c = await connect(server.url, ECHO, admin)
      expect(await c.emitWithAck('echo', { text: 'hello' })).toEqual({ text: 'hello' })
    })

    test('a payload that breaks the schema gets VALIDATION_FAILED; the socket stays connected and usable', async () => {
      const c = await connect(server.url, ECHO, admin)
      const ack = await c.emitWithAck('echo', { text: 42 })
      expect(ack.error.code).toBe('VALIDATION_FAILED')
      expect(ack.error.message).toContain('/text')
      expect(c.connected).toBe(true)
      expect(await c.emitWithAck('echo', { text: 'still here' })).toEqual({ text: 'still here' })
    })

    test('a payload of another shape (unknown property, no object at all) gets VALIDATION_FAILED', async () => {
      const c = await connect(server.url, ECHO, admin)
      expect((await c.emitWithAck('echo', { text: 'x', admin: true })).error.code).toBe('VALIDATION_FAILED')
      expect((await c.emitWithAck('echo', 'just a string')).error.code).toBe('VALIDATION_FAILED')
      expect((await c.emitWithAck('echo')).error.code).toBe('VALIDATION_FAILED')
      expect(await c.emitWithAck('echo', { text: 'usable' })).toEqual({ text: 'usable' })
    })

    test('an oversized payload gets PAYLOAD_TOO_LARGE; the socket stays connected and usable', async () => {
      const c = await connect(server.url, ECHO, admin)
      const ack = await c.emitWithAck('echo', { text: 'x'.repeat(80_000) }) // over REALTIME_MAX_PAYLOAD_BYTES (64 KiB)
      expect(ack.error.code).toBe('PAYLOAD_TOO_LARGE')
      expect(c.connected).toBe(true)
      expect(await c.emitWithAck('echo', { text: 'small' })).toEqual({ text: 'small' })
    })

    test('an event the namespace does not know gets UNKNOWN_EVENT', async () => {
      const c = await connect(server.url, ECHO, admin)
      expect((await c.emitWithAck('no-such-event', {})).error.code).toBe('UNKNOWN_EVENT')
    })

    test("a handler's refusal is acked with its code; a bug is INTERNAL; neither disconnects", async () => {
      const c = await connect(server.url, ECHO, admin)
      expect(await c.emitWithAck('fail', { how: 'conflict' })).toEqual({ error: { code: 'CONFLICT', message: 'this conflicts' } })
      expect(await c.emitWithAck('fail', { how: 'crash' })).toEqual({ error: { code: 'INTERNAL', message: 'internal error' } })
      expect(c.connected).toBe(true)
    })

    test('an event past its per-socket budget gets RATE_LIMITED; other events and other sockets go on', async () => {
      const user = await userWithRole(server.url, 'customer', admin)
      const c = await connect(server.url, ECHO, user.token)
      for (let i = 0; i < 3; i++) expect(await c.emitWithAck('whoami', {})).toEqual({ id: user.id, roles: ['customer'] })
      expect((await c.emitWithAck('whoami', {})).error.code).toBe('RATE_LIMITED')
      expect(await c.emitWithAck('echo', { text: 'other event' })).toEqual({ text: 'other event' })
      const other = await connect(server.url, ECHO, user.token)
      expect(await other.emitWithAck('whoami', {})).toEqual({ id: user.id, roles: ['customer'] })
    })

    test('events sent without an ack callback still run', async () => {
      const r = room()
      const listener = await connect(server.url, ECHO, admin)
      await listener.emitWithAck('room:join', { room: r })
      const sender = await connect(server.url, ECHO, admin)
      sender.emit('room:emit', { room: r, n: 1 })
      expect(await waitFor(listener, 'room:message')).toEqual([{ n: 1 }])
    })
  })

  describe('rooms', () => {
    test('an emit to a room reaches every socket in it, and only those', async () => {
      const r = room()
      const [a, b, outsider] = await Promise.all([1, 2, 3].map(() => connect(server.url, ECHO, admin)))
      for (const c of [a, b]) await c.emitWithAck('room:join', { room: r })
      await outsider.emitWithAck('room:join', { room: room() })
      await a.emitWithAck('room:emit', { room: r, n: 7 })
      expect(await waitFor(a, 'room:message')).toEqual([{ n: 7 }])
      expect(await waitFor(b, 'room:message')).toEqual([{ n: 7 }])
      await Bun.sleep(100)
      expect(outsider.received('room:message')).toEqual([])
    })

    test('a broadcast from a socket reaches the others in the room, never the sender', async () => {
      const r = room()
      const user = await userWithRole(server.url, 'agent', admin)
      const sender = await connect(server.url, ECHO, user.token)
      const other = await connect(server.url, ECHO, admin)
      for (const c of [sender, other]) await c.emitWithAck('room:join', { room: r })
      await sender.emitWithAck('room:broadcast', { room: r, n: 3 })
      expect(await waitFor(other, 'room:message')).toEqual([{ n: 3, from: user.id }])
      await Bun.sleep(100)
      expect(sender.received('room:message')).toEqual([])
    })
  })

  test('a client that drops briefly is recovered: same socket, rooms kept, the missed emit delivered exactly once', async () => {
    const r = room()
    const watcher = await connect(server.url, ECHO, admin)
    // A client recovers from the last event it received (its offset): here the welcome, which goes
    // through the adapter and may arrive after the acknowledgement of the join.
    await waitFor(watcher, 'welcome')
    await watcher.emitWithAck('room:join', { room: r })
    const sender = await connect(server.url, ECHO, admin)
    const id = watcher.id
    const gauge = 'realtime_connected_sockets{namespace="/echo"}'
    const connected = await metric(gauge)

    watcher.io.engine.close() // the network drops; the client reconnects by itself
    await eventually(async () => (await metric(gauge)) === connected - 1)
    await sender.emitWithAck('room:emit', { room: r, n: 42 }) // while it is away

    await eventually(async () => watcher.connected)
    expect(watcher.recovered).toBe(true)
    expect(watcher.id).toBe(id)
    expect(await waitFor(watcher, 'room:message')).toEqual([{ n: 42 }])
    await sender.emitWithAck('room:emit', { room: r, n: 43 }) // and the room is still joined
    await waitFor(watcher, 'room:message', 2)
    await Bun.sleep(100)
    expect(watcher.received('room:message')).toEqual([{ n: 42 }, { n: 43 }])
  })

  test('/socket.io/ is its own route in /metrics, with connected sockets and events by outcome', async () => {
    await connect(server.url, ECHO, admin)
    const text = await (await fetch(`${server.url}/metrics`)).text()
    expect(text).toContain('http_requests_total{method="GET",route="/socket.io/",status="101"}')
    expect(text).not.toContain('route="unmatched"') // only /api, /metrics and /socket.io/ were asked for here
    expect(await metric('realtime_connected_sockets{namespace="/echo"}')).toBeGreaterThan(0)
    expect(await metric('realtime_events_total{namespace="/echo",event="echo",outcome="ok"}')).toBeGreaterThan(0)
    expect(await metric('realtime_events_total{namespace="/echo",event="echo",outcome="invalid"}')).toBeGreaterThan(0)
  })
})

describe(`Socket.IO lifecycle (${variant})`, () => {
  afterAll(closeAll)

  test('on shutdown clients are let go so that they reconnect (elsewhere), not told to stay away', async () => {
    const server = await startServer()
    const c = await connect(server.url, ECHO, await adminToken(server.url))
    const reason = new Promise<string>((resolve) => c.once('disconnect', resolve))
    await server.stop()
    expect(await reason).toBe('transport close')
    expect(c.active).toBe(true) // still trying to reconnect
    c.close()
  })

  test('with REALTIME_POLLING=false only WebSocket clients get in', async () => {
    const server = await startServer({ REALTIME_POLLING: 'false' })
    try {
      const token = await adminToken(server.url)
      expect((await connect(server.url, ECHO, token)).connected).toBe(true)
      const error = await refusal(server.url, ECHO, token, { transports: ['polling'] })
      expect(error.message).not.toBe('unauthorized') // the transport itself is refused
      const res = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`)
      expect(res.status).toBe(400)
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('POLLING_DISABLED')
    } finally {
      closeAll()
      await server.stop()
    }
  })

  test('in one process, emits nobody can receive are not kept, and those kept for recovery are bounded by REALTIME_STREAM_MAXLEN', async () => {
    // The in-memory adapter, whatever the variant: with Redis the stream's MAXLEN bounds recovery.
    const server = await startServer({ REDIS_URL: '', REALTIME_STREAM_MAXLEN: '1000', REALTIME_EVENTS_PER_SECOND: '100000' })
    const series = async (name: string) => {
      const text = await (await fetch(`${server.url}/metrics`)).text()
      const line = text.split('\n').find((l) => l.startsWith(`${name}{namespace="/echo"} `))
      expect(line).toBeDefined()
      return Number(line!.split(' ')[1])
    }
    const kept = () => series('realtime_recovery_packets')
    const emit = async (sender: Client, r: string, from: number, count: number) => {
      for (let n = from; n < from + count; n++) expect(await sender.emitWithAck('room:emit', { room: r, n })).toEqual({ ok: true })
    }
    try {
      const admin = await adminToken(server.url)
      const sender = await connect(server.url, ECHO, admin)
      await waitFor(sender, 'welcome')
      const before = await kept()

      // A room nobody is in, and no session waiting to be recovered: nothing to keep.
      await emit(sender, room(), 0, 300)
      expect(await kept()).toBe(before)

      // A room with a client: every emit reaches it, and at most 1,000 (plus a tenth) are kept.
      const r = room()
      const watcher = await connect(server.url, ECHO, admin)
      await waitFor(watcher, 'welcome')
      expect(await watcher.emitWithAck('room:join', { room: r })).toEqual({ ok: true })
      await emit(sender, r, 0, 1_500)
      await waitFor(watcher, 'room:message', 1_500)
      expect(watcher.received('room:message').map((m: { n: number }) => m.n)).toEqual([...Array(1_500).keys()])
      const bounded = await kept()
      expect(bounded).toBeGreaterThanOrEqual(1_000)
      expect(bounded).toBeLessThanOrEqual(1_100)

      // Away while more than that was emitted: its last packet is gone, so it starts a new session
      // (no rooms: the next emit to the room does not reach it) instead of a replay with a gap.
      watcher.io.engine.close()
      await eventually(async () => (await series('realtime_connected_sockets')) === 1)
      await emit(sender, r, 1_500, 1_200)
      await eventually(async () => watcher.connected)
      expect(watcher.recovered).toBe(false)
      await emit(sender, r, 2_700, 1)
      await Bun.sleep(100)
      expect(watcher.received('room:message')).toHaveLength(1_500)
    } finally {
      closeAll()
      await server.stop()
    }
  }, 60_000)

  test('two plugins registering one namespace stop start-up, naming both', async () => {
    const store = isolatedStore()
    const env = baseEnv({ ...store.env, PLUGINS_DIR: `${ROOT}/tests/fixtures/plugins,${ROOT}/tests/fixtures/realtime-clash`, PLUGINS: 'echo,clash' })
    try {
      await expect(Kernel.start({ env })).rejects.toThrow('plugin clash registers realtime namespace /echo, which plugin echo already registered')
    } finally {
      await store.cleanup()
    }
  })
})

describe.skipIf(!services.redisUrl)(`Socket.IO across two servers sharing Redis (${variant})`, () => {
  let a: TestServer
  let b: TestServer

  beforeAll(async () => {
    a = await startServer()
    b = await startServer({ REDIS_PREFIX: a.env.REDIS_PREFIX, REALTIME_REVOCATION_SWEEP_SECONDS: '1' }) // one deployment: same Redis, same prefix
  })
  afterAll(async () => {
    closeAll()
    await b?.stop()
    await a?.stop()
  })

  test('a room emit made on one server reaches the room on the other', async () => {
    const r = room()
    const onA = await connect(a.url, ECHO, await adminToken(a.url))
    const onB = await connect(b.url, ECHO, await adminToken(b.url))
    await onA.emitWithAck('room:join', { room: r })
    await onB.emitWithAck('room:emit', { room: r, n: 1 })
    expect(await waitFor(onA, 'room:message')).toEqual([{ n: 1 }])
  })

  test('a broadcast from a socket on one server reaches the others in the room on both, never the sender', async () => {
    const r = room()
    const token = await adminToken(a.url)
    const [sender, sameServer] = [await connect(a.url, ECHO, token), await connect(a.url, ECHO, token)]
    const otherServer = await connect(b.url, ECHO, token)
    for (const c of [sender, sameServer, otherServer]) await c.emitWithAck('room:join', { room: r })
    await sender.emitWithAck('room:broadcast', { room: r, n: 2 })
    expect(await waitFor(sameServer, 'room:message')).toHaveLength(1)
    expect(await waitFor(otherServer, 'room:message')).toHaveLength(1)
    await Bun.sleep(150)
    expect(sender.received('room:message')).toEqual([])
  })

  test('a client of a server that shuts down reconnects to another and recovers there: rooms kept, missed emit once', async () => {
    const leaving = await startServer({ REDIS_PREFIX: a.env.REDIS_PREFIX })
    const r = room()
    const token = await adminToken(a.url)
    const watcher = await connect(leaving.url, ECHO, token, { reconnectionDelay: 1_000, reconnectionDelayMax: 1_000 })
    // Its offset, from which it recovers on the other server: without an event received it has none.
    await waitFor(watcher, 'welcome')
    await watcher.emitWithAck('room:join', { room: r })
    const id = watcher.id
    ;(watcher.io as unknown as { uri: string }).uri = a.url // what a load balancer does once the leaving server is no longer ready

    await leaving.stop()
    const sender = await connect(b.url, ECHO, token)
    await sender.emitWithAck('room:emit', { room: r, n: 9 }) // while the watcher is between servers

    await eventually(async () => watcher.connected)
    expect(watcher.recovered).toBe(true)
    expect(watcher.id).toBe(id)
    expect(await waitFor(watcher, 'room:message')).toEqual([{ n: 9 }])
    await sender.emitWithAck('room:emit', { room: r, n: 10 })
    await waitFor(watcher, 'room:message', 2)
    await Bun.sleep(150)
    expect(watcher.received('room:message')).toEqual([{ n: 9 }, { n: 10 }])
  })

  test("a token revoked on one server is refused by the other, whose open connection of that user is closed by its sweep", async () => {
    const admin = await adminToken(a.url)
    const user = await userWithRole(a.url, 'customer', admin)
    const open = await connect(b.url, ECHO, user.token)
    expect(open.connected).toBe(true)
    expect((await client(a.url).patch(`/api/v1/auth/users/${user.id}`, { disabled: true }, admin)).status).toBe(200)
    expect((await refusal(b.url, ECHO, user.token)).data?.code).toBe('TOKEN_REVOKED')
    await eventually(async () => !open.connected, 3_000) // b sweeps every second here
    expect(open.connected).toBe(false)
  })
})
