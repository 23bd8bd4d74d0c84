/**
 * The receiving side of remote calls: `POST /internal/v1/calls/:action`, for other Tessera
 * processes only (service token, else 401). Hidden from the OpenAPI document and outside /api, so
 * public rate limits do not apply. The input is checked against the contract as for a local call,
 * the provided handler runs within the caller's deadline (503 CALL_TIMEOUT after it) and inside
 * the caller's trace, and errors leave as the usual envelope.
 */
import { Elysia } from 'elysia'
import type { Logger } from 'pino'
import { Unavailable } from '../../shared/errors'
import { checkInput } from './index'
import { callScope, validTraceparent } from './context'
import { CALLS_PATH, TIMEOUT_HEADER } from './http'
import type { LocalTransport } from './local'
import type { ServiceTokens } from './service-token'

export interface CallEndpointDeps {
  local: LocalTransport
  tokens: ServiceTokens
  /** False while starting and once shutting down: callers then try another owner. */
  accepting: () => boolean
  /** The deadline when a caller sends none. */
  defaultTimeoutMs: number
  log: Logger
}

export function callEndpoint(deps: CallEndpointDeps) {
  return new Elysia({ name: 'tessera.calls' }).post(
    `${CALLS_PATH}/:action`,
    async ({ params: { action }, body, request }) => {
      const caller = await deps.tokens.verify(request.headers.get('authorization'))
      if (!deps.accepting()) throw new Unavailable('this process is not serving calls now', 'NOT_READY')
      if (!deps.local.reaches(action)) throw new Unavailable(`${action} is not hosted here`, 'NOT_HOSTED')
      checkInput(action, body)
      const sent = Number(request.headers.get(TIMEOUT_HEADER))
      const ms = Number.isFinite(sent) && sent > 0 ? Math.min(sent, 10 * deps.defaultTimeoutMs) : deps.defaultTimeoutMs
      const deadline = Date.now() + ms
      const traceparent = validTraceparent(request.headers.get('traceparent'))
      const meta = { caller, deadline, traceparent, idempotencyKey: request.headers.get('idempotency-key') ?? undefined }
      const result = await callScope.run({ deadline, traceparent }, () => within(ms, action, deps.local.invoke(action, body, meta)))
      return { result }
    },
    { detail: { hide: true } },
  )
}

/** The handler's answer, or 503 CALL_TIMEOUT once `ms` pass (the handler may still finish later). */
async function within<T>(ms: number, action: string, work: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Unavailable(`${action} did not finish within the caller's deadline (${ms} ms)`, 'CALL_TIMEOUT')), ms)
  })
  try {
    return await Promise.race([work, late])
  } finally {
    clearTimeout(timer)
  }
}
