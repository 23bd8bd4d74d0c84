/**
 * Checkout throughput: orders per second through the whole saga (reserve → authorize → place →
 * commit + capture) on the all-in-one server with SQLite, N customers checking out at a time.
 * Afterwards the stock is checked against what was sold: no
 * oversell, nothing left reserved.
 *
 *   bun scripts/bench/checkout.ts [--concurrency 16,64] [--orders 10] [--skus 20] [--min-rate 200] [--profile <dir>]
 *                                 [--journey [--duration 10] [--warmup 2]]
 *
 * By default each customer's carts are filled first, untimed, then only the checkouts (the saga)
 * are timed: --orders per customer, after one untimed warm-up order each. --journey times the whole
 * customer journey instead (create a cart, add the line, check out), for --duration seconds.
 *
 * --profile writes the server's CPU profile (Bun's --cpu-prof, plus a markdown summary) to <dir>.
 *
 * Every tenth order also takes one unit of a scarce SKU stocked with 25: it sells out early, after
 * which those orders are 409 OUT_OF_STOCK; the check is that exactly 25 were sold, never more, and
 * that none was refused while some was left.
 * The server's CPU time per order (from /proc, Linux) is reported too: unlike orders/s it hardly
 * depends on what else the machine runs, and 1000 / it is the rate one busy core would sustain.
 * Exit code: 0 the best level reached --min-rate and the stock agrees, 1 otherwise, 2 could not run.
 */
