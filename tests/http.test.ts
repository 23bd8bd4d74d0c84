/**
 * The HTTP conventions of CONTRACT.md section 2, at the kernel's edge, over real HTTP against real
 * servers: request ids, the error envelope and its statuses (400, 404, 413, 415, 422, 429), rate
 * limits, Idempotency-Key, health, metrics, the OpenAPI document, CORS and security headers.
 *
 * Not covered here: /api answering 503 before the server is ready or once stopping began (the
 * window is too short to hit reliably from outside).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { connect } from 'node:net'
import {
  chunked,
  type Reply,
  type TestServer,
  adminToken,
  baseEnv,
  call,
  client,
  eventually,
  isolatedStore,
  spawnServer,
  startServer,
} from './harness'

const BODY_LIMIT = 1024
const SANE_ID = /^[\w.:-]{1,128}$/
const ENTRIES = '/api/v1/ledger/entries'

let s: TestServer
let api: ReturnType<typeof client>
let admin: string

beforeAll(async () => {
  s = await startServer({ BODY_LIMIT_BYTES: String(BODY_LIMIT) })
  api = client(s.url)
  admin = await adminToken(s.url)
})
afterAll(() => s.stop())

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/** The error envelope of CONTRACT.md section 2, with the response's own x-request-id. */
function expectError(r: Reply, status: number, code?: string) {
  expect(r.status, JSON.stringify(r.body)).toBe(status)
  expect(r.headers.get('content-type') ?? '').toContain('application/json')
  expect(r.body).toEqual({
    error: expect.objectContaining({ code: code ?? expect.any(String), message: expect.any(String), requestId: expect.any(String) }),
  })
  expect(r.body.error.message.length).toBeGreaterThan(0)
  expect(r.body.error.requestId).toBe(r.headers.get('x-request-id') ?? '')
}

const uid = () => crypto.randomUUID().replace(/-/g, '').slice(0, 12)
const entries = async (url = s.url): Promise<{ id: string; note: string }[]> => (await client(url).get(ENTRIES)).body
const postEntry = (body: unknown, headers: Record<string, string> = {}, token?: string) => call(s.url, 'POST', ENTRIES, { body, headers, token })

/** Runs `refuse` and checks that no ledger entry was created meanwhile. */
async function createsNothing(refuse: () => Promise<void>) {
  const before = (await entries()).length
  await refuse()
  expect((await entries()).length).toBe(before)
}

async function postChunked(path: string, text: string, headers: Record<string, string> = {}): Promise<Reply> {
  const res = await fetch(s.url + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: chunked(text),
    duplex: 'half',
  } as RequestInit)
  const raw = await res.text()
  return { status: res.status, body: raw ? JSON.parse(raw) : undefined, headers: res.headers }
}

/** A JSON object of exactly `bytes` bytes: a note plus padding. */
const jsonOfSize = (bytes: number, note = 'sized') => {
  const shell = JSON.stringify({ note, pad: '' })
  return JSON.stringify({ note, pad: 'p'.repeat(bytes - shell.length) })
}

/** One HTTP/1.1 exchange over a raw socket, for what fetch refuses to send. */
function rawExchange(url: string, head: string): Promise<string> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve) => {
    let out = ''
    const socket = connect(Number(port), hostname, () => socket.write(head))
    const done = () => {
      socket.destroy()
      resolve(out)
    }
    socket.on('data', (d) => (out += d.toString('latin1')))
    socket.on('end', done)
    socket.on('error', done)
    setTimeout(done, 2_000).unref()
  })
}

/** Prometheus text → samples. */
function samples(text: string) {
  return text
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(l)
      if (!m) throw new Error(`not Prometheus text: ${l}`)
      const labels: Record<string, string> = {}
      for (const [, k, v] of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v
      return { name: m[1], labels, value: Number(m[3]) }
    })
}

async function metricsText(url = s.url) {
  const res = await fetch(`${url}/metrics`)
  expect(res.status).toBe(200)
  return { contentType: res.headers.get('content-type') ?? '', text: await res.text() }
}

const requestCount = (text: string, labels: Record<string, string>) =>
  samples(text)
    .filter((x) => x.name === 'http_requests_total' && Object.entries(labels).every(([k, v]) => x.labels[k] === v))
    .reduce((sum, x) => sum + x.value, 0)

// ---------------------------------------------------------------------------
// x-request-id
// ---------------------------------------------------------------------------

