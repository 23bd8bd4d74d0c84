/**
 * Baseline for scripts/bench/chat.ts: a bare Socket.IO server on the same engine as Tessera
 * (@socket.io/bun-engine), speaking the same `/chat` events as far as the benchmark uses them:
 * `conversation:join` joins a room, `message:send` acks `{ message }` and emits `message:new` to
 * the room. No auth, validation, storage or rate limits: what is left is the transport's own cost.
 */
import { Server as Engine } from '@socket.io/bun-engine'
import { Server } from 'socket.io'

const port = Number(process.env.PORT)
if (!Number.isInteger(port) || port <= 0) throw new Error('bare-socketio: PORT must be set to a port number')

const io = new Server()
const engine = new Engine({ path: '/socket.io/', pingInterval: 25_000, pingTimeout: 20_000 })
io.bind(engine)

const chat = io.of('/chat')
chat.on('connection', (socket) => {
  socket.on('conversation:join', (p: { conversationId: string }, ack?: (a: unknown) => void) => {
    socket.join(p.conversationId)
    ack?.({ ok: true, messages: [] })
  })
  socket.on('message:send', (p: { conversationId: string; clientId: string; body: string }, ack?: (a: unknown) => void) => {
    const message = { id: Bun.randomUUIDv7(), conversationId: p.conversationId, senderId: socket.id, body: p.body, clientId: p.clientId, createdAt: new Date().toISOString() }
    ack?.({ message })
    chat.to(p.conversationId).emit('message:new', { message })
  })
})

const { websocket } = engine.handler()
Bun.serve({
  port,
  hostname: '127.0.0.1',
  idleTimeout: 60,
  fetch(request, server) {
    const url = new URL(request.url)
    if (url.pathname.startsWith('/socket.io/')) return engine.handleRequest(request, server)
    return new Response('ok')
  },
  websocket,
})
