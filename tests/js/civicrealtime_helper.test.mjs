// The client helper's bookkeeping, with the real y-websocket provider over a fake socket:
// node --test tests/js/civicrealtime_helper.test.mjs (driven by tests/test_saved_js.py).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import * as encoding from 'lib0/encoding'
import * as syncProtocol from 'y-protocols/sync'
import { WebsocketProvider } from 'y-websocket'
import * as Y from 'yjs'
import { CONTROL_SUBPROTOCOL, connectRealtime, syncKind } from '../../src/civicrealtime/http/static/client/civicrealtime.js'

/** A WebSocket the test drives: open(), receive(), close(); what was sent is kept. */
class FakeSocket {
  static all = []
  constructor (url, protocols) {
    this.url = url
    this.protocols = protocols
    this.readyState = 0
    this.sent = []
    this.listeners = { open: [], close: [] }
    this._onmessage = null
    this.onopen = null
    this.onclose = null
    this.onerror = null
    FakeSocket.all.push(this)
  }

  get onmessage () { return this._onmessage }
  set onmessage (handler) { this._onmessage = handler }
  get OPEN () { return 1 }
  addEventListener (type, listener) { this.listeners[type]?.push(listener) }
  send (data) { this.sent.push(data) }
  open () {
    this.readyState = 1
    for (const listener of this.listeners.open) listener({})
    this.onopen?.({})
  }

  receive (data) { this._onmessage?.({ data }) }
  close () {
    if (this.readyState === 3) return
    this.readyState = 3
    for (const listener of this.listeners.close) listener({ code: 1006 })
    this.onclose?.({ code: 1006, reason: '' })
  }
}

function serverStep1 () {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, 0)
  syncProtocol.writeSyncStep1(encoder, new Y.Doc())
  return encoding.toUint8Array(encoder).buffer
}

const saved = (updates) => JSON.stringify({ type: 'control', event: 'saved', through: {}, updates })

function start (options = {}) {
  FakeSocket.all = []
  const doc = new Y.Doc()
  const rt = connectRealtime({
    WebsocketProvider,
    WebSocket: FakeSocket,
    url: 'ws://test/realtime/records',
    room: 'r',
    doc,
    token: 'tok',
    tickMs: 0,
    providerOptions: { disableBc: true },
    ...options
  })
  const statuses = []
  rt.on('status', (s) => statuses.push(s.status))
  const socket = FakeSocket.all.at(-1)
  socket.open()
  // The provider's awareness keeps an interval until its document is destroyed.
  const destroy = rt.destroy.bind(rt)
  rt.destroy = () => { destroy(); doc.destroy() }
  return { rt, doc, socket, statuses }
}

test('offers the control subprotocol beside the token', () => {
  const { rt, socket } = start()
  assert.deepEqual(socket.protocols, ['auth.tok', CONTROL_SUBPROTOCOL])
  assert.equal(rt.status, 'saved')
  rt.destroy()
})

test('text frames never reach the provider; binary ones do', () => {
  const { rt, socket } = start()
  const frames = []
  rt.on('control', (frame) => frames.push(frame))
  socket.receive(JSON.stringify({ type: 'control', event: 'connection.ack', roomId: 'records:r', clientId: 'c' }))
  socket.receive('not json at all')
  socket.receive(serverStep1()) // the provider answers with its step 2
  assert.equal(frames.length, 1)
  assert.equal(syncKind(socket.sent.at(-1)), 'step2')
  rt.destroy()
})

test('saving until the saved frame counts every update, deletions included', () => {
  const { rt, doc, socket, statuses } = start()
  const text = doc.getText('t')
  text.insert(0, 'hello')
  assert.equal(rt.status, 'saving')
  text.delete(0, 2)
  assert.equal(rt.unsaved, 2)
  socket.receive(saved(1))
  assert.equal(rt.status, 'saving')
  assert.equal(rt.unsaved, 1)
  socket.receive(saved(2))
  assert.equal(rt.status, 'saved')
  assert.deepEqual(statuses, ['saved', 'saving', 'saved'])
  rt.destroy()
})