describe('x-request-id', () => {
  for (const id of ['req-123', crypto.randomUUID(), 'trace.01J9ZQ:span_7', 'x'.repeat(128)])
    test(`a sane id from the client (${id.length > 40 ? `${id.length} characters` : id}) is echoed`, async () => {
      for (const path of ['/health/live', ENTRIES]) {
        const r = await api.get(path, undefined, { 'x-request-id': id })
        expect(r.status).toBe(200)
        expect(r.headers.get('x-request-id')).toBe(id)
      }
    })

  test("the client's id is echoed on errors and 404s, and is the envelope's requestId", async () => {
    const id = `client-${uid()}`
    const refused = [
      await api.get(`/api/v1/no-such-plugin/${uid()}`, undefined, { 'x-request-id': id }),
      await call(s.url, 'POST', ENTRIES, { body: '{"note": ', headers: { 'x-request-id': id } }),
      await call(s.url, 'POST', ENTRIES, { body: { note: 1 }, headers: { 'x-request-id': id } }),
      await api.get('/api/v1/auth/me', undefined, { 'x-request-id': id }),
    ]
    expect(refused.map((r) => r.status)).toEqual([404, 400, 422, 401])
    for (const r of refused) {
      expect(r.headers.get('x-request-id')).toBe(id)
      expect(r.body.error.requestId).toBe(id)
    }
  })

  test('without one, every response gets a generated id, unique per request, errors and 404s included', async () => {
    const replies = [
      await api.get('/health/live'),
      await api.get(ENTRIES),
      await api.get(`/no/such/route/${uid()}`),
      await api.get(`/api/v1/no-such-plugin/${uid()}`),
      await call(s.url, 'POST', ENTRIES, { body: '{"note": ' }),
      await call(s.url, 'POST', ENTRIES, { body: 'note=x', headers: { 'content-type': 'text/plain' } }),
      await api.get('/swagger/json'),
    ]
    const ids = replies.map((r) => r.headers.get('x-request-id') ?? '')
    for (const id of ids) expect(id).toMatch(SANE_ID)
    expect(new Set(ids).size).toBe(ids.length)
    for (const r of replies.filter((x) => x.status >= 400)) expect(r.body.error.requestId).toBe(r.headers.get('x-request-id') ?? '')
    const metrics = await fetch(`${s.url}/metrics`)
    expect(metrics.headers.get('x-request-id') ?? '').toMatch(SANE_ID)
  })

  const hostile: [string, string][] = [
    ['too long (129 characters)', 'x'.repeat(129)],
    ['with spaces', 'has some spaces'],
    ['with a tab', 'tab\there'],
    ['markup', '<script>alert(1)</script>'],
    ['a path', '../../etc/passwd'],
    ['a header list', 'one,two'],
  ]
  for (const [what, id] of hostile)
    test(`a hostile id (${what}) is replaced by a generated one, also in the envelope`, async () => {
      const ok = await api.get('/health/live', undefined, { 'x-request-id': id })
      const refused = await api.get(`/api/v1/no-such-plugin/${uid()}`, undefined, { 'x-request-id': id })
      for (const r of [ok, refused]) {
        const echoed = r.headers.get('x-request-id') ?? ''
        expect(echoed).toMatch(SANE_ID)
        expect(echoed).not.toBe(id)
      }
      expectError(refused, 404, 'NOT_FOUND')
    })

  for (const [what, id] of [
    ['a bare line feed', 'ab\ncd'],
    ['a bare carriage return', 'ab\rcd'],
    ['a folded line', 'ab\r\n cd'],
  ])
    test(`an id with ${what} never comes back: the HTTP parser refuses the request, or the id is replaced`, async () => {
      const response = await rawExchange(s.url, `GET /health/live HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: ${id}\r\nConnection: close\r\n\r\n`)
      const [statusLine, ...headerLines] = response.split('\r\n\r\n')[0].split('\r\n')
      expect(statusLine).toMatch(/^HTTP\/1\.1 [1-4]\d\d /)
      for (const line of headerLines) expect(line).toMatch(/^[\w-]+: [^\r\n]*$/)
      const echoed = headerLines.find((l) => l.toLowerCase().startsWith('x-request-id:'))?.slice('x-request-id:'.length).trim()
      if (echoed !== undefined) {
        expect(echoed).toMatch(SANE_ID)
        expect(echoed).not.toContain('cd')
      }
    })

  test('the id appears in the request log line', async () => {
    const store = isolatedStore()
    const child = await spawnServer(baseEnv(store.env))
    try {
      const id = `log-probe-${uid()}`
      expect((await client(child.url).get(ENTRIES, undefined, { 'x-request-id': id })).status).toBe(200)
      const line = await eventually(async () => child.output().split('\n').find((l) => l.includes(id)), 5_000)
      expect(line).toBeDefined()
      expect(JSON.parse(line as string)).toMatchObject({ reqId: id, method: 'GET', route: ENTRIES, status: 200 })
    } finally {
      child.proc.kill()
      await child.proc.exited
      await store.cleanup()
    }
  })
})

