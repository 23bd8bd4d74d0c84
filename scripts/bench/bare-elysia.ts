/**
 * Baseline for scripts/bench/http.ts: the smallest Elysia server, so the benchmark can say how much
 * throughput the kernel's stack costs on top of the framework itself. PORT comes from the environment.
 */
import { Elysia } from 'elysia'

const port = Number(process.env.PORT)
if (!Number.isInteger(port) || port <= 0) throw new Error('bare-elysia: PORT must be set to a port number')

new Elysia().get('/', () => 'hello').listen(port)
