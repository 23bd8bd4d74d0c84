/**
 * Accounts and sessions: registration, login with throttling, refresh-token rotation with reuse
 * detection, logout, administration of roles and the disabled flag, and the audit log.
 * No HTTP here: routes.ts translates requests into these calls.
 */
import { and, desc, eq, gt, isNull, lt, sql } from 'drizzle-orm'
import type { Cache, RateLimiter } from '../../kernel/cache'
import type { Database, Tables } from '../../kernel/db'
import type { Identity } from '../../kernel/http/identity'
import type { Logger } from '../../kernel/log'
import type { Role } from '../../shared/contracts/auth'
import { Conflict, Invalid, NotFound, TooManyRequests, Unauthorized } from '../../shared/errors'
import type { announce } from './events'
import type { AuthSchema } from './schema'

type UserRow = Tables<AuthSchema>['users']['$inferSelect']
type AuditRow = Tables<AuthSchema>['audit']['$inferSelect']

export interface PublicUser {
  id: string
  email: string
  name: string
  roles: Role[]
  createdAt: string
  disabled: boolean
}

export interface Session {
  user: PublicUser
  accessToken: string
  refreshToken: string
}

export interface AuthSettings {
  refreshTtlDays: number
  passwordMemoryKib: number
  passwordTimeCost: number
}

export type AuditType =
  | 'user.registered'
  | 'login.succeeded'
  | 'login.failed'
  | 'login.throttled'
  | 'refresh.reused'
  | 'logout'
  | 'role.changed'
  | 'user.disabled'
  | 'user.enabled'
  | 'admin.bootstrapped'

export const toPublicUser = (u: UserRow): PublicUser => ({
  id: u.id,
  email: u.email,
  name: u.name,
  roles: u.roles,
  createdAt: u.createdAt.toISOString(),
  disabled: u.disabled,
})

const USER_CACHE_MS = 2_000
const USER_CACHE_LIMIT = 10_000

const sha256 = (text: string) => new Bun.CryptoHasher('sha256').update(text).digest('hex')
const randomSecret = () => Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64url')
export const normalizeEmail = (email: string) => email.trim().toLowerCase()

export interface AuthDeps {
  db: Database
  t: Tables<AuthSchema>
  identity: Identity
  cache: Cache
  log: Logger
  settings: AuthSettings
  announce: ReturnType<typeof announce>
  /** Failed-login budgets; a spent budget answers 429 until the window passes. */
  throttle: { byEmail: RateLimiter; byIp: RateLimiter }
}

export class AuthService {
  /** Compared against when the email is unknown, so both failures take the same time. */
  private dummyHash: Promise<string>

  constructor(private readonly d: AuthDeps) {
    this.dummyHash = this.hashPassword(randomSecret())
  }

  /** Prepared on first use (the table exists only after migration). */
  private prepared?: ReturnType<AuthService['prepareUserById']>
  private prepareUserById() {
    const { users } = this.d.t
    return this.d.db.read.select().from(users).where(eq(users.id, sql.placeholder('id'))).prepare('auth_user_by_id')
  }

  /**
   * Users read in the last USER_CACHE_MS, so a client polling /me costs a map lookup. Changes made
   * here drop the entry at once; a change made by another process shows within USER_CACHE_MS, and
   * one that matters (roles, disabled) has already revoked the caller's token at the guard.
   */
  private readonly recentUsers = new Map<string, { user: UserRow; until: number }>()

  private hashPassword(password: string) {
    const { passwordMemoryKib, passwordTimeCost } = this.d.settings
    return Bun.password.hash(password, { algorithm: 'argon2id', memoryCost: passwordMemoryKib, timeCost: passwordTimeCost })
  }

