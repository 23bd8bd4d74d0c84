/**
 * Prometheus metrics: one registry per kernel, HTTP counts and latency by route template and
 * status, and a small API so plugins register their own (names get the plugin as prefix).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

const HEAP_SPACE_METRICS = ['nodejs_heap_space_size_total_bytes', 'nodejs_heap_space_size_used_bytes', 'nodejs_heap_space_size_available_bytes']

export class Metrics {
  readonly registry = new Registry()
  readonly requests: Counter<'method' | 'route' | 'status'>
  readonly latency: Histogram<'method' | 'route' | 'status'>

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'tessera_' })
    // In Bun these three are read by walking the whole heap (v8.getHeapSpaceStatistics): 100–230 ms
    // with the event loop blocked on every scrape. Heap size and use stay (nodejs_heap_size_*).
    for (const name of HEAP_SPACE_METRICS) this.registry.removeSingleMetric(`tessera_${name}`)
    this.latency = new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request latency, by method, route template and status',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [this.registry],
    })
    // The histogram counts every request already; the counter takes those counts when scraped,
    // so a request costs one observation instead of two.
    const latency = this.latency
    this.requests = new Counter({
      name: 'http_requests_total',
      help: 'HTTP requests answered, by method, route template and status',
      labelNames: ['method', 'route', 'status'],
      registers: [this.registry],
      async collect() {
        this.reset()
        for (const v of (await latency.get()).values)
          if (v.metricName === 'http_request_duration_seconds_count') this.inc(v.labels as Record<'method' | 'route' | 'status', string>, v.value)
      },
    })
  }

  observe(method: string, route: string, status: number, seconds: number) {
    this.latency.observe({ method, route, status }, seconds)
  }

  /** The metric factory handed to a plugin: every name is prefixed with the plugin's. */
  forPlugin(plugin: string) {
    const name = (n: string) => `${plugin}_${n}`.replace(/[^a-zA-Z0-9_]/g, '_')
    const registers = [this.registry]
    return {
      counter: <L extends string>(n: string, help: string, labelNames: L[] = []) => new Counter<L>({ name: name(n), help, labelNames, registers }),
      /** `collect`, if given, sets the gauge's values when it is scraped. */
      gauge: <L extends string>(n: string, help: string, labelNames: L[] = [], collect?: (this: Gauge<L>) => void) =>
        new Gauge<L>({ name: name(n), help, labelNames, registers, collect }),
      histogram: <L extends string>(n: string, help: string, labelNames: L[] = [], buckets?: number[]) =>
        new Histogram<L>({ name: name(n), help, labelNames, buckets, registers }),
    }
  }
}

export type PluginMetrics = ReturnType<Metrics['forPlugin']>

/**
 * Counts for `counter` added up here and handed to it once per event-loop turn, for busy paths (an
 * event delivery per event and consumer, a Socket.IO client event): prom-client hashes the
 * labels on every inc, even a labelled child's, which cost more than the counting. A scrape sees
 * every count of the turns before its own.
 */
export function tally<L extends string>(counter: Counter<L>): (labels: Record<L, string>, n?: number) => void {
  const counts = new Map<string, { child: { inc(n: number): void }; n: number }>()
  let pending = false
  const flush = () => {
    pending = false
    for (const count of counts.values())
      if (count.n > 0) {
        count.child.inc(count.n)
        count.n = 0
      }
  }
  return (labels, n = 1) => {
    const key = Object.values(labels).join('\u0000')
    let count = counts.get(key)
    if (!count) counts.set(key, (count = { child: counter.labels(labels), n: 0 }))
    count.n += n
    if (!pending) {
      pending = true
      setImmediate(flush)
    }
  }
}
