#!/usr/bin/env node
// The client helper (src/civicrealtime/http/static/client/civicrealtime.js) under Node,
// against a running daemon with a store, loaded from the daemon's own ops port.
//
//   node saved_client.mjs <wsBase> <opsBase> <scenario> [--room R] [--timeout-ms N]
//
//   wsBase    ws://127.0.0.1:PORT/realtime  (rooms at <wsBase>/records/<room>)
//   opsBase   http://127.0.0.1:HTTPPORT     (the helper is fetched from /client/civicrealtime.js)
//   scenario  saved    typing and deleting go saving -> saved; the frames' counts and clocks;
//                      a stock provider on the same room never gets a text frame
//             outage   the driver makes the store fail (PAUSE fail) and recover (PAUSE recover):
//                      saving -> error (STORE_FAILING) -> saved, with every change then durable
//             offline  changes made while disconnected stay unsaved until saved after reconnect
//
// Prints `PASS <scenario>` and exits 0, or exits 1 (check failed) / 3 (global timeout).

import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import WebSocket from 'ws'
import { WebsocketProvider } from 'y-websocket'
import * as Y from 'yjs'

const positional = []
const opts = { room: `saved-${Date.now().toString(36)}`, timeoutMs: 30000 }
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i]
  if (a === '--room') opts.room = process.argv[++i]
  else if (a === '--timeout-ms') opts.timeoutMs = Number(process.argv[++i])
  else positional.push(a)
}
const [wsBase, opsBase, scenario] = positional
if (!wsBase || !opsBase || !['saved', 'outage', 'offline'].includes(scenario)) {
  console.error('usage: node saved_client.mjs <wsBase> <opsBase> saved|outage|offline')
  process.exit(2)
}
const timer = setTimeout(() => {
  console.error(`global timeout after ${opts.timeoutMs} ms`)
  process.exit(3)
}, opts.timeoutMs)

class CheckFailed extends Error {}
function check (cond, message) {
  if (!cond) throw new CheckFailed(message)
}
const log = (line) => console.log(line)

// The module as the daemon serves it: proves the route and the file are the shipped ones.
async function loadHelper () {
  const response = await fetch(`${opsBase}/client/civicrealtime.js`)
  check(response.status === 200, `GET /client/civicrealtime.js: ${response.status}`)
  check(/javascript/.test(response.headers.get('content-type')), 'served as JavaScript')
  const dir = mkdtempSync(join(tmpdir(), 'crhelper-'))
  const file = join(dir, 'civicrealtime.mjs')
  writeFileSync(file, await response.text())
  return import(pathToFileURL(file).href)
}

function waitFor (predicate, what, ms = 10000) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now()
    const poll = () => {
      if (predicate()) return resolve()
      if (Date.now() - t0 > ms) return reject(new CheckFailed(`timed out waiting for ${what}`))
      setTimeout(poll, 10)
    }
    poll()
  })
}

let stdinLines = null
async function pausePoint (what) {
  if (stdinLines === null) {
    stdinLines = { buffered: '', lines: [], waiters: [] }
    process.stdin.setEncoding('utf8')
    process.stdin.on('data', (chunk) => {
      stdinLines.buffered += chunk
      let at
      while ((at = stdinLines.buffered.indexOf('\n')) >= 0) {
        stdinLines.lines.push(stdinLines.buffered.slice(0, at))
        stdinLines.buffered = stdinLines.buffered.slice(at + 1)
      }
      while (stdinLines.lines.length && stdinLines.waiters.length) stdinLines.waiters.shift()(stdinLines.lines.shift())
    })
  }
  log(`PAUSE ${what}`)
  return new Promise((resolve) => {
    if (stdinLines.lines.length) return resolve(stdinLines.lines.shift())
    stdinLines.waiters.push(resolve)
  })
}

function session (helper, doc, extra = {}) {
  const rt = helper.connectRealtime({
    WebsocketProvider,
    WebSocket,
    url: `${wsBase}/records`,
    room: opts.room,
    doc,
    tickMs: 50,
    providerOptions: { disableBc: true },
    ...extra
  })
  const seen = { statuses: [], saved: [], errors: [] }
  rt.on('status', (s) => {
    if (seen.statuses[seen.statuses.length - 1] !== s.status) seen.statuses.push(s.status)
  })
  rt.on('saved', (f) => seen.saved.push(f))
  rt.on('error', (e) => seen.errors.push(e))
  return { rt, seen }
}