// ---------------------------------------------------------------------------
// Refusals: the envelope and its statuses; nothing is created by a refused request
// ---------------------------------------------------------------------------

describe('refused requests', () => {
  for (const [method, path] of [
    ['GET', `/api/v1/no-such-plugin/things`],
    ['POST', '/api/v1/auth/no-such-route'],
    ['DELETE', ENTRIES],
    ['GET', '/no/such/page'],
  ])
    test(`an unknown route (${method} ${path}) → 404 NOT_FOUND envelope`, async () => {
      expectError(await call(s.url, method, path), 404, 'NOT_FOUND')
    })

  for (const text of ['{"note": ', '{note: "x"}', "{'note': 'x'}", '{"note": "x"} trailing', '{"note": "x",}'])
    test(`malformed JSON ${JSON.stringify(text)} → 400 MALFORMED_JSON, nothing created`, async () => {
      await createsNothing(async () => expectError(await postEntry(text), 400, 'MALFORMED_JSON'))
    })

  test('a NUL character in a JSON string (\\u0000) → 400 NUL_CHARACTER on every database, nothing created', async () => {
    await createsNothing(async () => {
      expectError(await postEntry('{"note": "a\\u0000b"}'), 400, 'NUL_CHARACTER')
      expectError(await postEntry('{"note": "\\\\\\u0000"}'), 400, 'NUL_CHARACTER') // an escaped backslash, then the NUL escape
    })
    // An escaped backslash followed by the text u0000 is no NUL.
    const r = await postEntry('{"note": "\\\\u0000"}')
    expect(r.status).toBeLessThan(300)
  })

  test('a NUL character in the URL (%00) → 400 NUL_CHARACTER, in a path or a query', async () => {
    expectError(await call(s.url, 'GET', '/api/v1/inventory/items/%00'), 400, 'NUL_CHARACTER')
    expectError(await call(s.url, 'GET', `${ENTRIES}?note=a%00`), 400, 'NUL_CHARACTER')
  })

  test(`a body over BODY_LIMIT_BYTES (${BODY_LIMIT}) with a Content-Length → 413 PAYLOAD_TOO_LARGE, nothing created`, async () => {
    await createsNothing(async () => {
      const r = await postEntry(jsonOfSize(BODY_LIMIT + 1))
      expectError(r, 413, 'PAYLOAD_TOO_LARGE')
      const huge = await postEntry(jsonOfSize(BODY_LIMIT * 50))
      expectError(huge, 413, 'PAYLOAD_TOO_LARGE')
    })
  })

  test('a body over BODY_LIMIT_BYTES sent chunked, without a Content-Length → 413 PAYLOAD_TOO_LARGE, nothing created', async () => {
    await createsNothing(async () => {
      expectError(await postChunked(ENTRIES, jsonOfSize(BODY_LIMIT + 1)), 413, 'PAYLOAD_TOO_LARGE')
      expectError(await postChunked(ENTRIES, jsonOfSize(BODY_LIMIT * 50)), 413, 'PAYLOAD_TOO_LARGE')
    })
  })

  test('a body of exactly BODY_LIMIT_BYTES is accepted, with a Content-Length and chunked', async () => {
    const note = `at-limit-${uid()}`
    expect((await postEntry(jsonOfSize(BODY_LIMIT, note))).status).toBe(201)
    expect((await postChunked(ENTRIES, jsonOfSize(BODY_LIMIT, note))).status).toBe(201)
    expect((await entries()).filter((e) => e.note === note)).toHaveLength(2)
  })

  for (const [type, body] of [
    ['text/plain', '{"note":"x"}'],
    ['application/x-www-form-urlencoded', 'note=x'],
    ['multipart/form-data; boundary=zz', '--zz\r\nContent-Disposition: form-data; name="note"\r\n\r\nx\r\n--zz--\r\n'],
    ['application/xml', '<note>x</note>'],
  ])
    test(`content type ${type.split(';')[0]} → 415 UNSUPPORTED_MEDIA_TYPE, nothing created`, async () => {
      await createsNothing(async () => expectError(await postEntry(body, { 'content-type': type }), 415, 'UNSUPPORTED_MEDIA_TYPE'))
    })

  test('application/json with a charset, and +json types, are JSON', async () => {
    expect((await postEntry({ note: `charset-${uid()}` }, { 'content-type': 'application/json; charset=utf-8' })).status).toBe(201)
    expect((await postEntry({ note: `plus-json-${uid()}` }, { 'content-type': 'application/vnd.tessera+json' })).status).toBe(201)
  })

  const wrongTypes: [string, unknown, string][] = [
    ['a number for a string', { note: 123 }, '/note'],
    ['a string for an integer', { note: 'x', pauseMs: 'soon' }, '/pauseMs'],
    ['a string for a boolean', { note: 'x', failAfterAwait: 'yes' }, '/failAfterAwait'],
    ['a missing required property', { pauseMs: 1 }, '/note'],
  ]
  for (const [what, body, path] of wrongTypes)
    test(`valid JSON with ${what} → 422 VALIDATION_FAILED with details[].path ${path}, nothing created`, async () => {
      await createsNothing(async () => {
        const r = await postEntry(body)
        expectError(r, 422, 'VALIDATION_FAILED')
        expect(r.body.error.details).toContainEqual({ path, message: expect.any(String) })
      })
    })

  test('422 details name the offending path in bodies of guarded routes and in query strings too', async () => {
    const patch = await api.patch(`/api/v1/auth/users/${uid()}`, { disabled: 'yes' }, admin)
    expectError(patch, 422, 'VALIDATION_FAILED')
    expect(patch.body.error.details.map((d: { path: string }) => d.path)).toContain('/disabled')
    const query = await api.get('/api/v1/auth/users?limit=many', admin)
    expectError(query, 422, 'VALIDATION_FAILED')
    expect(query.body.error.details.map((d: { path: string }) => d.path)).toContain('/limit')
  })

  test('no refused registration creates an account: the email stays free', async () => {
    const email = `refused-${uid()}@tessera.test`
    const valid = { email, password: 'correct-horse-1', name: 'Refused' }
    const register = (body: unknown, headers: Record<string, string> = {}) => call(s.url, 'POST', '/api/v1/auth/register', { body, headers })
    expectError(await register(JSON.stringify(valid).slice(0, -1)), 400, 'MALFORMED_JSON')
    expectError(await register({ ...valid, name: 'n'.repeat(BODY_LIMIT) }), 413, 'PAYLOAD_TOO_LARGE')
    expectError(await register(JSON.stringify(valid), { 'content-type': 'text/plain' }), 415, 'UNSUPPORTED_MEDIA_TYPE')
    expectError(await register({ ...valid, name: 42 }), 422, 'VALIDATION_FAILED')
    expectError(await register(valid, { 'idempotency-key': 'k'.repeat(256) }), 422, 'INVALID_IDEMPOTENCY_KEY')
    const users = await api.get('/api/v1/auth/users?limit=200', admin)
    expect(users.body.items.map((u: { email: string }) => u.email)).not.toContain(email)
    expect((await register(valid)).status).toBe(201)
  })
})

