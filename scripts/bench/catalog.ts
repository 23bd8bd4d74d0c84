/**
 * Catalog benchmarks, in sections (each runnable alone with --section):
 *
 *   bun scripts/bench/catalog.ts [--section search] [--database sqlite|postgres|both] [--products 100000]
 *                                [--rounds 40] [--target-p95-ms 20] [--keep | --store <database url>]
 *   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test   (the PostgreSQL server; this is the default)
 *
 * search: per database, a fresh SQLite file or PostgreSQL schema (`?schema=bench_catalog_<id>`,
 * dropped afterwards) is seeded with --products products by scripts/seed-catalog.ts (with the stock
 * projection filled in as inventory's events would, four SKUs in five in stock), a real server is
 * started (`bun kernel/main.ts`, auth + catalog), and a mix of searches is sent over HTTP one at a
 * time (latency, not throughput): words of the catalog (product types, brands, colors, prefixes as
 * typed), with a category, a price range, each sort, inStock, second pages via nextCursor, and
 * browsing without words. After one untimed warm-up pass, --rounds passes of the mix are timed
 * (client-side, request sent to body read). The table gives p50/p95/p99 per query kind and dialect
 * against the target. While iterating, --keep leaves the seeded store in place and prints its URL,
 * and --store <url> (with one --database) runs on that store instead of a fresh one (seeding adds
 * only what is missing); reported numbers come from a fresh store. Exit code: 0 every kind meets the target, 1 one does not, 2 the benchmark
 * could not run.
 */
import { rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import type { Subprocess } from 'bun'
import postgres from 'postgres'
import { freePort } from '../free-port'
import { seedCatalog, vocabulary } from '../seed-catalog'
import { stopChild } from './children'

const ROOT = join(import.meta.dir, '..', '..')
const READY_TIMEOUT_MS = 30_000
const UNLIMITED = '100000000'
const DEFAULT_POSTGRES = 'postgres://postgres@127.0.0.1:5432/test'

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    section: { type: 'string', default: 'search' },
    database: { type: 'string', default: 'both' },
    products: { type: 'string', default: '100000' },
    rounds: { type: 'string', default: '40' },
    'target-p95-ms': { type: 'string', default: '20' },
    keep: { type: 'boolean', default: false },
    store: { type: 'string' },
  },
})

// ------------------------------------------------------------------------------------------------
// shared: a seeded store and a server on it
// ------------------------------------------------------------------------------------------------

interface Store {
  name: 'sqlite' | 'postgres'
  url: string
  drop(): Promise<void>
}

/** The store of --store, or a fresh one; --keep and --store leave it in place. */
function storeFor(name: Store['name']): Store {
  if (values.store) return { name, url: values.store, drop: async () => {} }
  const store = freshStore(name)
  if (!values.keep) return store
  return { ...store, drop: async () => console.log(`search / ${name}: kept ${store.url}`) }
}

function freshStore(name: Store['name']): Store {
  const id = Bun.randomUUIDv7().replace(/-/g, '').slice(-12)
  if (name === 'sqlite') {
    const file = join(tmpdir(), `tessera-bench-catalog-${id}.db`)
    return { name, url: `sqlite:${file}`, drop: async () => ['', '-wal', '-shm'].forEach((s) => rmSync(file + s, { force: true })) }
  }
  const base = process.env.BENCH_DATABASE_URL || DEFAULT_POSTGRES
  const schema = `bench_catalog_${id}`
  return {
    name,
    url: `${base}${base.includes('?') ? '&' : '?'}schema=${schema}`,
    async drop() {
      const sql = postgres(base, { onnotice: () => {}, max: 1 })
      await sql.unsafe(`drop schema if exists "${schema}" cascade`)
      await sql.end()
    },
  }
}

