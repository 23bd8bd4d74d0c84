/**
 * The few kinds of failure a plugin or the kernel may report. They are values, mapped to the
 * error envelope of CONTRACT.md section 2 in one place (kernel/http/errors.ts).
 */
export interface ErrorDetail {
  path: string
  message: string
}

export class AppError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: ErrorDetail[],
    /** Extra response headers, e.g. Retry-After. */
    readonly headers?: Record<string, string>,
  ) {
    super(message)
    this.name = code
  }
}

export class BadRequest extends AppError {
  constructor(message = 'the request could not be understood', code = 'BAD_REQUEST', details?: ErrorDetail[]) {
    super(400, code, message, details)
  }
}

export class Unauthorized extends AppError {
  constructor(message = 'authentication required', code = 'UNAUTHORIZED') {
    super(401, code, message, undefined, { 'www-authenticate': 'Bearer' })
  }
}

export class Forbidden extends AppError {
  constructor(message = 'you may not do this', code = 'FORBIDDEN') {
    super(403, code, message)
  }
}

export class NotFound extends AppError {
  constructor(message = 'not found', code = 'NOT_FOUND') {
    super(404, code, message)
  }
}

export class Conflict extends AppError {
  constructor(message: string, code = 'CONFLICT', details?: ErrorDetail[]) {
    super(409, code, message, details)
  }
}

export class PayloadTooLarge extends AppError {
  constructor(limit: number) {
    super(413, 'PAYLOAD_TOO_LARGE', `the request body is larger than ${limit} bytes`)
  }
}

export class UnsupportedMediaType extends AppError {
  constructor(got: string) {
    super(415, 'UNSUPPORTED_MEDIA_TYPE', `expected an application/json body, got ${got || 'no content type'}`)
  }
}

/** Valid syntax that breaks a rule. */
export class Invalid extends AppError {
  constructor(message: string, details?: ErrorDetail[], code = 'VALIDATION_FAILED') {
    super(422, code, message, details)
  }
}

export class TooManyRequests extends AppError {
  constructor(retryAfterSeconds: number, message = 'too many requests') {
    const seconds = Math.max(1, Math.ceil(retryAfterSeconds))
    super(429, 'RATE_LIMITED', message, undefined, { 'retry-after': String(seconds) })
  }
}

export class Unavailable extends AppError {
  constructor(message = 'a dependency is unavailable', code = 'UNAVAILABLE') {
    super(503, code, message)
  }
}

export const isAppError = (e: unknown): e is AppError => e instanceof AppError
