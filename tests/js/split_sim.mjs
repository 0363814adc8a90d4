#!/usr/bin/env node
// Yjs as the oracle for characters outside the BMP, without a server.
//
//   node split_sim.mjs gen --seed N [--clients 3] [--ops 300] [--format]
//     Simulated editors type, delete (and with --format, format) concurrently (text over emoji, flags, skin
//     tones, ZWJ sequences, accents, at any UTF-16 offset, inside surrogate pairs included).
//     Their updates reach a "server" log in arrival order; every editor applies the log.
//     Prints JSON {updates: [hex, ...] (server arrival order), text and delta (text with
//     formatting) of a joiner that applied the log, editors_agree}. Without --format the
//     editors' texts must agree (exit 1 otherwise). With it they may not: a Yjs format()
//     that changes nothing, with an end inside a pair, replaces the halves in that editor
//     alone (docs/upstream/yrs-surrogate-split.md); the joiner is then the reference for
//     what the server must serve.
//   node split_sim.mjs decode < hex
//     Applies one update (a server's state) to a fresh Y.Doc and prints JSON {text, delta}
//     or {error}; the check a late joiner makes.
//
// Exit codes: 0 success, 1 editors diverged, 2 usage error.
import * as Y from 'yjs'
import { readFileSync } from 'node:fs'

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

function option (args, name, fallback) {
  const i = args.indexOf(name)
  return i >= 0 ? Number(args[i + 1]) : fallback
}

function gen (args) {
  const rng = makeRng(option(args, '--seed', 1))
  const randInt = (n) => Math.floor(rng() * n)
  const nClients = option(args, '--clients', 3)
  const nOps = option(args, '--ops', 300)
  const withFormat = args.includes('--format')
  const log = []
  const clients = []
  for (let i = 0; i < nClients; i++) {
    const doc = new Y.Doc()
    doc.clientID = 1000 + i
    const client = { doc, outbox: [], cursor: 0 }
    doc.on('update', (update, origin) => {
      if (origin !== 'server') client.outbox.push(update)
    })
    clients.push(client)
  }
  const flush = (client) => {
    for (const u of client.outbox) log.push({ from: client, update: u })
    client.outbox = []
  }
  const deliver = (client) => {
    for (; client.cursor < log.length; client.cursor++) {
      const entry = log[client.cursor]
      if (entry.from !== client) Y.applyUpdate(client.doc, entry.update, 'server')
    }
  }
  for (let op = 0; op < nOps; op++) {
    const client = clients[randInt(nClients)]
    const text = client.doc.getText('text')
    const length = text.length // UTF-16 code units: offsets may fall inside a pair
    const dice = rng()
    if (length > 0 && dice < 0.3) {
      const at = randInt(length)
      text.delete(at, 1 + randInt(Math.min(4, length - at)))
    } else if (withFormat && length > 0 && dice < 0.4) {
      // Formatting splits items at both ends of the range, inside pairs too.
      const at = randInt(length)
      text.format(at, 1 + randInt(Math.min(6, length - at)), { bold: rng() < 0.5 ? true : null })
    } else {
      let piece = ''
      for (let n = 1 + randInt(3); n > 0; n--) piece += PIECES[randInt(PIECES.length)]
      text.insert(randInt(length + 1), piece)
    }
    if (rng() < 0.5) flush(client)
    if (rng() < 0.5) deliver(clients[randInt(nClients)])
  }
  for (const c of clients) flush(c)
  for (const c of clients) deliver(c)
  const joined = new Y.Doc()
  for (const entry of log) Y.applyUpdate(joined, entry.update)
  const texts = clients.map((c) => c.doc.getText('text').toString())
  if (!withFormat && new Set(texts).size !== 1) {
    console.error('editors diverged:', JSON.stringify(texts))
    process.exit(1)
  }
  console.log(JSON.stringify({
    updates: log.map((e) => Buffer.from(e.update).toString('hex')),
    text: joined.getText('text').toString(),
    editors_agree: new Set(texts).size === 1,
    // Editors may disagree on formatting after concurrent format() calls (Yjs cleans up
    // formatting in local transactions); a joiner applying the log in order is the
    // reference for what the server serves.
    delta: joined.getText('text').toDelta()
  }))
}

function decode () {
  const state = Buffer.from(readFileSync(0, 'utf8').trim(), 'hex')
  const doc = new Y.Doc()
  try {
    Y.applyUpdate(doc, state)
  } catch (err) {
    console.log(JSON.stringify({ error: String(err && err.message ? err.message : err) }))
    return
  }
  console.log(JSON.stringify({ text: doc.getText('text').toString(), delta: doc.getText('text').toDelta() }))
}

const [mode, ...rest] = process.argv.slice(2)
if (mode === 'gen') gen(rest)
else if (mode === 'decode') decode()
else {
  console.error('usage: node split_sim.mjs gen --seed N [--clients 3] [--ops 300] | decode < hex')
  process.exit(2)
}
