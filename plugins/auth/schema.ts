/** The auth plugin's tables: users, refresh tokens (rotated, grouped in families) and the audit log. */
import { table } from '../../kernel/db/schema'
import type { Role } from '../../shared/contracts/auth'

export const schema = {
  users: table(
    'auth_users',
    (c) => ({
      id: c.id(),
      email: c.text('email').notNull(),
      name: c.text('name').notNull(),
      passwordHash: c.text('password_hash').notNull(),
      roles: c.json<Role[]>('roles').notNull(),
      disabled: c.boolean('disabled').notNull().default(false),
      /** Access tokens issued before this instant no longer work (set on disable and role change). */
      tokensValidAfter: c.timestamp('tokens_valid_after'),
      createdAt: c.timestamp('created_at').notNull(),
      updatedAt: c.timestamp('updated_at').notNull(),
    }),
    (c) => (t) => [c.uniqueIndex('auth_users_email').on(t.email)],
  ),
  refreshTokens: table(
    'auth_refresh_tokens',
    (c) => ({
      id: c.id(),
      /** Every token descends from one login; reuse of a spent token revokes the whole family. */
      familyId: c.text('family_id').notNull(),
      userId: c.text('user_id').notNull(),
      secretHash: c.text('secret_hash').notNull(),
      expiresAt: c.timestamp('expires_at').notNull(),
      spentAt: c.timestamp('spent_at'),
      revokedAt: c.timestamp('revoked_at'),
      createdAt: c.timestamp('created_at').notNull(),
    }),
    (c) => (t) => [c.index('auth_refresh_tokens_family').on(t.familyId), c.index('auth_refresh_tokens_user').on(t.userId)],
  ),
  audit: table(
    'auth_audit',
    (c) => ({
      id: c.id(),
      type: c.text('type').notNull(),
      userId: c.text('user_id'),
      email: c.text('email'),
      ip: c.text('ip'),
      detail: c.json<Record<string, unknown>>('detail').notNull(),
      at: c.timestamp('at').notNull(),
    }),
    (c) => (t) => [c.index('auth_audit_type').on(t.type, t.id), c.index('auth_audit_user').on(t.userId, t.id)],
  ),
}

export type AuthSchema = typeof schema
