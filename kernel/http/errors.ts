/** The one place where failures become the error envelope of CONTRACT.md section 2. */
import { ValidationError } from 'elysia'
import { AppError, type ErrorDetail } from '../../shared/errors'
import { sqlState } from '../db/errors'

export interface Envelope {
  status: number
  headers: Record<string, string>
  body: { error: { code: string; message: string; details?: ErrorDetail[]; requestId: string } }
}

const describe = (e: ValidationError): ErrorDetail[] =>
  e.all.slice(0, 20).map((v) => ({ path: 'path' in v && v.path ? v.path : '/', message: 'message' in v ? v.summary || v.message : String(v) }))

/** Maps anything thrown during a request to status, headers and body; `internal` says whether to log it loudly. */
export function toEnvelope(error: unknown, elysiaCode: unknown, requestId: string): Envelope & { internal: boolean } {
  const make = (status: number, code: string, message: string, details?: ErrorDetail[], headers: Record<string, string> = {}, internal = false) => ({
    status,
    headers,
    internal,
    body: { error: { code, message, ...(details?.length ? { details } : {}), requestId } },
  })

  const cause = (error as { cause?: unknown })?.cause
  if (error instanceof AppError) return make(error.status, error.code, error.message, error.details, error.headers)
  if (cause instanceof AppError) return make(cause.status, cause.code, cause.message, cause.details, cause.headers)

  switch (elysiaCode) {
    case 'VALIDATION': {
      const v = error as ValidationError
      if (v.type === 'response') return make(500, 'INTERNAL', 'the server produced an invalid response', undefined, {}, true)
      const details = describe(v)
      const first = details[0]
      const where = v.type === 'body' ? '' : `${v.type} `
      return make(422, 'VALIDATION_FAILED', first ? `${where}${first.path}: ${first.message}` : 'invalid request', details)
    }
    case 'PARSE':
      return make(400, 'MALFORMED_JSON', 'the request body is not valid JSON')
    case 'NOT_FOUND':
      return make(404, 'NOT_FOUND', 'no such route')
    case 'INVALID_COOKIE_SIGNATURE':
      return make(400, 'BAD_REQUEST', 'invalid cookie signature')
  }
  // Text the database cannot hold (PostgreSQL: NUL bytes, invalid encodings) is the client's to fix.
  const state = sqlState(error)
  if (state === '22021' || state === '22P05') return make(400, 'UNSUPPORTED_CHARACTER', 'the request contains characters that cannot be stored')
  return make(500, 'INTERNAL', 'internal error', undefined, {}, true)
}