// ---------------------------------------------------------------------------
// Rate limits
// ---------------------------------------------------------------------------

describe('rate limit per client IP (RATE_LIMIT_IP_PER_MIN=5)', () => {
  let limited: TestServer
  beforeAll(async () => {
    limited = await startServer({ RATE_LIMIT_IP_PER_MIN: '5' })
  })
  afterAll(() => limited.stop())

  test('the 6th /api request within the minute → 429 RATE_LIMITED with an integer Retry-After', async () => {
    const lapi = client(limited.url)
    for (let i = 0; i < 5; i++) expect((await lapi.get(ENTRIES)).status).toBe(200)
    const r = await lapi.get(ENTRIES)
    expectError(r, 429, 'RATE_LIMITED')
    const retryAfter = r.headers.get('retry-after') ?? ''
    expect(retryAfter).toMatch(/^\d+$/)
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1)
    expect(Number(retryAfter)).toBeLessThanOrEqual(60)
    // Every /api route counts, unknown ones included.
    expectError(await lapi.get('/api/v1/auth/me'), 429, 'RATE_LIMITED')
    expectError(await lapi.get(`/api/v1/no-such-plugin/${uid()}`), 429, 'RATE_LIMITED')
  })

  test('refused tokens on a guarded route are counted against the IP; a bogus token is no way around the limit', async () => {
    const other = await startServer({ RATE_LIMIT_IP_PER_MIN: '5' })
    try {
      const oapi = client(other.url)
      for (let i = 0; i < 5; i++) expectError(await oapi.get('/api/v1/auth/me', 'not-a-token'), 401, 'INVALID_TOKEN')
      expectError(await oapi.get('/api/v1/auth/me', 'not-a-token'), 429, 'RATE_LIMITED')
      // A public route with an Authorization header is still limited by IP.
      expectError(await oapi.post('/api/v1/auth/login', { email: 'x@y.z', password: 'whatever1' }, 'not-a-token'), 429, 'RATE_LIMITED')
    } finally {
      await other.stop()
    }
  })

  test('/health/* and /metrics are not limited', async () => {
    const lapi = client(limited.url)
    expect((await lapi.get(ENTRIES)).status).toBe(429)
    for (let i = 0; i < 8; i++)
      for (const path of ['/health/live', '/health/ready', '/health/startup', '/metrics']) expect((await lapi.get(path)).status).toBe(200)
  })
})

