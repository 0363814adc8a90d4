// civicrealtime client helper: a stock y-websocket WebsocketProvider that knows when your
// changes are saved. Plain ES module, no dependencies, no build step: pass it the
// WebsocketProvider class your editor already bundles.
//
//   import { WebsocketProvider } from 'y-websocket'
//   import { connectRealtime } from 'https://realtime.example.org:3002/client/civicrealtime.js'
//   const rt = connectRealtime({ WebsocketProvider, url, room: 'records/bylaw-2026-004', doc, token })
//   rt.on('status', ({ status, oldestUnsavedMs }) => render(status, oldestUnsavedMs))
//
// What it does (docs/saved.md):
// - offers the `civicrealtime.control.v1` subprotocol (beside `auth.<token>`), which asks the
//   server for its JSON control frames, among them "saved";
// - keeps those text frames away from y-websocket's binary handler;
// - counts the update messages it sends on each connection and compares them with the
//   `updates` count of each "saved" frame: a deletion adds no clock, but it is a message;
// - reports `saved`, `saving` (with the age of the oldest unsaved change), `offline` (not
//   connected: changes wait locally), or `error` (connected, but the server reported a store
//   failure, or a change stayed unsaved past `errorAfterMs`), and every other control frame
//   as an event.
//
// Changes made offline, or sent on a connection that closed before they were acknowledged,
// stay unsaved until the next connection's answer to the server's sync step 1 (which holds
// everything the server lacks) is acknowledged.

export const CONTROL_SUBPROTOCOL = 'civicrealtime.control.v1'

const MESSAGE_SYNC = 0
const SYNC_STEP_2 = 1
const SYNC_UPDATE = 2

/** Reads a lib0 var-uint at `offset`; returns [value, next offset] or null if cut short. */
function readVarUint (bytes, offset) {
  let value = 0
  let shift = 0
  while (offset < bytes.length) {
    const byte = bytes[offset++]
    value += (byte & 0x7f) * 2 ** shift
    if (byte < 0x80) return [value, offset]
    shift += 7
    if (shift > 49) return null
  }
  return null
}

/** 'step2', 'update' or null: which sync message a binary frame the client sends is. */
export function syncKind (data) {
  let bytes
  if (data instanceof Uint8Array) bytes = data
  else if (data instanceof ArrayBuffer) bytes = new Uint8Array(data)
  else if (ArrayBuffer.isView(data)) bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  else return null
  const type = readVarUint(bytes, 0)
  if (type === null || type[0] !== MESSAGE_SYNC) return null
  const sub = readVarUint(bytes, type[1])
  if (sub === null) return null
  if (sub[0] === SYNC_STEP_2) return 'step2'
  if (sub[0] === SYNC_UPDATE) return 'update'
  return null
}

/**
 * A WebSocket class (the browser's, or Node's `ws`) that offers the control subprotocol,
 * hands text frames to `onControl` instead of the binary handler, and reports each sync
 * update message it sends to `onSent(socket, kind)`.
 */
export function controlledWebSocket (Base, { onControl, onSent, onOpen, onClose }) {
  return class ControlledWebSocket extends Base {
    constructor (url, protocols) {
      const offered = protocols == null ? [] : (Array.isArray(protocols) ? [...protocols] : [protocols])
      if (!offered.includes(CONTROL_SUBPROTOCOL)) offered.push(CONTROL_SUBPROTOCOL)
      super(url, offered)
      this.addEventListener('open', () => onOpen(this))
      this.addEventListener('close', () => onClose(this))
    }

    set onmessage (handler) {
      if (typeof handler !== 'function') {
        super.onmessage = handler
        return
      }
      super.onmessage = (event) => {
        if (typeof event.data === 'string') {
          let frame
          try {
            frame = JSON.parse(event.data)
          } catch {
            return // not ours to interpret, and never the binary handler's
          }
          onControl(this, frame)
          return
        }
        handler(event)
      }
    }

    get onmessage () {
      return super.onmessage
    }

    send (data) {
      const kind = syncKind(data)
      super.send(data)
      if (kind !== null) onSent(this, kind)
    }
  }
}

/**
 * Save status of one document over one WebsocketProvider.
 *
 * Options: WebsocketProvider (the class), url, room, doc, token (sent as `auth.<token>`),
 * WebSocket (the base class; the global one by default), errorAfterMs (a change unsaved for
 * longer is an error; 30 s by default), tickMs (how often `status` repeats while saving,
 * with the age; 1 s), providerOptions (passed on to the provider).
 */
export class RealtimeSession {
  constructor (options) {
    const {
      WebsocketProvider,
      url,
      room,
      doc,
      token = null,
      WebSocket: Base = globalThis.WebSocket,
      errorAfterMs = 30000,
      tickMs = 1000,
      providerOptions = {}
    } = options
    if (typeof WebsocketProvider !== 'function') throw new TypeError('WebsocketProvider class required')
    if (typeof Base !== 'function') throw new TypeError('no WebSocket class: pass options.WebSocket')
    this.doc = doc
    this.errorAfterMs = errorAfterMs
    this._listeners = new Map()
    this._socket = null // the open socket, once open
    this._sent = 0 // update messages sent on it
    this._firstStep2 = null // index of its first step 2 (covers what earlier sockets left)
    this._unsaved = [] // { at, socket, seq } — socket null: carried over a reconnect
    this._storeError = null
    this._status = null
    this._detail = null
    const session = this
    const WS = controlledWebSocket(Base, {
      onControl: (socket, frame) => session._control(socket, frame),
      onSent: (socket, kind) => session._sentOn(socket, kind),
      onOpen: (socket) => session._opened(socket),
      onClose: (socket) => session._closed(socket)
    })
    const protocols = [...(providerOptions.protocols || [])]
    if (token) protocols.unshift(`auth.${token}`)
    this._onUpdate = (update, origin) => session._localChange(origin)
    // Before the provider's own handler: a change is seen before the message carrying it.
    doc.on('update', this._onUpdate)
    this.provider = new WebsocketProvider(url, room, doc, {
      ...providerOptions,
      protocols,
      WebSocketPolyfill: WS
    })
    this._onStatus = () => session._refresh()
    this.provider.on('status', this._onStatus)
    this._timer = tickMs > 0 ? setInterval(() => session._refresh(true), tickMs) : null
    this._refresh()
  }

