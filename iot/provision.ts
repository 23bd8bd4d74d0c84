/**
 * Creates what a fleet of simulated sensors needs over the inventory REST API (CONTRACT.md §4):
 * warehouses, items and devices (whose secrets are shown once, so the fleet can be saved to a
 * file and reused). Shared by the simulator, tests and benchmarks.
 */
import { readFileSync, writeFileSync } from 'node:fs'

export interface DeviceCredentials {
  deviceId: string
  secret: string
  /** Warehouse code. */
  warehouse: string
}

export interface Fleet {
  devices: DeviceCredentials[]
  skus: string[]
}

export interface ProvisionOptions {
  /** Base URL of the HTTP API, e.g. http://127.0.0.1:3000. */
  api: string
  /** Access token of a manager or admin. */
  token: string
  warehouses: number
  devices: number
  skus: number
  /** Prefix of warehouse codes, SKUs and device names (default `SIM`). */
  prefix?: string
  /** Requests in parallel (default 8). */
  concurrency?: number
  onProgress?: (message: string) => void
}

/** A non-2xx answer, with the contract's error envelope when there is one. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string | undefined,
    message: string,
  ) {
    super(message)
    this.name = 'ApiError'
  }
}

/** Creates (or reuses) the warehouses and items, then creates the devices, spread evenly over the warehouses. */
export async function provisionFleet(options: ProvisionOptions): Promise<Fleet> {
  const api = inventoryApi(options.api, options.token)
  const prefix = options.prefix ?? 'SIM'
  const concurrency = options.concurrency ?? 8
  const progress = options.onProgress ?? (() => {})

  const warehouses = range(options.warehouses).map((i) => `${prefix}-WH-${i + 1}`)
  await inParallel(warehouses, concurrency, (code) => api.ensureWarehouse(code, `${prefix} warehouse ${code}`))
  progress(`${warehouses.length} warehouses ready`)

  const skus = range(options.skus).map((i) => `${prefix}-SKU-${String(i + 1).padStart(5, '0')}`)
  await inParallel(skus, concurrency, (sku) => api.ensureItem(sku, `${prefix} item ${sku}`))
  progress(`${skus.length} items ready`)

  const devices = await inParallel(range(options.devices), concurrency, (i) => api.createDevice(warehouses[i % warehouses.length], `${prefix}-device-${i + 1}`))
  progress(`${devices.length} devices created`)
  return { devices, skus }
}

/** The inventory calls the fleet needs; 409 on a warehouse or item means it already exists, which is fine. */
export function inventoryApi(base: string, token: string) {
  const post = jsonPoster(base, token)
  const ignoreConflict = (error: unknown) => {
    if (!(error instanceof ApiError && error.status === 409)) throw error
  }
  return {
    ensureWarehouse: (code: string, name: string) => post('/api/v1/inventory/warehouses', { code, name }).then(() => {}, ignoreConflict),
    ensureItem: (sku: string, name: string) => post('/api/v1/inventory/items', { sku, name }).then(() => {}, ignoreConflict),
    async createDevice(warehouse: string, name: string): Promise<DeviceCredentials> {
      const body = (await post('/api/v1/inventory/devices', { warehouse, name })) as { id?: unknown; secret?: unknown }
      if (typeof body.id !== 'string' || typeof body.secret !== 'string') throw new Error(`POST /api/v1/inventory/devices answered without { id, secret }: ${JSON.stringify(body)}`)
      return { deviceId: body.id, secret: body.secret, warehouse }
    },
  }
}

/**
 * POSTs JSON with the bearer token. Each logical request carries one Idempotency-Key, so retrying
 * after a network error or a 429 (honouring Retry-After) or 503 never creates a second device.
 */
function jsonPoster(base: string, token: string, attempts = 8) {
  return async (path: string, body: unknown): Promise<unknown> => {
    const key = crypto.randomUUID()
    for (let attempt = 1; ; attempt++) {
      const res = await fetch(new URL(path, base), {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'idempotency-key': key },
        body: JSON.stringify(body),
      }).catch((error: Error) => error)
      const wait = retryDelayMs(res, attempt)
      if (wait === undefined || attempt >= attempts) return readAnswer(path, res)
      await Bun.sleep(wait)
    }
  }
}

/** How long to wait before retrying, or undefined when the answer is final. */
function retryDelayMs(res: Response | Error, attempt: number): number | undefined {
  if (res instanceof Error) return 200 * attempt
  if (res.status === 429) return Number(res.headers.get('retry-after') ?? 1) * 1000
  if (res.status === 503) return 250 * attempt
  return undefined
}

async function readAnswer(path: string, res: Response | Error): Promise<unknown> {
  if (res instanceof Error) throw new Error(`POST ${path}: ${res.message}`)
  const text = await res.text()
  const body = text ? safeJson(text) : undefined
  if (res.ok) return body
  const error = (body as { error?: { code?: string; message?: string } } | undefined)?.error
  throw new ApiError(res.status, error?.code, `POST ${path}: ${res.status} ${error?.message ?? text.slice(0, 200)}`)
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

/**
 * Reads a fleet file: either `{ devices: [...], skus: [...] }` or a bare array of
 * `{ deviceId, secret, warehouse }` (then the SKUs must come from elsewhere: `skus` is empty).
 */
export function loadFleet(path: string): Fleet {
  const data = JSON.parse(readFileSync(path, 'utf8')) as unknown
  const devices = Array.isArray(data) ? data : (data as { devices?: unknown })?.devices
  const skus = Array.isArray(data) ? [] : ((data as { skus?: unknown })?.skus ?? [])
  if (!Array.isArray(devices)) throw new Error(`${path}: expected an array of devices or { devices, skus }`)
  devices.forEach((d, i) => assertCredentials(d, `${path}: devices[${i}]`))
  if (!Array.isArray(skus) || skus.some((s) => typeof s !== 'string')) throw new Error(`${path}: skus must be an array of strings`)
  return { devices, skus }
}

export function saveFleet(path: string, fleet: Fleet) {
  writeFileSync(path, JSON.stringify(fleet, null, 2) + '\n', { mode: 0o600 })
}

function assertCredentials(value: unknown, where: string): asserts value is DeviceCredentials {
  const d = value as Partial<DeviceCredentials> | null
  for (const key of ['deviceId', 'secret', 'warehouse'] as const) {
    if (typeof d?.[key] !== 'string' || d[key] === '') throw new Error(`${where}: ${key} must be a non-empty string`)
  }
}

/** Maps `items` through `fn` with at most `limit` calls at once, keeping the order. */
export async function inParallel<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length)
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const i = next++
      results[i] = await fn(items[i])
    }
  }
  await Promise.all(range(Math.min(limit, items.length)).map(worker))
  return results
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i)
