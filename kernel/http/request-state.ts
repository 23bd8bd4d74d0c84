import type { Principal } from './identity'

/** Per-request facts the kernel's parts share (id, start time, client IP), carried on the Request. */
export interface RequestState {
  id: string
  start: number
  /** The client's address; looked up on first use (it costs a system call). */
  readonly ip: string
  /** Forwarded by this deployment's gateway, which applied the public rate limits already. */
  admitted?: boolean
  /** The JSON body's bytes as received, for checks over them (webhook signatures). */
  rawBody?: Uint8Array
  /** The caller of a guarded route, once the guard has accepted its token. */
  principal?: Principal
  /** Set by the idempotency hooks while a keyed request is being answered. */
  idempotency?: { recordKey: string; hash: string }
  /** Set with `idempotency` until the answer is recorded; the error handler calls it to free the key. */
  releaseIdempotencyKey?: () => Promise<void>
}

// A symbol-keyed property rather than a WeakMap: measurably cheaper per request (no ephemeron for the GC).
const STATE = Symbol('tessera.request')

export const requestState = {
  set: (request: Request, state: RequestState) => void ((request as unknown as Record<symbol, RequestState>)[STATE] = state),
  get: (request: Request): RequestState =>
    (request as unknown as Record<symbol, RequestState | undefined>)[STATE] ?? { id: 'unknown', start: performance.now(), ip: 'unknown' },
}
