/**
 * Inbound channels: a webhook per channel whose signature is checked over the raw body before
 * anything is read from it, and an outbound adapter per kind that sends agents' replies back.
 *
 * Kinds (`CHAT_CHANNELS`, a JSON object `{ "<name>": { kind, secret, url?, token?, verifyToken? } }`):
 * - `signed`: Tessera's generic signed webhook. Inbound `x-tessera-timestamp: <unix seconds>` and
 *   `x-tessera-signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>`, the timestamp
 *   within CHAT_WEBHOOK_TOLERANCE_SECONDS (replays of older requests are refused; a replay inside the
 *   window finds its message already stored by id); body `{ id, from: { id, name? }, text }`.
 *   Outbound: POST `url` with the same two headers, body `{ id, to, text, conversationId, createdAt }`.
 * - `line`: `x-line-signature: base64(HMAC-SHA256(channel secret, raw body))`; text message events.
 *   Outbound: the push API (`url` overrides it), `Authorization: Bearer <token>`, `X-Line-Retry-Key`.
 * - `messenger`: `x-hub-signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>`; text
 *   messages, echoes ignored; GET verification with `verifyToken`. Outbound: the Send API.
 */
import { createHmac, timingSafeEqual } from 'node:crypto'
import { type Static, Type as t } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import type { Setting } from '../../kernel/config'
import { Invalid, Unauthorized } from '../../shared/errors'

export const ChannelConfig = t.Object(
  {
    kind: t.Union([t.Literal('signed'), t.Literal('line'), t.Literal('messenger')]),
    /** HMAC key of inbound signatures (and of outbound ones for `signed`) */
    secret: t.String({ minLength: 8 }),
    /** where replies go; required for `signed`, optional override for `line` and `messenger` */
    url: t.Optional(t.String({ pattern: '^https?://' })),
    /** access token of the LINE / Messenger API */
    token: t.Optional(t.String()),
    /** Messenger's webhook verification token */
    verifyToken: t.Optional(t.String()),
  },
  { additionalProperties: false },
)
export type ChannelConfig = Static<typeof ChannelConfig>
export type Channels = Record<string, ChannelConfig>

const NAME = /^[a-z0-9_-]{1,32}$/

export const channelsSetting: Setting<Channels> = {
  doc: 'inbound chat channels as JSON: {"<name>":{"kind":"signed|line|messenger","secret":"…","url":"…","token":"…","verifyToken":"…"}}',
  default: '{}',
  parse(raw) {
    let value: unknown
    try {
      value = JSON.parse(raw)
    } catch {
      throw new Error('must be a JSON object')
    }
    if (!value || typeof value !== 'object' || Array.isArray(value)) throw new Error('must be a JSON object of channels')
    for (const [name, config] of Object.entries(value)) {
      if (!NAME.test(name)) throw new Error(`channel name ${JSON.stringify(name)} must be 1-32 of a-z, 0-9, _ and -`)
      if (!Value.Check(ChannelConfig, config)) {
        const first = [...Value.Errors(ChannelConfig, config)][0]
        throw new Error(`channel ${name}: ${first?.path || '/'} ${first?.message}`)
      }
      if (config.kind === 'signed' && !config.url) throw new Error(`channel ${name}: a signed channel needs the url its replies go to`)
    }
    return value as Channels
  },
}

/** One message that came in through a channel. */
export interface Inbound {
  /** the sender's id in the channel */
  from: string
  /** the channel's id of the message: the de-duplication key */
  id: string
  text: string
}

const hmac = (secret: string, data: string | Uint8Array) => createHmac('sha256', secret).update(data).digest()

/** Constant-time comparison of an expected digest with what the header carried (any length). */
function same(expected: Buffer, given: Buffer): boolean {
  return given.length === expected.length && timingSafeEqual(given, expected)
}

const fromHex = (s: string) => (/^[0-9a-f]{64}$/i.test(s) ? Buffer.from(s, 'hex') : Buffer.alloc(0))

const refused = () => new Unauthorized('the webhook signature does not match', 'BAD_SIGNATURE')

/**
 * Checks the signature of a raw webhook body for the channel; throws 401 BAD_SIGNATURE (or
 * STALE_WEBHOOK) before the body is trusted.
 */
export function verify(config: ChannelConfig, raw: Uint8Array, headers: Headers, toleranceSeconds: number, now = Date.now()) {
  switch (config.kind) {
    case 'signed': {
      const timestamp = headers.get('x-tessera-timestamp') ?? ''
      const signature = headers.get('x-tessera-signature') ?? ''
      if (!/^\d{1,12}$/.test(timestamp) || !signature.startsWith('sha256=')) throw refused()
      const expected = hmac(config.secret, Buffer.concat([Buffer.from(`${timestamp}.`), raw]))
      if (!same(expected, fromHex(signature.slice(7)))) throw refused()
      if (Math.abs(now / 1000 - Number(timestamp)) > toleranceSeconds)
        throw new Unauthorized(`the webhook timestamp is more than ${toleranceSeconds} s away from now`, 'STALE_WEBHOOK')
      return
    }
    case 'line': {
      const given = Buffer.from(headers.get('x-line-signature') ?? '', 'base64')
      if (!same(hmac(config.secret, raw), given)) throw refused()
      return
    }
    case 'messenger': {
      const signature = headers.get('x-hub-signature-256') ?? ''
      if (!signature.startsWith('sha256=') || !same(hmac(config.secret, raw), fromHex(signature.slice(7)))) throw refused()
      return
    }
  }
}

