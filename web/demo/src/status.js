// The connection badge: close codes mapped to messages exactly as the CivicPress editor does
// (docs/protocol.md, "Close codes"), plus the provider's own states.

/** @type {Record<number, string>} */
export const CLOSE_MESSAGES = {
  1000: 'disconnected',
  4001: 'session expired',
  4003: 'no permission to edit',
  4004: 'record not found',
  4013: 'too many edits at once',
  4029: 'too many active sessions',
  4500: 'reconnecting',
  4503: 'reconnecting'
}

export const CONNECTION_LOST = 'connection lost'

/** The editor's message for a close code; `null` (a local close) is a lost connection. */
export const closeMessage = (code) => CLOSE_MESSAGES[code] ?? CONNECTION_LOST

/**
 * What the badge shows, as a small state machine fed with the provider's events.
 *
 * - `status` connecting: "connecting", unless a close already said something more useful;
 *   a reconnect attempt keeps showing that message ("reconnecting" after a 4503 must not
 *   turn into "connecting" every 100 ms while the server restarts).
 * - `status` connected: "connected"; the last close is forgotten.
 * - `connection-close`: the code's message; a socket that never opened (the server is not
 *   there yet) keeps the previous close's message instead of "connection lost".
 * - `offline()`: the user disconnected on purpose: "disconnected".
 */
export class ConnectionBadge {
  /** @param {(view: {state: string, label: string, code: number | null}) => void} render */
  constructor (render) {
    this.render = render
    this.opened = false
    /** @type {{label: string, code: number | null} | null} */
    this.lastClose = null
    this.show('connecting', 'connecting', null)
  }

  show (state, label, code) {
    this.current = { state, label, code }
    this.render(this.current)
  }

  onStatus (status) {
    if (status === 'connected') {
      this.opened = true
      this.lastClose = null
      this.show('connected', 'connected', null)
    } else if (status === 'connecting') {
      this.opened = false
      if (this.lastClose === null) this.show('connecting', 'connecting', null)
    }
  }

  /** @param {{code: number} | null} event the CloseEvent, or null for a local close */
  onClose (event) {
    const code = event ? event.code : null
    const wasOpen = this.opened
    this.opened = false
    if (!wasOpen && this.lastClose !== null) return
    const label = closeMessage(code)
    this.lastClose = { label, code }
    this.show(label === 'reconnecting' ? 'busy' : label === 'disconnected' ? 'offline' : 'error', label, code)
  }

  /** A connection attempt the user asked for: forget the last close. */
  reset () {
    this.opened = false
    this.lastClose = null
    this.show('connecting', 'connecting', null)
  }

  offline () {
    this.opened = false
    this.lastClose = { label: 'disconnected', code: 1000 }
    this.show('offline', 'disconnected', 1000)
  }
}