async function scenarioSaved (helper) {
  // A stock client on the same room, asking for nothing: it must never see a text frame.
  const stockDoc = new Y.Doc()
  let stockText = 0
  class Watching extends WebSocket {
    constructor (url, protocols) {
      super(url, protocols)
      this.addEventListener('message', (event) => { if (typeof event.data === 'string') stockText++ })
    }
  }
  const stock = new WebsocketProvider(`${wsBase}/records`, opts.room, stockDoc, { WebSocketPolyfill: Watching, disableBc: true })

  const doc = new Y.Doc()
  const { rt, seen } = session(helper, doc)
  await waitFor(() => rt.status === 'saved' && rt.provider.synced, 'connected and saved')
  const text = doc.getText('t')
  text.insert(0, 'hello world')
  check(rt.status === 'saving', `typing makes it saving, not ${rt.status}`)
  check(rt.unsaved === 1, 'one unsaved change')
  await waitFor(() => rt.status === 'saved', 'saved after typing')
  const last = seen.saved[seen.saved.length - 1]
  check(last.through[String(doc.clientID)] === 11, `through covers the 11 characters: ${JSON.stringify(last)}`)
  // A deletion adds no clock: the message count still tells when it is saved.
  text.delete(0, 6)
  check(rt.status === 'saving', 'deleting makes it saving')
  await waitFor(() => rt.status === 'saved', 'saved after deleting')
  // A burst: acknowledged as a whole, never before.
  for (let i = 0; i < 20; i++) text.insert(text.length, `${i};`)
  check(rt.unsaved === 20, `twenty unsaved, got ${rt.unsaved}`)
  await waitFor(() => rt.status === 'saved', 'saved after a burst')
  check(seen.statuses.includes('saving') && seen.statuses.at(-1) === 'saved', `statuses ${seen.statuses}`)
  check(seen.errors.length === 0, `no error events: ${JSON.stringify(seen.errors)}`)
  await waitFor(() => stockDoc.getText('t').toString() === text.toString(), 'the stock client converged')
  check(stockText === 0, `the stock client got ${stockText} text frames`)
  rt.destroy()
  stock.destroy()
  log(`frames=${seen.saved.length} statuses=${seen.statuses.join(',')}`)
}

async function scenarioOutage (helper) {
  const doc = new Y.Doc()
  const { rt, seen } = session(helper, doc, { errorAfterMs: 60000 })
  await waitFor(() => rt.status === 'saved' && rt.provider.synced, 'connected and saved')
  const text = doc.getText('t')
  text.insert(0, 'before;')
  await waitFor(() => rt.status === 'saved', 'saved before the outage')
  await pausePoint('fail')
  text.insert(text.length, 'during;')
  await waitFor(() => rt.status === 'error', 'error while the store fails')
  check(seen.errors.some((e) => e.code === 'STORE_FAILING'), `STORE_FAILING: ${JSON.stringify(seen.errors)}`)
  const framesDuring = seen.saved.length
  text.insert(text.length, 'more;')
  await new Promise((resolve) => setTimeout(resolve, 300))
  check(seen.saved.length === framesDuring, 'no saved frame while the store fails')
  check(rt.status === 'error', 'still error')
  await pausePoint('recover')
  await waitFor(() => rt.status === 'saved', 'saved after recovery', 20000)
  log(`TEXT ${text.toString()}`)
  rt.destroy()
}

async function scenarioOffline (helper) {
  const doc = new Y.Doc()
  const { rt } = session(helper, doc)
  await waitFor(() => rt.status === 'saved' && rt.provider.synced, 'connected and saved')
  rt.provider.disconnect()
  await waitFor(() => rt.status === 'offline', 'offline')
  doc.getText('t').insert(0, 'typed offline')
  check(rt.status === 'offline' && rt.unsaved === 1, 'an offline change is unsaved')
  rt.provider.connect()
  await waitFor(() => rt.status === 'saving' || rt.status === 'saved', 'back online')
  await waitFor(() => rt.status === 'saved', 'the offline change saved after reconnect')
  rt.destroy()
}

try {
  const helper = await loadHelper()
  await { saved: scenarioSaved, outage: scenarioOutage, offline: scenarioOffline }[scenario](helper)
  log(`PASS ${scenario}`)
  clearTimeout(timer)
  process.exit(0)
} catch (error) {
  console.error(error instanceof CheckFailed ? `FAIL ${error.message}` : error)
  process.exit(1)
}
