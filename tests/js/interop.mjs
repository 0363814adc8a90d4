#!/usr/bin/env node
// Interop check: drives the stock JavaScript `y-websocket` client (the one the
// CivicPress editor uses) against a running y-websocket-protocol server.
//
//   node interop.mjs <baseUrl> <scenario> [--prefix P] [--seed N] [--timeout-ms N]
//
//   baseUrl   e.g. ws://127.0.0.1:8765/realtime  (clients connect to
//             <baseUrl>/records/<recordId>, the CivicPress URL shape). The cluster
//             scenarios take several, comma-separated (one per node); the others use the
//             first.
//   scenario  converge | late-joiner | rejoin | awareness | awareness-echo | rooms | all
//             cluster | cluster-failover | cluster-redis-restart (several base URLs; the
//             last two stop at `PAUSE <what>` lines and go on after a line on stdin)
//
// Exit codes: 0 success, 1 check failed, 2 usage error, 3 global timeout.
// The process always stops by itself (global timeout, default 30 s).

import { performance } from 'node:perf_hooks'
import WebSocket from 'ws'
import { WebsocketProvider } from 'y-websocket'
import * as Y from 'yjs'

// ---------------------------------------------------------------------------
// command line

const USAGE =
  'usage: node interop.mjs <ws://host:port/realtime> ' +
  '<converge|late-joiner|rejoin|awareness|awareness-echo|rooms|all> ' +
  '[--prefix P] [--seed N] [--timeout-ms N]'

const SCENARIOS = ['converge', 'late-joiner', 'rejoin', 'awareness', 'awareness-echo', 'awareness-reconnect', 'rooms', 'persist-write', 'persist-read']
// Not part of 'all': they need several nodes (and a driver answering their pauses).
const CLUSTER_SCENARIOS = ['cluster', 'cluster-failover', 'cluster-redis-restart']

