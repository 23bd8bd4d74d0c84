/**
 * The metric helpers of kernel/http/metrics.ts that busy paths use: a tally hands its counts to the
 * prom-client counter once per turn of the event loop, and none is lost or given to the wrong labels.
 */
import { describe, expect, test } from 'bun:test'
import { Metrics, tally } from '../kernel/http/metrics'

const value = async (metrics: Metrics, name: string, labels: Record<string, string>) => {
  const metric = await metrics.registry.getSingleMetric(name)!.get()
  return metric.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value ?? 0
}

describe('tally', () => {
  test('every count reaches the counter after the turn it was made in, under its own labels', async () => {
    const metrics = new Metrics()
    const counter = metrics.forPlugin('test').counter('things_total', 'Things by kind and outcome', ['kind', 'outcome'])
    const count = tally(counter)
    for (let i = 0; i < 1000; i++) count({ kind: i % 2 ? 'odd' : 'even', outcome: 'ok' })
    count({ kind: 'odd', outcome: 'failed' }, 5)
    // Not yet: counts go to prom-client once per turn of the event loop.
    expect(await value(metrics, 'test_things_total', { kind: 'odd', outcome: 'ok' })).toBe(0)
    await new Promise((resolve) => setImmediate(resolve))
    expect(await value(metrics, 'test_things_total', { kind: 'odd', outcome: 'ok' })).toBe(500)
    expect(await value(metrics, 'test_things_total', { kind: 'even', outcome: 'ok' })).toBe(500)
    expect(await value(metrics, 'test_things_total', { kind: 'odd', outcome: 'failed' })).toBe(5)
    // A later turn adds to what is there.
    count({ kind: 'even', outcome: 'ok' }, 2)
    await new Promise((resolve) => setImmediate(resolve))
    expect(await value(metrics, 'test_things_total', { kind: 'even', outcome: 'ok' })).toBe(502)
  })
})
