/**
 * The auth plugin from the outside (CONTRACT.md sections 2 and 3): real HTTP against real servers.
 * Each top-level block starts its own server, so throttles, rate limits and data never leak
 * between blocks. Runs on embedded defaults and, with TEST_DATABASE_URL / TEST_REDIS_URL, on
 * PostgreSQL + Redis.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { SignJWT } from 'jose'
import { ADMIN, JWT_SECRET, adminToken, call, client, startServer, userWithRole, type Reply, type TestServer, expectError, expectStatus } from './harness'

const AUTH = '/api/v1/auth'
const ROLES = ['admin', 'manager', 'agent', 'customer'] as const
type Role = (typeof ROLES)[number]
type Api = ReturnType<typeof client>

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

/** Starts one server for the enclosing describe block and stops it (dropping its data) afterwards. */
function serverFor(overrides: Record<string, string> = {}) {
  const ctx = {} as { server: TestServer; url: string; api: Api }
  beforeAll(async () => {
    ctx.server = await startServer(overrides)
    ctx.url = ctx.server.url
    ctx.api = client(ctx.url)
  })
  afterAll(async () => {
    await ctx.server?.stop()
  })
  return ctx
}

let seq = 0
const uniqueEmail = (tag: string) => `${tag}-${Date.now().toString(36)}-${seq++}@auth.test`
const PASSWORD = 'correct-horse-battery'

/** `user` = { id, email, name, roles, createdAt }; extensions are allowed, secrets are not. */
function expectUser(user: any, expected: { email?: string; name?: string; roles?: string[] } = {}) {
  if (typeof user !== 'object' || user === null) throw new Error(`expected a user, got ${JSON.stringify(user)}`)
  for (const key of ['id', 'email', 'name', 'createdAt']) expect(typeof user[key]).toBe('string')
  expect(user.id.length).toBeGreaterThan(0)
  expect(Array.isArray(user.roles)).toBe(true)
  for (const r of user.roles) expect(ROLES).toContain(r)
  expect(new Date(user.createdAt).toISOString()).toBe(user.createdAt)
  if (expected.email !== undefined) expect(user.email).toBe(expected.email)
  if (expected.name !== undefined) expect(user.name).toBe(expected.name)
  if (expected.roles !== undefined) expect(user.roles).toEqual(expected.roles)
  for (const key of Object.keys(user)) expect(key.toLowerCase()).not.toContain('password')
}

/** A sign-in answer: { user, accessToken, refreshToken }. */
function expectSession(body: any, expected: { email?: string; name?: string; roles?: string[] } = {}) {
  expect(typeof body?.accessToken).toBe('string')
  expect(typeof body?.refreshToken).toBe('string')
  expect(body.accessToken.length).toBeGreaterThan(0)
  expect(body.refreshToken.length).toBeGreaterThan(0)
  expectUser(body.user, expected)
}

/** A list answer: { items: [...], nextCursor: string | null }. */
function expectPage(body: any) {
  expect(Array.isArray(body?.items)).toBe(true)
  expect('nextCursor' in body).toBe(true)
  expect(body.nextCursor === null || typeof body.nextCursor === 'string').toBe(true)
}

const register = (api: Api, body: Record<string, unknown>, headers?: Record<string, string>) => api.post(`${AUTH}/register`, body, undefined, headers)
const login = (api: Api, email: string, password: string, headers?: Record<string, string>) =>
  api.post(`${AUTH}/login`, { email, password }, undefined, headers)
const refresh = (api: Api, refreshToken: string) => api.post(`${AUTH}/refresh`, { refreshToken })
const logout = (api: Api, refreshToken: string) => api.post(`${AUTH}/logout`, { refreshToken })
const me = (api: Api, token?: string) => api.get(`${AUTH}/me`, token)

/** Registers a fresh customer and returns its credentials and first session. */
async function newCustomer(api: Api, tag = 'customer') {
  const email = uniqueEmail(tag)
  const r = await register(api, { email, password: PASSWORD, name: `${tag} person` })
  expectStatus(r, 201)
  return { email, password: PASSWORD, id: r.body.user.id as string, accessToken: r.body.accessToken as string, refreshToken: r.body.refreshToken as string }
}

const hs256 = (secret: string, claims: Record<string, unknown>, expiresAt: number, issuedAt = Math.floor(Date.now() / 1000)) =>
  new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt(issuedAt).setExpirationTime(expiresAt).sign(new TextEncoder().encode(secret))

const nowSeconds = () => Math.floor(Date.now() / 1000)

