#!/usr/bin/env node
// Stock Yjs editors through the daemon, typing characters outside the BMP (issue #14, part 2).
//
//   node split_clients.mjs <ws://host:port/realtime> <scenario> --prefix P [--seed N] [--ops N]
//
//   six-steps  A types "Avis 😀 public"; B inserts "é" at UTF-16 offset 6, between the
//              emoji's two halves; both converge; then a late joiner reads the server's state.
//   stress     three editors make --ops concurrent edits (emoji, flags, skin tones, ZWJ
//              sequences, accents) at random UTF-16 offsets, some while offline; then a late
//              joiner.
//   read       a late joiner only (after a daemon restart).
//
// Prints one line `RESULT {"editors": text|null, "late": text, "errors": [...]}` and exits 0;
// the Python test compares. `errors` lists every exception Yjs or the provider raised while
// handling a binary frame (e.g. "Unexpected case"). Exit 2: usage; 3: global timeout.
import WebSocket from 'ws'
import { WebsocketProvider } from 'y-websocket'
import * as Y from 'yjs'

const args = process.argv.slice(2)
const option = (name, fallback) => {
  const i = args.indexOf(name)
  return i >= 0 ? args[i + 1] : fallback
}
const [baseUrl, scenario] = args
const prefix = option('--prefix', null)
if (!baseUrl || !scenario || !prefix) {
  console.error('usage: node split_clients.mjs <baseUrl> <six-steps|stress|read> --prefix P [--seed N] [--ops N]')
  process.exit(2)
}
const TOKENS = process.env.INTEROP_TOKENS ? JSON.parse(process.env.INTEROP_TOKENS) : {}
const TIMEOUT_MS = Number(option('--timeout-ms', 90000))
setTimeout(() => {
  console.error(`FAIL: global timeout of ${TIMEOUT_MS} ms (scenario ${scenario})`)
  for (const c of clients) console.error(`  ${c.name}: ${JSON.stringify(c.text())} synced=${c.provider.synced}`)
  process.exit(3)
}, TIMEOUT_MS).unref()

const errors = []
process.on('uncaughtException', (err) => { errors.push(`uncaught: ${err && err.message}`) })
process.on('unhandledRejection', (err) => { errors.push(`unhandled: ${err && err.message}`) })

// Text frames (the daemon's control frames) are not for the stock provider; a browser
// swallows the exception they cause. An exception on a BINARY frame is what this test hunts.
function socketClass (name) {
  return class extends WebSocket {
    set onmessage (handler) {
      if (typeof handler !== 'function') {
        super.onmessage = handler
        return
      }
      super.onmessage = (event) => {
        try {
          handler.call(this, event)
        } catch (err) {
          if (typeof event.data !== 'string') errors.push(`${name}: ${err && err.message}`)
        }
      }
    }

    get onmessage () {
      return super.onmessage
    }
  }
}

const clients = []
function connect (name, user) {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(`${baseUrl}/records`, prefix, doc, {
    WebSocketPolyfill: socketClass(name),
    protocols: [`auth.${TOKENS[user] ?? user}`],
    disableBc: true
  })
  const client = { name, doc, provider, text: () => doc.getText('text').toString() }
  clients.push(client)
  return client
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
async function until (pred, what, timeoutMs = 30000) {
  const t0 = Date.now()
  while (!pred()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await sleep(10)
  }
}
const sv = (doc) => Buffer.from(Y.encodeStateVector(doc)).toString('hex')
const converged = (cs) => cs.every((c) => c.provider.synced && c.text() === cs[0].text() && sv(c.doc) === sv(cs[0].doc))

async function lateJoiner () {
  const late = connect('late', 'probe')
  await until(() => late.provider.synced, 'the late joiner to sync')
  return late.text()
}

function makeRng (seed) {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
const PIECES = ['a', 'b', ' ', 'é', 'ß', '中', '😀', '👍🏽', '🇫🇷', '👩‍👩‍👧', '𝔸', 'e\u0301', 'Avis ']

async function sixSteps () {
  const a = connect('A', 'alice')
  const b = connect('B', 'bob')
  await until(() => a.provider.synced && b.provider.synced, 'A and B to sync')
  a.doc.getText('text').insert(0, 'Avis 😀 public')
  await until(() => b.text() === 'Avis 😀 public', 'B to receive A\'s text')
  b.doc.getText('text').insert(6, 'é') // UTF-16 offset 6: between the emoji's halves
  await until(() => converged([a, b]) && a.text().includes('é'), 'A and B to converge')
  return { editors: a.text(), late: await lateJoiner() }
}

async function stress () {
  const rng = makeRng(Number(option('--seed', 1)))
  const randInt = (n) => Math.floor(rng() * n)
  const ops = Number(option('--ops', 300))
  const editors = [connect('A', 'alice'), connect('B', 'bob'), connect('C', 'carol')]
  await until(() => editors.every((c) => c.provider.synced), 'the editors to sync')
  for (let op = 0; op < ops; op++) {
    const c = editors[randInt(editors.length)]
    const text = c.doc.getText('text')
    const length = text.length // UTF-16 units: offsets may fall inside a pair
    if (length > 0 && rng() < 0.3) {
      const at = randInt(length)
      text.delete(at, 1 + randInt(Math.min(4, length - at)))
    } else {
      let piece = ''
      for (let n = 1 + randInt(3); n > 0; n--) piece += PIECES[randInt(PIECES.length)]
      text.insert(randInt(length + 1), piece)
    }
    // Some editors go offline for a while: their edits then merge concurrently.
    if (rng() < 0.03) {
      if (c.provider.wsconnected) c.provider.disconnect()
      else c.provider.connect()
    }
    if (rng() < 0.3) await sleep(randInt(4))
  }
  for (const c of editors) if (!c.provider.shouldConnect) c.provider.connect()
  await until(() => converged(editors), 'the editors to converge', 60000)
  return { editors: editors[0].text(), late: await lateJoiner() }
}

const SCENARIOS = {
  'six-steps': sixSteps,
  stress,
  read: async () => ({ editors: null, late: await lateJoiner() })
}
if (!SCENARIOS[scenario]) {
  console.error(`unknown scenario ${scenario}`)
  process.exit(2)
}
try {
  const result = await SCENARIOS[scenario]()
  console.log('RESULT ' + JSON.stringify({ ...result, errors }))
} catch (err) {
  console.log('RESULT ' + JSON.stringify({ failure: String(err && err.message), errors, texts: clients.map((c) => [c.name, c.text()]) }))
}
for (const c of clients) c.provider.destroy()
process.exit(0)
