/**
 * `npm test`: the whole suite on embedded defaults (SQLite, memory cache, in-process bus, embedded
 * MQTT broker), then the same suite again against real PostgreSQL + Redis + Mosquitto when they
 * answer. With CI=true the second run is mandatory: a service that does not answer fails the run instead of skipping it.
 * The end-to-end suite (tests/e2e) runs in both: against the all-in-one embedded topology in the
 * first run, against all-in-one and split (gateway + one process per plugin) on the services in the second.
 * Ends with the totals on a line of their own: `N passed, N failed`.
 */
import Redis from 'ioredis'
import postgres from 'postgres'

const targets = {
  TEST_DATABASE_URL: process.env.TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test',
  TEST_REDIS_URL: process.env.TEST_REDIS_URL || 'redis://127.0.0.1:6379',
}
// The MQTT suites start their own Mosquitto from deploy/mosquitto/mosquitto.conf, so what must be
// there is the broker's program (and mosquitto_ctrl for its dynamic-security file).
const MOSQUITTO = [process.env.MOSQUITTO_BIN ?? '/usr/sbin/mosquitto', 'mosquitto_ctrl']
const ci = /^(1|true)$/i.test(process.env.CI ?? '')
const extraArgs = process.argv.slice(2)

const withTimeout = <T>(p: Promise<T>, ms: number) =>
  Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms))])

/** Asks each service a real question (SELECT 1, PING, CONNECT); returns the problems. */
async function probeServices(): Promise<string[]> {
  const problems: string[] = []
  const check = async (name: string, fn: () => Promise<unknown>) => {
    try {
      await withTimeout(fn(), 3000)
    } catch (e) {
      problems.push(`${name}: ${(e as Error).message}`)
    }
  }
  await check(`PostgreSQL (${targets.TEST_DATABASE_URL})`, async () => {
    const sql = postgres(targets.TEST_DATABASE_URL, { max: 1, connect_timeout: 3, onnotice: () => {} })
    try {
      await sql`select 1`
    } finally {
      await sql.end({ timeout: 1 })
    }
  })
  await check(`Redis (${targets.TEST_REDIS_URL})`, async () => {
    const redis = new Redis(targets.TEST_REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
    try {
      await redis.connect()
      await redis.ping()
    } finally {
      redis.disconnect()
    }
  })
  await check(`Mosquitto (${MOSQUITTO.join(', ')})`, async () => {
    const missing = MOSQUITTO.filter((bin) => !Bun.which(bin))
    if (missing.length) throw new Error(`not installed: ${missing.join(', ')}`)
  })
  return problems
}

interface RunResult {
  passed: number
  failed: number
  exitCode: number
}

async function runSuite(label: string, env: Record<string, string>): Promise<RunResult> {
  console.log(`\n=== ${label} ===`)
  // A test that does not settle in 20 s is a hang, not a slow test. On the command line because
  // bun ignores bunfig.toml's [test] timeout (oven-sh/bun#7789) and would use its 5 s default.
  const proc = Bun.spawn([process.execPath, 'test', '--timeout', '20000', ...extraArgs], {
    env: { ...process.env, ...env },
    stdout: 'pipe',
    stderr: 'pipe',
  })
  let text = ''
  const pump = async (stream: ReadableStream<Uint8Array>, out: NodeJS.WriteStream) => {
    for await (const chunk of stream) {
      out.write(chunk)
      text += new TextDecoder().decode(chunk)
    }
  }
  await Promise.all([pump(proc.stdout, process.stdout), pump(proc.stderr, process.stderr)])
  const exitCode = await proc.exited
  const plain = text.replace(/\x1b\[[0-9;]*m/g, '')
  const count = (word: string) => Number(plain.match(new RegExp(`^\\s*(\\d+) ${word}$`, 'm'))?.[1] ?? 0)
  const result = { passed: count('pass'), failed: count('fail'), exitCode }
  // A run that crashed before reporting counts as a failure, never as zero tests.
  if (exitCode !== 0 && result.failed === 0) result.failed = 1
  return result
}

const runs: RunResult[] = []
runs.push(await runSuite('embedded defaults: SQLite, in-memory cache and bus; e2e topology: all-in-one embedded', { TEST_DATABASE_URL: '', TEST_REDIS_URL: '', E2E_TOPOLOGIES: 'embedded' }))

const problems = await probeServices()
if (problems.length === 0) {
  runs.push(await runSuite('real services: PostgreSQL, Redis, Mosquitto; e2e topologies: all-in-one and split', { ...targets, E2E_TOPOLOGIES: 'services,split' }))
} else if (ci) {
  console.error(`\nCI=true and these services do not answer, so the real-services run fails:\n  - ${problems.join('\n  - ')}`)
  runs.push({ passed: 0, failed: 1, exitCode: 1 })
} else {
  console.log(`\nreal-services run skipped (set CI=true to require it):\n  - ${problems.join('\n  - ')}`)
}

const passed = runs.reduce((n, r) => n + r.passed, 0)
const failed = runs.reduce((n, r) => n + r.failed, 0)
console.log(`\n${passed} passed, ${failed} failed`)
process.exit(failed > 0 || runs.some((r) => r.exitCode !== 0) ? 1 : 0)