  async register(input: { email: string; password: string; name: string }, ip: string): Promise<Session> {
    const { db, t } = this.d
    const email = normalizeEmail(input.email)
    const passwordHash = await this.hashPassword(input.password)
    const now = new Date()
    return db.transaction(async (tx) => {
      const [user] = await tx
        .insert(t.users)
        .values({ id: Bun.randomUUIDv7(), email, name: input.name.trim(), passwordHash, roles: ['customer'], createdAt: now, updatedAt: now })
        .onConflictDoNothing()
        .returning()
      if (!user) throw new Conflict('an account with this email exists', 'EMAIL_TAKEN')
      await this.audit('user.registered', { userId: user.id, email, ip })
      await this.d.announce.registered(user)
      return this.openSession(user)
    })
  }

  async login(input: { email: string; password: string }, ip: string): Promise<Session> {
    const { throttle } = this.d
    const email = normalizeEmail(input.email)
    const wait = Math.max(await throttle.byEmail.blockedFor(email), await throttle.byIp.blockedFor(ip))
    if (wait > 0) {
      await this.audit('login.throttled', { email, ip })
      throw new TooManyRequests(wait, 'too many failed sign-ins; try again later')
    }
    const [user] = await this.d.db.read.select().from(this.d.t.users).where(eq(this.d.t.users.email, email))
    const ok = await Bun.password.verify(input.password, user?.passwordHash ?? (await this.dummyHash))
    if (!user || !ok) {
      await Promise.all([throttle.byEmail.penalize(email), throttle.byIp.penalize(ip)])
      await this.audit('login.failed', { userId: user?.id, email, ip, detail: { reason: user ? 'wrong password' : 'unknown email' } })
      // One message for both causes, so the answer does not tell which emails exist.
      throw new Unauthorized('wrong email or password', 'INVALID_CREDENTIALS')
    }
    if (user.disabled) {
      await this.audit('login.failed', { userId: user.id, email, ip, detail: { reason: 'disabled' } })
      throw new Unauthorized('this account is disabled', 'ACCOUNT_DISABLED')
    }
    await throttle.byEmail.reset(email)
    return this.d.db.transaction(async () => {
      await this.audit('login.succeeded', { userId: user.id, email, ip })
      return this.openSession(user)
    })
  }

  /** Spends `token` and returns a new pair in the same family; a spent token revokes the family. */
  async refresh(token: string, ip: string): Promise<Session> {
    const { db, t } = this.d
    const [id, secret] = token.split('.')
    if (!id || !secret) throw new Unauthorized('invalid refresh token', 'INVALID_REFRESH_TOKEN')
    const outcome = await db.transaction(async (tx) => {
      const [row] = await tx.select().from(t.refreshTokens).where(eq(t.refreshTokens.id, id))
      if (!row || row.secretHash !== sha256(secret)) return { error: 'invalid' as const }
      if (row.revokedAt) return { error: 'revoked' as const }
      if (row.expiresAt <= new Date()) return { error: 'expired' as const }
      const spent = await tx
        .update(t.refreshTokens)
        .set({ spentAt: new Date() })
        .where(and(eq(t.refreshTokens.id, id), isNull(t.refreshTokens.spentAt)))
        .returning({ id: t.refreshTokens.id })
      if (spent.length === 0) {
        // Someone presents a token that was already exchanged: assume it was stolen.
        await this.revokeFamily(row.familyId)
        await this.audit('refresh.reused', { userId: row.userId, ip, detail: { familyId: row.familyId } })
        return { error: 'reused' as const }
      }
      const [user] = await tx.select().from(t.users).where(eq(t.users.id, row.userId))
      if (!user || user.disabled) return { error: 'disabled' as const }
      return { session: await this.openSession(user, row.familyId) }
    })
    if ('session' in outcome && outcome.session) return outcome.session
    const messages = {
      invalid: ['invalid refresh token', 'INVALID_REFRESH_TOKEN'],
      revoked: ['this session was ended', 'REFRESH_TOKEN_REVOKED'],
      expired: ['the refresh token expired; sign in again', 'REFRESH_TOKEN_EXPIRED'],
      reused: ['this refresh token was already used; every session of this sign-in was ended', 'REFRESH_TOKEN_REUSED'],
      disabled: ['this account is disabled', 'ACCOUNT_DISABLED'],
    } as const
    const [message, code] = messages[(outcome as { error: keyof typeof messages }).error]
    throw new Unauthorized(message, code)
  }

