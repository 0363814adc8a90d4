// Load generator for bench/run.py: y-websocket clients over the `ws` package, sending
// pre-encoded frames of real Yjs updates and identifying every delivery by decoding it.
//
//   node generator.mjs <config.json>      (one JSON result on stdout, progress on stderr)
//
// Each client owns a Yjs doc with its own clientID and makes single-character inserts into
// the Y.Text "t"; every insert is one update, encoded once before the load starts. The
// update carries the sender (its Yjs clientID) and the sequence number (its clock): a
// receiver decodes each SYNC update frame with Y.decodeUpdate and credits every item's
// clock range [clock, clock + length) to (sender, sequence). A server that batches or
// merges updates is thus measured correctly; a duplicate or a missing delivery is counted.
//
// The generator also reads the server's CPU time (/proc/<pid>/stat utime + stime) and RSS
// (/proc/<pid>/status VmRSS, VmHWM) at the phase boundaries, and reports its own load:
// event-loop delay (perf_hooks.monitorEventLoopDelay), CPU use and how late it sent.

import fs from 'node:fs'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import WebSocket from 'ws'
import * as Y from 'yjs'
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
const server = cfg.server
const log = (...args) => process.stderr.write(`[gen ${server.name}/${cfg.workload.name}] ${args.join(' ')}\n`)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const now = () => performance.now()

// -- frames ---------------------------------------------------------------------------------

const MSG_SYNC = 0
const STEP1 = 0
const STEP2 = 1
const UPDATE = 2

function syncFrame (kind, payload) {
  const enc = encoding.createEncoder()
  encoding.writeVarUint(enc, MSG_SYNC)
  encoding.writeVarUint(enc, kind)
  encoding.writeVarUint8Array(enc, payload)
  return Buffer.from(encoding.toUint8Array(enc))
}

const EMPTY_STEP1 = syncFrame(STEP1, Y.encodeStateVector(new Y.Doc()))
const EMPTY_STEP2 = syncFrame(STEP2, Y.encodeStateAsUpdate(new Y.Doc()))

// A client's own document: single-character inserts, one update (one frame) each.
class UpdateSource {
  constructor (clientID) {
    this.doc = new Y.Doc()
    this.doc.clientID = clientID
    this.text = this.doc.getText('t')
    this.out = null
    this.doc.on('update', (update) => { this.out.push(syncFrame(UPDATE, update)) })
  }

  // The next `n` frames; frame k carries clock (= sequence) `this.doc clock before + k`.
  make (n) {
    this.out = []
    for (let k = 0; k < n; k++) this.text.insert(this.text.length, 'abcdefghij'[k % 10])
    const frames = this.out
    this.out = null
    return frames
  }
}

// -- statistics -----------------------------------------------------------------------------

class Samples {
  constructor () { this.a = new Float64Array(4096); this.n = 0 }
  push (v) {
    if (this.n === this.a.length) {
      const b = new Float64Array(this.a.length * 2)
      b.set(this.a)
      this.a = b
    }
    this.a[this.n++] = v
  }

  summary () {
    const n = this.n
    if (n === 0) return { n: 0, p50: null, p95: null, p99: null, max: null, mean: null }
    const s = this.a.slice(0, n).sort()
    const at = (p) => s[Math.min(n - 1, Math.max(0, Math.ceil(p * n) - 1))]
    let sum = 0
    for (let i = 0; i < n; i++) sum += s[i]
    const r = (x) => Math.round(x * 1000) / 1000
    return { n, p50: r(at(0.5)), p95: r(at(0.95)), p99: r(at(0.99)), max: r(s[n - 1]), mean: r(sum / n) }
  }
}

// -- the server process ---------------------------------------------------------------------

function serverCpu () {
  const text = fs.readFileSync(`/proc/${server.pid}/stat`, 'utf8')
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / server.clk_tck // utime + stime
}

function serverMem () {
  const text = fs.readFileSync(`/proc/${server.pid}/status`, 'utf8')
  const kb = (key) => Number((text.match(new RegExp(`^${key}:\\s+(\\d+)`, 'm')) || [0, 0])[1])
  return { rss_mb: kb('VmRSS') / 1024, hwm_mb: kb('VmHWM') / 1024 }
}

