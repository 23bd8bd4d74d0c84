/**
 * Cursor lists (CONTRACT.md section 2): `?limit=` (default 50, max 200) and `?cursor=`, answered
 * with `{ items, nextCursor }`. A cursor is the opaque, URL-safe form of the last item's sort key.
 */
import { t, type Static, type TSchema } from 'elysia'
import { BadRequest } from './errors'

export const ListQuery = t.Object({
  limit: t.Optional(t.Integer({ minimum: 1, maximum: 200, default: 50 })),
  cursor: t.Optional(t.String({ maxLength: 512 })),
})
export type ListQuery = Static<typeof ListQuery>

export const Page = <T extends TSchema>(item: T) => t.Object({ items: t.Array(item), nextCursor: t.Union([t.String(), t.Null()]) })

export const encodeCursor = (key: unknown): string => Buffer.from(JSON.stringify(key)).toString('base64url')

export function decodeCursor<T>(cursor: string | undefined, valid: (key: unknown) => key is T): T | undefined {
  if (cursor === undefined) return undefined
  try {
    const key: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'))
    if (valid(key)) return key
  } catch {}
  throw invalidCursor()
}

/** 400, not 422: a cursor is an opaque token given back unchanged, and one we did not hand out is a malformed request. */
export const invalidCursor = (message = 'cursor is not one this API handed out') =>
  new BadRequest(message, 'INVALID_CURSOR', [{ path: '/cursor', message: 'invalid cursor' }])

/** Builds a page from `limit + 1` fetched rows: the extra row only says that there is more. */
export function page<Row, Item>(rows: Row[], limit: number, toItem: (r: Row) => Item, keyOf: (r: Row) => unknown) {
  const more = rows.length > limit
  const items = rows.slice(0, limit)
  return { items: items.map(toItem), nextCursor: more ? encodeCursor(keyOf(items[items.length - 1])) : null }
}

export const isString = (k: unknown): k is string => typeof k === 'string' && k.length > 0 && k.length < 200
