/**
 * The kernel's lifecycle as an operator sees it: which plugins it hosts, what stops start-up and
 * how it says so, the order of start and stop, graceful shutdown under load, and the call port.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { kernelSettings } from '../kernel/config'
import { discover } from '../kernel/discovery'
import { Kernel } from '../kernel/kernel'
import { ROOT, adminToken, baseEnv, client, eventually, isolatedStore, spawnServer, startServer, type TestServer, variant } from './harness'

/** Writes throwaway plugins into a temporary plugins folder. */
function pluginsDir(plugins: { folder?: string; name: string; dependsOn?: string[] }[]) {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-plugins-'))
  for (const p of plugins) {
    mkdirSync(join(dir, p.folder ?? p.name))
    writeFileSync(
      join(dir, p.folder ?? p.name, 'plugin.ts'),
      `import { definePlugin } from ${JSON.stringify(join(ROOT, 'kernel/plugin.ts'))}
const log = ((globalThis as any).__lifecycle ??= [])
export default definePlugin({
  name: ${JSON.stringify(p.name)}, version: '1.0.0', dependsOn: ${JSON.stringify(p.dependsOn ?? [])},
  setup() { log.push('setup ${p.name}') },
  async start() { log.push('start ${p.name}') },
  async stop() { log.push('stop ${p.name}') },
})
`,
    )
  }
  return dir
}

const startError = async (env: Record<string, string>) => {
  try {
    const k = await Kernel.start({ env: baseEnv({ DATABASE_URL: 'sqlite::memory:', ...env }) })
    await k.stop()
  } catch (e) {
    return (e as Error).message
  }
  throw new Error('start-up was expected to fail')
}

describe('discovery', () => {
  const dirs: string[] = []
  const make = (plugins: Parameters<typeof pluginsDir>[0]) => {
    const d = pluginsDir(plugins)
    dirs.push(d)
    return d
  }
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })))

  test('a missing dependency stops start-up naming both plugins', async () => {
    const message = await startError({ PLUGINS_DIR: make([{ name: 'shop', dependsOn: ['ghost'] }]) })
    expect(message).toContain('"shop" depends on "ghost", which does not exist')
  })

  test('a dependency cycle stops start-up naming the cycle', async () => {
    const message = await startError({
      PLUGINS_DIR: make([
        { name: 'a', dependsOn: ['b'] },
        { name: 'b', dependsOn: ['c'] },
        { name: 'c', dependsOn: ['a'] },
      ]),
    })
    expect(message).toContain('cycle: a → b → c → a')
  })

  test('two plugins with one name stop start-up naming both places', async () => {
    const message = await startError({ PLUGINS_DIR: `${make([{ name: 'twin' }])},${make([{ name: 'twin' }])}` })
    expect(message).toContain('two plugins are named "twin"')
  })

  test('a plugin whose folder is not its name is refused', async () => {
    expect(await startError({ PLUGINS_DIR: make([{ folder: 'elsewhere', name: 'named' }]) })).toContain('must live in a folder of that name')
  })

  test('PLUGINS naming an unknown plugin stops start-up naming it and the known ones', async () => {
    const message = await startError({ PLUGINS: 'auth,nope' })
    expect(message).toContain('unknown plugin(s) nope')
    expect(message).toContain('known: auth')
  })

  test('plugins set up and start in dependency order and stop in reverse', async () => {
    const g = globalThis as { __lifecycle?: string[] }
    g.__lifecycle = []
    const kernel = await Kernel.start({
      env: baseEnv({
        DATABASE_URL: 'sqlite::memory:',
        PLUGINS_DIR: make([
          { name: 'app', dependsOn: ['catalogue', 'base'] },
          { name: 'base' },
          { name: 'catalogue', dependsOn: ['base'] },
        ]),
      }),
    })
    await kernel.stop()
    expect(g.__lifecycle).toEqual([
      'setup base',
      'setup catalogue',
      'setup app',
      'start base',
      'start catalogue',
      'start app',
      'stop app',
      'stop catalogue',
      'stop base',
    ])
  })

  test('the repository plugins are all discovered', async () => {
    const names = (await discover([join(ROOT, 'plugins')])).map((d) => d.plugin.name)
    expect(names).toContain('auth')
  })
})