  /** 'saved' | 'saving' | 'offline' | 'error' */
  get status () {
    return this._status
  }

  /** Milliseconds since the oldest change not yet acknowledged as saved (0 if none). */
  get oldestUnsavedMs () {
    return this._unsaved.length ? Date.now() - this._unsaved[0].at : 0
  }

  get unsaved () {
    return this._unsaved.length
  }

  /** Listen to 'status', 'saved', 'control', 'error', 'notice', 'revoked'. */
  on (name, listener) {
    if (!this._listeners.has(name)) this._listeners.set(name, new Set())
    this._listeners.get(name).add(listener)
    return () => this.off(name, listener)
  }

  off (name, listener) {
    this._listeners.get(name)?.delete(listener)
  }

  destroy () {
    if (this._timer !== null) clearInterval(this._timer)
    this.doc.off('update', this._onUpdate)
    this.provider.off('status', this._onStatus)
    this.provider.destroy()
    this._listeners.clear()
  }

  _emit (name, value) {
    for (const listener of [...(this._listeners.get(name) || [])]) {
      try {
        listener(value)
      } catch (error) {
        // A listener's bug must not stop the others nor the bookkeeping.
        setTimeout(() => { throw error })
      }
    }
  }

  _localChange (origin) {
    if (origin === this.provider && this.provider !== undefined) return // from the server
    // Sent at once when connected (counted in `_sentOn`); otherwise carried to the next
    // connection, whose step 2 will hold it.
    const socket = this._socket
    if (socket === null || socket.readyState !== 1 || !this.provider?.wsconnected) {
      this._unsaved.push({ at: Date.now(), socket: null, seq: 0 })
      this._refresh()
    }
  }

  _sentOn (socket, kind) {
    if (socket !== this._socket) return
    this._sent += 1
    if (kind === 'step2' && this._firstStep2 === null) this._firstStep2 = this._sent
    if (kind === 'update') {
      this._unsaved.push({ at: Date.now(), socket, seq: this._sent })
      this._refresh()
    }
  }

  _opened (socket) {
    // Whatever an earlier socket left unacknowledged is carried to this one, even if that
    // socket's close event has not arrived yet.
    for (const entry of this._unsaved) {
      if (entry.socket !== null && entry.socket !== socket) entry.socket = null
    }
    this._socket = socket
    this._sent = 0
    this._firstStep2 = null
    this._refresh()
  }

  _closed (socket) {
    if (socket !== this._socket) return
    this._socket = null
    for (const entry of this._unsaved) {
      if (entry.socket === socket) entry.socket = null
    }
    this._refresh()
  }

  _control (socket, frame) {
    if (frame === null || typeof frame !== 'object') return
    this._emit('control', frame)
    if (frame.type !== 'control') return
    switch (frame.event) {
      case 'saved':
        if (socket === this._socket) this._saved(frame)
        this._emit('saved', frame)
        break
      case 'error':
        if (frame.error && frame.error.code === 'STORE_FAILING') this._storeError = frame.error.message
        this._emit('error', frame.error || {})
        this._refresh()
        break
      case 'notice':
        this._emit('notice', frame.notice || {})
        break
      case 'session.revoked':
        this._emit('revoked', { reason: frame.reason })
        break
    }
  }

  _saved (frame) {
    const upto = Number(frame.updates)
    if (!Number.isFinite(upto)) return
    const socket = this._socket
    const coversCarried = this._firstStep2 !== null && this._firstStep2 <= upto
    this._unsaved = this._unsaved.filter((entry) =>
      entry.socket === null ? !coversCarried : !(entry.socket === socket && entry.seq <= upto)
    )
    // A saved frame says the store writes again.
    this._storeError = null
    this._refresh()
  }

  _refresh (tick = false) {
    const connected = this._socket !== null && this.provider?.wsconnected === true
    const age = this.oldestUnsavedMs
    let status
    let reason = null
    if (!connected) {
      // Not an error of the server's: the changes wait here and go out on reconnecting.
      status = 'offline'
    } else if (this._storeError !== null && this._unsaved.length) {
      status = 'error'
      reason = this._storeError
    } else if (this._unsaved.length && age > this.errorAfterMs) {
      status = 'error'
      reason = `a change is unsaved after ${Math.round(age / 1000)} s`
    } else if (this._unsaved.length) {
      status = 'saving'
    } else {
      status = 'saved'
    }
    const changed = status !== this._status || reason !== this._detail
    if (!changed && !(tick && status !== 'saved')) return
    this._status = status
    this._detail = reason
    this._emit('status', { status, oldestUnsavedMs: age, unsaved: this._unsaved.length, reason })
  }
}

/** A `RealtimeSession`: the provider is `session.provider`. */
export function connectRealtime (options) {
  return new RealtimeSession(options)
}