describe('rate limit per signed-in user (RATE_LIMIT_USER_PER_MIN=3)', () => {
  let limited: TestServer
  beforeAll(async () => {
    limited = await startServer({ RATE_LIMIT_USER_PER_MIN: '3', RATE_LIMIT_IP_PER_MIN: '10000' })
  })
  afterAll(() => limited.stop())

  test('a signed-in user gets 429 with Retry-After on guarded routes once their budget is spent; others are unaffected', async () => {
    const lapi = client(limited.url)
    const token = await adminToken(limited.url)
    for (let i = 0; i < 3; i++) expect((await lapi.get('/api/v1/auth/me', token)).status).toBe(200)
    const r = await lapi.get('/api/v1/auth/me', token)
    expectError(r, 429, 'RATE_LIMITED')
    expect(r.headers.get('retry-after') ?? '').toMatch(/^\d+$/)
    expectError(await lapi.get('/api/v1/auth/users', token), 429, 'RATE_LIMITED')
    // Unguarded routes still answer that user; another user has a budget of their own.
    expect((await lapi.get(ENTRIES, token)).status).toBe(200)
    const other = await lapi.post('/api/v1/auth/register', { email: `other-${uid()}@tessera.test`, password: 'correct-horse-1', name: 'Other' })
    expect(other.status).toBe(201)
    expect((await lapi.get('/api/v1/auth/me', other.body.accessToken)).status).toBe(200)
  })
})

// ---------------------------------------------------------------------------
// Idempotency-Key (POST /api/v1/ledger/entries is a creating route)
// ---------------------------------------------------------------------------