const SignedBody = t.Object({
  id: t.String({ minLength: 1, maxLength: 200 }),
  from: t.Object({ id: t.String({ minLength: 1, maxLength: 200 }), name: t.Optional(t.String({ maxLength: 200 })) }),
  text: t.String({ minLength: 1, maxLength: 4000 }),
})
const LineBody = t.Object({
  events: t.Array(
    t.Object({
      type: t.String(),
      source: t.Optional(t.Object({ userId: t.Optional(t.String({ maxLength: 200 })) })),
      message: t.Optional(t.Object({ type: t.String(), id: t.String({ maxLength: 200 }), text: t.Optional(t.String({ maxLength: 5000 })) })),
    }),
  ),
})
const MessengerBody = t.Object({
  entry: t.Array(
    t.Object({
      messaging: t.Optional(
        t.Array(
          t.Object({
            sender: t.Object({ id: t.String({ maxLength: 200 }) }),
            message: t.Optional(t.Object({ mid: t.String({ maxLength: 300 }), text: t.Optional(t.String({ maxLength: 5000 })), is_echo: t.Optional(t.Boolean()) })),
          }),
        ),
      ),
    }),
  ),
})

function checked<S extends Parameters<typeof Value.Check>[0]>(schema: S, body: unknown): Static<S> {
  if (Value.Check(schema, body)) return body as Static<S>
  const details = [...Value.Errors(schema, body)].slice(0, 5).map((e) => ({ path: e.path || '/', message: e.message }))
  throw new Invalid(`the webhook body does not have this channel's shape: ${details[0]?.path} ${details[0]?.message}`, details)
}

/** The text messages in a verified webhook body (other events are ignored). */
export function inboundMessages(config: ChannelConfig, body: unknown): Inbound[] {
  switch (config.kind) {
    case 'signed': {
      const b = checked(SignedBody, body)
      return [{ from: b.from.id, id: b.id, text: b.text }]
    }
    case 'line':
      return checked(LineBody, body).events.flatMap((e) =>
        e.type === 'message' && e.message?.type === 'text' && e.message.text && e.source?.userId ? [{ from: e.source.userId, id: e.message.id, text: e.message.text }] : [],
      )
    case 'messenger':
      return checked(MessengerBody, body).entry.flatMap((entry) =>
        (entry.messaging ?? []).flatMap((m) =>
          m.message && m.message.text && !m.message.is_echo ? [{ from: m.sender.id, id: m.message.mid, text: m.message.text }] : [],
        ),
      )
  }
}

/** One reply to send out. */
export interface Outbound {
  deliveryId: string
  messageId: string
  conversationId: string
  to: string
  text: string
  createdAt: Date
}

/** The HTTP request that carries a reply to the channel. */
export function outboundRequest(config: ChannelConfig, reply: Outbound, now = Date.now()): { url: string; init: RequestInit } {
  const json = { 'content-type': 'application/json' }
  switch (config.kind) {
    case 'signed': {
      const body = JSON.stringify({ id: reply.messageId, to: reply.to, text: reply.text, conversationId: reply.conversationId, createdAt: reply.createdAt.toISOString() })
      const timestamp = String(Math.floor(now / 1000))
      const signature = `sha256=${hmac(config.secret, `${timestamp}.${body}`).toString('hex')}`
      return { url: config.url!, init: { method: 'POST', headers: { ...json, 'x-tessera-timestamp': timestamp, 'x-tessera-signature': signature }, body } }
    }
    case 'line':
      return {
        url: config.url ?? 'https://api.line.me/v2/bot/message/push',
        init: {
          method: 'POST',
          // The retry key makes LINE accept a push once however often it is re-sent.
          headers: { ...json, authorization: `Bearer ${config.token ?? ''}`, 'x-line-retry-key': reply.deliveryId },
          body: JSON.stringify({ to: reply.to, messages: [{ type: 'text', text: reply.text.slice(0, 5000) }] }),
        },
      }
    case 'messenger':
      return {
        url: config.url ?? 'https://graph.facebook.com/v21.0/me/messages',
        init: {
          method: 'POST',
          headers: { ...json, authorization: `Bearer ${config.token ?? ''}` },
          body: JSON.stringify({ recipient: { id: reply.to }, messaging_type: 'RESPONSE', message: { text: reply.text.slice(0, 2000) } }),
        },
      }
  }
}