function parseArgs (argv) {
  const positional = []
  const opts = {
    prefix: `it${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`,
    seed: Math.floor(Math.random() * 2 ** 31),
    timeoutMs: 30000
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--prefix') opts.prefix = argv[++i]
    else if (a === '--seed') opts.seed = Number(argv[++i])
    else if (a === '--timeout-ms') opts.timeoutMs = Number(argv[++i])
    else if (a.startsWith('--')) usage(`unknown option ${a}`)
    else positional.push(a)
  }
  if (positional.length !== 2) usage('expected exactly two positional arguments')
  const [baseUrlList, scenario] = positional
  const baseUrls = baseUrlList.split(',').map((u) => u.replace(/\/+$/, ''))
  for (const baseUrl of baseUrls) {
    if (!/^wss?:\/\//.test(baseUrl)) usage(`base URL must start with ws:// or wss://, got ${baseUrl}`)
  }
  if (scenario !== 'all' && !SCENARIOS.includes(scenario) && !CLUSTER_SCENARIOS.includes(scenario)) {
    usage(`unknown scenario ${scenario}`)
  }
  if (!Number.isFinite(opts.seed) || !Number.isFinite(opts.timeoutMs) || !opts.prefix) {
    usage('bad option value')
  }
  return { baseUrl: baseUrls[0], baseUrls, scenario, ...opts }
}

function usage (msg) {
  console.error(`interop: ${msg}\n${USAGE}`)
  process.exit(2)
}

const ARGS = parseArgs(process.argv.slice(2))

// Signed tokens per user name, minted by the Python side (JSON in INTEROP_TOKENS), so the
// clients authenticate exactly as the CivicPress editor does: protocols ['auth.<token>'].
// Without it (a development-mode daemon) the user name itself is sent as the token.
const TOKENS = process.env.INTEROP_TOKENS ? JSON.parse(process.env.INTEROP_TOKENS) : {}

// ---------------------------------------------------------------------------
// global safety nets

const GLOBAL_TIMER = setTimeout(() => {
  console.error(`FAIL: global timeout of ${ARGS.timeoutMs} ms exceeded (scenario ${ARGS.scenario})`)
  dumpAllClients(console.error)
  process.exit(3)
}, ARGS.timeoutMs)

process.on('uncaughtException', (err) => {
  console.error('FAIL: uncaught exception:', err && err.stack ? err.stack : err)
  dumpAllClients(console.error)
  process.exit(1)
})
process.on('unhandledRejection', (err) => {
  console.error('FAIL: unhandled rejection:', err && err.stack ? err.stack : err)
  dumpAllClients(console.error)
  process.exit(1)
})

class CheckFailed extends Error {}

function check (cond, msg) {
  if (!cond) throw new CheckFailed(msg)
}

const log = (...a) => console.log(...a)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function waitFor (pred, timeoutMs, what, intervalMs = 10) {
  const t0 = performance.now()
  for (;;) {
    if (pred()) return performance.now() - t0
    if (performance.now() - t0 > timeoutMs) {
      throw new CheckFailed(`timed out after ${timeoutMs} ms waiting for: ${what}`)
    }
    await sleep(intervalMs)
  }
}

// Small deterministic PRNG so a failing run can be replayed with --seed.
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
const rng = makeRng(ARGS.seed)
const randInt = (n) => Math.floor(rng() * n)

// ---------------------------------------------------------------------------
// minimal decoding of y-websocket binary frames (diagnostics + awareness echo)
// Formats: lib0 varuint (LEB128), varUint8Array = varuint length + bytes,
// varString = varUint8Array of UTF-8.

class Reader {
  constructor (bytes) {
    this.b = bytes
    this.p = 0
  }

  varUint () {
    let num = 0
    let mult = 1
    for (;;) {
      if (this.p >= this.b.length) throw new Error('unexpected end of frame')
      const byte = this.b[this.p++]
      num += (byte & 0x7f) * mult
      if (byte < 0x80) return num
      mult *= 128
      if (mult > 2 ** 53) throw new Error('varuint too large')
    }
  }

  bytes () {
    const len = this.varUint()
    if (this.p + len > this.b.length) throw new Error('unexpected end of frame')
    const out = this.b.subarray(this.p, this.p + len)
    this.p += len
    return out
  }

  string () {
    return new TextDecoder().decode(this.bytes())
  }
}

const SYNC_KINDS = ['sync-step1', 'sync-step2', 'sync-update']

// Returns { kind, awareness?: [{clientID, clock, state}] }.
function describeBinaryFrame (bytes) {
  try {
    const r = new Reader(bytes)
    const type = r.varUint()
    if (type === 0) return { kind: SYNC_KINDS[r.varUint()] || 'sync-unknown' }
    if (type === 1) {
      const inner = new Reader(r.bytes())
      const n = inner.varUint()
      const entries = []
      for (let i = 0; i < n; i++) {
        const clientID = inner.varUint()
        const clock = inner.varUint()
        const state = JSON.parse(inner.string())
        entries.push({ clientID, clock, state })
      }
      return { kind: 'awareness', awareness: entries }
    }
    if (type === 2) return { kind: 'auth' }
    if (type === 3) return { kind: 'query-awareness' }
    return { kind: `unknown-type-${type}` }
  } catch (err) {
    return { kind: `undecodable(${err.message})` }
  }
}

// ---------------------------------------------------------------------------
// Browser-like WebSocket for y-websocket.
//
// The civicrealtime server sends one TEXT frame ({"type":"control",
// "event":"connection.ack",...}) right after the upgrade. The stock
// y-websocket client's onmessage handler does `new Uint8Array(event.data)` and
// decodes it as a binary y-websocket message, which throws on a string. In a
// browser, an exception in an onmessage handler is reported to the console
// and the socket carries on. Under Node the `ws` library calls the handler
// synchronously from its frame parser, so an escaping exception becomes an
// uncaught exception (or breaks that socket). To behave like a browser, the
// subclass below wraps every onmessage handler in try/catch:
//   - errors caused by TEXT frames are swallowed and counted (browser
//     behaviour; reported in the summary as `swallowedTextErrors`);
//   - errors caused by BINARY frames are swallowed too (so the socket keeps
//     going, as in a browser) but recorded, and any such error FAILS the
//     scenario, because a binary frame the stock client cannot process is a
//     real interop bug.
// The wrapper also records every frame it sees (for diagnostics and for the
// awareness-echo check). It does not alter what reaches the provider.

const ALL_CLIENTS = []

function makeWebSocketClass (client) {
  return class BrowserLikeWebSocket extends WebSocket {
    constructor (url, protocols) {
      super(url, protocols)
      client.sockets.push(this)
      this._civicHandler = null
    }

    get onmessage () {
      return this._civicHandler
    }

    set onmessage (handler) {
      this._civicHandler = typeof handler === 'function' ? handler : null
      if (typeof handler !== 'function') {
        super.onmessage = handler
        return
      }
      super.onmessage = (event) => {
        const isText = typeof event.data === 'string'
        client.recordFrame(event.data)
        try {
          handler.call(this, event)
        } catch (err) {
          if (isText) {
            client.stats.swallowedTextErrors++
          } else {
            client.stats.binaryHandlerErrors.push(String(err && err.stack ? err.stack : err))
          }
        }
      }
    }
  }
}

class Client {
  constructor (label, recordId, token, baseUrl = ARGS.baseUrl) {
    this.label = label
    this.recordId = recordId
    this.token = token
    this.doc = new Y.Doc()
    this.sockets = []
    this.frames = [] // { t, kind, text?, awareness? }
    this.expectClose = false
    this.createdAt = performance.now()
    this.syncedAfterMs = null
    this.stats = {
      textFrames: 0,
      binaryFrames: 0,
      swallowedTextErrors: 0,
      binaryHandlerErrors: [],
      unexpectedCloses: [],
      connectionErrors: [],
      permanentCloses: []
    }
    this.connect(baseUrl)
    ALL_CLIENTS.push(this)
  }

  connect (baseUrl, awareness = undefined) {
    const recordId = this.recordId
    const token = this.token
    this.provider = new WebsocketProvider(`${baseUrl}/records`, recordId, this.doc, {
      ...(awareness ? { awareness } : {}),
      WebSocketPolyfill: makeWebSocketClass(this),
      protocols: [`auth.${TOKENS[token] ?? token}`],
      connect: true,
      // lib0's BroadcastChannel shares one in-process channel between all
      // providers of the same URL+room, which would let our clients sync with
      // each other without the server. Disable it so everything goes over
      // the wire.
      disableBc: true
    })
    this.provider.on('sync', (isSynced) => {
      if (isSynced && this.syncedAfterMs === null) this.syncedAfterMs = performance.now() - this.createdAt
    })
    this.provider.on('connection-close', (event) => {
      // event is null when the provider itself closed the socket
      if (event !== null && !this.expectClose) {
        this.stats.unexpectedCloses.push(`code=${event.code} reason=${JSON.stringify(event.reason)}`)
      }
    })
    this.provider.on('connection-error', (event) => {
      if (!this.expectClose) {
        this.stats.connectionErrors.push(String((event && (event.message || event.error)) || event))
      }
    })
    this.provider.on('closed', (ev) => {
      this.stats.permanentCloses.push(`code=${ev.code} reason=${JSON.stringify(ev.reason)}`)
    })
  }

  // What a browser behind a load balancer does when its node dies: the same document
  // (with whatever the node never acknowledged) reconnects, here to another node.
  moveTo (baseUrl, label) {
    const awareness = this.provider.awareness // a browser keeps its presence (and clock)
    this.provider.destroy() // not the doc
    this.label = label
    this.sockets = []
    this.stats.unexpectedCloses = []
    this.stats.connectionErrors = []
    this.stats.permanentCloses = []
    this.syncedAfterMs = null
    this.createdAt = performance.now()
    this.expectClose = false
    this.connect(baseUrl, awareness)
  }

  get clientID () {
    return this.doc.clientID
  }

  recordFrame (data) {
    const t = performance.now()
    if (typeof data === 'string') {
      this.stats.textFrames++
      this.frames.push({ t, kind: 'text', text: data.length > 200 ? data.slice(0, 200) + '…' : data })
    } else {
      this.stats.binaryFrames++
      const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
      this.frames.push({ t, ...describeBinaryFrame(bytes) })
    }
  }

  frameKinds (limit = 12) {
    const kinds = this.frames.slice(0, limit).map((f) => f.kind)
    if (this.frames.length > limit) kinds.push(`…(+${this.frames.length - limit})`)
    return kinds.join(', ')
  }

  summary () {
    const s = this.stats
    const firstText = this.frames.find((f) => f.kind === 'text')
    return `${this.label} [record=${this.recordId} token=${this.token} clientID=${this.clientID}] ` +
      `syncedAfter=${this.syncedAfterMs === null ? 'never' : this.syncedAfterMs.toFixed(0) + 'ms'} ` +
      `synced=${this.provider.synced} wsconnected=${this.provider.wsconnected} sockets=${this.sockets.length} ` +
      `textFrames=${s.textFrames} binaryFrames=${s.binaryFrames} swallowedTextErrors=${s.swallowedTextErrors} ` +
      `binaryHandlerErrors=${s.binaryHandlerErrors.length} unexpectedCloses=${JSON.stringify(s.unexpectedCloses)} ` +
      `connectionErrors=${JSON.stringify(s.connectionErrors)} permanentCloses=${JSON.stringify(s.permanentCloses)}\n` +
      `    first frames: ${this.frameKinds()}` +
      (firstText ? `\n    first text frame: ${firstText.text}` : '')
  }

  // Failures the scenario did not check explicitly but that mean trouble.
  problems () {
    const out = []
    const s = this.stats
    for (const e of s.binaryHandlerErrors) out.push(`${this.label}: y-websocket failed to process a BINARY frame: ${e}`)
    for (const c of s.unexpectedCloses) out.push(`${this.label}: server closed the connection unexpectedly (${c})`)
    for (const e of s.connectionErrors) out.push(`${this.label}: connection error: ${e}`)
    for (const c of s.permanentCloses) out.push(`${this.label}: permanent close (${c})`)
    if (this.sockets.length > 1 + (this.provokedDrops ?? 0)) {
      out.push(`${this.label}: provider had to reconnect (${this.sockets.length} sockets opened)`)
    }
    return out
  }

  async synced (timeoutMs = 10000) {
    try {
      return await waitFor(() => this.provider.synced, timeoutMs, `${this.label} to be synced`)
    } catch (err) {
      if (err instanceof CheckFailed) throw new CheckFailed(`${err.message}\n  ${this.summary()}`)
      throw err
    }
  }

  destroy () {
    this.expectClose = true
    this.provider.destroy()
    this.doc.destroy()
  }
}

function dumpAllClients (out) {
  for (const c of ALL_CLIENTS) out('  ' + c.summary())
}

// ---------------------------------------------------------------------------
// document content helpers

function stableJSON (v) {
  if (Array.isArray(v)) return '[' + v.map(stableJSON).join(',') + ']'
  if (v && typeof v === 'object') {
    return '{' + Object.keys(v).sort().map((k) => JSON.stringify(k) + ':' + stableJSON(v[k])).join(',') + '}'
  }
  return JSON.stringify(v)
}

function snapshot (doc) {
  return {
    sv: Buffer.from(Y.encodeStateVector(doc)).toString('hex'),
    text: doc.getText('text').toString(),
    map: stableJSON(doc.getMap('map').toJSON()),
    xml: doc.getXmlFragment('default').toString()
  }
}

function diffSnapshots (a, b) {
  const d = []
  for (const k of ['sv', 'text', 'map', 'xml']) {
    if (a[k] !== b[k]) d.push(`${k}: ${JSON.stringify(a[k])} != ${JSON.stringify(b[k])}`)
  }
  return d
}

function converged (clients) {
  const s0 = snapshot(clients[0].doc)
  return clients.every((c) => diffSnapshots(s0, snapshot(c.doc)).length === 0)
}

async function waitConverged (clients, timeoutMs, what) {
  try {
    return await waitFor(() => converged(clients), timeoutMs, what, 25)
  } catch (err) {
    if (!(err instanceof CheckFailed)) throw err
    const s0 = snapshot(clients[0].doc)
    const lines = clients.slice(1).map((c) => {
      const d = diffSnapshots(s0, snapshot(c.doc))
      return `  ${clients[0].label} vs ${c.label}: ${d.length ? d.join('\n      ') : 'equal'}`
    })
    throw new CheckFailed(`${err.message}\n${lines.join('\n')}`)
  }
}

// Text tokens look like <c0r3>. New tokens are only inserted at token
// boundaries, so (by induction) every token stays contiguous in every
// replica, and the final content can be checked exactly.
function tokenBoundaries (str) {
  const out = [0]
  for (let i = 0; i < str.length; i++) if (str[i] === '>') out.push(i + 1)
  return out
}
const tokensOf = (str) => (str.match(/<[^<>]*>/g) || []).slice().sort()

function paragraph (text) {
  const p = new Y.XmlElement('paragraph')
  const t = new Y.XmlText()
  t.insert(0, text)
  p.insert(0, [t])
  return p
}

function paragraphTexts (doc) {
  return doc.getXmlFragment('default').toArray().map((node) => {
    if (!(node instanceof Y.XmlElement)) return `!!non-element ${node.constructor.name}`
    if (node.nodeName !== 'paragraph') return `!!element ${node.nodeName}`
    return node.toArray().map((c) => (c instanceof Y.XmlText ? c.toString() : `!!${c.constructor.name}`)).join('')
  })
}

// One client's share of concurrent edits on all three shared types. Returns
// what it expects to survive (tokens, map keys, paragraph heads, appended
// paragraph tokens).
async function editConcurrently (client, idx, rounds, expect) {
  const doc = client.doc
  const text = doc.getText('text')
  const map = doc.getMap('map')
  const frag = doc.getXmlFragment('default')
  const me = `c${idx}`

  // items that are created and deleted again by their author
  const tmpToken = `<${me}tmp>`
  text.insert(0, tmpToken)
  map.set(`${me}.tmp`, 'to be deleted')
  frag.insert(0, [paragraph(`${me} tmp`)])

  for (let r = 0; r < rounds; r++) {
    const tok = `<${me}r${r}>`
    const b = tokenBoundaries(text.toString())
    text.insert(b[randInt(b.length)], tok)
    expect.tokens.push(tok)

    map.set(`${me}.k${r}`, { by: me, round: r, nested: [r, `${me}`] })
    expect.mapKeys.push(`${me}.k${r}`)
    map.set('contended', `${me}-r${r}`) // last-writer-wins key written by everyone

    const head = `${me} p${r}`
    frag.insert(randInt(frag.length + 1), [paragraph(head)])
    expect.paragraphs.push(head)

    // append to some existing paragraph that is not a tmp paragraph
    const candidates = frag.toArray().filter((p) => p instanceof Y.XmlElement && !p.toString().includes(' tmp'))
    if (candidates.length > 0) {
      const p = candidates[randInt(candidates.length)]
      const xt = p.get(0)
      const app = ` +${me}a${r}`
      xt.insert(xt.length, app)
      expect.appends.push(app)
    }

    if (r === Math.floor(rounds / 2)) {
      // delete our own tmp items while other clients keep editing
      const s = text.toString()
      const at = s.indexOf(tmpToken)
      check(at >= 0, `${client.label}: own tmp token missing before delete: ${s}`)
      text.delete(at, tmpToken.length)
      map.delete(`${me}.tmp`)
      const arr = frag.toArray()
      const pi = arr.findIndex((p) => p instanceof Y.XmlElement && p.toString().includes(`${me} tmp`))
      check(pi >= 0, `${client.label}: own tmp paragraph missing before delete`)
      frag.delete(pi, 1)
    }
    // a burst of edits in one tick on some rounds, network-interleaved on others
    if (r % 3 !== 2) await sleep(randInt(15))
  }
  // a transaction bundling edits on all types
  doc.transact(() => {
    const tok = `<${me}tx>`
    const b = tokenBoundaries(text.toString())
    text.insert(b[randInt(b.length)], tok)
    expect.tokens.push(tok)
    map.set(`${me}.tx`, true)
    expect.mapKeys.push(`${me}.tx`)
    frag.push([paragraph(`${me} tx`)])
    expect.paragraphs.push(`${me} tx`)
  })
}

function checkExpectedContent (client, expect) {
  const doc = client.doc
  const gotTokens = tokensOf(doc.getText('text').toString())
  const wantTokens = expect.tokens.slice().sort()
  check(stableJSON(gotTokens) === stableJSON(wantTokens),
    `${client.label}: Y.Text tokens differ from what the clients wrote\n  got:  ${gotTokens.join('')}\n  want: ${wantTokens.join('')}`)
  const stray = doc.getText('text').toString().replace(/<[^<>]*>/g, '')
  check(stray === '', `${client.label}: Y.Text has stray characters ${JSON.stringify(stray)}: ${doc.getText('text').toString()}`)

  const mapJSON = doc.getMap('map').toJSON()
  const gotKeys = Object.keys(mapJSON).filter((k) => k !== 'contended').sort()
  const wantKeys = expect.mapKeys.slice().sort()
  check(stableJSON(gotKeys) === stableJSON(wantKeys),
    `${client.label}: Y.Map keys differ\n  got:  ${gotKeys}\n  want: ${wantKeys}`)
  check(typeof mapJSON.contended === 'string', `${client.label}: Y.Map 'contended' key missing`)

  const paras = paragraphTexts(doc)
  const bad = paras.filter((p) => p.startsWith('!!'))
  check(bad.length === 0, `${client.label}: unexpected nodes in XmlFragment 'default': ${bad}`)
  const heads = paras.map((p) => p.replace(/ \+.*$/, '')).sort()
  const wantHeads = expect.paragraphs.slice().sort()
  check(stableJSON(heads) === stableJSON(wantHeads),
    `${client.label}: paragraphs differ\n  got:  ${stableJSON(heads)}\n  want: ${stableJSON(wantHeads)}`)
  // appended pieces look like " +c1a3"; each must appear exactly once
  const gotApps = paras.flatMap((p) => p.match(/ \+c\d+a\d+/g) || []).sort()
  const wantApps = expect.appends.slice().sort()
  check(stableJSON(gotApps) === stableJSON(wantApps),
    `${client.label}: appended paragraph texts differ\n  got:  ${stableJSON(gotApps)}\n  want: ${stableJSON(wantApps)}`)
}

const newExpect = () => ({ tokens: [], mapKeys: [], paragraphs: [], appends: [] })

function finish (clients) {
  const problems = clients.flatMap((c) => c.problems())
  for (const c of clients) if (!c.expectClose) c.destroy()
  return problems
}

// ---------------------------------------------------------------------------
// scenarios

async function scenarioConverge () {
  const record = `${ARGS.prefix}-converge`
  const clients = ['alice', 'bob', 'carol'].map((name, i) => new Client(`client${i}(${name})`, record, name))
  let problems
  try {
    for (const c of clients) await c.synced()
    log(`  all ${clients.length} clients synced`)
    const expect = newExpect()
    await Promise.all(clients.map((c, i) => editConcurrently(c, i, 8, expect)))
    log(`  edits done: ${expect.tokens.length} text tokens, ${expect.mapKeys.length} map keys, ${expect.paragraphs.length} paragraphs, ${expect.appends.length} appends`)
    const ms = await waitConverged(clients, 10000, 'all 3 docs to converge (state vector + text + map + xml)')
    log(`  converged ${ms.toFixed(0)} ms after the last edit`)
    for (const c of clients) checkExpectedContent(c, expect)
    const s = snapshot(clients[0].doc)
    log(`  text length ${s.text.length}, xml length ${s.xml.length}, map keys ${Object.keys(clients[0].doc.getMap('map').toJSON()).length}`)
  } finally {
    problems = finish(clients)
  }
  return problems
}

async function scenarioLateJoiner () {
  const record = `${ARGS.prefix}-late`
  const a = new Client('A(alice)', record, 'alice')
  const b = new Client('B(bob)', record, 'bob')
  const clients = [a, b]
  let problems
  try {
    await a.synced()
    await b.synced()
    const expect = newExpect()
    await Promise.all([editConcurrently(a, 0, 6, expect), editConcurrently(b, 1, 6, expect)])
    await waitConverged([a, b], 10000, 'A and B to converge')
    checkExpectedContent(a, expect)
    const reference = snapshot(a.doc)
    log(`  A and B converged: text ${reference.text.length} chars, ${expect.paragraphs.length} paragraphs`)

    const c = new Client('C(carol, late)', record, 'carol')
    clients.push(c)
    // capture C's content at the exact moment it reports synced: the sync
    // step 2 from the server must carry the whole document.
    let atSync = null
    c.provider.on('sync', (isSynced) => {
      if (isSynced && atSync === null) atSync = snapshot(c.doc)
    })
    const ms = await c.synced()
    log(`  late joiner synced after ${ms.toFixed(0)} ms`)
    check(atSync !== null, 'C: no sync event observed')
    const d = diffSnapshots(reference, atSync)
    check(d.length === 0, `C's document at the moment it became synced differs from A's:\n    ${d.join('\n    ')}`)
    checkExpectedContent(c, expect)
    await waitConverged([a, b, c], 5000, 'A, B and C to stay converged')
  } finally {
    problems = finish(clients)
  }
  return problems
}

// The last client leaves; a new one joins the same record shortly after (well
// inside rooms.cleanup_timeout) and must get the document back.
async function scenarioRejoin () {
  const record = `${ARGS.prefix}-rejoin`
  const a = new Client('A(alice)', record, 'alice')
  const clients = [a]
  let problems
  try {
    await a.synced()
    const expect = newExpect()
    await editConcurrently(a, 0, 5, expect)
    checkExpectedContent(a, expect)
    const reference = snapshot(a.doc)
    // wait until the server has everything: a second client sees it all
    const probe = new Client('P(probe)', record, 'probe')
    clients.push(probe)
    await probe.synced()
    await waitConverged([a, probe], 5000, 'probe to receive A\'s edits')
    probe.destroy()
    a.destroy()
    log('  every client left the room')
    await sleep(500)
    const b = new Client('B(bob, rejoins)', record, 'bob')
    clients.push(b)
    let atSync = null
    b.provider.on('sync', (isSynced) => {
      if (isSynced && atSync === null) atSync = snapshot(b.doc)
    })
    await b.synced()
    check(atSync !== null, 'B: no sync event observed')
    const d = diffSnapshots(reference, atSync)
    check(d.length === 0, `B's document after re-opening the emptied room differs from what A left:\n    ${d.join('\n    ')}`)
    checkExpectedContent(b, expect)
    log('  document survived the room becoming empty')
  } finally {
    problems = finish(clients)
  }
  return problems
}

function seesState (observer, subject, name) {
  const st = observer.provider.awareness.getStates().get(subject.clientID)
  return !!(st && st.user && st.user.name === name)
}

async function measureRemoval (observer, subject, how, action) {
  // Remember when the observer's awareness saw the subject removed.
  let removedAt = null
  const onChange = ({ removed }) => {
    if (removedAt === null && removed.includes(subject.clientID)) removedAt = performance.now()
  }
  observer.provider.awareness.on('change', onChange)
  const t0 = performance.now()
  action()
  try {
    await waitFor(() => !observer.provider.awareness.getStates().has(subject.clientID), 5000,
      `${observer.label} to see ${subject.label}'s awareness state removed after ${how}`)
  } finally {
    observer.provider.awareness.off('change', onChange)
  }
  const ms = (removedAt ?? performance.now()) - t0
  log(`  awareness removal after ${how}: ${ms.toFixed(1)} ms (limit 1000 ms)`)
  check(ms <= 1000, `${observer.label} saw ${subject.label} removed only after ${ms.toFixed(1)} ms (${how}); limit is 1000 ms`)
  return ms
}

async function scenarioAwareness () {
  const record = `${ARGS.prefix}-awareness`
  const a = new Client('A(alice)', record, 'alice')
  const b = new Client('B(bob)', record, 'bob')
  const clients = [a, b]
  let problems
  const times = {}
  try {
    await a.synced()
    await b.synced()
    a.provider.awareness.setLocalStateField('user', { name: 'alice', color: '#f00' })
    let ms = await waitFor(() => seesState(b, a, 'alice'), 3000, "B to see A's awareness state {user:{name:'alice'}}")
    const st = b.provider.awareness.getStates().get(a.clientID)
    check(st.user.color === '#f00', `B sees A's colour as ${JSON.stringify(st.user.color)}, expected "#f00"`)
    log(`  B saw alice's state after ${ms.toFixed(1)} ms`)
    b.provider.awareness.setLocalStateField('user', { name: 'bob', color: '#00f' })
    ms = await waitFor(() => seesState(a, b, 'bob'), 3000, "A to see B's awareness state {user:{name:'bob'}}")
    log(`  A saw bob's state after ${ms.toFixed(1)} ms`)

    // clean leave: destroying the provider sends a null state and closes the socket
    times.cleanLeave = await measureRemoval(b, a, 'clean leave (provider.destroy())', () => a.destroy())

    // abrupt drop: the raw socket is terminated without a close frame and
    // without the client's null awareness state; the server must notice the
    // dead connection and remove the state it controlled.
    const c = new Client('C(carol)', record, 'carol')
    clients.push(c)
    await c.synced()
    c.provider.awareness.setLocalStateField('user', { name: 'carol', color: '#0f0' })
    await waitFor(() => seesState(b, c, 'carol'), 3000, "B to see C's awareness state {user:{name:'carol'}}")
    times.abruptDrop = await measureRemoval(b, c, 'abrupt drop (raw socket terminate())', () => {
      c.expectClose = true
      c.provider.shouldConnect = false // no reconnect, and nothing is sent
      c.provider.ws.terminate()
    })

    // nothing must come back
    await sleep(500)
    const others = Array.from(b.provider.awareness.getStates().keys()).filter((id) => id !== b.clientID)
    check(others.length === 0, `B still/again sees awareness states of clients ${others} (A=${a.clientID}, C=${c.clientID})`)
    log(`  AWARENESS_REMOVAL_MS clean_leave=${times.cleanLeave.toFixed(1)} abrupt_drop=${times.abruptDrop.toFixed(1)}`)
  } finally {
    problems = finish(clients)
  }
  return problems
}

async function scenarioAwarenessEcho () {
  const record = `${ARGS.prefix}-echo`
  const lone = new Client('L(lonely)', record, 'lonely')
  let problems
  try {
    await lone.synced()
    await sleep(300) // let the initial frames (ack, sync, awareness) settle
    const mark = lone.frames.length
    const t0 = performance.now()
    lone.provider.awareness.setLocalStateField('user', { name: 'lonely', color: '#0f0' })
    const echoed = () => lone.frames.slice(mark).some((f) => f.kind === 'awareness' &&
      f.awareness.some((e) => e.clientID === lone.clientID && e.state && e.state.user && e.state.user.name === 'lonely'))
    try {
      await waitFor(echoed, 2000, "a lone client's own awareness state to be echoed back by the server")
    } catch (err) {
      const after = lone.frames.slice(mark)
      throw new CheckFailed(`${err.message}\n  frames received after setting the state: ` +
        (after.length ? after.map((f) => f.kind + (f.awareness ? JSON.stringify(f.awareness) : '')).join(', ') : 'none'))
    }
    const n = lone.frames.slice(mark).filter((f) => f.kind === 'awareness').length
    log(`  own awareness echoed after ${(performance.now() - t0).toFixed(1)} ms (${n} awareness frame(s) since setting the state)`)
  } finally {
    problems = finish([lone])
  }
  return problems
}

// A network blip: the socket dies without a close frame, the provider reconnects by itself
// with the same awareness clock. The server removed the state (clock + 1) when the socket
// died, so the returning state is older than the removal; the others must see the client
// again promptly anyway, not at its next renewal 15 s later.
async function scenarioAwarenessReconnect () {
  const record = `${ARGS.prefix}-blip`
  const a = new Client('A(alice)', record, 'alice')
  const b = new Client('B(bob)', record, 'bob')
  const clients = [a, b]
  let problems
  try {
    await a.synced()
    await b.synced()
    setName(a, 'alice')
    setName(b, 'bob')
    await everyoneSeesEveryone(clients, 3000, 'alice and bob to see each other')
    for (let round = 0; round < 3; round++) {
      await measureRemoval(b, a, 'abrupt drop before a reconnect', () => {
        a.provokedDrops = (a.provokedDrops ?? 0) + 1
        a.provider.ws.terminate()
      })
      const t0 = performance.now()
      await waitFor(() => seesState(b, a, 'alice'), 5000,
        `bob to see alice's presence again after her reconnect (round ${round + 1})`)
      const ms = performance.now() - t0
      log(`  PRESENCE_AFTER_RECONNECT_MS ${ms.toFixed(1)} (limit 2000 ms)`)
      check(ms <= 2000, `bob saw alice again only after ${ms.toFixed(1)} ms; limit is 2000 ms`)
      await waitFor(() => seesState(a, b, 'bob'), 3000, 'alice to see bob again after her reconnect')
    }
    // Our own terminate() shows as 1006 closes: provoked, not the server's doing.
    const provoked = a.stats.unexpectedCloses.filter((c) => c.startsWith('code=1006'))
    check(provoked.length === a.provokedDrops, `alice saw ${provoked.length} abnormal closes for ${a.provokedDrops} drops`)
    a.stats.unexpectedCloses = a.stats.unexpectedCloses.filter((c) => !c.startsWith('code=1006'))
  } finally {
    problems = finish(clients)
  }
  return problems
}

async function scenarioRooms () {
  const recX = `${ARGS.prefix}-room-x`
  const recY = `${ARGS.prefix}-room-y`
  const recXsuffix = `${ARGS.prefix}-room-x-2` // shares recX as a prefix
  const x1 = new Client('X1(alice)', recX, 'alice')
  const x2 = new Client('X2(bob)', recX, 'bob')
  const y1 = new Client('Y1(carol)', recY, 'carol')
  const z1 = new Client('Z1(dave)', recXsuffix, 'dave')
  const clients = [x1, x2, y1, z1]
  let problems
  try {
    for (const c of clients) await c.synced()
    const edit = (c, tag) => {
      c.doc.getText('text').insert(0, `<only-in-${tag}>`)
      c.doc.getMap('map').set(`only-in-${tag}`, tag)
      c.doc.getXmlFragment('default').push([paragraph(`only-in-${tag}`)])
      c.provider.awareness.setLocalStateField('user', { name: c.token, color: '#123' })
    }
    edit(x1, 'X')
    edit(y1, 'Y')
    edit(z1, 'Z')
    // positive control: the edit does travel within room X
    await waitConverged([x1, x2], 5000, 'X2 to receive X1\'s edits (same record)')
    await waitFor(() => seesState(x2, x1, 'alice'), 3000, "X2 to see X1's awareness state")
    await sleep(700) // give any misrouted message time to arrive
    const leaks = []
    const foreign = (c, others) => {
      const sv = Y.decodeStateVector(Y.encodeStateVector(c.doc))
      const aw = c.provider.awareness.getStates()
      for (const o of others) {
        if (sv.has(o.clientID)) leaks.push(`${c.label} (record ${c.recordId}) has document updates from ${o.label} (record ${o.recordId})`)
        if (aw.has(o.clientID)) leaks.push(`${c.label} (record ${c.recordId}) sees awareness of ${o.label} (record ${o.recordId})`)
      }
      const text = c.doc.getText('text').toString()
      const own = c.recordId === recX ? 'X' : c.recordId === recY ? 'Y' : 'Z'
      for (const tag of ['X', 'Y', 'Z']) {
        if (tag !== own && text.includes(`only-in-${tag}`)) leaks.push(`${c.label}'s text contains room ${tag}'s content: ${text}`)
      }
    }
    foreign(x1, [y1, z1])
    foreign(x2, [y1, z1])
    foreign(y1, [x1, x2, z1])
    foreign(z1, [x1, x2, y1])
    check(leaks.length === 0, `content leaked between rooms:\n    ${leaks.join('\n    ')}`)
    check(y1.doc.getText('text').toString() === '<only-in-Y>', `Y1 text is ${y1.doc.getText('text').toString()}`)
    check(z1.doc.getText('text').toString() === '<only-in-Z>', `Z1 text is ${z1.doc.getText('text').toString()}`)
    log('  no leaks between records X, Y and X-2')
  } finally {
    problems = finish(clients)
  }
  return problems
}

// Persistence across a daemon restart: `persist-write` leaves a known document in a
// record and checks that a second client received it (so the daemon applied it); the
// daemon is then restarted by the caller; `persist-read` (same --prefix) opens the record
// with a fresh client and checks the document it syncs is exactly that one.
function persistedContent (doc, prefix) {
  doc.transact(() => {
    doc.getText('text').insert(0, `persisted ${prefix} été ✓`)
    doc.getMap('map').set('status', 'draft')
    const p = new Y.XmlElement('paragraph')
    p.insert(0, [new Y.XmlText('kept across restarts')])
    doc.getXmlFragment('default').insert(0, [p])
  })
}

async function scenarioPersistWrite () {
  const record = `${ARGS.prefix}-persist`
  const a = new Client('A(alice)', record, 'alice')
  const clients = [a]
  let problems
  try {
    await a.synced()
    persistedContent(a.doc, ARGS.prefix)
    const probe = new Client('P(probe)', record, 'probe')
    clients.push(probe)
    await probe.synced()
    await waitConverged([a, probe], 5000, 'probe to receive the document')
    log('  document written and relayed')
  } finally {
    problems = finish(clients)
  }
  return problems
}

async function scenarioPersistRead () {
  const record = `${ARGS.prefix}-persist`
  const expected = new Y.Doc()
  persistedContent(expected, ARGS.prefix)
  const b = new Client('B(bob, after restart)', record, 'bob')
  const clients = [b]
  let problems
  try {
    await b.synced()
    check(b.doc.getText('text').toString() === expected.getText('text').toString(),
      `text after restart: ${JSON.stringify(b.doc.getText('text').toString())}`)
    check(b.doc.getMap('map').get('status') === 'draft', 'map entry lost across the restart')
    check(b.doc.getXmlFragment('default').toString() === expected.getXmlFragment('default').toString(),
      `fragment after restart: ${b.doc.getXmlFragment('default').toString()}`)
    log('  document survived the restart')
  } finally {
    problems = finish(clients)
  }
  return problems
}

// ---------------------------------------------------------------------------
// cluster scenarios: clients spread over several nodes (one base URL each)

// The driver (tests/cluster) acts on `PAUSE <what>` (kills a node, stops Redis...) and
// answers with one line on stdin.
let stdinLines = null
async function pausePoint (what, timeoutMs = 30000) {
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
  const t0 = performance.now()
  const line = await new Promise((resolve, reject) => {
    if (stdinLines.lines.length) return resolve(stdinLines.lines.shift())
    const timer = setTimeout(() => reject(new CheckFailed(`no answer to PAUSE ${what} within ${timeoutMs} ms`)), timeoutMs)
    stdinLines.waiters.push((l) => { clearTimeout(timer); resolve(l) })
  })
  log(`  resumed after ${what} (${(performance.now() - t0).toFixed(0)} ms): ${line}`)
  return line
}

function nodeUrl (i) {
  return ARGS.baseUrls[i % ARGS.baseUrls.length]
}

function setName (client, name) {
  client.provider.awareness.setLocalStateField('user', { name, color: '#345' })
}

async function everyoneSeesEveryone (clients, timeoutMs, what) {
  try {
    return await waitFor(() => clients.every((o) => clients.every((c) => c === o || seesState(o, c, c.token))),
      timeoutMs, what)
  } catch (err) {
    if (!(err instanceof CheckFailed)) throw err
    const missing = clients.flatMap((o) => clients.filter((c) => c !== o && !seesState(o, c, c.token))
      .map((c) => `${o.label} does not see ${c.label} (clientID ${c.clientID}): ` +
        JSON.stringify(Object.fromEntries(o.provider.awareness.getStates()))))
    throw new CheckFailed(`${err.message}\n    ${missing.join('\n    ')}`)
  }
}

function clusterProblems (clients) {
  return clients.flatMap((c) => c.problems())
}

// Three editors on two nodes, their presence on every node, a late joiner on a node where
// the room was not open (the third, with three base URLs), a clean leave seen everywhere.
async function scenarioCluster () {
  check(ARGS.baseUrls.length >= 2, 'the cluster scenario needs at least two base URLs')
  const record = `${ARGS.prefix}-cluster`
  const clients = ['alice', 'bob', 'carol'].map((name, i) =>
    new Client(`${name}@node${i % 2}`, record, name, nodeUrl(i % 2)))
  let problems
  try {
    for (const c of clients) await c.synced()
    for (const c of clients) setName(c, c.token)
    let ms = await everyoneSeesEveryone(clients, 5000, 'every client to see every other one\'s presence across nodes')
    log(`  CLUSTER_PRESENCE_MS ${ms.toFixed(1)}`)
    const expect = newExpect()
    await Promise.all(clients.map((c, i) => editConcurrently(c, i, 8, expect)))
    ms = await waitConverged(clients, 15000, 'the 3 documents on 2 nodes to converge')
    log(`  CLUSTER_CONVERGED_MS ${ms.toFixed(1)}`)
    for (const c of clients) checkExpectedContent(c, expect)
    const reference = snapshot(clients[0].doc)

    const lateUrl = nodeUrl(ARGS.baseUrls.length > 2 ? 2 : 1)
    const late = new Client(`dave(late)@${ARGS.baseUrls.indexOf(lateUrl)}`, record, 'dave', lateUrl)
    clients.push(late)
    let atSync = null
    late.provider.on('sync', (isSynced) => {
      if (isSynced && atSync === null) atSync = snapshot(late.doc)
    })
    ms = await late.synced()
    log(`  late joiner on node ${ARGS.baseUrls.indexOf(lateUrl)} synced after ${ms.toFixed(0)} ms`)
    check(atSync !== null, 'late joiner: no sync event observed')
    const d = diffSnapshots(reference, atSync)
    check(d.length === 0, `the late joiner's document when synced differs:\n    ${d.join('\n    ')}`)
    checkExpectedContent(late, expect)
    setName(late, 'dave')
    await everyoneSeesEveryone(clients, 5000, 'everyone (and the late joiner) to see each other')

    // A clean leave on node 0 reaches the clients of the other nodes.
    const leaver = clients[0]
    const watchers = clients.slice(1)
    const t0 = performance.now()
    leaver.destroy()
    await waitFor(() => watchers.every((w) => !w.provider.awareness.getStates().has(leaver.clientID)),
      3000, `${leaver.label}'s presence to be removed on every node`)
    log(`  CLUSTER_REMOVAL_MS ${(performance.now() - t0).toFixed(1)}`)
    problems = clusterProblems(clients)
  } finally {
    for (const c of clients) if (!c.expectClose) c.destroy()
  }
  return problems
}

// A node dies (SIGKILL by the driver): its clients' presence goes on the other nodes once
// its heartbeat expires; what it published is kept; its client moves to another node.
async function scenarioClusterFailover () {
  check(ARGS.baseUrls.length >= 3, 'cluster-failover needs three base URLs (node 0 is killed)')
  const record = `${ARGS.prefix}-failover`
  const alice = new Client('alice@node0', record, 'alice', nodeUrl(0))
  const bob = new Client('bob@node1', record, 'bob', nodeUrl(1))
  const clients = [alice, bob]
  let problems
  try {
    await alice.synced()
    await bob.synced()
    setName(alice, 'alice')
    setName(bob, 'bob')
    await everyoneSeesEveryone(clients, 5000, 'alice and bob to see each other')
    const expect = newExpect()
    await Promise.all([editConcurrently(alice, 0, 6, expect), editConcurrently(bob, 1, 6, expect)])
    await waitConverged(clients, 10000, 'alice (node 0) and bob (node 1) to converge')
    const beforeKill = snapshot(alice.doc)

    alice.expectClose = true // her node is about to die: her reconnect attempts fail
    alice.provider.shouldConnect = false
    await pausePoint('kill-node0')
    const t0 = performance.now()
    await waitFor(() => !bob.provider.awareness.getStates().has(alice.clientID), 10000,
      "bob (node 1) to see alice's presence removed after her node died")
    log(`  NODE_GONE_REMOVAL_MS ${(performance.now() - t0).toFixed(1)}`)

    // A fresh client on node 2 (the room was never open there) gets everything node 0 had
    // published and flushed before it died, without alice's help.
    const carol = new Client('carol@node2', record, 'carol', nodeUrl(2))
    clients.push(carol)
    await carol.synced()
    setName(carol, 'carol')
    const d = diffSnapshots(beforeKill, snapshot(carol.doc))
    check(d.length === 0, `carol's document (node 2) lacks edits made before node 0 died:\n    ${d.join('\n    ')}`)
    checkExpectedContent(carol, expect)

    // Alice's browser reconnects through the load balancer, now to node 1, and goes on.
    alice.moveTo(nodeUrl(1), 'alice(moved)@node1')
    await alice.synced()
    setName(alice, 'alice')
    const more = newExpect()
    more.tokens.push(...expect.tokens)
    more.mapKeys.push(...expect.mapKeys)
    more.paragraphs.push(...expect.paragraphs)
    more.appends.push(...expect.appends)
    alice.doc.getText('text').insert(0, '<c0after>')
    more.tokens.push('<c0after>')
    await waitConverged(clients, 10000, 'alice (moved), bob and carol to converge')
    for (const c of clients) checkExpectedContent(c, more)
    // Her state came back with the clock her node last published, which the removal
    // outranks: the server tells her about the removal, she raises her clock and is shown
    // again at once rather than at her next renewal 15 s later (yjs/y-websocket#122).
    const t1 = performance.now()
    await everyoneSeesEveryone(clients, 3000, 'alice (moved), bob and carol to see each other')
    log(`  PRESENCE_AFTER_MOVE_MS ${(performance.now() - t1).toFixed(1)}`)
    problems = clusterProblems([bob, carol]).concat(alice.problems())
  } finally {
    if (alice.expectClose) alice.destroy() // never moved: her provider still retries node 0
    for (const c of clients) if (!c.expectClose) c.destroy()
  }
  return problems
}

// Redis stops mid-session (the driver stops and restarts it): editing goes on within each
// node, and the nodes converge once Redis is back.
async function scenarioClusterRedisRestart () {
  check(ARGS.baseUrls.length >= 2, 'cluster-redis-restart needs two base URLs')
  const record = `${ARGS.prefix}-redis`
  const alice = new Client('alice@node0', record, 'alice', nodeUrl(0))
  const carol = new Client('carol@node0', record, 'carol', nodeUrl(0))
  const bob = new Client('bob@node1', record, 'bob', nodeUrl(1))
  const clients = [alice, carol, bob]
  let problems
  try {
    for (const c of clients) await c.synced()
    const expect = newExpect()
    await Promise.all([editConcurrently(alice, 0, 4, expect), editConcurrently(bob, 1, 4, expect)])
    await waitConverged(clients, 10000, 'all three to converge before Redis stops')

    await pausePoint('redis-down')
    await Promise.all([editConcurrently(alice, 2, 5, expect), editConcurrently(bob, 3, 5, expect)])
    // Within node 0, alice's edits still reach carol.
    await waitConverged([alice, carol], 5000, 'alice and carol (same node) to converge while Redis is down')
    log('  local editing went on while Redis was down')

    await pausePoint('redis-up')
    const ms = await waitConverged(clients, 30000, 'the two nodes to converge after Redis came back')
    log(`  REDIS_CATCH_UP_MS ${ms.toFixed(1)}`)
    for (const c of clients) checkExpectedContent(c, expect)
    problems = clusterProblems(clients)
  } finally {
    for (const c of clients) if (!c.expectClose) c.destroy()
  }
  return problems
}

const RUNNERS = {
  cluster: scenarioCluster,
  'cluster-failover': scenarioClusterFailover,
  'cluster-redis-restart': scenarioClusterRedisRestart,
  'persist-write': scenarioPersistWrite,
  'persist-read': scenarioPersistRead,
  converge: scenarioConverge,
  'late-joiner': scenarioLateJoiner,
  rejoin: scenarioRejoin,
  awareness: scenarioAwareness,
  'awareness-echo': scenarioAwarenessEcho,
  'awareness-reconnect': scenarioAwarenessReconnect,
  rooms: scenarioRooms
}

// ---------------------------------------------------------------------------
// main

async function main () {
  const names = ARGS.scenario === 'all' ? SCENARIOS : [ARGS.scenario]
  log(`interop: server ${ARGS.baseUrl}/records/<id>, scenarios ${names.join(', ')}, prefix ${ARGS.prefix}, seed ${ARGS.seed}`)
  let failed = 0
  for (const name of names) {
    const first = ALL_CLIENTS.length
    const t0 = performance.now()
    log(`--- ${name}`)
    try {
      const problems = await RUNNERS[name]()
      if (problems.length) throw new CheckFailed(`protocol problems seen during the scenario:\n    ${problems.join('\n    ')}`)
      log(`PASS ${name} (${(performance.now() - t0).toFixed(0)} ms)`)
    } catch (err) {
      failed++
      console.error(`FAIL ${name}: ${err instanceof CheckFailed ? err.message : (err && err.stack) || err}`)
      console.error('  clients:')
      for (const c of ALL_CLIENTS.slice(first)) console.error('    ' + c.summary())
    }
    for (const c of ALL_CLIENTS.slice(first)) log('  ' + c.summary())
  }
  clearTimeout(GLOBAL_TIMER)
  log(failed ? `interop: ${failed} scenario(s) failed` : 'interop: all passed')
  process.exit(failed ? 1 : 0)
}

await main()