describe('Idempotency-Key on a creating POST', () => {
  test('without a key, every POST creates, answering 201', async () => {
    const note = `plain-${uid()}`
    const [a, b] = [await postEntry({ note }), await postEntry({ note })]
    expect([a.status, b.status]).toEqual([201, 201])
    expect(a.body.id).not.toBe(b.body.id)
    expect(a.headers.get('idempotent-replayed')).toBeNull()
    expect((await entries()).filter((e) => e.note === note)).toHaveLength(2)
  })

  test('the same key and body → the first 201 body again, marked idempotent-replayed: true; one entry', async () => {
    const key = `key-${uid()}`
    const note = `replayed-${uid()}`
    const first = await postEntry({ note }, { 'idempotency-key': key })
    expect(first.status).toBe(201)
    expect(first.headers.get('idempotent-replayed')).toBeNull()
    for (let i = 0; i < 2; i++) {
      const again = await postEntry({ note }, { 'idempotency-key': key })
      expect(again.status).toBe(201)
      expect(again.body).toEqual(first.body)
      expect(again.headers.get('idempotent-replayed')).toBe('true')
    }
    expect((await entries()).filter((e) => e.note === note)).toEqual([{ id: first.body.id, note }])
  })

  test('the same key with another body → 422 IDEMPOTENCY_KEY_REUSED; nothing more is created', async () => {
    const key = `key-${uid()}`
    const note = `reused-${uid()}`
    expect((await postEntry({ note }, { 'idempotency-key': key })).status).toBe(201)
    await createsNothing(async () => expectError(await postEntry({ note: `${note}-other` }, { 'idempotency-key': key }), 422, 'IDEMPOTENCY_KEY_REUSED'))
    expect((await postEntry({ note }, { 'idempotency-key': key })).headers.get('idempotent-replayed')).toBe('true')
  })

  test('two concurrent requests with one key create exactly one entry; the loser is told so (409) and a retry replays', async () => {
    const key = `key-${uid()}`
    const note = `concurrent-${uid()}`
    const both = await Promise.all([0, 1].map(() => postEntry({ note, pauseMs: 300 }, { 'idempotency-key': key })))
    const created = both.filter((r) => r.status === 201)
    expect(created.length).toBeGreaterThanOrEqual(1)
    for (const r of both.filter((x) => x.status !== 201)) expectError(r, 409, 'IDEMPOTENCY_IN_PROGRESS')
    for (const r of created) expect(r.body).toEqual(created[0].body)
    expect((await entries()).filter((e) => e.note === note)).toHaveLength(1)
    const retry = await postEntry({ note, pauseMs: 300 }, { 'idempotency-key': key })
    expect(retry.status).toBe(201)
    expect(retry.body).toEqual(created[0].body)
    expect(retry.headers.get('idempotent-replayed')).toBe('true')
  })

  test('a request that failed frees its key: the retry runs again instead of being refused or replayed', async () => {
    const key = `key-${uid()}`
    const failing = { note: `failing-${uid()}`, failAfterAwait: true }
    expectError(await postEntry(failing, { 'idempotency-key': key }), 409, 'TOLD_TO_FAIL')
    // The same request again really runs again (and fails again), rather than IDEMPOTENCY_IN_PROGRESS.
    expectError(await postEntry(failing, { 'idempotency-key': key }), 409, 'TOLD_TO_FAIL')
    expect((await entries()).filter((e) => e.note === failing.note)).toHaveLength(0)
    // Nothing was remembered for the key, so a corrected retry with it succeeds and is then replayed.
    const corrected = { note: failing.note }
    const ok = await postEntry(corrected, { 'idempotency-key': key })
    expect(ok.status).toBe(201)
    const replay = await postEntry(corrected, { 'idempotency-key': key })
    expect(replay.body).toEqual(ok.body)
    expect(replay.headers.get('idempotent-replayed')).toBe('true')
    expect((await entries()).filter((e) => e.note === failing.note)).toHaveLength(1)
  })

  for (const [what, key] of [
    ['too long (256 characters)', 'k'.repeat(256)],
    ['with a space', 'two words'],
    ['empty', ''],
  ])
    test(`an invalid key (${what}) → 422 INVALID_IDEMPOTENCY_KEY, nothing created`, async () => {
      await createsNothing(async () => expectError(await postEntry({ note: `bad-key-${uid()}` }, { 'idempotency-key': key }), 422, 'INVALID_IDEMPOTENCY_KEY'))
    })

  test('a key of 255 visible ASCII characters is accepted', async () => {
    const key = `${uid()}!~#{}`.padEnd(255, 'k')
    const note = `long-key-${uid()}`
    expect((await postEntry({ note }, { 'idempotency-key': key })).status).toBe(201)
    expect((await postEntry({ note }, { 'idempotency-key': key })).headers.get('idempotent-replayed')).toBe('true')
  })

  test('keys belong to one caller: the same key and body from another caller creates its own entry', async () => {
    const key = `key-${uid()}`
    const note = `per-caller-${uid()}`
    const anonymous = await postEntry({ note }, { 'idempotency-key': key })
    const asAdmin = await postEntry({ note }, { 'idempotency-key': key }, admin)
    expect([anonymous.status, asAdmin.status]).toEqual([201, 201])
    expect(asAdmin.body.id).not.toBe(anonymous.body.id)
    expect(asAdmin.headers.get('idempotent-replayed')).toBeNull()
    expect((await entries()).filter((e) => e.note === note)).toHaveLength(2)
  })
})

// ---------------------------------------------------------------------------
// Health
// ---------------------------------------------------------------------------

describe('health', () => {
  test('GET /health/live → 200: the process is up', async () => {
    const r = await api.get('/health/live')
    expect(r.status).toBe(200)
    expect(r.body).toEqual({ status: 'up' })
  })

  test('GET /health/ready → 200 with a plugins map in which auth and ledger (and their dependencies) are up', async () => {
    const r = await api.get('/health/ready')
    expect(r.status).toBe(200)
    expect(r.body.status).toBe('ready')
    for (const name of ['auth', 'ledger', 'database', 'cache']) expect(r.body.plugins[name]).toMatchObject({ status: 'up' })
  })

  test('GET /health/startup → 200 once start-up has finished', async () => {
    const r = await api.get('/health/startup')
    expect(r.status).toBe(200)
    expect(r.body).toEqual({ status: 'started' })
  })
})

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