test('a store failure is an error until a saved frame comes', () => {
  const { rt, doc, socket } = start()
  const errors = []
  rt.on('error', (e) => errors.push(e.code))
  doc.getText('t').insert(0, 'x')
  socket.receive(JSON.stringify({ type: 'control', event: 'error', error: { code: 'STORE_FAILING', message: 'cannot store' } }))
  assert.equal(rt.status, 'error')
  assert.deepEqual(errors, ['STORE_FAILING'])
  socket.receive(saved(1))
  assert.equal(rt.status, 'saved')
  rt.destroy()
})

test('a change unsaved past errorAfterMs is an error', async () => {
  const { rt, doc } = start({ errorAfterMs: 20, tickMs: 5 })
  doc.getText('t').insert(0, 'x')
  assert.equal(rt.status, 'saving')
  await new Promise((resolve) => setTimeout(resolve, 60))
  assert.equal(rt.status, 'error')
  rt.destroy()
})

test('changes left unsaved by a closed connection are saved with the next one\'s step 2', () => {
  const { rt, doc, socket } = start({ providerOptions: { disableBc: true, maxBackoffTime: 10 } })
  const text = doc.getText('t')
  text.insert(0, 'sent')
  socket.close()
  assert.equal(rt.status, 'offline')
  text.insert(0, 'offline ')
  assert.equal(rt.unsaved, 2)
  return new Promise((resolve) => setTimeout(resolve, 50)).then(() => {
    const next = FakeSocket.all.at(-1)
    assert.notEqual(next, socket)
    next.open()
    // A saved frame from the old connection, arriving late, says nothing about this one.
    socket.receive(saved(5))
    assert.equal(rt.unsaved, 2)
    next.receive(serverStep1()) // answered by the step 2 that carries both changes
    assert.equal(rt.status, 'saving')
    next.receive(saved(1))
    assert.equal(rt.status, 'saved')
    rt.destroy()
  })
})

test('notices and revocations are events', () => {
  const { rt, socket } = start()
  const seen = []
  rt.on('notice', (n) => seen.push(['notice', n.message]))
  rt.on('revoked', (r) => seen.push(['revoked', r.reason]))
  socket.receive(JSON.stringify({ type: 'control', event: 'notice', notice: { level: 'warning', message: 'slow down' } }))
  socket.receive(JSON.stringify({ type: 'control', event: 'session.revoked', reason: 'token revoked' }))
  assert.deepEqual(seen, [['notice', 'slow down'], ['revoked', 'token revoked']])
  rt.destroy()
})

test('a new socket carries what the old one left, even before the old one reports its close', () => {
  const { rt, doc, socket } = start({ providerOptions: { disableBc: true, maxBackoffTime: 10 } })
  doc.getText('t').insert(0, 'sent on the first socket')
  // The provider moves on to a new socket; the old close event is late.
  const late = socket.listeners.close
  socket.listeners.close = []
  socket.close()
  return new Promise((resolve) => setTimeout(resolve, 50)).then(() => {
    const next = FakeSocket.all.at(-1)
    next.open()
    next.receive(serverStep1())
    next.receive(saved(1))
    assert.equal(rt.status, 'saved')
    for (const listener of late) listener({ code: 1006 })
    assert.equal(rt.status, 'saved')
    rt.destroy()
  })
})

test('offline, not error, while disconnected however old the change', async () => {
  const { rt, doc, socket } = start({ errorAfterMs: 10, tickMs: 5 })
  socket.close()
  doc.getText('t').insert(0, 'typed offline')
  await new Promise((resolve) => setTimeout(resolve, 40))
  assert.equal(rt.status, 'offline')
  rt.destroy()
})
