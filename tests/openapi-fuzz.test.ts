/**
 * Generated from the OpenAPI document itself, so a new route is covered the moment it is
 * documented. For every operation under /api/, sent as an admin (so guards pass):
 *
 *  (a) JSON request bodies: malformed JSON → 400, a body over BODY_LIMIT_BYTES → 413 (with a
 *      Content-Length and chunked without one), a non-JSON content type → 415, a body of the wrong
 *      JSON type and each property given a value of the wrong type → 422 naming the property;
 *  (b) query parameters declared integer/number: a non-numeric value → 422;
 *  (c) an unknown id in the path (or, without path parameters, a well-formed request) never
 *      gives a 5xx;
 *  and, also derived from the document: path parameters longer than their maxLength → 422,
 *  header parameters longer than their maxLength → 422, secured operations without a token → 401.
 *
 * Every refusal is a 4xx carrying the envelope `{ error: { code, message, requestId } }`.
 */
import { afterAll, describe, expect, test } from 'bun:test'
import { type Reply, adminToken, call, chunked, readReply, startServer } from './harness'

// ---------------------------------------------------------------------------
// The document
// ---------------------------------------------------------------------------

interface Schema {
  type?: string | string[]
  format?: string
  properties?: Record<string, Schema>
  required?: string[]
  items?: Schema
  anyOf?: Schema[]
  oneOf?: Schema[]
  enum?: unknown[]
  const?: unknown
  minLength?: number
  maxLength?: number
  minimum?: number
  minItems?: number
  minProperties?: number
}
interface Parameter {
  in: 'path' | 'query' | 'header' | 'cookie'
  name: string
  required?: boolean
  schema?: Schema
}
interface Operation {
  parameters?: Parameter[]
  requestBody?: { content?: Record<string, { schema?: Schema }> }
  security?: Record<string, string[]>[]
}
interface OpenApi {
  openapi: string
  paths: Record<string, Record<string, Operation>>
}

const BODY_LIMIT = 1024
const server = await startServer({ BODY_LIMIT_BYTES: String(BODY_LIMIT) })
afterAll(() => server.stop())
const admin = await adminToken(server.url)
const doc = (await call<OpenApi>(server.url, 'GET', '/swagger/json')).body

const METHODS = ['get', 'post', 'put', 'patch', 'delete']
const operations = Object.entries(doc.paths)
  .filter(([path]) => path.startsWith('/api/'))
  .flatMap(([path, byMethod]) =>
    Object.entries(byMethod)
      .filter(([method]) => METHODS.includes(method))
      .map(([method, op]) => ({ name: `${method.toUpperCase()} ${path}`, method: method.toUpperCase(), path, op })),
  )

// ---------------------------------------------------------------------------
// Values derived from schemas
// ---------------------------------------------------------------------------

type Kind = 'string' | 'number' | 'boolean' | 'array' | 'object'

/**
 * The one JSON type a schema asks for, or undefined when it accepts anything or several types.
 * Elysia documents a number as `anyOf: [numeric string, integer]` (it coerces numeric strings), so
 * a string with format integer/numeric counts as a number; `null` beside a type only makes it nullable.
 */
function kindOf(schema: Schema | undefined): Kind | undefined {
  if (!schema) return undefined
  const kinds = new Set<Kind>()
  const add = (s: Schema) => {
    const types = Array.isArray(s.type) ? s.type : s.type ? [s.type] : []
    for (const type of types) {
      if (type === 'integer' || type === 'number') kinds.add('number')
      else if (type === 'string' && (s.format === 'integer' || s.format === 'numeric')) kinds.add('number')
      else if (type !== 'null') kinds.add(type as Kind)
    }
    for (const option of [...(s.anyOf ?? []), ...(s.oneOf ?? [])]) add(option)
  }
  add(schema)
  return kinds.size === 1 ? [...kinds][0] : undefined
}

/** A JSON value of the wrong type for each kind. */
const WRONG: Record<Kind, unknown> = { string: 123, number: 'x', boolean: 'yes', array: {}, object: [] }