  /** Ends the sign-in the token belongs to. Unknown tokens are ignored: logging out twice is fine. */
  async logout(token: string, ip: string): Promise<void> {
    const { db, t } = this.d
    const [id, secret] = token.split('.')
    if (!id || !secret) return
    await db.transaction(async (tx) => {
      const [row] = await tx.select().from(t.refreshTokens).where(eq(t.refreshTokens.id, id))
      if (!row || row.secretHash !== sha256(secret)) return
      await this.revokeFamily(row.familyId)
      await this.audit('logout', { userId: row.userId, ip })
    })
  }

  async me(userId: string): Promise<PublicUser> {
    const user = await this.find(userId)
    if (!user || user.disabled) throw new Unauthorized('this account no longer exists or is disabled', 'ACCOUNT_DISABLED')
    return toPublicUser(user)
  }

  async find(userId: string): Promise<UserRow | undefined> {
    const now = Date.now()
    const recent = this.recentUsers.get(userId)
    if (recent && recent.until > now) return recent.user
    const [user] = await (this.prepared ??= this.prepareUserById()).execute({ id: userId })
    if (user) {
      if (this.recentUsers.size >= USER_CACHE_LIMIT) this.recentUsers.clear()
      this.recentUsers.set(userId, { user, until: now + USER_CACHE_MS })
    }
    return user
  }

  async listUsers(limit: number, after?: string) {
    const { users } = this.d.t
    return this.d.db.read
      .select()
      .from(users)
      .where(after ? gt(users.id, after) : undefined)
      .orderBy(users.id)
      .limit(limit)
  }

  /** Changes roles and/or the disabled flag; either change ends the user's current access tokens. */
  async updateUser(actorId: string, userId: string, change: { roles?: Role[]; disabled?: boolean }, ip: string): Promise<PublicUser> {
    const { db, t, identity } = this.d
    if (actorId === userId && (change.disabled === true || (change.roles && !change.roles.includes('admin'))))
      throw new Invalid('you cannot disable yourself or remove your own admin role', undefined, 'SELF_LOCKOUT')
    const now = new Date()
    const updated = await db.transaction(async (tx) => {
      const [before] = await tx.select().from(t.users).where(eq(t.users.id, userId))
      if (!before) throw new NotFound(`no user ${userId}`)
      const roles = change.roles ? [...new Set(change.roles)] : before.roles
      const disabled = change.disabled ?? before.disabled
      const rolesChanged = roles.join() !== before.roles.join()
      const disabledChanged = disabled !== before.disabled
      if (!rolesChanged && !disabledChanged) return before
      const [after] = await tx
        .update(t.users)
        .set({ roles, disabled, tokensValidAfter: now, updatedAt: now })
        .where(eq(t.users.id, userId))
        .returning()
      if (rolesChanged) await this.audit('role.changed', { userId, ip, detail: { by: actorId, from: before.roles, to: roles } })
      if (disabledChanged) await this.audit(disabled ? 'user.disabled' : 'user.enabled', { userId, ip, detail: { by: actorId } })
      if (disabled) await this.revokeUserSessions(userId)
      await this.d.announce.changed(after)
      // Revoked before the commit, so no moment exists in which the change is visible and an old
      // token still works; should the commit fail, the user merely has to refresh.
      await identity.revokeIssuedBefore(userId, now.getTime())
      db.afterCommit(() => this.recentUsers.delete(userId))
      return after
    })
    return toPublicUser(updated)
  }

  async listAudit(limit: number, filter: { before?: string; type?: string; userId?: string }) {
    const { audit } = this.d.t
    return this.d.db.read
      .select()
      .from(audit)
      .where(
        and(
          filter.before ? lt(audit.id, filter.before) : undefined,
          filter.type ? eq(audit.type, filter.type) : undefined,
          filter.userId ? eq(audit.userId, filter.userId) : undefined,
        ),
      )
      .orderBy(desc(audit.id))
      .limit(limit)
  }

