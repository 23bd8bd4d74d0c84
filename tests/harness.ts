/**
 * Starts real Tessera servers for tests: in this process (Kernel.start) or as a child process
 * (`bun kernel/main.ts`). Embedded defaults unless TEST_DATABASE_URL / TEST_REDIS_URL point at
 * real services (scripts/test.ts sets them for the second run), each test server isolated in its
 * own SQLite file or PostgreSQL schema and its own Redis key prefix.
 */
import { rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import Redis from 'ioredis'
import postgres from 'postgres'
import { expect } from 'bun:test'
import { Kernel } from '../kernel/kernel'

export const ROOT = resolve(import.meta.dir, '..')
export const services = {
  databaseUrl: process.env.TEST_DATABASE_URL || undefined,
  redisUrl: process.env.TEST_REDIS_URL || undefined,
}
export const variant = services.databaseUrl ? 'postgres+redis' : 'embedded'
export const ADMIN = { email: 'admin@tessera.test', password: 'admin-password-1' }
export const JWT_SECRET = 'test-secret-test-secret-test-secret-0123'

/** A fresh, isolated place for one test server's data: env entries plus a cleanup. */
export function isolatedStore() {
  const id = Bun.randomUUIDv7().replace(/-/g, '').slice(-16)
  const sqliteFile = join(tmpdir(), `tessera-test-${id}.db`)
  const schema = `t_${id}`
  const env: Record<string, string> = {
    DATABASE_URL: services.databaseUrl ? `${services.databaseUrl}${services.databaseUrl.includes('?') ? '&' : '?'}schema=${schema}` : `sqlite:${sqliteFile}`,
    REDIS_PREFIX: `test:${id}:`,
    ...(services.redisUrl ? { REDIS_URL: services.redisUrl } : {}),
  }
  return {
    env,
    async cleanup() {
      if (services.databaseUrl) {
        const sql = postgres(services.databaseUrl, { onnotice: () => {}, max: 1 })
        await sql.unsafe(`drop schema if exists "${schema}" cascade`)
        await sql.end()
      } else for (const suffix of ['', '-wal', '-shm']) rmSync(sqliteFile + suffix, { force: true })
      if (services.redisUrl) {
        const redis = new Redis(services.redisUrl)
        const keys = await redis.keys(`test:${id}:*`)
        if (keys.length) await redis.del(...keys)
        await redis.quit()
      }
    },
  }
}

export function baseEnv(overrides: Record<string, string> = {}): Record<string, string> {
  return {
    NODE_ENV: 'test',
    PORT: '0',
    HOST: '127.0.0.1',
    MQTT_PORT: '0',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    JWT_SECRET,
    ADMIN_EMAIL: ADMIN.email,
    ADMIN_PASSWORD: ADMIN.password,
    PLUGINS_DIR: `${join(ROOT, 'plugins')},${join(ROOT, 'tests/fixtures/plugins')}`,
    // Cheap hashing keeps the suite fast; production defaults are checked in config tests.
    PASSWORD_HASH_MEMORY_KIB: '1024',
    PASSWORD_HASH_TIME_COST: '1',
    EVENT_RETRY_BASE_MS: '5',
    EVENT_MAX_ATTEMPTS: '3',
    EVENT_RELAY_INTERVAL_MS: '100',
    ...overrides,
  }
}

export interface TestServer {
  url: string
  kernel: Kernel
  env: Record<string, string>
  stop(): Promise<void>
}

/** A server in this process; `stop` also drops its data unless `keep` is set. */
export async function startServer(overrides: Record<string, string> = {}, options: { keep?: boolean } = {}): Promise<TestServer> {
  const store = isolatedStore()
  const env = baseEnv({ ...store.env, ...overrides })
  const kernel = await Kernel.start({ env })
  return {
    url: kernel.url,
    kernel,
    env,
    async stop() {
      await kernel.stop()
      if (!options.keep) await store.cleanup()
    },
  }
}

export interface ChildServer {
  url: string
  proc: ReturnType<typeof Bun.spawn>
  output: () => string
}

/** `bun kernel/main.ts` as a child process; resolves when it logs that it is ready. */
export async function spawnServer(env: Record<string, string>): Promise<ChildServer> {
  const proc = Bun.spawn([process.execPath, join(ROOT, 'kernel/main.ts')], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', LAUNCHER_PID: String(process.pid), ...env, LOG_LEVEL: 'info' },
    stdout: 'pipe',
    stderr: 'pipe',
  })
  let text = ''
  const reader = proc.stdout.getReader()
  const deadline = Date.now() + 15_000
  for (;;) {
    if (Date.now() > deadline) throw new Error(`server did not start:\n${text}`)
    const { value, done } = await reader.read()
    if (done) throw new Error(`server exited before it was ready:\n${text}${await new Response(proc.stderr).text()}`)
    text += new TextDecoder().decode(value)
    const ready = text.split('\n').find((l) => l.includes('"tessera ready"'))
    if (ready) {
      const port = JSON.parse(ready).port
      // Keep draining stdout so the child never blocks on a full pipe.
      ;(async () => {
        for (;;) {
          const { value, done } = await reader.read()
          if (done) return
          text += new TextDecoder().decode(value)
        }
      })()
      return { url: `http://127.0.0.1:${port}`, proc, output: () => text }
    }
  }
}