async function startServer(databaseUrl: string): Promise<{ url: string; proc: Subprocess }> {
  const port = await freePort()
  const proc = Bun.spawn([process.execPath, join(ROOT, 'kernel/main.ts')], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      DATABASE_URL: databaseUrl,
      PORT: String(port),
      HOST: '127.0.0.1',
      PLUGINS: 'auth,catalog',
      LOG_LEVEL: 'warn',
      MQTT_PORT: '0',
      RATE_LIMIT_IP_PER_MIN: UNLIMITED,
      RATE_LIMIT_USER_PER_MIN: UNLIMITED,
    },
    stdout: 'ignore',
    stderr: 'inherit',
  })
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + READY_TIMEOUT_MS
  while (Date.now() < deadline) {
    const ready = await fetch(`${url}/health/ready`).then((r) => r.status === 200, () => false)
    if (ready) return { url, proc }
    await Bun.sleep(100)
  }
  await stopChild(proc, 3000)
  throw new Error('the server did not become ready')
}

/** Nearest-rank percentile of sorted values. */
const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!

// ------------------------------------------------------------------------------------------------
// section: search
// ------------------------------------------------------------------------------------------------

interface Query {
  kind: string
  path: string
  /** Also time the second page (nextCursor) under its own kind. */
  second?: string
}

/** The mix: the same every run (a seeded choice of words). */
function searchMix(): Query[] {
  const v = vocabulary()
  let seed = 42
  const pick = <T>(xs: readonly T[]) => xs[(seed = (seed * 1103515245 + 12345) & 0x7fffffff) % xs.length]!
  const q = (words: string) => `q=${encodeURIComponent(words)}`
  const mix: Query[] = []
  for (let i = 0; i < 4; i++) {
    const type = pick(v.types)
    mix.push({ kind: 'q: product type', path: q(type), second: 'q: page 2 (cursor)' })
    mix.push({ kind: 'q: brand + type', path: q(`${pick(v.brands)} ${type.split(' ').pop()}`) })
    mix.push({ kind: 'q: color + type', path: q(`${pick(v.colors)} ${pick(v.types)}`) })
    mix.push({ kind: 'q: prefix as typed', path: q(pick(v.types).slice(0, 4)) })
    mix.push({ kind: 'q: one common word', path: q(pick([...v.colors, ...v.adjectives])), second: 'q: page 2 (cursor)' })
    mix.push({ kind: 'q + category', path: `${q(pick(v.colors))}&category=${pick(v.departments)}` })
    mix.push({ kind: 'q + price range', path: `${q(pick(v.types))}&minPrice=2000&maxPrice=20000` })
    mix.push({ kind: 'q + sort price', path: `${q(pick(v.adjectives))}&sort=${pick(['price_asc', 'price_desc'])}`, second: 'q: page 2 (cursor)' })
    mix.push({ kind: 'q + inStock', path: `${q(pick(v.types))}&inStock=true` })
    mix.push({ kind: 'browse: category', path: `category=${pick([...v.departments, ...v.groups])}`, second: 'browse: page 2 (cursor)' })
    mix.push({ kind: 'browse: category + sort', path: `category=${pick(v.groups)}&sort=${pick(['price_asc', 'price_desc', 'name'])}` })
    mix.push({ kind: 'browse: price range', path: `minPrice=${1000 * (1 + (i % 5))}&maxPrice=${5000 * (1 + (i % 5))}&sort=price_asc`, second: 'browse: page 2 (cursor)' })
    mix.push({ kind: 'browse: inStock, newest', path: 'inStock=true', second: 'browse: page 2 (cursor)' })
  }
  return mix
}

async function timedGet(url: string): Promise<{ ms: number; body: { items: unknown[]; nextCursor: string | null } }> {
  const t0 = performance.now()
  const res = await fetch(url)
  const text = await res.text()
  const ms = performance.now() - t0
  if (res.status !== 200) throw new Error(`GET ${url} answered ${res.status}: ${text.slice(0, 300)}`)
  return { ms, body: JSON.parse(text) }
}

