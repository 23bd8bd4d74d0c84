/** HTTP face of the auth plugin (CONTRACT.md section 3). Schemas here are the validation and the docs. */
import { t } from 'elysia'
import { requestState } from '../../kernel/http/request-state'
import type { PluginContext } from '../../kernel/plugin'
import { ROLES } from '../../shared/contracts/auth'
import { ListQuery, Page, decodeCursor, isString, page } from '../../shared/pagination'
import { type AuthService, toPublicUser } from './service'

const Role = t.UnionEnum([...ROLES])
const User = t.Object({
  id: t.String(),
  email: t.String(),
  name: t.String(),
  roles: t.Array(Role),
  createdAt: t.String({ format: 'date-time' }),
  disabled: t.Boolean(),
})
const Session = t.Object({ user: User, accessToken: t.String(), refreshToken: t.String() })
const Email = t.String({ format: 'email', maxLength: 254, error: 'email must be a valid email address' })
const Password = t.String({ minLength: 8, maxLength: 256, error: 'password must be 8 to 256 characters' })
const RefreshBody = t.Object({ refreshToken: t.String({ minLength: 1, maxLength: 512 }) })
const AuditEntry = t.Object({
  id: t.String(),
  type: t.String(),
  userId: t.Union([t.String(), t.Null()]),
  email: t.Union([t.String(), t.Null()]),
  ip: t.Union([t.String(), t.Null()]),
  detail: t.Record(t.String(), t.Unknown()),
  at: t.String({ format: 'date-time' }),
})

const ip = (request: Request) => requestState.get(request).ip

/** Surrounding spaces are not part of an email: trimmed before the format check (the service lower-cases). */
const trimEmail = ({ body }: { body: unknown }) => {
  const b = body as { email?: unknown } | null
  if (b && typeof b === 'object' && typeof b.email === 'string') b.email = b.email.trim()
}

export function authRoutes(ctx: PluginContext, auth: AuthService) {
  return ctx
    .router()
    .post('/register', ({ body, request }) => auth.register(body, ip(request)), {
      creates: true,
      transform: trimEmail,
      body: t.Object({ email: Email, password: Password, name: t.String({ minLength: 1, maxLength: 100 }) }),
      response: { 201: Session },
      detail: { summary: 'Create a customer account and sign in' },
    })
    .post('/login', ({ body, request }) => auth.login(body, ip(request)), {
      body: t.Object({ email: t.String({ maxLength: 254 }), password: t.String({ maxLength: 256 }) }),
      response: { 200: Session },
      detail: { summary: 'Sign in; repeated failures for one email or IP answer 429' },
    })
    .post('/refresh', ({ body, request }) => auth.refresh(body.refreshToken, ip(request)), {
      body: RefreshBody,
      response: { 200: Session },
      detail: { summary: 'Exchange a refresh token for a new pair; reusing a spent one ends the whole sign-in' },
    })
    .post(
      '/logout',
      async ({ body, request, set }) => {
        await auth.logout(body.refreshToken, ip(request))
        set.status = 204
      },
      { body: RefreshBody, detail: { summary: 'End the sign-in this refresh token belongs to' } },
    )
    .get('/me', ({ principal }) => auth.me(principal.id), {
      auth: true,
      response: { 200: User },
      detail: { summary: 'The signed-in user' },
    })
    .get(
      '/users',
      async ({ query }) => {
        const limit = query.limit ?? 50
        const rows = await auth.listUsers(limit + 1, decodeCursor(query.cursor, isString))
        return page(rows, limit, toPublicUser, (u) => u.id)
      },
      { auth: ['admin'], query: ListQuery, response: { 200: Page(User) }, detail: { summary: 'Every user, oldest first' } },
    )
    .patch('/users/:id', ({ params, body, principal, request }) => auth.updateUser(principal.id, params.id, body, ip(request)), {
      auth: ['admin'],
      params: t.Object({ id: t.String({ maxLength: 64 }) }),
      body: t.Object({ roles: t.Optional(t.Array(Role, { minItems: 1, maxItems: 4, uniqueItems: true })), disabled: t.Optional(t.Boolean()) }, {
        minProperties: 1,
        additionalProperties: false,
      }),
      response: { 200: User },
      detail: { summary: "Change a user's roles or disable them; their current access tokens stop working at once" },
    })
    .get(
      '/audit',
      async ({ query }) => {
        const limit = query.limit ?? 50
        const rows = await auth.listAudit(limit + 1, { before: decodeCursor(query.cursor, isString), type: query.type, userId: query.userId })
        return page(rows, limit, (a) => ({ ...a, at: a.at.toISOString() }), (a) => a.id)
      },
      {
        auth: ['admin'],
        query: t.Composite([ListQuery, t.Object({ type: t.Optional(t.String({ maxLength: 64 })), userId: t.Optional(t.String({ maxLength: 64 })) })]),
        response: { 200: Page(AuditEntry) },
        detail: { summary: 'Sign-in and account events, newest first' },
      },
    )
}