// Busy jiffies of each core (/proc/stat): what else ran on the two cores during a phase.
function coreBusy () {
  const out = {}
  for (const line of fs.readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = line.match(/^cpu(\d+) (.*)/)
    if (!m) continue
    const v = m[2].trim().split(/\s+/).map(Number)
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0)
    out[m[1]] = { busy: total - v[3] - v[4], total }
  }
  return out
}

// Fraction of each pinned core used by processes other than the server (core 0) and the
// generator (core 1) between two coreBusy() readings: the machine is shared, say so.
function foreignLoad (before, after, serverCpuS, generatorCpuS) {
  const frac = (core, own) => {
    const a = after[core]
    const b = before[core]
    if (!a || !b || a.total === b.total) return null
    const busy = (a.busy - b.busy) / (a.total - b.total)
    const ownFrac = own / ((a.total - b.total) / server.clk_tck)
    return Math.round(Math.max(0, busy - ownFrac) * 1000) / 1000
  }
  return {
    server_core_others: frac(String(server.core), serverCpuS),
    generator_core_others: frac(String(server.generator_core), generatorCpuS)
  }
}

class GeneratorLoad {
  start () {
    this.loop = monitorEventLoopDelay({ resolution: 5 })
    this.loop.enable()
    this.cpu = process.cpuUsage()
    this.t = now()
  }

  stop () {
    this.loop.disable()
    const cpu = process.cpuUsage(this.cpu)
    const wall = (now() - this.t) / 1000
    const ms = (ns) => Math.round(ns / 1e4) / 100
    return {
      cpu_s: (cpu.user + cpu.system) / 1e6,
      cpu_fraction: Math.round(((cpu.user + cpu.system) / 1e6 / wall) * 1000) / 1000,
      // The histogram holds the timer's whole period: subtract the resolution (5 ms).
      loop_delay_ms: { p50: ms(Math.max(0, this.loop.percentile(50) - 5e6)), p99: ms(Math.max(0, this.loop.percentile(99) - 5e6)), max: ms(Math.max(0, this.loop.max - 5e6)) }
    }
  }
}

// -- clients --------------------------------------------------------------------------------

const closes = []

class Client {
  // index: unique in the run; room: its room's name; pos: its position in the room.
  constructor (index, room, pos, roomSize) {
    this.index = index
    this.room = room
    this.pos = pos
    this.clientID = 1000 + index
    this.source = null
    this.made = 0 // frames made so far: the next frame's clock
    this.stepStart = 0 // the first clock of the current load step
    this.sentAt = new Float64Array(0)
    this.next = new Int32Array(roomSize) // per sender (room position): next clock expected
    this.ahead = null // per sender: Set of clocks received out of order
    this.ws = null
    this.closing = false
    this.onStep2 = null
  }

  url () { return server.base_url + server.path_prefix + encodeURIComponent(this.room) }

  open (timeoutMs = 30000) {
    return new Promise((resolve, reject) => {
      const protocols = server.subprotocol ? [`auth.${server.token}`] : []
      const ws = new WebSocket(this.url(), protocols, {
        perMessageDeflate: false,
        skipUTF8Validation: true,
        maxPayload: 256 * 1024 * 1024,
        handshakeTimeout: timeoutMs
      })
      this.ws = ws
      const timer = setTimeout(() => { reject(new Error('sync timeout')); ws.terminate() }, timeoutMs)
      this.onStep2 = (payload, at) => { clearTimeout(timer); this.onStep2 = null; resolve({ payload, at }) }
      ws.on('open', () => ws.send(EMPTY_STEP1)) // as y-websocket does: our state vector first
      ws.on('message', (data, isBinary) => this.message(data, isBinary))
      ws.on('error', (err) => { clearTimeout(timer); reject(err) })
      ws.on('close', (code, reason) => {
        clearTimeout(timer)
        if (!this.closing) {
          closes.push({ client: this.index, room: this.room, code, reason: reason.toString().slice(0, 120) })
          reject(new Error(`closed ${code} ${reason}`))
        }
      })
    })
  }

  message (data, isBinary) {
    const at = now()
    if (!isBinary || data.length < 2 || data[0] !== MSG_SYNC) return // control text, awareness
    const dec = decoding.createDecoder(data)
    decoding.readVarUint(dec)
    const kind = decoding.readVarUint(dec)
    if (kind === STEP1) {
      this.ws.send(EMPTY_STEP2) // we have nothing the server lacks
      return
    }
    const payload = decoding.readVarUint8Array(dec)
    if (kind === STEP2) {
      if (this.onStep2 !== null) this.onStep2(payload, at)
      return
    }
    if (kind === UPDATE) this.room_.deliver(this, payload, at)
  }