export interface Reply<T = any> {
  status: number
  body: T
  headers: Headers
}

/** JSON over real HTTP. */
export async function call<T = any>(
  url: string,
  method: string,
  path: string,
  options: { body?: unknown; token?: string; headers?: Record<string, string> } = {},
): Promise<Reply<T>> {
  const headers: Record<string, string> = { ...options.headers }
  if (options.body !== undefined) headers['content-type'] ??= 'application/json'
  if (options.token) headers.authorization = `Bearer ${options.token}`
  const res = await fetch(url + path, {
    method,
    headers,
    body: options.body === undefined ? undefined : typeof options.body === 'string' ? options.body : JSON.stringify(options.body),
  })
  return readReply<T>(res)
}

/** A response as status, parsed JSON body (or text) and headers. */
export async function readReply<T = any>(res: Response): Promise<Reply<T>> {
  const text = await res.text()
  let body: any = text
  try {
    body = text ? JSON.parse(text) : undefined
  } catch {}
  return { status: res.status, body, headers: res.headers }
}

/** A body sent chunked (a stream), so there is no Content-Length. */
export function chunked(text: string, chunkSize = 256): ReadableStream<Uint8Array> {
  const bytes = new TextEncoder().encode(text)
  let at = 0
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.length) return controller.close()
      controller.enqueue(bytes.slice(at, at + chunkSize))
      at += chunkSize
    },
  })
}

export const client = (url: string) => ({
  get: <T = any>(path: string, token?: string, headers?: Record<string, string>) => call<T>(url, 'GET', path, { token, headers }),
  post: <T = any>(path: string, body?: unknown, token?: string, headers?: Record<string, string>) => call<T>(url, 'POST', path, { body, token, headers }),
  patch: <T = any>(path: string, body?: unknown, token?: string) => call<T>(url, 'PATCH', path, { body, token }),
  del: <T = any>(path: string, token?: string) => call<T>(url, 'DELETE', path, { token }),
})

/** Signs in as the bootstrapped admin. */
export async function adminToken(url: string): Promise<string> {
  const r = await client(url).post('/api/v1/auth/login', ADMIN)
  if (r.status !== 200) throw new Error(`admin login failed: ${r.status} ${JSON.stringify(r.body)}`)
  return r.body.accessToken
}

let counter = 0
/** Registers a user, gives it `role` (via the admin), and returns a fresh session carrying that role. */
export async function userWithRole(url: string, role: 'admin' | 'manager' | 'agent' | 'customer', admin?: string) {
  const api = client(url)
  const email = `${role}-${Date.now()}-${counter++}@tessera.test`
  const password = 'correct-horse-1'
  const reg = await api.post('/api/v1/auth/register', { email, password, name: `${role} user` })
  if (reg.status !== 201) throw new Error(`register failed: ${reg.status} ${JSON.stringify(reg.body)}`)
  if (role !== 'customer') {
    const patched = await api.patch(`/api/v1/auth/users/${reg.body.user.id}`, { roles: [role] }, admin ?? (await adminToken(url)))
    if (patched.status !== 200) throw new Error(`role change failed: ${patched.status} ${JSON.stringify(patched.body)}`)
  }
  const login = await api.post('/api/v1/auth/login', { email, password })
  return { email, password, id: reg.body.user.id as string, token: login.body.accessToken as string, refreshToken: login.body.refreshToken as string }
}

/** Polls `check` until it returns a truthy value or `ms` pass. */
export async function eventually<T>(check: () => Promise<T>, ms = 5_000): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const value = await check()
    if (value || Date.now() > deadline) return value
    await Bun.sleep(25)
  }
}

// Checks are written out by hand: Bun 1.4's toMatchObject/asymmetric matchers overwrite the
// matched values of the received object.

/** The status, with the body in the failure message so a failure shows what the server said. */
export function expectStatus(r: Reply, status: number) {
  if (r.status !== status) throw new Error(`expected HTTP ${status}, got ${r.status} ${JSON.stringify(r.body)}`)
  expect(r.status).toBe(status)
}

/** The error envelope of CONTRACT.md section 2, with the request id echoed in `x-request-id`. */
export function expectError(r: Reply, status: number, code?: string) {
  const e = r.body?.error
  const ok =
    r.status === status &&
    typeof e === 'object' &&
    e !== null &&
    typeof e.code === 'string' &&
    e.code.length > 0 &&
    (code === undefined || e.code === code) &&
    typeof e.message === 'string' &&
    e.message.length > 0 &&
    typeof e.requestId === 'string' &&
    e.requestId === r.headers.get('x-request-id')
  if (!ok)
    throw new Error(
      `expected ${status}${code ? ` ${code}` : ''} with { error: { code, message, requestId } }, got ${r.status} ${JSON.stringify(r.body)} (x-request-id ${r.headers.get('x-request-id')})`,
    )
  expect(r.status).toBe(status)
}
