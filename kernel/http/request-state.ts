/** Per-request facts the kernel's hooks share (id, start time, client IP), keyed by the Request. */
export interface RequestState {
  id: string
  start: number
  ip: string
  /** Set by the idempotency hooks while a keyed request is being answered. */
  idempotencyKey?: string
  /** Set with `idempotencyKey` until the answer is recorded; the error handler calls it to free the key. */
  releaseIdempotencyKey?: () => Promise<void>
}

const states = new WeakMap<Request, RequestState>()

export const requestState = {
  set: (request: Request, state: RequestState) => states.set(request, state),
  get: (request: Request): RequestState => states.get(request) ?? { id: 'unknown', start: performance.now(), ip: 'unknown' },
}