  close () {
    this.closing = true
    if (this.ws === null) return Promise.resolve()
    const ws = this.ws
    if (ws.readyState === WebSocket.CLOSED) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(() => { ws.terminate(); resolve() }, 3000)
      ws.once('close', () => { clearTimeout(timer); resolve() })
      ws.close(1000)
    })
  }
}

class Room {
  constructor (name, clients) {
    this.name = name
    this.clients = clients
    this.byClientID = new Map(clients.map((c) => [c.clientID, c]))
    for (const c of clients) c.room_ = this
  }
}

class Tally {
  constructor () { this.reset() }
  reset () {
    this.unique = 0
    this.duplicates = 0
    this.echoes = 0
    this.foreign = 0
    this.late = 0
    this.latency = new Samples()
    this.lastAt = 0
  }
}
const tally = new Tally()

// Every receiver of a broadcast gets the same bytes: decode each distinct update once.
// (A merged or re-encoded update is other bytes, and is decoded on its own.)
const decoded = new Map()
function itemRanges (payload) {
  const key = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('latin1')
  let ranges = decoded.get(key)
  if (ranges === undefined) {
    ranges = []
    for (const s of Y.decodeUpdate(payload).structs) {
      if (s instanceof Y.Item) ranges.push(s.id.client, s.id.clock, s.length)
    }
    if (decoded.size >= 100000) decoded.clear()
    decoded.set(key, ranges)
  }
  return ranges
}

Room.prototype.deliver = function (receiver, payload, at) {
  const ranges = itemRanges(payload)
  for (let i = 0; i < ranges.length; i += 3) {
    const length = ranges[i + 2]
    const sender = this.byClientID.get(ranges[i])
    if (sender === undefined) { tally.foreign += length; continue }
    if (sender === receiver) { tally.echoes += length; continue }
    const p = sender.pos
    const stepStart = sender.stepStart
    for (let clock = ranges[i + 1], end = ranges[i + 1] + length; clock < end; clock++) {
      let fresh = false
      const next = receiver.next[p]
      if (clock === next) {
        fresh = true
        let n = next + 1
        const ahead = receiver.ahead && receiver.ahead.get(p)
        if (ahead) while (ahead.delete(n)) n++
        receiver.next[p] = n
      } else if (clock > next) {
        if (receiver.ahead === null) receiver.ahead = new Map()
        let ahead = receiver.ahead.get(p)
        if (!ahead) receiver.ahead.set(p, (ahead = new Set()))
        if (!ahead.has(clock)) { ahead.add(clock); fresh = true }
      }
      if (!fresh) { tally.duplicates++; continue }
      if (clock < stepStart) { tally.late++; continue } // from an earlier step
      tally.unique++
      tally.lastAt = at
      tally.latency.push(at - sender.sentAt[clock])
    }
  }
}

async function openAll (clients, concurrency = 50) {
  const failures = []
  async function batch (list) {
    let i = 0
    async function worker () {
      while (i < list.length) {
        const c = list[i++]
        try { await c.open() } catch (err) { failures.push(`${c.index}: ${err.message}`) }
      }
    }
    await Promise.all(Array.from({ length: Math.min(concurrency, list.length) }, worker))
  }
  // The first member of each room alone, then the others: pycrdt-websocket 0.16.5 leaves
  // concurrent first joiners of a new room hanging (each tries to start the room).
  await batch(clients.filter((c) => c.pos === 0))
  await batch(clients.filter((c) => c.pos !== 0))
  if (failures.length) throw new Error(`${failures.length} clients failed to sync: ${failures.slice(0, 3).join('; ')}`)
}

const closeAll = (clients) => Promise.all(clients.map((c) => c.close()))

function makeRooms (prefix, rooms, perRoom) {
  const all = []
  const list = []
  for (let r = 0; r < rooms; r++) {
    const members = []
    for (let p = 0; p < perRoom; p++) {
      const c = new Client(all.length, `${prefix}-${r}`, p, perRoom)
      members.push(c)
      all.push(c)
    }
    list.push(new Room(`${prefix}-${r}`, members))
  }
  return { all, rooms: list }
}

