/**
 * One black-box end-to-end suite over three topologies (issue 5): all-in-one on embedded defaults,
 * all-in-one on PostgreSQL + Redis + Mosquitto, and split (gateway + one process per plugin, two
 * inventory replicas) on the same services. Each selected topology is started once; the same
 * suite (and its commerce part, tests/e2e/commerce.ts) runs against it, then, in split mode, the
 * replica and fault tests, the checkout faults last.
 *
 * Which topologies: E2E_TOPOLOGIES (comma-separated), else `embedded` on embedded defaults and
 * `services,split` when TEST_DATABASE_URL and TEST_REDIS_URL are set (scripts/test.ts sets both).
 */
import { afterAll, beforeAll, describe } from 'bun:test'
import type { MqttClient } from 'mqtt'
import { closeAll } from '../realtime-client'
import { commerceSuite } from './commerce'
import { checkoutFaultSuite, faultSuite, replicaSuite } from './split-suite'
import { blackBoxSuite } from './suite'
import { selectedTopologies, startTopology, type Topology } from './topologies'

for (const name of selectedTopologies())
  describe(`end to end: ${name}`, () => {
    let topology: Topology
    const mqttClients: MqttClient[] = []

    beforeAll(async () => {
      topology = await startTopology(name)
    }, 90_000)
    afterAll(async () => {
      closeAll()
      for (const c of mqttClients) c.end(true)
      await topology?.stop()
    }, 60_000)

    blackBoxSuite(() => topology, mqttClients)
    commerceSuite(() => topology)
    if (name === 'split') {
      replicaSuite(() => topology, mqttClients)
      faultSuite(() => topology)
      checkoutFaultSuite(() => topology)
    }
  })