/** Every item of a cursor list, following `nextCursor` with `?limit=`. */
async function walk(api: Api, path: string, token: string, limit: number) {
  const items: any[] = []
  let cursor: string | null = null
  for (let pages = 0; pages < 500; pages++) {
    const sep = path.includes('?') ? '&' : '?'
    const r: Reply = await api.get(`${path}${sep}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, token)
    expectStatus(r, 200)
    expectPage(r.body)
    expect(r.body.items.length).toBeLessThanOrEqual(limit)
    items.push(...r.body.items)
    cursor = r.body.nextCursor
    if (cursor === null) return items
    expect(typeof cursor).toBe('string')
  }
  throw new Error(`${path} did not end`)
}

// ---------------------------------------------------------------------------
// accounts and sessions
// ---------------------------------------------------------------------------

describe('auth: accounts and sessions', () => {
  // Generous per-IP budget: every request here comes from 127.0.0.1 and some tests fail on purpose.
  const s = serverFor({ LOGIN_MAX_FAILURES_PER_IP: '1000', LOGIN_MAX_FAILURES_PER_EMAIL: '1000' })

  describe('the bootstrapped admin (ADMIN_EMAIL / ADMIN_PASSWORD)', () => {
    test('exists after start-up with the admin role and can sign in', async () => {
      const r = await login(s.api, ADMIN.email, ADMIN.password)
      expectStatus(r, 200)
      expectSession(r.body, { email: ADMIN.email })
      expect(r.body.user.roles).toContain('admin')
      const self = await me(s.api, r.body.accessToken)
      expectStatus(self, 200)
      expect(self.body.roles).toContain('admin')
    })

    test('is listed exactly once among the users', async () => {
      const admin = await adminToken(s.url)
      const users = await walk(s.api, `${AUTH}/users`, admin, 200)
      const admins = users.filter((u) => u.email === ADMIN.email)
      expect(admins.length).toBe(1)
      expect(admins[0].roles).toContain('admin')
    })
  })

  describe('POST /register', () => {
    test('creates a customer and signs it in: 201 { user: { id, email, name, roles, createdAt }, accessToken, refreshToken }', async () => {
      const email = uniqueEmail('reg')
      const r = await register(s.api, { email, password: PASSWORD, name: 'Ada Lovelace' })
      expectStatus(r, 201)
      expectSession(r.body, { email, name: 'Ada Lovelace', roles: ['customer'] })
      expect(r.body.user.name).toBe('Ada Lovelace')
      expect(Math.abs(Date.parse(r.body.user.createdAt) - Date.now())).toBeLessThan(60_000)
    })

    test('the tokens it returns are live: the access token opens GET /me, the refresh token refreshes', async () => {
      const c = await newCustomer(s.api)
      const self = await me(s.api, c.accessToken)
      expectStatus(self, 200)
      expectUser(self.body, { email: c.email, roles: ['customer'] })
      expect(self.body.id).toBe(c.id)
      expectStatus(await refresh(s.api, c.refreshToken), 200)
    })

    test('stores the email trimmed and in lower case, so the account signs in with any spelling', async () => {
      const email = uniqueEmail('mixed')
      const r = await register(s.api, { email: `  ${email.toUpperCase()} `, password: PASSWORD, name: 'Mixed Case' })
      expectStatus(r, 201)
      expect(r.body.user.email).toBe(email)
      expectStatus(await login(s.api, email, PASSWORD), 200)
      expectStatus(await login(s.api, ` ${email.toUpperCase()}`, PASSWORD), 200)
    })

    test('409 when the email exists, also in another letter case or with surrounding spaces; the account is unchanged', async () => {
      const c = await newCustomer(s.api, 'taken')
      for (const email of [c.email, c.email.toUpperCase(), `  ${c.email}  `, ` ${c.email.replace(/^./, (x) => x.toUpperCase())}`]) {
        const r = await register(s.api, { email, password: 'another-password-9', name: 'Impostor' })
        expectError(r, 409)
      }
      const again = await login(s.api, c.email, c.password)
      expectStatus(again, 200)
      expect(again.body.user.name).toBe('taken person')
      expectError(await login(s.api, c.email, 'another-password-9'), 401)
    })

    const refused: [string, (email: string) => Record<string, unknown>][] = [
      ['a password shorter than 8 characters', (email) => ({ email, password: '1234567', name: 'Short' })],
      ['an empty password', (email) => ({ email, password: '', name: 'Empty' })],
      ['no password', (email) => ({ email, name: 'No Password' })],
      ['no name', (email) => ({ email, password: PASSWORD })],
      ['an empty name', (email) => ({ email, password: PASSWORD, name: '' })],
      ['a password of the wrong type', (email) => ({ email, password: 12345678, name: 'Number' })],
    ]
    for (const [what, body] of refused) {
      test(`422 VALIDATION_FAILED for ${what}, and no account is created`, async () => {
        const email = uniqueEmail('refused')
        const r = await register(s.api, body(email))
        expectError(r, 422, 'VALIDATION_FAILED')
        // Nothing exists under that email: signing in fails and the email is still free.
        expectError(await login(s.api, email, PASSWORD), 401, 'INVALID_CREDENTIALS')
        expectStatus(await register(s.api, { email, password: PASSWORD, name: 'Later' }), 201)
      })
    }

    for (const bad of ['not-an-email', 'two@@example.test', '@example.test', 'spaces in@example.test', '']) {
      test(`422 VALIDATION_FAILED for the bad email ${JSON.stringify(bad)}, and no account is created`, async () => {
        const r = await register(s.api, { email: bad, password: PASSWORD, name: 'Bad Email' })
        expectError(r, 422, 'VALIDATION_FAILED')
        if (bad) expectError(await login(s.api, bad, PASSWORD), 401, 'INVALID_CREDENTIALS')
      })
    }

    test('400 for a body that is not JSON, 415 for a non-JSON content type', async () => {
      expectError(await call(s.url, 'POST', `${AUTH}/register`, { body: '{"email": ', headers: { 'content-type': 'application/json' } }), 400)
      expectError(await call(s.url, 'POST', `${AUTH}/register`, { body: 'email=a@b.c', headers: { 'content-type': 'application/x-www-form-urlencoded' } }), 415)
    })
  })

  describe('POST /register with Idempotency-Key', () => {
    test('the same key and body replay the first 201 answer with `idempotent-replayed: true`; one user is created', async () => {
      const admin = await adminToken(s.url)
      const email = uniqueEmail('idem')
      const body = { email, password: PASSWORD, name: 'Once Only' }
      const key = `reg-${Bun.randomUUIDv7()}`
      const first = await register(s.api, body, { 'idempotency-key': key })
      expectStatus(first, 201)
      expect(first.headers.get('idempotent-replayed')).toBeNull()
      const second = await register(s.api, body, { 'idempotency-key': key })
      expectStatus(second, 201)
      expect(second.headers.get('idempotent-replayed')).toBe('true')
      expect(second.body).toEqual(first.body)
      const users = await walk(s.api, `${AUTH}/users`, admin, 200)
      expect(users.filter((u) => u.email === email).length).toBe(1)
    })

    test('the same key with another body is a 422 and creates nothing', async () => {
      const key = `reg-${Bun.randomUUIDv7()}`
      const first = await register(s.api, { email: uniqueEmail('idem-a'), password: PASSWORD, name: 'First' }, { 'idempotency-key': key })
      expectStatus(first, 201)
      const otherEmail = uniqueEmail('idem-b')
      const second = await register(s.api, { email: otherEmail, password: PASSWORD, name: 'Second' }, { 'idempotency-key': key })
      expectError(second, 422)
      expectError(await login(s.api, otherEmail, PASSWORD), 401)
    })

    test('without a key a retry is a new request: the second attempt is a 409', async () => {
      const body = { email: uniqueEmail('nokey'), password: PASSWORD, name: 'No Key' }
      expectStatus(await register(s.api, body), 201)
      expectError(await register(s.api, body), 409)
    })
  })

  describe('POST /login', () => {
    test('200 { user, accessToken, refreshToken } for the right credentials; the tokens work', async () => {
      const c = await newCustomer(s.api, 'login')
      const r = await login(s.api, c.email, c.password)
      expectStatus(r, 200)
      expectSession(r.body, { email: c.email, roles: ['customer'] })
      expect(r.body.user.id).toBe(c.id)
      expect(r.body.accessToken).not.toBe(c.accessToken)
      expect(r.body.refreshToken).not.toBe(c.refreshToken)
      expectStatus(await me(s.api, r.body.accessToken), 200)
      expectStatus(await refresh(s.api, r.body.refreshToken), 200)
    })

    test('401 with the same code and message for an unknown email and for a wrong password', async () => {
      const c = await newCustomer(s.api, 'creds')
      const unknown = await login(s.api, uniqueEmail('nobody'), c.password)
      const wrong = await login(s.api, c.email, 'wrong-password-1')
      expectError(unknown, 401)
      expectError(wrong, 401)
      expect(wrong.body.error.code).toBe(unknown.body.error.code)
      expect(wrong.body.error.message).toBe(unknown.body.error.message)
      expect(Object.keys(wrong.body.error).sort()).toEqual(Object.keys(unknown.body.error).sort())
    })

    test('422 for a body without email or password', async () => {
      expectError(await s.api.post(`${AUTH}/login`, { email: uniqueEmail('x') }), 422, 'VALIDATION_FAILED')
      expectError(await s.api.post(`${AUTH}/login`, { password: PASSWORD }), 422, 'VALIDATION_FAILED')
    })

    test('a disabled user cannot sign in, even with the right password', async () => {
      const admin = await adminToken(s.url)
      const c = await newCustomer(s.api, 'disabled-login')
      expectStatus(await s.api.patch(`${AUTH}/users/${c.id}`, { disabled: true }, admin), 200)
      expectError(await login(s.api, c.email, c.password), 401)
    })
  })

  describe('POST /refresh', () => {
    test('200 a new pair; both tokens differ from the old ones and the new access token works', async () => {
      const c = await newCustomer(s.api, 'refresh')
      const r = await refresh(s.api, c.refreshToken)
      expectStatus(r, 200)
      expectSession(r.body, { email: c.email, roles: ['customer'] })
      expect(r.body.refreshToken).not.toBe(c.refreshToken)
      expect(r.body.accessToken).not.toBe(c.accessToken)
      expectStatus(await me(s.api, r.body.accessToken), 200)
    })

    test('the new refresh token can be refreshed again (rotation continues)', async () => {
      const c = await newCustomer(s.api, 'rotate')
      let token = c.refreshToken
      for (let i = 0; i < 3; i++) {
        const r = await refresh(s.api, token)
        expectStatus(r, 200)
        token = r.body.refreshToken
      }
    })

    test('the old refresh token is spent: re-using it is 401 and ends the whole family, including the token it was exchanged for', async () => {
      const c = await newCustomer(s.api, 'reuse')
      const first = await refresh(s.api, c.refreshToken)
      expectStatus(first, 200)
      expectError(await refresh(s.api, c.refreshToken), 401)
      // The legitimate holder of the rotated token is signed out too.
      expectError(await refresh(s.api, first.body.refreshToken), 401)
      // And it stays dead.
      expectError(await refresh(s.api, c.refreshToken), 401)
    })

    test('reuse in one family leaves another sign-in (another family) of the same user working', async () => {
      const c = await newCustomer(s.api, 'families')
      const other = await login(s.api, c.email, c.password)
      expectStatus(other, 200)
      const rotated = await refresh(s.api, c.refreshToken)
      expectStatus(rotated, 200)
      expectError(await refresh(s.api, c.refreshToken), 401)
      expectError(await refresh(s.api, rotated.body.refreshToken), 401)
      const still = await refresh(s.api, other.body.refreshToken)
      expectStatus(still, 200)
      expectStatus(await refresh(s.api, still.body.refreshToken), 200)
    })

    for (const garbage of ['garbage', 'a.b', 'not.a.token.at.all', `${Bun.randomUUIDv7()}.${'x'.repeat(43)}`]) {
      test(`401 for the unknown refresh token ${JSON.stringify(garbage.length > 20 ? `${garbage.slice(0, 20)}…` : garbage)}`, async () => {
        expectError(await refresh(s.api, garbage), 401)
      })
    }

    test('401 for a known token id with a wrong secret (and the real token is unaffected)', async () => {
      const c = await newCustomer(s.api, 'forged')
      const [id] = c.refreshToken.split('.')
      expectError(await refresh(s.api, `${id}.${'A'.repeat(43)}`), 401)
      expectStatus(await refresh(s.api, c.refreshToken), 200)
    })

    test('422 for a body without a refresh token', async () => {
      expectError(await s.api.post(`${AUTH}/refresh`, {}), 422, 'VALIDATION_FAILED')
    })
  })

  describe('POST /logout', () => {
    test('204 with no body; afterwards that refresh token is refused with 401', async () => {
      const c = await newCustomer(s.api, 'logout')
      const r = await logout(s.api, c.refreshToken)
      expect(r.status).toBe(204)
      expect(r.body).toBeUndefined()
      expectError(await refresh(s.api, c.refreshToken), 401)
    })

    test('logging out twice (or with an unknown token) is still 204', async () => {
      const c = await newCustomer(s.api, 'logout-twice')
      expect((await logout(s.api, c.refreshToken)).status).toBe(204)
      expect((await logout(s.api, c.refreshToken)).status).toBe(204)
      expect((await logout(s.api, 'never.issued')).status).toBe(204)
    })

    test('ends only that sign-in: a refresh token rotated from it dies too, another sign-in keeps working', async () => {
      const c = await newCustomer(s.api, 'logout-scope')
      const other = await login(s.api, c.email, c.password)
      const rotated = await refresh(s.api, c.refreshToken)
      expectStatus(rotated, 200)
      expect((await logout(s.api, rotated.body.refreshToken)).status).toBe(204)
      expectError(await refresh(s.api, rotated.body.refreshToken), 401)
      expectStatus(await refresh(s.api, other.body.refreshToken), 200)
    })
  })

  describe('GET /me', () => {
    test('200 the signed-in user', async () => {
      const c = await newCustomer(s.api, 'me')
      const r = await me(s.api, c.accessToken)
      expectStatus(r, 200)
      expectUser(r.body, { email: c.email, roles: ['customer'] })
      expect(r.body.id).toBe(c.id)
      expect(r.body.name).toBe('me person')
    })

    test('401 without an Authorization header', async () => {
      expectError(await me(s.api), 401)
    })

    for (const header of ['Basic YWRtaW46YWRtaW4=', 'Bearer', 'Bearer ', 'Token abc.def.ghi', 'Bearer not-a-jwt', 'Bearer a.b.c']) {
      test(`401 with the malformed header ${JSON.stringify(header)}`, async () => {
        expectError(await s.api.get(`${AUTH}/me`, undefined, { authorization: header }), 401)
      })
    }

    test('401 for a token signed with another secret', async () => {
      const c = await newCustomer(s.api, 'forger')
      const token = await hs256('other', { sub: c.id, roles: ['admin'] }, nowSeconds() + 600)
      expectError(await me(s.api, token), 401)
      expectError(await s.api.get(`${AUTH}/users`, token), 401)
    })

    test('401 for an expired token signed with the right secret', async () => {
      const c = await newCustomer(s.api, 'expired')
      const token = await hs256(JWT_SECRET, { sub: c.id, roles: ['customer'] }, nowSeconds() - 60, nowSeconds() - 3600)
      expectError(await me(s.api, token), 401)
    })

    test('(control) a token signed with the right secret and a future expiry is accepted', async () => {
      const c = await newCustomer(s.api, 'control')
      const token = await hs256(JWT_SECRET, { sub: c.id, roles: ['customer'] }, nowSeconds() + 600)
      const r = await me(s.api, token)
      expectStatus(r, 200)
      expect(r.body.id).toBe(c.id)
    })
  })
})

// ---------------------------------------------------------------------------
// administration
// ---------------------------------------------------------------------------

describe('auth: administration', () => {
  const s = serverFor({ LOGIN_MAX_FAILURES_PER_IP: '1000', LOGIN_MAX_FAILURES_PER_EMAIL: '1000' })
  let admin: string
  let adminId: string
  beforeAll(async () => {
    const r = await login(s.api, ADMIN.email, ADMIN.password)
    admin = r.body.accessToken
    adminId = r.body.user.id
  })

  describe('GET /users', () => {
    beforeAll(async () => {
      for (let i = 0; i < 4; i++) await newCustomer(s.api, `listed${i}`)
    })

    test('200 { items: user[], nextCursor } with every user', async () => {
      const r = await s.api.get(`${AUTH}/users`, admin)
      expectStatus(r, 200)
      expectPage(r.body)
      expect(r.body.nextCursor).toBeNull()
      expect(r.body.items.length).toBeGreaterThanOrEqual(5)
      for (const u of r.body.items) expectUser(u)
    })

    test('?limit=1 with nextCursor walks every user exactly once, and the last page says nextCursor: null', async () => {
      const all = (await walk(s.api, `${AUTH}/users`, admin, 200)).map((u) => u.id)
      const walked = (await walk(s.api, `${AUTH}/users`, admin, 1)).map((u) => u.id)
      expect(walked.length).toBe(all.length)
      expect(new Set(walked).size).toBe(walked.length)
      expect(walked).toEqual(all)
    })

    test('?limit=2 pages hold two users and together cover every user', async () => {
      const all = (await walk(s.api, `${AUTH}/users`, admin, 200)).map((u) => u.id)
      const walked = (await walk(s.api, `${AUTH}/users`, admin, 2)).map((u) => u.id)
      expect(walked).toEqual(all)
    })

    for (const query of ['limit=0', 'limit=201', 'limit=abc']) {
      test(`422 for ?${query}`, async () => {
        expectError(await s.api.get(`${AUTH}/users?${query}`, admin), 422)
      })
    }
    test('400 INVALID_CURSOR for ?cursor=%%%not-ours', async () => {
      expectError(await s.api.get(`${AUTH}/users?cursor=%%%not-ours`, admin), 400, 'INVALID_CURSOR')
    })
  })

  describe('PATCH /users/:id', () => {
    test('changing roles answers 200 with the new roles; the old access token stops working at once; a new sign-in carries the new role', async () => {
      const c = await newCustomer(s.api, 'promote')
      expectStatus(await me(s.api, c.accessToken), 200)
      const r = await s.api.patch(`${AUTH}/users/${c.id}`, { roles: ['manager'] }, admin)
      expectStatus(r, 200)
      expectUser(r.body, { email: c.email, roles: ['manager'] })
      expectError(await me(s.api, c.accessToken), 401)
      const again = await login(s.api, c.email, c.password)
      expectStatus(again, 200)
      expect(again.body.user.roles).toEqual(['manager'])
      const self = await me(s.api, again.body.accessToken)
      expectStatus(self, 200)
      expect(self.body.roles).toEqual(['manager'])
    })

    test('a refresh after a role change hands out an access token with the new role', async () => {
      const c = await newCustomer(s.api, 'promote-refresh')
      expectStatus(await s.api.patch(`${AUTH}/users/${c.id}`, { roles: ['agent', 'customer'] }, admin), 200)
      const r = await refresh(s.api, c.refreshToken)
      expectStatus(r, 200)
      expect([...r.body.user.roles].sort()).toEqual(['agent', 'customer'])
      const self = await me(s.api, r.body.accessToken)
      expect([...self.body.roles].sort()).toEqual(['agent', 'customer'])
    })

    test('a promoted admin can use admin routes with a fresh sign-in; demoted, its old token is refused at once', async () => {
      const c = await newCustomer(s.api, 'second-admin')
      expectStatus(await s.api.patch(`${AUTH}/users/${c.id}`, { roles: ['admin'] }, admin), 200)
      const session = await login(s.api, c.email, c.password)
      expectStatus(await s.api.get(`${AUTH}/users`, session.body.accessToken), 200)
      expectStatus(await s.api.patch(`${AUTH}/users/${c.id}`, { roles: ['customer'] }, admin), 200)
      expectError(await s.api.get(`${AUTH}/users`, session.body.accessToken), 401)
    })

    test('disabling answers 200; the access token fails at once, and so do sign-in and refresh; re-enabling lets the user sign in again', async () => {
      const c = await newCustomer(s.api, 'disable')
      expectStatus(await me(s.api, c.accessToken), 200)
      const r = await s.api.patch(`${AUTH}/users/${c.id}`, { disabled: true }, admin)
      expectStatus(r, 200)
      expectUser(r.body, { email: c.email, roles: ['customer'] })
      expectError(await me(s.api, c.accessToken), 401)
      expectError(await login(s.api, c.email, c.password), 401)
      expectError(await refresh(s.api, c.refreshToken), 401)

      const back = await s.api.patch(`${AUTH}/users/${c.id}`, { disabled: false }, admin)
      expectStatus(back, 200)
      const again = await login(s.api, c.email, c.password)
      expectStatus(again, 200)
      expectStatus(await me(s.api, again.body.accessToken), 200)
    })

    test("a disabled admin's token is refused on admin routes at once", async () => {
      const other = await userWithRole(s.url, 'admin', admin)
      expectStatus(await s.api.get(`${AUTH}/audit`, other.token), 200)
      expectStatus(await s.api.patch(`${AUTH}/users/${other.id}`, { disabled: true }, admin), 200)
      expectError(await s.api.get(`${AUTH}/audit`, other.token), 401)
      expectError(await s.api.get(`${AUTH}/users`, other.token), 401)
    })

    test('404 for an unknown user id', async () => {
      expectError(await s.api.patch(`${AUTH}/users/${Bun.randomUUIDv7()}`, { disabled: true }, admin), 404)
    })

    const invalid: [string, unknown][] = [
      ['an empty object', {}],
      ['an unknown role', { roles: ['root'] }],
      ['an empty role list', { roles: [] }],
      ['roles that are not a list', { roles: 'admin' }],
      ['disabled that is not a boolean', { disabled: 'yes' }],
      ['an extra property', { disabled: false, extra: 1 }],
      ['only an unknown property', { email: 'new@auth.test' }],
    ]
    for (const [what, body] of invalid) {
      test(`422 for ${what}, and the user is unchanged`, async () => {
        const c = await newCustomer(s.api, 'invalid-patch')
        expectError(await s.api.patch(`${AUTH}/users/${c.id}`, body, admin), 422)
        const self = await me(s.api, c.accessToken)
        expectStatus(self, 200)
        expect(self.body.roles).toEqual(['customer'])
        expect(self.body.email).toBe(c.email)
      })
    }

    test('422 for no body at all', async () => {
      const c = await newCustomer(s.api, 'no-body')
      expectError(await call(s.url, 'PATCH', `${AUTH}/users/${c.id}`, { token: admin }), 422)
    })

    test('an admin cannot disable themself or drop their own admin role (422), and stays an admin', async () => {
      expectError(await s.api.patch(`${AUTH}/users/${adminId}`, { disabled: true }, admin), 422)
      expectError(await s.api.patch(`${AUTH}/users/${adminId}`, { roles: ['manager'] }, admin), 422)
      expectError(await s.api.patch(`${AUTH}/users/${adminId}`, { roles: ['customer'], disabled: false }, admin), 422)
      const self = await me(s.api, admin)
      expectStatus(self, 200)
      expect(self.body.roles).toContain('admin')
      expectStatus(await login(s.api, ADMIN.email, ADMIN.password), 200)
    })
  })

  describe('GET /audit', () => {
    const TYPES = { loginOk: 'login.succeeded', loginFailed: 'login.failed', reuse: 'refresh.reused', roleChange: 'role.changed' }
    let subject: Awaited<ReturnType<typeof newCustomer>>
    let unknownEmail: string
    beforeAll(async () => {
      subject = await newCustomer(s.api, 'audited')
      expectStatus(await login(s.api, subject.email, subject.password), 200)
      await Bun.sleep(3)
      expectError(await login(s.api, subject.email, 'wrong-password-1'), 401)
      unknownEmail = uniqueEmail('ghost')
      expectError(await login(s.api, unknownEmail, 'whatever-123'), 401)
      await Bun.sleep(3)
      const rotated = await refresh(s.api, subject.refreshToken)
      expectStatus(rotated, 200)
      expectError(await refresh(s.api, subject.refreshToken), 401)
      await Bun.sleep(3)
      expectStatus(await s.api.patch(`${AUTH}/users/${subject.id}`, { roles: ['agent'] }, admin), 200)
    })

    const entriesOf = async (query = '') => {
      const r = await s.api.get(`${AUTH}/audit?limit=200${query}`, admin)
      expectStatus(r, 200)
      return r.body.items as any[]
    }

    test('200 { items, nextCursor }; each entry names its type, user and time', async () => {
      const r = await s.api.get(`${AUTH}/audit`, admin)
      expectStatus(r, 200)
      expectPage(r.body)
      expect(r.body.items.length).toBeGreaterThan(0)
      for (const e of r.body.items) {
        expect([typeof e.id, typeof e.type, typeof e.at]).toEqual(['string', 'string', 'string'])
        expect(e.userId === null || typeof e.userId === 'string').toBe(true)
        expect(Number.isNaN(Date.parse(e.at))).toBe(false)
      }
    })

    test('records a successful sign-in, a failed sign-in, a refresh-token reuse and a role change, each with the right userId', async () => {
      const mine = (await entriesOf()).filter((e) => e.userId === subject.id)
      const types = mine.map((e) => e.type)
      for (const type of Object.values(TYPES)) expect(types).toContain(type)
      const change = mine.find((e) => e.type === TYPES.roleChange)
      expect(JSON.stringify(change)).toContain('agent')
    })

    test('records a failed sign-in for an unknown email (with that email, without a user)', async () => {
      const failed = (await entriesOf(`&type=${TYPES.loginFailed}`)).find((e) => e.email === unknownEmail)
      expect(failed).toBeDefined()
      expect(failed.userId ?? null).toBeNull()
    })

    test('is newest first', async () => {
      const all = await entriesOf()
      const times = all.map((e) => Date.parse(e.at))
      expect(times).toEqual([...times].sort((a, b) => b - a))
      const mine = all.filter((e) => e.userId === subject.id).map((e) => e.type)
      // Done in this order: login ok, login failed, refresh reuse, role change.
      const order = [TYPES.roleChange, TYPES.reuse, TYPES.loginFailed, TYPES.loginOk].map((t) => mine.indexOf(t))
      expect(order).toEqual([...order].sort((a, b) => a - b))
    })

    test('?type= keeps only entries of that type', async () => {
      for (const type of Object.values(TYPES)) {
        const items = await entriesOf(`&type=${encodeURIComponent(type)}`)
        expect(items.length).toBeGreaterThan(0)
        for (const e of items) expect(e.type).toBe(type)
        expect(items.some((e) => e.userId === subject.id)).toBe(true)
      }
      expect(await entriesOf('&type=no.such.type')).toEqual([])
    })

    test('?userId= keeps only entries of that user', async () => {
      const items = await entriesOf(`&userId=${subject.id}`)
      expect(items.length).toBeGreaterThanOrEqual(4)
      for (const e of items) expect(e.userId).toBe(subject.id)
    })

    test('?limit=1 with nextCursor walks the log, newest first, each entry once', async () => {
      const all = (await walk(s.api, `${AUTH}/audit`, admin, 200)).map((e) => e.id)
      expect(all.length).toBeGreaterThan(5)
      const walked = (await walk(s.api, `${AUTH}/audit`, admin, 1)).map((e) => e.id)
      expect(walked).toEqual(all)
    })
  })
})

// ---------------------------------------------------------------------------
// who may call what
// ---------------------------------------------------------------------------

describe('auth: role matrix (401 anonymous, 403 wrong role, 2xx allowed)', () => {
  const s = serverFor()
  const tokens: Partial<Record<Role | 'anonymous', string>> = {}
  let targetId: string
  beforeAll(async () => {
    const admin = await adminToken(s.url)
    for (const role of ROLES) tokens[role] = (await userWithRole(s.url, role, admin)).token
    targetId = (await newCustomer(s.api, 'matrix-target')).id
  })

  const routes: { name: string; allowed: readonly (Role | 'anonymous')[]; send: (api: Api, token?: string) => Promise<Reply> }[] = [
    { name: 'GET /api/v1/auth/me', allowed: ROLES, send: (api, token) => api.get(`${AUTH}/me`, token) },
    { name: 'GET /api/v1/auth/users', allowed: ['admin'], send: (api, token) => api.get(`${AUTH}/users`, token) },
    {
      name: 'PATCH /api/v1/auth/users/:id',
      allowed: ['admin'],
      send: (_api, token) => call(s.url, 'PATCH', `${AUTH}/users/${targetId}`, { body: { disabled: false }, token }),
    },
    { name: 'GET /api/v1/auth/audit', allowed: ['admin'], send: (api, token) => api.get(`${AUTH}/audit`, token) },
    { name: 'GET /api/v1/events/dead-letters', allowed: ['admin'], send: (api, token) => api.get('/api/v1/events/dead-letters', token) },
  ]
  const callers = ['anonymous', ...ROLES] as const

  // "Missing or bad token: 401. Wrong role: 403" comes before looking at the body: a caller who may
  // not use the route learns nothing about what it accepts.
  for (const [who, expected] of [['anonymous', 401], ['customer', 403], ['manager', 403]] as const) {
    test(`PATCH /api/v1/auth/users/:id as ${who} with an invalid body → ${expected}, not 422`, async () => {
      for (const body of [{ roles: 'nonsense' }, {}, { disabled: false, extra: 1 }]) {
        const r = await call(s.url, 'PATCH', `${AUTH}/users/${targetId}`, { body, token: tokens[who] })
        expectError(r, expected)
      }
    })
  }

  for (const route of routes) {
    for (const who of callers) {
      const expected = who === 'anonymous' ? 401 : route.allowed.includes(who) ? 200 : 403
      test(`${route.name} as ${who} → ${expected}`, async () => {
        const r = await route.send(s.api, who === 'anonymous' ? undefined : tokens[who])
        if (expected === 200) {
          expectStatus(r, 200)
          expect(r.body).toBeDefined()
        } else expectError(r, expected, expected === 403 ? 'FORBIDDEN' : undefined)
      })
    }
  }
})

// ---------------------------------------------------------------------------
// throttling and limits
// ---------------------------------------------------------------------------

describe('auth: login throttling (429 with Retry-After)', () => {
  // TRUST_PROXY lets each test speak from its own client IP through X-Forwarded-For.
  const s = serverFor({ LOGIN_MAX_FAILURES_PER_EMAIL: '3', LOGIN_MAX_FAILURES_PER_IP: '5', TRUST_PROXY: 'true' })
  const from = (ip: string) => ({ 'x-forwarded-for': ip })

  const expectThrottled = (r: Reply) => {
    expectError(r, 429)
    const retryAfter = r.headers.get('retry-after')
    expect(retryAfter).toMatch(/^\d+$/)
    expect(Number(retryAfter)).toBeGreaterThan(0)
  }

  test('repeated failed sign-ins for one email answer 429 with Retry-After; then even the right password is refused', async () => {
    const c = await newCustomer(s.api, 'throttled')
    for (let i = 0; i < 3; i++) expectError(await login(s.api, c.email, `wrong-password-${i}`, from('10.0.1.1')), 401)
    expectThrottled(await login(s.api, c.email, 'wrong-password-x', from('10.0.1.1')))
    expectThrottled(await login(s.api, c.email, c.password, from('10.0.1.1')))
    // The throttle is on the email, wherever the next attempt comes from.
    expectThrottled(await login(s.api, c.email, c.password, from('10.0.1.2')))
    expectThrottled(await login(s.api, c.email.toUpperCase(), c.password, from('10.0.1.3')))
  })

  test('a throttled email does not throttle other accounts', async () => {
    const victim = await newCustomer(s.api, 'throttled-b')
    const bystander = await newCustomer(s.api, 'bystander')
    for (let i = 0; i < 3; i++) await login(s.api, victim.email, 'wrong-password', from('10.0.2.1'))
    expectThrottled(await login(s.api, victim.email, victim.password, from('10.0.2.2')))
    expectStatus(await login(s.api, bystander.email, bystander.password, from('10.0.2.3')), 200)
  })

  test('failures below the budget do not throttle: the right password still signs in', async () => {
    const c = await newCustomer(s.api, 'under-budget')
    for (let i = 0; i < 2; i++) expectError(await login(s.api, c.email, 'wrong-password', from('10.0.3.1')), 401)
    expectStatus(await login(s.api, c.email, c.password, from('10.0.3.1')), 200)
  })

  test('failures for different emails from one IP throttle that IP after its budget, even for a new email with the right password', async () => {
    const c = await newCustomer(s.api, 'ip-victim')
    // Five different unknown emails, one failure each: no email reaches its own budget of 3.
    for (let i = 0; i < 5; i++) expectError(await login(s.api, uniqueEmail(`spray${i}`), 'wrong-password', from('10.0.4.1')), 401)
    expectThrottled(await login(s.api, uniqueEmail('spray-next'), 'wrong-password', from('10.0.4.1')))
    expectThrottled(await login(s.api, c.email, c.password, from('10.0.4.1')))
    // Another IP is not affected.
    expectStatus(await login(s.api, c.email, c.password, from('10.0.4.2')), 200)
  })

  test('throttled attempts are recorded in the audit log', async () => {
    const admin = await login(s.api, ADMIN.email, ADMIN.password, from('10.0.5.1'))
    expectStatus(admin, 200)
    const r = await s.api.get(`${AUTH}/audit?limit=200`, admin.body.accessToken)
    expectStatus(r, 200)
    expect(r.body.items.some((e: any) => e.type === 'login.failed')).toBe(true)
    expect(r.body.items.some((e: any) => /throttl/.test(e.type))).toBe(true)
  })
})

describe('auth: general per-user request limit (RATE_LIMIT_USER_PER_MIN)', () => {
  const s = serverFor({ RATE_LIMIT_USER_PER_MIN: '5' })

  test('a signed-in user over the budget gets 429 with Retry-After; another user is unaffected', async () => {
    const busy = await newCustomer(s.api, 'busy')
    const calm = await newCustomer(s.api, 'calm')
    for (let i = 0; i < 5; i++) expectStatus(await me(s.api, busy.accessToken), 200)
    const r = await me(s.api, busy.accessToken)
    expectError(r, 429)
    expect(r.headers.get('retry-after')).toMatch(/^\d+$/)
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0)
    expectStatus(await me(s.api, calm.accessToken), 200)
  })
})