// -- steady load (fan-out, many rooms, each saturation step) --------------------------------

// Sends `rate` updates/s from every client for `duration` s, then waits for the deliveries.
async function steadyLoad (clients, rate, duration, drainMs) {
  const n = clients.length
  const perClient = Math.max(1, Math.round(rate * duration))
  // Frames are made (real Yjs encoding) before the clock starts.
  const frames = clients.map((c) => {
    if (c.source === null) c.source = new UpdateSource(c.clientID)
    const start = c.made
    c.stepStart = start
    const made = c.source.make(perClient)
    c.made += perClient
    if (c.sentAt.length < start + perClient) {
      const b = new Float64Array(start + perClient)
      b.set(c.sentAt)
      c.sentAt = b
    }
    return { start, made }
  })
  // Interleaved senders (rooms mixed), evenly spaced: update j leaves at j / (n * rate).
  const order = Array.from({ length: n }, (_, i) => i)
  for (let i = n - 1; i > 0; i--) {
    const k = Math.floor(Math.random() * (i + 1))
    ;[order[i], order[k]] = [order[k], order[i]]
  }
  const total = n * perClient
  const interval = 1000 / (n * rate)
  let expected = 0
  for (const c of clients) expected += perClient * (c.room_.clients.length - 1)

  tally.reset()
  const lag = new Samples()
  const load = new GeneratorLoad()
  await sleep(300)
  const cpu0 = serverCpu()
  const cores0 = coreBusy()
  load.start()
  const t0 = now()
  let j = 0
  let sendErrors = 0
  await new Promise((resolve) => {
    const pump = () => {
      const t = now()
      while (j < total && t0 + j * interval <= t) {
        const c = clients[order[j % n]]
        const k = Math.floor(j / n)
        const f = frames[order[j % n]]
        const sendAt = now()
        lag.push(sendAt - (t0 + j * interval))
        c.sentAt[f.start + k] = sendAt
        if (c.ws.readyState === WebSocket.OPEN) c.ws.send(f.made[k])
        else sendErrors++
        j++
      }
      if (j < total) setTimeout(pump, Math.max(0, t0 + j * interval - now()))
      else resolve()
    }
    pump()
  })
  const sendEnd = now()
  const deadline = sendEnd + drainMs
  while (tally.unique < expected && now() < deadline) await sleep(5)
  const genLoad = load.stop()
  const cpu1 = serverCpu()
  genLoad.foreign_cpu = foreignLoad(cores0, coreBusy(), cpu1 - cpu0, genLoad.cpu_s)
  const elapsed = Math.max(duration * 1000, (tally.lastAt || sendEnd) - t0) / 1000
  const cpu = cpu1 - cpu0
  return {
    rate_per_client: rate,
    duration_s: duration,
    sent: total,
    send_errors: sendErrors,
    expected,
    delivered: tally.unique,
    lost: expected - tally.unique,
    duplicates: tally.duplicates,
    echoes_to_sender: tally.echoes,
    late_from_earlier_step: tally.late,
    latency_ms: tally.latency.summary(),
    deliveries_per_s: Math.round(tally.unique / elapsed),
    offered_deliveries_per_s: Math.round(expected / duration),
    server_cpu_s: Math.round(cpu * 1000) / 1000,
    server_cpu_fraction: Math.round((cpu / ((now() - t0) / 1000)) * 1000) / 1000,
    cpu_ms_per_1000_deliveries: tally.unique ? Math.round((cpu / tally.unique) * 1e6 * 100) / 100 : null,
    generator: { ...genLoad, send_lag_ms: lag.summary() }
  }
}

async function steady (w) {
  const mem0 = serverMem()
  const { all, rooms } = makeRooms(`${cfg.tag}-${w.name}`, w.rooms, w.per_room)
  const t = now()
  await openAll(all)
  log(`${all.length} clients synced in ${Math.round(now() - t)} ms`)
  await sleep(1000)
  const memIdle = serverMem()
  const result = await steadyLoad(all, w.rate, w.duration, w.drain_ms)
  const memAfter = serverMem()
  await closeAll(all)
  return finish(result, all.length, rooms.length, mem0, memIdle, memAfter)
}

