import { type Static, Type as t } from '@sinclair/typebox'
import { action, event } from './define'

export const Role = t.Union([t.Literal('admin'), t.Literal('manager'), t.Literal('agent'), t.Literal('customer')])
export const ROLES = ['admin', 'manager', 'agent', 'customer'] as const
export type Role = Static<typeof Role>

export const User = t.Object(
  {
    id: t.String(),
    email: t.String({ format: 'email' }),
    name: t.String(),
    roles: t.Array(Role),
    createdAt: t.String({ format: 'date-time' }),
  },
)

export const authActions = {
  'auth.getUser': action({
    input: t.Object({ id: t.String() }),
    output: t.Union([User, t.Null()]),
    idempotent: true,
    doc: 'The user with this id, or null; disabled users are returned too.',
  }),
}

export const authEvents = {
  'auth.user.registered': event({
    payload: t.Object({ userId: t.String(), email: t.String(), name: t.String() }),
    doc: 'A customer registered (or the admin was bootstrapped).',
  }),
  'auth.user.changed': event({
    payload: t.Object({ userId: t.String(), roles: t.Array(Role), disabled: t.Boolean() }),
    doc: "An admin changed a user's roles or disabled flag.",
  }),
}