import { parseArgs } from 'node:util'
import { readFileSync, rmSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from '../free-port'
import { stopChild } from './children'

const ROOT = join(import.meta.dir, '..', '..')
const ADMIN = { email: 'bench-admin@example.com', password: 'bench-password-1' }
const PLENTY = 1_000_000
const SCARCE = 25
const ADDRESS = { name: 'Bench Buyer', line1: '1 Load Street', city: 'Benchville', postalCode: '00000', country: 'NL' }

const { values: args } = parseArgs({
  options: {
    concurrency: { type: 'string', default: '16,64' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    skus: { type: 'string', default: '20' },
    'min-rate': { type: 'string', default: '200' },
    profile: { type: 'string' },
    orders: { type: 'string', default: '10' },
    journey: { type: 'boolean', default: false },
  },
})
const levels = args.concurrency!.split(',').map(Number)
const durationMs = Number(args.duration) * 1000
const warmupMs = Number(args.warmup) * 1000
const skuCount = Number(args.skus)
const minRate = Number(args['min-rate'])
const ordersPerCustomer = Number(args.orders)
const journey = args.journey!

interface Reply {
  status: number
  body: any
}

async function main() {
  const dbFile = join(tmpdir(), `tessera-bench-checkout-${Date.now()}.db`)
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const profiling = args.profile ? ['--cpu-prof', '--cpu-prof-md', `--cpu-prof-dir=${args.profile}`] : []
  const server = Bun.spawn([process.execPath, ...profiling, join(ROOT, 'kernel/main.ts')], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      PORT: String(port),
      HOST: '127.0.0.1',
      MQTT_PORT: '0',
      DATABASE_URL: `sqlite:${dbFile}`,
      LOG_LEVEL: 'warn',
      ADMIN_EMAIL: ADMIN.email,
      ADMIN_PASSWORD: ADMIN.password,
      // Setup registers hundreds of customers; hashing cost is not what is measured here.
      PASSWORD_HASH_MEMORY_KIB: '1024',
      PASSWORD_HASH_TIME_COST: '1',
      RATE_LIMIT_IP_PER_MIN: '100000000',
      RATE_LIMIT_USER_PER_MIN: '100000000',
    },
    stdout: 'ignore',
    stderr: 'inherit',
  })
  try {
    await waitReady(url)
    const admin = (await request(url, 'POST', '/api/v1/auth/login', ADMIN)).body.accessToken as string
    const warehouse = 'BENCH'
    await expectOk(request(url, 'POST', '/api/v1/inventory/warehouses', { code: warehouse, name: 'Bench' }, admin))
    const skus = Array.from({ length: skuCount }, (_, i) => `BENCH-${i}`)
    const scarce = 'BENCH-SCARCE'
    for (const [sku, stock] of [...skus.map((s) => [s, PLENTY] as const), [scarce, SCARCE] as const]) {
      await expectOk(request(url, 'POST', '/api/v1/catalog/products', { sku, name: `Bench ${sku}`, price: 1999, currency: 'EUR' }, admin))
      await expectOk(request(url, 'POST', '/api/v1/inventory/items', { sku, name: sku }, admin))
      await expectOk(request(url, 'POST', '/api/v1/inventory/adjustments', { sku, warehouse, delta: stock, reason: 'bench stock' }, admin))
    }
    const customers = await register(url, Math.max(...levels))
    const loadBefore = loadavg()[0]

    const sold = new Map<string, number>()
    let scarceRefused = 0
    const rows: string[][] = []
    let best = 0
    let orderNo = 0
    for (const concurrency of levels) {
      const latencies: number[] = []
      let ok = 0
      let outOfStock = 0
      let failed = 0
      /** One order: its lines, and a cart already holding them unless the cart is part of what is timed. */
      const prepare = async (token: string) => {
        const n = orderNo++
        const lines: [string, number][] = [[skus[n % skus.length], 1]]
        if (n % 10 === 0) lines.push([scarce, 1])
        return { n, lines, cartId: journey ? undefined : await fillCart(url, token, lines) }
      }
      const place = async (token: string, order: Awaited<ReturnType<typeof prepare>>, timed: boolean) => {
        const t0 = performance.now()
        const r = order.cartId ? await checkoutCart(url, token, order.cartId, `bench-${order.n}`) : await journeyOf(url, token, order.lines, `bench-${order.n}`)
        const ms = performance.now() - t0
        if (r.status === 201) for (const [sku, q] of order.lines) sold.set(sku, (sold.get(sku) ?? 0) + q)
        else if (r.status === 409 && order.lines.length > 1) scarceRefused++
        if (!timed) return
        latencies.push(ms)
        if (r.status === 201) ok++
        else if (r.status === 409) outOfStock++
        else failed++
      }
      const buyers = customers.slice(0, concurrency)
      let seconds: number
      let cpu: number
      if (journey) {
        // The whole journey is timed: cart, line, checkout, for --duration after --warmup.
        const warmEnd = Date.now() + warmupMs
        const stopAt = warmEnd + durationMs
        let cpuAtStart = NaN
        setTimeout(() => (cpuAtStart = cpuMs(server.pid)), warmupMs)
        await Promise.all(buyers.map(async (token) => {
          while (Date.now() < stopAt) await place(token, await prepare(token), Date.now() >= warmEnd)
        }))
        seconds = (Date.now() - warmEnd) / 1000
        cpu = cpuMs(server.pid) - cpuAtStart
      } else {
        // Carts are filled first (untimed), then only the checkouts are timed: --orders per customer, after a warm-up order each.
        await Promise.all(buyers.map(async (token) => place(token, await prepare(token), false)))
        const queues = await Promise.all(buyers.map(async (token) => {
          const orders = []
          for (let i = 0; i < ordersPerCustomer; i++) orders.push(await prepare(token))
          return orders
        }))
        const cpuAtStart = cpuMs(server.pid)
        const t0 = Date.now()
        await Promise.all(buyers.map(async (token, i) => {
          for (const order of queues[i]) await place(token, order, true)
        }))
        seconds = (Date.now() - t0) / 1000
        cpu = cpuMs(server.pid) - cpuAtStart
      }
      const cpuPerOrder = ok ? cpu / ok : NaN
      const rate = ok / seconds
      best = Math.max(best, rate)
      latencies.sort((a, b) => a - b)
      const pct = (p: number) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))].toFixed(1) : '-')
      rows.push([String(concurrency), String(ok), String(outOfStock), String(failed), rate.toFixed(0), pct(50), pct(99), cpuPerOrder.toFixed(1), (1000 / cpuPerOrder).toFixed(0)])
    }

    // Zero oversell: what is on hand is what was stocked minus what was sold, and nothing stays reserved.
    const problems: string[] = []
    for (const [sku, stock] of [...skus.map((s) => [s, PLENTY] as const), [scarce, SCARCE] as const]) {
      const level = (await request(url, 'GET', `/api/v1/inventory/stock?sku=${sku}&warehouse=${warehouse}`, undefined, admin)).body.items[0]
      const expected = stock - (sold.get(sku) ?? 0)
      if (level.onHand !== expected || level.reserved !== 0 || level.onHand < 0)
        problems.push(`${sku}: onHand ${level.onHand} (expected ${expected}), reserved ${level.reserved}`)
    }
    const scarceSold = sold.get(scarce) ?? 0
    // Refused for want of stock while some was left would be as wrong as selling more than there was.
    if (scarceSold > SCARCE || (scarceRefused > 0 && scarceSold !== SCARCE))
      problems.push(`${scarce}: ${scarceSold} sold of ${SCARCE}, ${scarceRefused} orders refused for it`)
    const active = (await request(url, 'GET', '/api/v1/inventory/reservations?status=active&limit=1', undefined, admin)).body.items.length
    if (active) problems.push('active reservations left behind')

    const what = journey ? `the whole journey (cart, line, checkout) timed for ${args.duration} s after ${args.warmup} s` : `checkouts of filled carts, ${ordersPerCustomer} per customer`
    console.log(`\ncheckout throughput, all-in-one, SQLite, ${skuCount} SKUs + 1 scarce (${SCARCE} units): ${what}`)
    // Orders/s depends on what else the machine runs; CPU ms/order hardly does.
    console.log(`load average (1 min) ${loadBefore.toFixed(1)} before, ${loadavg()[0].toFixed(1)} after, on ${navigator.hardwareConcurrency} cores\n`)
    const head = ['customers', 'orders', '409', 'errors', 'orders/s', 'p50 ms', 'p99 ms', 'server CPU ms/order', 'orders/s per busy core']
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
    const line = (cells: string[]) => `| ${cells.map((c, i) => c.padStart(widths[i])).join(' | ')} |`
    console.log(line(head))
    console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`)
    for (const r of rows) console.log(line(r))
    console.log(`\nstock check: ${problems.length ? `FAILED\n  ${problems.join('\n  ')}` : `ok (no oversell: every SKU's onHand = stocked - sold, 0 reserved; scarce SKU ${scarceSold}/${SCARCE} sold${scarceSold === SCARCE ? ', sold out' : ''})`}`)
    console.log(`best: ${best.toFixed(0)} orders/s (target ≥ ${minRate})`)
    process.exitCode = problems.length || best < minRate ? 1 : 0
  } finally {
    await stopChild(server, 5000)
    for (const suffix of ['', '-wal', '-shm']) rmSync(dbFile + suffix, { force: true })
  }
}

/** CPU time (user + system) the process has used so far, from /proc: what an order costs whatever else runs on the machine. */
function cpuMs(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100 // utime + stime, in clock ticks of 1/100 s
  } catch {
    return NaN
  }
}

/** A new cart holding the lines. */
async function fillCart(url: string, token: string, lines: [string, number][]): Promise<string> {
  const cart = await request(url, 'POST', '/api/v1/orders/carts', undefined, token)
  if (cart.status !== 201) throw new Error(`cart: ${cart.status} ${JSON.stringify(cart.body)}`)
  for (const [sku, quantity] of lines) {
    const added = await request(url, 'POST', `/api/v1/orders/carts/${cart.body.id}/items`, { sku, quantity }, token)
    if (added.status !== 201) throw new Error(`cart line: ${added.status} ${JSON.stringify(added.body)}`)
  }
  return cart.body.id
}

function checkoutCart(url: string, token: string, cartId: string, key: string): Promise<Reply> {
  return request(url, 'POST', `/api/v1/orders/carts/${cartId}/checkout`, { payment: { method: 'card', token: 'tok_ok' }, shippingAddress: ADDRESS }, token, {
    'idempotency-key': key,
  })
}

async function journeyOf(url: string, token: string, lines: [string, number][], key: string): Promise<Reply> {
  return checkoutCart(url, token, await fillCart(url, token, lines), key)
}

async function register(url: string, count: number): Promise<string[]> {
  const tokens: string[] = []
  const stamp = Date.now().toString(36)
  for (let i = 0; i < count; i += 16)
    tokens.push(
      ...(await Promise.all(
        Array.from({ length: Math.min(16, count - i) }, async (_, j) => {
          const r = await request(url, 'POST', '/api/v1/auth/register', { email: `buyer-${stamp}-${i + j}@example.com`, password: 'bench-password-1', name: 'Buyer' })
          if (r.status !== 201) throw new Error(`register failed: ${r.status} ${JSON.stringify(r.body)}`)
          return r.body.accessToken as string
        }),
      )),
    )
  return tokens
}

async function request(url: string, method: string, path: string, body?: unknown, token?: string, headers: Record<string, string> = {}): Promise<Reply> {
  const res = await fetch(url + path, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await res.text()
  return { status: res.status, body: text ? JSON.parse(text) : undefined }
}

async function expectOk(reply: Promise<Reply>) {
  const r = await reply
  if (r.status >= 300) throw new Error(`setup request failed: ${r.status} ${JSON.stringify(r.body)}`)
}

async function waitReady(url: string) {
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    try {
      if ((await fetch(`${url}/health/ready`)).status === 200) return
    } catch {}
    await Bun.sleep(100)
  }
  throw new Error('the server did not become ready')
}

main().catch((error) => {
  console.error(error)
  process.exit(2)
})