function finish (result, connections, rooms, mem0, memIdle, memAfter) {
  const r3 = (x) => Math.round(x * 1000) / 1000
  return {
    ...result,
    connections,
    rooms,
    rss_mb: { baseline: r3(mem0.rss_mb), idle: r3(memIdle.rss_mb), after: r3(memAfter.rss_mb), peak: r3(memAfter.hwm_mb) },
    rss_per_idle_connection_mb: r3((memIdle.rss_mb - mem0.rss_mb) / connections),
    rss_per_room_mb: r3((memAfter.rss_mb - mem0.rss_mb) / rooms),
    unexpected_closes: closes.slice(0, 20),
    unexpected_close_count: closes.length
  }
}

// After a failed step: wait (bounded) until every receiver has all it was sent.
async function drainLate (clients, maxMs) {
  const until = now() + maxMs
  const behind = () => clients.some((r) => r.room_.clients.some((s) => s !== r && r.next[s.pos] < s.made))
  while (now() < until && behind()) await sleep(50)
  await sleep(500)
}

// Raise the rate until p99 > limit or a delivery is lost; same connections throughout.
async function saturation (w) {
  const mem0 = serverMem()
  const { all, rooms } = makeRooms(`${cfg.tag}-${w.name}`, w.rooms, w.per_room)
  await openAll(all)
  await sleep(1000)
  const memIdle = serverMem()
  const steps = []
  const passes = (s) => s.lost === 0 && s.latency_ms.p99 !== null && s.latency_ms.p99 <= w.p99_limit_ms && closes.length === 0
  // Double until a step fails (halve while the first ones fail), then bisect.
  let rate = w.start_rate
  let good = null
  let bad = null
  for (let i = 0; i < w.max_steps; i++) {
    const s = await steadyLoad(all, rate, w.step_duration, w.drain_ms)
    s.pass = passes(s)
    steps.push(s)
    log(`rate ${rate}/client: ${s.deliveries_per_s} deliveries/s p99 ${s.latency_ms.p99} ms lost ${s.lost} -> ${s.pass ? 'ok' : 'over'}`)
    if (s.pass) good = Math.max(good ?? 0, rate)
    else bad = Math.min(bad ?? Infinity, rate)
    if (closes.length) break // a closed client cannot take part in later steps
    if (bad === null) rate = rate * 2
    else if (good === null) rate = rate / 2
    else if (bad / good <= w.resolution) break
    else rate = Math.sqrt(good * bad)
    rate = Math.round(rate * 10) / 10
    if (rate < 0.5) break
    // The backlog of a failed step must not spill into the next one.
    if (!s.pass) await drainLate(all, 15000)
  }
  const memAfter = serverMem()
  await closeAll(all)
  const passed = steps.filter((s) => s.pass)
  const best = passed.reduce((a, s) => (a === null || s.deliveries_per_s > a.deliveries_per_s ? s : a), null)
  const head = best || steps[0]
  return finish({ ...head, max_sustained_deliveries_per_s: best ? best.deliveries_per_s : 0, steps }, all.length, rooms.length, mem0, memIdle, memAfter)
}

// -- join storm -----------------------------------------------------------------------------

function seedDocument (targetBytes) {
  // Many paragraphs typed by 16 authors: each paragraph is its own item (no merging).
  const doc = new Y.Doc()
  const text = doc.getText('t')
  const words = 'the council resolves that the municipal budget for the fiscal year shall include provisions for'.split(' ')
  let p = 0
  let size = 0
  while (size < targetBytes) {
    for (let k = 0; k < 500; k++, p++) {
      doc.clientID = 500000 + (p % 16)
      let para = `§${p} `
      while (para.length < 96) para += words[(p * 7 + para.length) % words.length] + ' '
      text.insert(text.length, para.trimEnd() + '\n')
    }
    size = Y.encodeStateAsUpdate(doc).length
  }
  return { update: Y.encodeStateAsUpdate(doc), textLength: text.length, paragraphs: p }
}