const unique = () => crypto.randomUUID().replace(/-/g, '').slice(0, 12)
const lowest = (schema: Schema) => schema.minimum ?? [...(schema.anyOf ?? []), ...(schema.oneOf ?? [])].find((o) => o.minimum !== undefined)?.minimum ?? 0

/** A valid value for `schema`: required properties only (optional ones only to reach minProperties). */
function sample(schema: Schema | undefined): unknown {
  if (!schema) return {}
  if (schema.const !== undefined) return schema.const
  if (schema.enum?.length) return schema.enum[0]
  switch (kindOf(schema)) {
    case 'number':
      return Math.ceil(lowest(schema))
    case 'boolean':
      return false
    case 'array':
      return Array.from({ length: schema.minItems ?? 0 }, () => sample(schema.items))
    case 'object': {
      const properties = schema.properties ?? {}
      const names = Object.keys(properties).filter((p) => schema.required?.includes(p))
      for (const p of Object.keys(properties)) if (names.length < (schema.minProperties ?? 0) && !names.includes(p)) names.push(p)
      return Object.fromEntries(names.map((p) => [p, sample(properties[p])]))
    }
    case 'string': {
      if (schema.format === 'email') return `fuzz-${unique()}@example.test`
      if (schema.format === 'date-time') return new Date().toISOString()
      if (schema.format === 'uuid') return crypto.randomUUID()
      const text = `fuzz-${unique()}`.padEnd(schema.minLength ?? 0, 'x')
      return schema.maxLength === undefined ? text : text.slice(0, schema.maxLength)
    }
  }
  return {}
}

/** A value no stored row has, of the parameter's type. */
function unknownValue(schema: Schema | undefined): string {
  if (kindOf(schema) === 'number') return String(900_000_000 + Math.floor(Math.random() * 99_999_999))
  if (schema?.format === 'uuid') return crypto.randomUUID()
  const id = `unknown-${unique()}`
  return schema?.maxLength === undefined ? id : id.slice(0, Math.max(1, schema.maxLength))
}

const paramsOf = (op: Operation, where: Parameter['in']) => (op.parameters ?? []).filter((p) => p.in === where)
const jsonBodyOf = (op: Operation) => op.requestBody?.content?.['application/json']?.schema

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

interface Probe {
  pathValues?: Record<string, string>
  query?: Record<string, string>
  headers?: Record<string, string>
  /** Sent as is: a string, a stream (chunked, no Content-Length) or form data. */
  body?: string | ReadableStream<Uint8Array> | FormData
  contentType?: string
  token?: string | null
}

async function send(operation: (typeof operations)[number], probe: Probe = {}): Promise<Reply> {
  const { op } = operation
  const values: Record<string, string> = {}
  for (const p of paramsOf(op, 'path')) values[p.name] = unknownValue(p.schema)
  Object.assign(values, probe.pathValues)
  const path = operation.path.replace(/\{([^}]+)\}/g, (_, name: string) => encodeURIComponent(values[name] ?? unknownValue(undefined)))
  const query = new URLSearchParams()
  for (const p of paramsOf(op, 'query')) if (p.required) query.set(p.name, String(sample(p.schema)))
  for (const [k, v] of Object.entries(probe.query ?? {})) query.set(k, v)
  const headers: Record<string, string> = {}
  for (const p of paramsOf(op, 'header')) if (p.required) headers[p.name] = String(sample(p.schema))
  Object.assign(headers, probe.headers)
  const token = probe.token === undefined ? admin : probe.token
  if (token) headers.authorization = `Bearer ${token}`
  if (probe.contentType) headers['content-type'] = probe.contentType
  const search = query.size ? `?${query}` : ''
  const res = await fetch(`${server.url}${path}${search}`, {
    method: operation.method,
    headers,
    body: probe.body,
    ...(probe.body instanceof ReadableStream ? { duplex: 'half' } : {}),
  } as RequestInit)
  return readReply(res)
}

/** The default body of an operation: valid JSON for its schema. */
const validBody = (schema: Schema | undefined) => JSON.stringify(sample(schema))