describe('metrics', () => {
  test('GET /metrics is Prometheus text: requests and latency by method, route TEMPLATE and status', async () => {
    const user = await api.post('/api/v1/auth/register', { email: `metrics-${uid()}@tessera.test`, password: 'correct-horse-1', name: 'Metrics' })
    expect(user.status).toBe(201)
    const id: string = user.body.user.id
    expect((await api.patch(`/api/v1/auth/users/${id}`, { roles: ['agent'] }, admin)).status).toBe(200)
    expect((await api.patch(`/api/v1/auth/users/unknown-${uid()}`, { roles: ['agent'] }, admin)).status).toBe(404)

    const { contentType, text } = await metricsText()
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/)
    expect(text).toContain('# TYPE http_requests_total counter')
    expect(text).toContain('# TYPE http_request_duration_seconds histogram')
    const route = '/api/v1/auth/users/:id'
    expect(requestCount(text, { method: 'PATCH', route, status: '200' })).toBeGreaterThanOrEqual(1)
    expect(requestCount(text, { method: 'PATCH', route, status: '404' })).toBeGreaterThanOrEqual(1)
    const buckets = samples(text).filter((x) => x.name === 'http_request_duration_seconds_bucket' && x.labels.route === route && x.labels.status === '200')
    expect(buckets.length).toBeGreaterThan(1)
    expect(buckets.find((b) => b.labels.le === '+Inf')?.value).toBeGreaterThanOrEqual(1)
    expect(text).toMatch(/^http_request_duration_seconds_count\{[^}]*route="\/api\/v1\/auth\/users\/:id"/m)
    // The concrete id is never a label value.
    expect(text).not.toContain(id)
  })

  test('unknown routes are all labelled route="unmatched": no series per path', async () => {
    const before = requestCount((await metricsText()).text, { method: 'GET', route: 'unmatched', status: '404' })
    const junk = Array.from({ length: 5 }, () => uid())
    for (const [i, j] of junk.entries()) expect((await api.get(i % 2 ? `/api/v1/${j}/x` : `/nowhere/${j}`)).status).toBe(404)
    const { text } = await metricsText()
    expect(requestCount(text, { method: 'GET', route: 'unmatched', status: '404' }) - before).toBe(5)
    for (const j of junk) expect(text).not.toContain(j)
  })

  test('process metrics are there, but not the per-heap-space ones (in Bun they walk the whole heap on every scrape)', async () => {
    const { text } = await metricsText()
    for (const name of ['tessera_process_cpu_seconds_total', 'tessera_process_resident_memory_bytes', 'tessera_nodejs_heap_size_used_bytes', 'tessera_nodejs_eventloop_lag_seconds'])
      expect(text).toContain(`# TYPE ${name} `)
    expect(text).not.toContain('nodejs_heap_space_size')
  })
})

// ---------------------------------------------------------------------------
// OpenAPI
// ---------------------------------------------------------------------------