async function runSearch(store: Store, products: number, rounds: number) {
  const t0 = performance.now()
  await seedCatalog(store.url, { count: products, simulateStock: true })
  const seedSeconds = (performance.now() - t0) / 1000
  const server = await startServer(store.url)
  const latencies = new Map<string, number[]>()
  let empty = 0
  try {
    const mix = searchMix()
    for (let round = -1; round < rounds; round++) {
      for (const query of mix) {
        const first = await timedGet(`${server.url}/api/v1/catalog/products?${query.path}`)
        if (round < 0) {
          if (first.body.items.length === 0) empty++
          continue // the warm-up pass
        }
        ;(latencies.get(query.kind) ?? latencies.set(query.kind, []).get(query.kind)!).push(first.ms)
        if (query.second && first.body.nextCursor) {
          const next = await timedGet(`${server.url}/api/v1/catalog/products?${query.path}&cursor=${encodeURIComponent(first.body.nextCursor)}`)
          ;(latencies.get(query.second) ?? latencies.set(query.second, []).get(query.second)!).push(next.ms)
        }
      }
    }
  } finally {
    await stopChild(server.proc, 5000)
  }
  return { seedSeconds, latencies, empty }
}

async function searchSection(): Promise<boolean> {
  const products = Number(values.products)
  const rounds = Number(values.rounds)
  const target = Number(values['target-p95-ms'])
  const dialects: Store['name'][] = values.database === 'both' ? ['sqlite', 'postgres'] : [values.database as Store['name']]
  if (values.store && dialects.length !== 1) throw new Error('--store needs --database sqlite or --database postgres')
  const results = new Map<string, Map<string, number[]>>()
  for (const dialect of dialects) {
    const store = storeFor(dialect)
    try {
      console.log(`search / ${dialect}: seeding ${products} products, then ${rounds} timed passes of the mix…`)
      const run = await runSearch(store, products, rounds)
      console.log(`search / ${dialect}: seeded in ${run.seedSeconds.toFixed(1)} s; ${run.empty} queries of the mix found nothing`)
      results.set(dialect, run.latencies)
    } finally {
      await store.drop()
    }
  }

  const kinds = [...new Set([...results.values()].flatMap((m) => [...m.keys()]))]
  const header = ['query kind', ...dialects.flatMap((d) => [`${d} p50`, `${d} p95`, `${d} p99`]), 'n', `p95 < ${target} ms`]
  const rows: string[][] = []
  let pass = true
  const all = new Map<string, number[]>(dialects.map((d) => [d, []]))
  for (const kind of [...kinds, 'all']) {
    const row = [kind]
    let ok = true
    let n = 0
    for (const d of dialects) {
      const raw = kind === 'all' ? all.get(d)! : (results.get(d)?.get(kind) ?? [])
      if (kind !== 'all') all.get(d)!.push(...raw)
      const sorted = [...raw].sort((a, b) => a - b)
      n = sorted.length
      if (!sorted.length) {
        row.push('-', '-', '-')
        continue
      }
      const p95 = percentile(sorted, 95)
      if (p95 >= target) ok = false
      row.push(percentile(sorted, 50).toFixed(1), p95.toFixed(1), percentile(sorted, 99).toFixed(1))
    }
    row.push(String(n), ok ? 'yes' : 'NO')
    if (!ok) pass = false
    rows.push(row)
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`
  console.log(`\nsearch over HTTP, ${products} products, one request at a time (ms, client-side)\n`)
  console.log(line(header))
  console.log(`|${widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`)
  for (const row of rows) console.log(line(row))
  return pass
}

// ------------------------------------------------------------------------------------------------

const sections: Record<string, () => Promise<boolean>> = { search: searchSection }

const section = sections[values.section!]
if (!section) {
  console.error(`--section must be one of: ${Object.keys(sections).join(', ')}`)
  process.exit(2)
}
try {
  process.exit((await section()) ? 0 : 1)
} catch (error) {
  console.error(error)
  process.exit(2)
}
