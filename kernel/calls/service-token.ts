/**
 * Service tokens: how one Tessera process proves to another that it is one of them. A short-lived
 * HS256 JWT (audience "tessera-internal", subject = the calling plugin) signed with INTERNAL_SECRET,
 * or by default with a key derived from JWT_SECRET, so a user's access token is never accepted here.
 */
import { createHmac } from 'node:crypto'
import { jwt } from '@elysiajs/jwt'
import { Unauthorized } from '../../shared/errors'

export const INTERNAL_AUDIENCE = 'tessera-internal'
const TTL_SECONDS = 60
const MEMO_LIMIT = 1_000

/** INTERNAL_SECRET, else a key derived from JWT_SECRET (every process derives the same one). */
export function internalSecret(config: { INTERNAL_SECRET?: string; JWT_SECRET: string }): string {
  return config.INTERNAL_SECRET ?? createHmac('sha256', config.JWT_SECRET).update(INTERNAL_AUDIENCE).digest('hex')
}

export class ServiceTokens {
  private readonly jwt
  /** Signed tokens per caller, re-used until half their life is gone. */
  private readonly issued = new Map<string, { token: string; renewAt: number }>()
  /** Verified tokens, so a hot token costs a map lookup instead of an HMAC. */
  private readonly verified = new Map<string, { caller: string; expiresAt: number }>()

  constructor(secret: string) {
    this.jwt = jwt({ name: 'jwt', secret, exp: `${TTL_SECONDS}s` }).decorator.jwt
  }

  async tokenFor(caller: string): Promise<string> {
    const known = this.issued.get(caller)
    if (known && known.renewAt > Date.now()) return known.token
    const token = await this.jwt.sign({ sub: caller, aud: INTERNAL_AUDIENCE })
    this.issued.set(caller, { token, renewAt: Date.now() + (TTL_SECONDS * 1000) / 2 })
    return token
  }

  /** The calling plugin named by a `Bearer` service token; 401 for anything else. */
  async verify(authorization: string | null): Promise<string> {
    const token = authorization?.startsWith('Bearer ') ? authorization.slice(7) : undefined
    if (!token) throw new Unauthorized('a service token is required')
    const known = this.verified.get(token)
    if (known && known.expiresAt > Date.now()) return known.caller
    const payload = await this.jwt.verify(token, { audience: INTERNAL_AUDIENCE })
    if (!payload || typeof payload.sub !== 'string' || typeof payload.exp !== 'number') throw new Unauthorized('invalid service token', 'INVALID_TOKEN')
    if (this.verified.size >= MEMO_LIMIT) this.verified.clear()
    this.verified.set(token, { caller: payload.sub, expiresAt: payload.exp * 1000 })
    return payload.sub
  }
}