async function joinStorm (w) {
  const mem0 = serverMem()
  const seed = seedDocument(w.document_bytes)
  log(`seed document: ${seed.update.length} bytes, ${seed.paragraphs} paragraphs`)
  const room = `${cfg.tag}-${w.name}`
  const full = Math.floor(seed.update.length * 0.98)
  const seeder = new Client(0, room, 0, 1)
  seeder.room_ = { deliver () {} }
  await seeder.open()
  seeder.ws.send(syncFrame(UPDATE, seed.update))
  // Wait until the server holds the whole document.
  const seededBy = now() + 60000
  let held = false
  let k = 1
  while (!held && now() < seededBy) {
    const checker = new Client(k++, room, 0, 1)
    checker.room_ = seeder.room_
    const got = await checker.open()
    held = got.payload.length >= full
    await checker.close()
    if (!held) await sleep(200)
  }
  if (!held) throw new Error('the server never held the seed document')
  await sleep(1000)
  const memIdle = serverMem()
  const times = new Samples()
  const rounds = []
  let sample = null
  const load = new GeneratorLoad()
  const cpu0 = serverCpu()
  const cores0 = coreBusy()
  load.start()
  for (let r = 0; r < w.rounds; r++) {
    const joiners = Array.from({ length: w.joiners }, (_, i) => {
      const c = new Client(1000 + r * w.joiners + i, room, 0, 1)
      c.room_ = seeder.room_
      return c
    })
    const t0 = now()
    const synced = await Promise.all(joiners.map(async (c) => {
      // Time to full sync: the first step 2 that holds (almost) all of the document.
      const first = await c.open(60000)
      if (first.payload.length >= full) return first
      return await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no full step 2')), 60000)
        c.onStep2 = (payload, at) => {
          if (payload.length >= full) { clearTimeout(timer); resolve({ payload, at }) }
        }
      })
    }))
    const each = synced.map((s) => s.at - t0)
    each.forEach((t) => times.push(t))
    if (sample === null) sample = synced[0].payload
    rounds.push({ all_synced_ms: Math.round(Math.max(...each) * 10) / 10, first_ms: Math.round(Math.min(...each) * 10) / 10 })
    log(`round ${r}: all ${w.joiners} synced in ${rounds[r].all_synced_ms} ms`)
    await closeAll(joiners)
    await sleep(500)
  }
  const genLoad = load.stop()
  const cpu = serverCpu() - cpu0
  genLoad.foreign_cpu = foreignLoad(cores0, coreBusy(), cpu, genLoad.cpu_s)
  const memAfter = serverMem()
  // The payload really is the document: apply it to a fresh doc and compare.
  const check = new Y.Doc()
  Y.applyUpdate(check, sample)
  const verified = check.getText('t').length === seed.textLength
  await seeder.close()
  const joins = w.rounds * w.joiners
  const sorted = rounds.map((r) => r.all_synced_ms).sort((a, b) => a - b)
  return finish({
    document_bytes: seed.update.length,
    document_verified: verified,
    joiners: w.joiners,
    rounds,
    all_synced_ms_median: sorted[Math.floor(sorted.length / 2)],
    all_synced_ms_worst: sorted[sorted.length - 1],
    latency_ms: times.summary(),
    server_cpu_s: Math.round(cpu * 1000) / 1000,
    cpu_ms_per_join: Math.round((cpu / joins) * 1e5) / 100,
    lost: 0,
    generator: genLoad
  }, w.joiners + 1, 1, mem0, memIdle, memAfter)
}

// -- cold load (a restarted server, a stored document) ---------------------------------------

async function coldLoad (w) {
  const c = new Client(0, w.room, 0, 1)
  c.room_ = { deliver () {} }
  const t0 = now()
  let got = await c.open(60000)
  while (got.payload.length < w.min_bytes) {
    got = await new Promise((resolve) => { c.onStep2 = (payload, at) => resolve({ payload, at }) })
  }
  const ms = got.at - t0
  await c.close()
  return { time_to_full_sync_ms: Math.round(ms * 10) / 10, bytes: got.payload.length }
}

// -- handshake probe --------------------------------------------------------------------------

async function probe () {
  const c = new Client(0, `${cfg.tag}-probe`, 0, 1)
  c.room_ = { deliver () {} }
  try {
    await c.open(10000)
    await c.close()
    return { subprotocol_accepted: true }
  } catch (err) {
    c.closing = true
    return { subprotocol_accepted: false, error: String(err.message).slice(0, 200) }
  }
}

const modes = { steady, saturation, storm: joinStorm, cold: coldLoad, probe }
const started = now()
const result = await modes[cfg.workload.mode](cfg.workload)
result.generator_wall_s = Math.round(now() - started) / 1000
process.stdout.write(JSON.stringify(result) + '\n')
process.exit(0)
