/**
 * Who is calling. Access tokens are HS256 JWTs made with @elysiajs/jwt; the kernel verifies them
 * on every guarded route in every process. Revocation (a disabled user, changed roles) is a
 * "not issued before" time per subject kept in the cache port, so it reaches every process at once.
 */
import { jwt } from '@elysiajs/jwt'
import { Unauthorized } from '../../shared/errors'
import type { Cache } from '../cache'

export interface Principal {
  /** The subject: a user id. */
  id: string
  roles: string[]
  /** When the token was issued (ms): a revocation at or after it ends the token. */
  issuedAt?: number
}

interface Verified extends Principal {
  /** Issue time in ms (the standard `iat` has only seconds). */
  issuedAt: number
  expiresAt: number
}

const MEMO_LIMIT = 10_000

export class Identity {
  private readonly jwt
  /** Verified tokens, so a hot token costs a map lookup instead of an HMAC. */
  private readonly memo = new Map<string, Verified>()
  /** Told at once when this process revokes a subject (other processes find out from the cache). */
  private readonly revocationListeners = new Set<(subject: string, at: number) => void>()

  constructor(
    secret: string,
    private readonly cache: Cache,
    readonly accessTtlSeconds = 900,
  ) {
    this.jwt = jwt({ name: 'jwt', secret, exp: `${accessTtlSeconds}s` }).decorator.jwt
  }

  sign(principal: Principal): Promise<string> {
    return this.jwt.sign({ sub: principal.id, roles: principal.roles, ts: Date.now(), jti: Bun.randomUUIDv7() })
  }

  /** The principal of a `Bearer` authorization header; throws 401 for anything else. */
  async authenticate(authorization: string | null | undefined): Promise<Principal> {
    if (!authorization) throw new Unauthorized('missing bearer token')
    const [scheme, token] = authorization.split(' ')
    if (scheme?.toLowerCase() !== 'bearer' || !token) throw new Unauthorized('expected "Authorization: Bearer <token>"')
    const verified = await this.verify(token)
    if (await this.isRevoked(verified.id, verified.issuedAt)) throw new Unauthorized('token revoked', 'TOKEN_REVOKED')
    return { id: verified.id, roles: verified.roles, issuedAt: verified.issuedAt }
  }

  /** Whether a token of `subject` issued at `issuedAt` has been revoked since (in any process). */
  async isRevoked(subject: string, issuedAt: number): Promise<boolean> {
    const revokedAt = await this.revokedAt(subject)
    return revokedAt !== undefined && issuedAt <= revokedAt
  }

  /** When `subject`'s tokens were last revoked (every one issued up to then is void), if ever. */
  revokedAt(subject: string): Promise<number | undefined> {
    return this.cache.get<number>(`revoked:${subject}`)
  }

  /** Calls `listener` when this process revokes a subject; returns the function that stops it. */
  onRevoked(listener: (subject: string, at: number) => void): () => void {
    this.revocationListeners.add(listener)
    return () => this.revocationListeners.delete(listener)
  }

  /** Every token of `subject` issued up to now stops working, in every process. */
  async revokeIssuedBefore(subject: string, at = Date.now()) {
    await this.cache.set(`revoked:${subject}`, at, this.accessTtlSeconds + 60)
    for (const [token, v] of this.memo) if (v.id === subject) this.memo.delete(token)
    for (const listener of this.revocationListeners) listener(subject, at)
  }

  private async verify(token: string): Promise<Verified> {
    const known = this.memo.get(token)
    if (known) {
      if (known.expiresAt > Date.now()) return known
      this.memo.delete(token)
      throw new Unauthorized('token expired', 'TOKEN_EXPIRED')
    }
    const payload = await this.jwt.verify(token)
    if (!payload || typeof payload.sub !== 'string' || !Array.isArray(payload.roles) || typeof payload.exp !== 'number')
      throw new Unauthorized('invalid or expired token', 'INVALID_TOKEN')
    const verified: Verified = {
      id: payload.sub,
      roles: payload.roles.map(String),
      issuedAt: typeof payload.ts === 'number' ? payload.ts : (payload.iat ?? 0) * 1000,
      expiresAt: payload.exp * 1000,
    }
    if (this.memo.size >= MEMO_LIMIT) this.memo.clear()
    this.memo.set(token, verified)
    return verified
  }
}
