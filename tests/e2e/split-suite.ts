import type { MqttClient } from 'mqtt'
import type { Topology } from './topologies'
export function replicaSuite(_topology: () => Topology, _clients: MqttClient[]) {}
export function faultSuite(_topology: () => Topology) {}
