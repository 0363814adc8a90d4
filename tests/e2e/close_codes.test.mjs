// The connection badge of the demo page (web/demo/src/status.js): close codes mapped exactly
// like the CivicPress editor, and the sticky message while reconnect attempts fail.
// Run: node --test tests/e2e/close_codes.test.mjs (tests/e2e/test_demo_units.py does).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ConnectionBadge, closeMessage } from '../../web/demo/src/status.js'

test('close codes map to the CivicPress editor messages', () => {
  const expected = {
    4001: 'session expired',
    4003: 'no permission to edit',
    4004: 'record not found',
    4013: 'too many edits at once',
    4029: 'too many active sessions',
    4500: 'reconnecting',
    4503: 'reconnecting',
    1000: 'disconnected',
    1001: 'connection lost',
    1006: 'connection lost',
    1009: 'connection lost',
    1013: 'connection lost',
    4400: 'connection lost'
  }
  for (const [code, message] of Object.entries(expected)) {
    assert.equal(closeMessage(Number(code)), message, `code ${code}`)
  }
  assert.equal(closeMessage(null), 'connection lost')
})

const badge = () => {
  const shown = []
  const b = new ConnectionBadge((view) => shown.push(view))
  return { b, shown, last: () => shown.at(-1) }
}

test('connecting, connected, then a close shows its message', () => {
  const { b, last } = badge()
  assert.equal(last().label, 'connecting')
  b.onStatus('connecting')
  b.onStatus('connected')
  assert.deepEqual(last(), { state: 'connected', label: 'connected', code: null })
  b.onClose({ code: 4503 })
  assert.deepEqual(last(), { state: 'busy', label: 'reconnecting', code: 4503 })
})

test('failed reconnect attempts keep the message of the real close', () => {
  const { b, last } = badge()
  b.onStatus('connected')
  b.onClose({ code: 4503 })
  for (let i = 0; i < 3; i++) {
    b.onStatus('connecting')
    b.onClose({ code: 1006 }) // nothing listens
    assert.equal(last().label, 'reconnecting')
  }
  b.onStatus('connecting')
  b.onStatus('connected')
  assert.equal(last().label, 'connected')
  b.onClose({ code: 1006 })
  assert.deepEqual(last(), { state: 'error', label: 'connection lost', code: 1006 })
})

test('a rejection after the upgrade names its reason', () => {
  const { b, last } = badge()
  b.onStatus('connecting')
  b.onStatus('connected') // the daemon upgrades, then checks the token
  b.onClose({ code: 4001 })
  assert.deepEqual(last(), { state: 'error', label: 'session expired', code: 4001 })
})

test('going offline on purpose, then back', () => {
  const { b, last } = badge()
  b.onStatus('connected')
  b.offline()
  assert.deepEqual(last(), { state: 'offline', label: 'disconnected', code: 1000 })
  b.reset()
  assert.equal(last().label, 'connecting')
  b.onStatus('connecting')
  assert.equal(last().label, 'connecting')
  b.onStatus('connected')
  assert.equal(last().label, 'connected')
})