  /** Makes sure an admin with these credentials exists (ADMIN_EMAIL / ADMIN_PASSWORD). */
  async bootstrapAdmin(emailRaw: string, password: string) {
    const { db, t } = this.d
    const email = normalizeEmail(emailRaw)
    const [existing] = await db.read.select().from(t.users).where(eq(t.users.email, email))
    const passwordOk = existing ? await Bun.password.verify(password, existing.passwordHash) : false
    if (existing && passwordOk && existing.roles.includes('admin') && !existing.disabled) return
    const passwordHash = passwordOk && existing ? existing.passwordHash : await this.hashPassword(password)
    const now = new Date()
    await db.transaction(async (tx) => {
      if (existing) {
        this.recentUsers.delete(existing.id)
        const roles = [...new Set<Role>([...existing.roles, 'admin'])]
        await tx.update(t.users).set({ passwordHash, roles, disabled: false, updatedAt: now }).where(eq(t.users.id, existing.id))
      } else {
        const [user] = await tx
          .insert(t.users)
          .values({ id: Bun.randomUUIDv7(), email, name: 'Administrator', passwordHash, roles: ['admin'], createdAt: now, updatedAt: now })
          .returning()
        await this.d.announce.registered(user)
      }
      await this.audit('admin.bootstrapped', { email })
    })
    this.d.log.info({ email }, 'admin account ensured')
  }

  /** Re-arms revocations after a restart (the memory cache forgets them): users changed within one access-token lifetime. */
  async restoreRevocations() {
    const { users } = this.d.t
    const since = new Date(Date.now() - this.d.identity.accessTtlSeconds * 1000)
    const recent = await this.d.db.read
      .select({ id: users.id, at: users.tokensValidAfter })
      .from(users)
      .where(gt(users.tokensValidAfter, since))
    for (const u of recent) if (u.at) await this.d.identity.revokeIssuedBefore(u.id, u.at.getTime())
  }

  private async openSession(user: UserRow, familyId = Bun.randomUUIDv7()): Promise<Session> {
    const { db, t, identity, settings } = this.d
    const id = Bun.randomUUIDv7()
    const secret = randomSecret()
    const now = new Date()
    await db.transaction((tx) =>
      tx.insert(t.refreshTokens).values({
        id,
        familyId,
        userId: user.id,
        secretHash: sha256(secret),
        expiresAt: new Date(now.getTime() + settings.refreshTtlDays * 86_400_000),
        createdAt: now,
      }),
    )
    return { user: toPublicUser(user), accessToken: await identity.sign({ id: user.id, roles: user.roles }), refreshToken: `${id}.${secret}` }
  }

  private revokeFamily(familyId: string) {
    const { t } = this.d
    return this.d.db.transaction((tx) =>
      tx
        .update(t.refreshTokens)
        .set({ revokedAt: new Date() })
        .where(and(eq(t.refreshTokens.familyId, familyId), isNull(t.refreshTokens.revokedAt))),
    )
  }

  private revokeUserSessions(userId: string) {
    const { t } = this.d
    return this.d.db.transaction((tx) =>
      tx
        .update(t.refreshTokens)
        .set({ revokedAt: new Date() })
        .where(and(eq(t.refreshTokens.userId, userId), isNull(t.refreshTokens.revokedAt))),
    )
  }

  private audit(type: AuditType, e: { userId?: string; email?: string; ip?: string; detail?: Record<string, unknown> }) {
    return this.d.db.transaction((tx) =>
      tx.insert(this.d.t.audit).values({
        id: Bun.randomUUIDv7(),
        type,
        userId: e.userId ?? null,
        email: e.email ?? null,
        ip: e.ip ?? null,
        detail: e.detail ?? {},
        at: new Date(),
      }),
    )
  }
}

export type AuditEntry = AuditRow