/** A refusal: `status`, and the error envelope whose requestId is the response's x-request-id. */
function expectRefusal(r: Reply, status: number, code?: string) {
  const summary = `${r.status} ${typeof r.body === 'string' ? r.body.slice(0, 300) : JSON.stringify(r.body)?.slice(0, 300)}`
  expect(r.status, summary).toBe(status)
  expectEnvelope(r)
  if (code) expect(r.body.error.code).toBe(code)
}

function expectEnvelope(r: Reply) {
  expect(r.status).toBeGreaterThanOrEqual(400)
  expect(r.status).toBeLessThan(500)
  expect(r.headers.get('content-type') ?? '').toContain('application/json')
  expect(r.body).toEqual({
    error: expect.objectContaining({ code: expect.any(String), message: expect.any(String), requestId: expect.any(String) }),
  })
  expect(r.body.error.code.length).toBeGreaterThan(0)
  expect(r.body.error.message.length).toBeGreaterThan(0)
  expect(r.body.error.requestId).toBe(r.headers.get('x-request-id') ?? '')
}

// ---------------------------------------------------------------------------
// The generated suite
// ---------------------------------------------------------------------------

test('the document is OpenAPI 3 and lists operations under /api/ to probe', () => {
  expect(doc.openapi).toMatch(/^3\./)
  expect(operations.length).toBeGreaterThan(0)
  expect(operations.map((o) => o.name)).toContain('POST /api/v1/ledger/entries')
})

/** Bodies and properties that accept any JSON, so no wrong type can be sent; checked below. */
const untyped: string[] = []