describe('configuration', () => {
  test('a bad value stops start-up with a message naming the variable', async () => {
    expect(await startError({ PORT: 'eighty' })).toContain('PORT must be an integer')
    expect(await startError({ DATABASE_URL: 'mysql://x' })).toContain('DATABASE_URL must be sqlite:')
    expect(await startError({ REDIS_URL: 'http://x' })).toContain('REDIS_URL must start with redis:')
    expect(await startError({ LOG_LEVEL: 'loud' })).toContain('LOG_LEVEL must be one of')
    expect(await startError({ RATE_LIMIT_IP_PER_MIN: '-1' })).toContain('RATE_LIMIT_IP_PER_MIN')
  })

  test('EVENT_BUS=redis-streams without REDIS_URL stops start-up naming both', async () => {
    const message = await startError({ EVENT_BUS: 'redis-streams', REDIS_URL: '' })
    expect(message).toContain('EVENT_BUS=redis-streams needs REDIS_URL')
    expect(await startError({ EVENT_BUS: 'kafka' })).toContain('EVENT_BUS must be one of in-process, redis-streams')
  })

  test('every problem is reported at once', async () => {
    const message = await startError({ PORT: 'x', MQTT_PORT: '70000' })
    expect(message).toContain('PORT must be')
    expect(message).toContain('MQTT_PORT must be')
  })

  test("plugins' own settings are validated the same way", async () => {
    expect(await startError({ LOGIN_MAX_FAILURES_PER_EMAIL: 'many' })).toContain('LOGIN_MAX_FAILURES_PER_EMAIL must be an integer')
    expect(await startError({ ADMIN_EMAIL: 'a@b.c', ADMIN_PASSWORD: '' })).toContain('ADMIN_PASSWORD must be set too')
  })

  test('production refuses the development JWT_SECRET', async () => {
    const message = await startError({ NODE_ENV: 'production', JWT_SECRET: '' })
    expect(message).toContain('JWT_SECRET must be set to a secret of your own when NODE_ENV=production')
  })

  test('production refuses test hooks', async () => {
    const message = await startError({ NODE_ENV: 'production', JWT_SECRET: 'x'.repeat(40), ORDERS_TEST_PAUSE_BEFORE: 'place', ORDERS_TEST_PAUSE_MS: '1000' })
    expect(message).toContain('ORDERS_TEST_PAUSE_BEFORE is a test hook and must be none when NODE_ENV=production')
  })

  test('a start-up that a plugin refuses closes what it opened: no ephemeral SQLite file is left', async () => {
    const ephemeral = () => readdirSync(tmpdir()).filter((f) => /^tessera-[0-9a-f-]{36}\.db/.test(f))
    const before = new Set(ephemeral())
    const message = await startError({ NODE_ENV: 'production', JWT_SECRET: 'x'.repeat(40), ORDERS_TEST_PAUSE_BEFORE: 'place' })
    expect(message).toContain('ORDERS_TEST_PAUSE_BEFORE is a test hook')
    expect(ephemeral().filter((f) => !before.has(f))).toEqual([])
  })

  test('the server process exits 1 with the message on standard error', async () => {
    const proc = Bun.spawn([process.execPath, join(ROOT, 'kernel/main.ts')], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', PORT: 'not-a-port' },
      stdout: 'pipe',
      stderr: 'pipe',
    })
    expect(await proc.exited).toBe(1)
    expect(await new Response(proc.stderr).text()).toContain('PORT must be an integer')
  })

  test('.env.example lists every variable the kernel and the plugins read', async () => {
    const example = readFileSync(join(ROOT, '.env.example'), 'utf8')
    const listed = new Set([...example.matchAll(/^#?\s*([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]))
    const declared = [...Object.keys(kernelSettings)]
    for (const { plugin } of await discover([join(ROOT, 'plugins')])) declared.push(...Object.keys(plugin.settings ?? {}))
    expect(declared.filter((name) => !listed.has(name))).toEqual([])
  })
})

describe(`hosting a subset of plugins (${variant})`, () => {
  let server: TestServer
  beforeAll(async () => (server = await startServer({ PLUGINS: 'ledger' })))
  afterAll(() => server.stop())

  test('only the named plugins are hosted, and the others are unknown routes', async () => {
    expect(server.kernel.plugins).toEqual(['ledger'])
    const api = client(server.url)
    expect((await api.get('/api/v1/ledger/entries')).status).toBe(200)
    expect((await api.get('/api/v1/auth/me')).status).toBe(404)
    const ready = await api.get('/health/ready')
    expect(Object.keys(ready.body.plugins)).not.toContain('auth')
  })

  test('no hosted plugin uses MQTT, so no broker is started and readiness does not list it', async () => {
    expect(server.kernel.mqttPort).toBe(0)
    const ready = await client(server.url).get('/health/ready')
    expect(ready.status).toBe(200)
    expect(Object.keys(ready.body.plugins)).not.toContain('mqtt')
  })

  test('a call to a plugin no process hosts answers 503 with the envelope', async () => {
    const r = await client(server.url).get(`/api/v1/ledger/users/${Bun.randomUUIDv7()}`)
    expect(r.status).toBe(503)
    expect(r.body.error.code).toBe('UNAVAILABLE')
  })
})

describe(`calls between plugins (${variant})`, () => {
  let server: TestServer
  beforeAll(async () => (server = await startServer()))
  afterAll(() => server.stop())

  test("ctx.call reaches another plugin's action and returns its typed answer", async () => {
    const api = client(server.url)
    const me = await api.get('/api/v1/auth/me', await adminToken(server.url))
    const r = await api.get(`/api/v1/ledger/users/${me.body.id}`)
    expect(r.status).toBe(200)
    expect(r.body.user).toMatchObject({ id: me.body.id, email: me.body.email, roles: ['admin'] })
    expect((await api.get(`/api/v1/ledger/users/${Bun.randomUUIDv7()}`)).body).toEqual({ user: null })
  })

  test("input that breaks the action's contract is refused before it reaches the plugin", async () => {
    const r = await client(server.url).post('/api/v1/ledger/call-auth', { id: 42 })
    expect(r.status).toBe(422)
    expect(r.body.error.message).toContain('invalid input for auth.getUser')
  })
})

describe(`graceful shutdown (${variant})`, () => {
  const store = isolatedStore()
  afterAll(() => store.cleanup())

  test('with LAUNCHER_PID, a server whose launcher was killed outright (SIGKILL) stops by itself', async () => {
    // The launcher: a process that starts the server and then sits there, like scripts/split.ts.
    const launcherCode = `
      const child = Bun.spawn([process.execPath, ${JSON.stringify(join(ROOT, 'kernel/main.ts'))}], {
        cwd: ${JSON.stringify(ROOT)}, env: { ...process.env, LAUNCHER_PID: String(process.pid) }, stdout: 'ignore', stderr: 'ignore' })
      console.log(child.pid)
      await Bun.sleep(60_000)`
    const launcher = Bun.spawn([process.execPath, '-e', launcherCode], { env: { ...process.env, ...baseEnv({ ...store.env, PORT: '0', MQTT_PORT: '0' }) }, stdout: 'pipe' })
    const pid = Number(new TextDecoder().decode((await launcher.stdout.getReader().read()).value).trim())
    const alive = () => {
      try {
        process.kill(pid, 0)
        return true
      } catch {
        return false
      }
    }
    expect(alive()).toBe(true)
    launcher.kill('SIGKILL') // while the server may still be starting: it notices once it is up
    await Bun.sleep(200)
    expect(alive()).toBe(true)
    expect(await eventually(async () => !alive(), 8_000)).toBe(true)
  })

  test('SIGTERM during a burst of requests: every accepted request is answered, and the exit code is 0', async () => {
    const server = await spawnServer(baseEnv(store.env))
    const slow = (ms: number) => fetch(`${server.url}/api/v1/ledger/slow?ms=${ms}`).then(
      async (r) => ({ status: r.status, body: await r.text() }),
      (e: Error) => ({ status: 0, body: e.message }),
    )
    const accepted = Array.from({ length: 60 }, (_, i) => slow(600 + (i % 10) * 30))
    // SIGTERM once the server is serving all 60 (on a busy machine they can take a while to arrive).
    const serving = async () => (await fetch(`${server.url}/api/v1/ledger/slow/serving`).then((r) => r.json() as Promise<{ serving: number }>)).serving
    expect(await eventually(async () => (await serving()) === 60, 5_000)).toBe(true)
    const t0 = Date.now()
    server.proc.kill('SIGTERM')
    await Bun.sleep(20)
    const late = Array.from({ length: 10 }, () => slow(10))
    const answered = await Promise.all(accepted)
    expect(answered.map((a) => a.status)).toEqual(Array(60).fill(200))
    // Requests sent after SIGTERM are refused at the door (no connection, or 503), never dropped half-way.
    for (const r of await Promise.all(late)) expect([0, 200, 503]).toContain(r.status)
    expect(await server.proc.exited).toBe(0)
    expect(Date.now() - t0).toBeLessThan(10_000)
    expect(server.output()).toContain('tessera stopped')
  })
})
