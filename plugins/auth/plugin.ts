/**
 * auth: accounts, sign-in, sessions and roles (CONTRACT.md section 3). Issues the access tokens
 * every other plugin's routes accept, and revokes them when an admin disables a user.
 */
import { ConfigError, setting } from '../../kernel/config'
import { definePlugin, pluginState } from '../../kernel/plugin'
import { announce } from './events'
import { authRoutes } from './routes'
import { schema } from './schema'
import { AuthService, toPublicUser } from './service'

const state = pluginState<AuthService>()

export default definePlugin({
  name: 'auth',
  version: '1.0.0',
  description: 'accounts, sign-in, sessions, roles and the audit log',
  schema,
  settings: {
    ADMIN_EMAIL: setting.optional('email of the admin account ensured at start-up (with ADMIN_PASSWORD)'),
    ADMIN_PASSWORD: setting.optional('password of that admin account, at least 8 characters'),
    REFRESH_TOKEN_TTL_DAYS: setting.int('lifetime of a refresh token', 30, 1, 365),
    LOGIN_MAX_FAILURES_PER_EMAIL: setting.int('failed sign-ins for one email before it is throttled', 5, 1),
    LOGIN_MAX_FAILURES_PER_IP: setting.int('failed sign-ins from one IP before it is throttled', 20, 1),
    LOGIN_THROTTLE_WINDOW_SECONDS: setting.int('window of the failed sign-in counts, and how long a throttle lasts', 900, 1),
    PASSWORD_HASH_MEMORY_KIB: setting.int('argon2id memory cost in KiB', 19_456, 1024),
    PASSWORD_HASH_TIME_COST: setting.int('argon2id iterations', 2, 1, 10),
  },
  setup(ctx) {
    const c = ctx.config
    if (Boolean(c.ADMIN_EMAIL) !== Boolean(c.ADMIN_PASSWORD))
      throw new ConfigError([`${c.ADMIN_EMAIL ? 'ADMIN_PASSWORD' : 'ADMIN_EMAIL'} must be set too: the admin account needs both`])
    if (c.ADMIN_PASSWORD && c.ADMIN_PASSWORD.length < 8) throw new ConfigError(['ADMIN_PASSWORD must be at least 8 characters'])
    const window = { durationSeconds: c.LOGIN_THROTTLE_WINDOW_SECONDS, blockSeconds: c.LOGIN_THROTTLE_WINDOW_SECONDS }
    const service = new AuthService({
      db: ctx.db,
      t: ctx.tables,
      identity: ctx.identity,
      cache: ctx.cache,
      log: ctx.log,
      announce: announce(ctx.events.publish),
      settings: { refreshTtlDays: c.REFRESH_TOKEN_TTL_DAYS, passwordMemoryKib: c.PASSWORD_HASH_MEMORY_KIB, passwordTimeCost: c.PASSWORD_HASH_TIME_COST },
      throttle: {
        byEmail: ctx.cache.limiter('login-email', { points: c.LOGIN_MAX_FAILURES_PER_EMAIL, ...window }),
        byIp: ctx.cache.limiter('login-ip', { points: c.LOGIN_MAX_FAILURES_PER_IP, ...window }),
      },
    })
    state.set(ctx, service)
    ctx.mount(authRoutes(ctx, service))
    ctx.provide('auth.getUser', async ({ id }) => {
      const user = await service.find(id)
      return user ? toPublicUser(user) : null
    })
  },
  async start(ctx) {
    const service = state.get(ctx)
    await service.restoreRevocations()
    if (ctx.config.ADMIN_EMAIL && ctx.config.ADMIN_PASSWORD) await service.bootstrapAdmin(ctx.config.ADMIN_EMAIL, ctx.config.ADMIN_PASSWORD)
  },
})