for (const operation of operations) {
  const { name, op } = operation
  describe(name, () => {
    // (a) JSON request bodies
    if (op.requestBody) {
      const schema = jsonBodyOf(op)

      test('the request body is documented as application/json only (anything else is a 415)', () => {
        expect(Object.keys(op.requestBody?.content ?? {})).toEqual(['application/json'])
      })

      test('malformed JSON → 400 MALFORMED_JSON', async () => {
        expectRefusal(await send(operation, { body: '{"oops": ', contentType: 'application/json' }), 400, 'MALFORMED_JSON')
      })

      const oversized = JSON.stringify({ padding: 'x'.repeat(BODY_LIMIT) })
      test(`a body over BODY_LIMIT_BYTES (${oversized.length} > ${BODY_LIMIT}) with a Content-Length → 413 PAYLOAD_TOO_LARGE`, async () => {
        expectRefusal(await send(operation, { body: oversized, contentType: 'application/json' }), 413, 'PAYLOAD_TOO_LARGE')
      })

      test('a body over BODY_LIMIT_BYTES sent chunked, without Content-Length → 413 PAYLOAD_TOO_LARGE', async () => {
        expectRefusal(await send(operation, { body: chunked(oversized), contentType: 'application/json' }), 413, 'PAYLOAD_TOO_LARGE')
      })

      const notJson: [string, () => Probe][] = [
        ['text/plain', () => ({ body: validBody(schema), contentType: 'text/plain' })],
        ['application/x-www-form-urlencoded', () => ({ body: 'a=1&b=2', contentType: 'application/x-www-form-urlencoded' })],
        [
          'multipart/form-data',
          () => {
            const form = new FormData()
            form.set('a', '1')
            return { body: form }
          },
        ],
      ]
      for (const [type, probe] of notJson)
        test(`content type ${type} → 415 UNSUPPORTED_MEDIA_TYPE`, async () => {
          expectRefusal(await send(operation, probe()), 415, 'UNSUPPORTED_MEDIA_TYPE')
        })

      const bodyKind = kindOf(schema)
      if (bodyKind)
        test(`a JSON ${Array.isArray(WRONG[bodyKind]) ? 'array' : typeof WRONG[bodyKind]} instead of the declared ${bodyKind} → 422 VALIDATION_FAILED`, async () => {
          expectRefusal(await send(operation, { body: JSON.stringify(WRONG[bodyKind]), contentType: 'application/json' }), 422, 'VALIDATION_FAILED')
        })
      else untyped.push(`${operation.name} body`)

      for (const [property, propertySchema] of Object.entries(schema?.properties ?? {})) {
        const kind = kindOf(propertySchema)
        if (!kind) {
          untyped.push(`${operation.name} /${property}`)
          continue
        }
        const wrong = WRONG[kind]
        test(`/${property} (${kind}) given ${JSON.stringify(wrong)} → 422 VALIDATION_FAILED with details[].path /${property}`, async () => {
          const body = { ...(sample(schema) as object), [property]: wrong }
          const r = await send(operation, { body: JSON.stringify(body), contentType: 'application/json' })
          expectRefusal(r, 422, 'VALIDATION_FAILED')
          expect(r.body.error.details?.map((d: { path: string }) => d.path)).toContain(`/${property}`)
        })
      }
    }

    // (b) numeric query parameters
    for (const parameter of paramsOf(op, 'query').filter((p) => kindOf(p.schema) === 'number'))
      test(`query ?${parameter.name}= (number) given "abc" → 422 VALIDATION_FAILED`, async () => {
        const r = await send(operation, { query: { [parameter.name]: 'abc' }, body: op.requestBody ? validBody(jsonBodyOf(op)) : undefined, contentType: op.requestBody ? 'application/json' : undefined })
        expectRefusal(r, 422, 'VALIDATION_FAILED')
      })

    // (c) an unknown path id, or a well-formed request, never gives a 5xx
    const pathParameters = paramsOf(op, 'path')
    test(
      pathParameters.length
        ? `an unknown ${pathParameters.map((p) => `{${p.name}}`).join(', ')} never gives a 5xx; a refusal is a 4xx envelope`
        : 'a well-formed request never gives a 5xx; a refusal is a 4xx envelope',
      async () => {
        const r = await send(operation, op.requestBody ? { body: validBody(jsonBodyOf(op)), contentType: 'application/json' } : {})
        expect(r.status, JSON.stringify(r.body)).toBeLessThan(500)
        if (r.status >= 400) expectEnvelope(r)
      },
    )

    // Path and header parameters with a declared maxLength
    for (const parameter of pathParameters.filter((p) => p.schema?.maxLength !== undefined))
      test(`{${parameter.name}} longer than its maxLength (${parameter.schema?.maxLength}) → 422 VALIDATION_FAILED`, async () => {
        const r = await send(operation, {
          pathValues: { [parameter.name]: 'x'.repeat((parameter.schema?.maxLength ?? 0) + 1) },
          body: op.requestBody ? validBody(jsonBodyOf(op)) : undefined,
          contentType: op.requestBody ? 'application/json' : undefined,
        })
        expectRefusal(r, 422)
      })

    for (const parameter of paramsOf(op, 'header').filter((p) => p.schema?.maxLength !== undefined))
      test(`header ${parameter.name} longer than its maxLength (${parameter.schema?.maxLength}) → 422`, async () => {
        const r = await send(operation, {
          headers: { [parameter.name]: 'k'.repeat((parameter.schema?.maxLength ?? 0) + 1) },
          body: op.requestBody ? validBody(jsonBodyOf(op)) : undefined,
          contentType: op.requestBody ? 'application/json' : undefined,
        })
        expectRefusal(r, 422)
      })

    // Secured operations
    if (op.security?.some((s) => 'bearer' in s))
      test('secured (bearer): without a token → 401 with WWW-Authenticate: Bearer, even before the input is validated', async () => {
        const r = await send(operation, { token: null })
        expectRefusal(r, 401)
        expect(r.headers.get('www-authenticate')).toBe('Bearer')
      })
  })
}

// A schema that accepts any JSON cannot be probed with a wrong type. Only the test fixture's
// pass-through route may have one; a product route that does fails here instead of going unprobed.
test('only the test fixture declares bodies that accept any JSON', () => {
  expect(untyped).toEqual(['POST /api/v1/ledger/call-auth body'])
})