describe('swagger', () => {
  const AUTH_ROUTES = [
    'post /api/v1/auth/register',
    'post /api/v1/auth/login',
    'post /api/v1/auth/refresh',
    'post /api/v1/auth/logout',
    'get /api/v1/auth/me',
    'get /api/v1/auth/users',
    'patch /api/v1/auth/users/{id}',
    'get /api/v1/auth/audit',
  ]
  const GUARDED = [
    'get /api/v1/auth/me',
    'get /api/v1/auth/users',
    'patch /api/v1/auth/users/{id}',
    'get /api/v1/auth/audit',
    'get /api/v1/events/dead-letters',
    'get /api/v1/events/dead-letters/{id}',
    'post /api/v1/events/dead-letters/{id}/replay',
  ]
  const UNGUARDED = [
    'post /api/v1/auth/register',
    'post /api/v1/auth/login',
    'post /api/v1/auth/refresh',
    'post /api/v1/auth/logout',
    'post /api/v1/ledger/entries',
    'get /api/v1/ledger/entries',
    'get /health/live',
    'get /health/ready',
    'get /health/startup',
    'get /metrics',
  ]
  const CREATING = ['post /api/v1/auth/register', 'post /api/v1/ledger/entries']
  const NOT_CREATING = ['post /api/v1/auth/login', 'post /api/v1/auth/refresh', 'post /api/v1/auth/logout', 'post /api/v1/events/dead-letters/{id}/replay']

  let doc: any
  const op = (key: string) => {
    const [method, path] = key.split(' ')
    return doc.paths[path]?.[method]
  }
  beforeAll(async () => {
    doc = (await api.get('/swagger/json')).body
  })

  test('GET /swagger answers the Swagger UI page (HTML)', async () => {
    const res = await fetch(`${s.url}/swagger`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toContain('text/html')
    expect((await res.text()).toLowerCase()).toContain('<html')
  })

  test('GET /swagger/json is an OpenAPI 3 document with every auth route of CONTRACT.md section 3', () => {
    expect(doc.openapi).toMatch(/^3\./)
    for (const key of AUTH_ROUTES) expect(op(key), key).toBeDefined()
  })

  test('tags per plugin: auth, ledger and events are declared, and every /api/v1/<plugin>/ operation carries its tag', () => {
    const declared = doc.tags.map((t: { name: string }) => t.name)
    for (const tag of ['auth', 'ledger', 'events']) expect(declared).toContain(tag)
    for (const [path, byMethod] of Object.entries<Record<string, { tags?: string[] }>>(doc.paths)) {
      const plugin = /^\/api\/v1\/([^/]+)\//.exec(path)?.[1]
      if (!plugin) continue
      for (const [method, operation] of Object.entries(byMethod)) expect(operation.tags, `${method} ${path}`).toEqual([plugin])
    }
  })

  test('the bearer security scheme is in components.securitySchemes', () => {
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' })
  })

  test('`security` is on guarded operations only', () => {
    for (const key of GUARDED) expect(op(key)?.security, key).toEqual([{ bearer: [] }])
    for (const key of UNGUARDED) {
      expect(op(key), key).toBeDefined()
      expect(op(key).security, key).toBeUndefined()
    }
  })

  test('POST (and PATCH) routes document their JSON request body schema', () => {
    const register = op('post /api/v1/auth/register').requestBody.content['application/json'].schema
    expect(register.type).toBe('object')
    expect([...register.required].sort()).toEqual(['email', 'name', 'password'])
    for (const key of ['post /api/v1/auth/login', 'post /api/v1/auth/refresh', 'post /api/v1/auth/logout', 'patch /api/v1/auth/users/{id}', 'post /api/v1/ledger/entries']) {
      const schema = op(key)?.requestBody?.content?.['application/json']?.schema
      expect(schema?.type, key).toBe('object')
      expect(Object.keys(schema?.properties ?? {}).length, key).toBeGreaterThan(0)
    }
    // JSON in: no other content type is offered (the server answers 415 to them).
    for (const [path, byMethod] of Object.entries<Record<string, { requestBody?: { content: object } }>>(doc.paths))
      for (const [method, operation] of Object.entries(byMethod))
        if (operation.requestBody) expect(Object.keys(operation.requestBody.content), `${method} ${path}`).toEqual(['application/json'])
  })

  test('creating POSTs document the Idempotency-Key header; other POSTs do not', () => {
    const idempotencyKey = (key: string) => (op(key)?.parameters ?? []).find((p: { in: string; name: string }) => p.in === 'header' && p.name.toLowerCase() === 'idempotency-key')
    for (const key of CREATING) expect(idempotencyKey(key), key).toMatchObject({ required: false, schema: { type: 'string' } })
    for (const key of NOT_CREATING) expect(idempotencyKey(key), key).toBeUndefined()
  })
})

// ---------------------------------------------------------------------------
// CORS and security headers
// ---------------------------------------------------------------------------

describe('CORS and security headers', () => {
  test('a preflight OPTIONS with an Origin gets the allow headers', async () => {
    const res = await fetch(`${s.url}/api/v1/auth/users/some-id`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://app.example',
        'access-control-request-method': 'PATCH',
        'access-control-request-headers': 'authorization, content-type, idempotency-key, x-request-id',
      },
    })
    expect(res.status).toBeGreaterThanOrEqual(200)
    expect(res.status).toBeLessThan(300)
    expect(['https://app.example', '*']).toContain(res.headers.get('access-control-allow-origin') ?? '')
    const methods = (res.headers.get('access-control-allow-methods') ?? '').toUpperCase()
    for (const m of ['GET', 'POST', 'PATCH', 'DELETE']) expect(methods).toContain(m)
    const allowed = (res.headers.get('access-control-allow-headers') ?? '').toLowerCase()
    for (const h of ['authorization', 'content-type', 'idempotency-key', 'x-request-id']) expect(allowed).toContain(h)
  })

  test('a cross-origin response lets the browser read x-request-id, retry-after and idempotent-replayed', async () => {
    const r = await api.get('/health/live', undefined, { origin: 'https://app.example' })
    expect(['https://app.example', '*']).toContain(r.headers.get('access-control-allow-origin') ?? '')
    const exposed = (r.headers.get('access-control-expose-headers') ?? '').toLowerCase()
    for (const h of ['x-request-id', 'retry-after', 'idempotent-replayed']) expect(exposed).toContain(h)
  })

  test('security headers on every kind of response: success, 404, refusal, metrics and docs', async () => {
    const replies = [
      await api.get('/health/live'),
      await api.get(ENTRIES),
      await api.get(`/api/v1/no-such-plugin/${uid()}`),
      await postEntry({ note: 1 }),
      await api.get('/api/v1/auth/me'),
    ]
    const metrics = await fetch(`${s.url}/metrics`)
    const docs = await fetch(`${s.url}/swagger`)
    for (const headers of [...replies.map((r) => r.headers), metrics.headers, docs.headers]) {
      expect(headers.get('x-content-type-options')).toBe('nosniff')
      expect(headers.get('x-frame-options')).toBe('DENY')
      expect(headers.get('referrer-policy')).toBe('no-referrer')
    }
    // API answers are never to be rendered as documents.
    for (const r of replies.slice(1)) expect(r.headers.get('content-security-policy')).toContain("default-src 'none'")
  })
})
