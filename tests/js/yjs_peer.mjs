#!/usr/bin/env node
// Yjs as the oracle of the convergence fuzzer (fuzz/oracle.py drives it).
//
//   node yjs_peer.mjs            (one JSON request per line on stdin, one answer per line)
//
// The process holds the fuzzer's clients' documents: one Y.Doc per client, each with its
// own client id and awareness, touched only by that client's frames and edits. The Python
// side owns the sockets (so that it can stop reading, reset a connection, shrink a receive
// buffer); every binary frame the daemon sends a client is handed here and read with
// y-protocols' own `readSyncMessage`, exactly as y-websocket reads it, and every edit is
// made here with the Yjs API (offsets in UTF-16 code units, so an offset may fall inside a
// surrogate pair, as in a browser). y-prosemirror edits go through `updateYFragment`, the
// diffing the editor's sync plugin uses.
//
// Requests: {"id", "cmd", ...}; answers: {"id", "ok": true, ...} or {"id", "ok": false,
// "error"}. Anything Yjs or y-protocols reports while handling a frame (an exception, or
// a `console.error`, which y-protocols uses for updates that fail to apply) is an error.
// The process ends when stdin closes.

import { createInterface } from 'node:readline'
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import { EditorState, TextSelection } from 'prosemirror-state'
import { updateYFragment, yXmlFragmentToProsemirror } from 'y-prosemirror'
import * as awarenessProtocol from 'y-protocols/awareness'
import * as authProtocol from 'y-protocols/auth'
import * as syncProtocol from 'y-protocols/sync'
import * as Y from 'yjs'
import { schema } from './prosemirror_schema.mjs'

const peers = new Map()
// Yjs and y-protocols say what went wrong on the console: an update that failed to apply
// (console.error), or "[yjs] Changed the client-id because another client seems to be
// using it" (console.log), when a remote update holds structs under this client's own id
// that it never made. Any of these while handling a request makes it fail; stdout carries
// only the answers.
let reported = []
const report = (...args) => {
  reported.push(args.map((a) => (a instanceof Error ? a.stack : String(a))).join(' '))
}
console.error = report
console.warn = report
console.log = report
console.info = report
console.debug = report

const b64 = (bytes) => Buffer.from(bytes).toString('base64')
const unb64 = (text) => new Uint8Array(Buffer.from(text, 'base64'))

function stateVector (doc) {
  const sv = Y.decodeStateVector(Y.encodeStateVector(doc))
  return Object.fromEntries([...sv.entries()].sort((a, b) => a[0] - b[0]).map(([k, v]) => [String(k), v]))
}

function xmlJSON (node) {
  if (node instanceof Y.XmlText) return ['#text', node.toDelta()]
  const children = node.toArray().map(xmlJSON)
  if (node instanceof Y.XmlElement) {
    const attrs = Object.entries(node.getAttributes()).sort()
    return [node.nodeName, attrs, children]
  }
  return children
}

// Keys sorted at every level: two equal documents give the same text.
function canonical (value) {
  return JSON.stringify(value, (_key, v) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, v[k]]))
      : v
  )
}

// What the fuzzer compares between replicas: every shared type and the state vector.
function docState (doc) {
  return canonical({
    state_vector: stateVector(doc),
    pending: doc.store.pendingStructs !== null || doc.store.pendingDs !== null,
    text: doc.getText('text').toDelta(),
    map: doc.getMap('map').toJSON(),
    array: doc.getArray('array').toJSON(),
    xml: xmlJSON(doc.getXmlFragment('xml')),
    prosemirror: xmlJSON(doc.getXmlFragment('default')),
    marks: doc.getMap('marks').toJSON()
  })
}

function syncFrame (write) {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, 0)
  write(encoder)
  return b64(encoding.toUint8Array(encoder))
}

function newPeer (name, clientID) {
  const doc = new Y.Doc()
  doc.clientID = clientID
  const peer = { doc, awareness: new awarenessProtocol.Awareness(doc), local: [], all: [] }
  doc.on('update', (update, origin) => {
    if (origin !== 'server') peer.local.push(b64(update)) // as y-websocket: not its own
    peer.all.push(update)
  })
  peers.set(name, peer)
  return peer
}

function peerOf (name) {
  const peer = peers.get(name)
  if (peer === undefined) throw new Error(`no peer ${name}`)
  return peer
}

// A frame from the daemon, read as y-websocket's provider reads it.
function receive (peer, bytes) {
  const decoder = decoding.createDecoder(bytes)
  const encoder = encoding.createEncoder()
  const type = decoding.readVarUint(decoder)
  let kind
  if (type === 0) {
    encoding.writeVarUint(encoder, 0)
    const syncType = syncProtocol.readSyncMessage(decoder, encoder, peer.doc, 'server', (error) => {
      throw error
    })
    kind = ['step1', 'step2', 'update'][syncType]
    if (kind === undefined) throw new Error(`unknown sync message ${syncType}`)
  } else if (type === 1) {
    awarenessProtocol.applyAwarenessUpdate(peer.awareness, decoding.readVarUint8Array(decoder), 'server')
    kind = 'awareness'
  } else if (type === 2) {
    authProtocol.readAuthMessage(decoder, peer.doc, (_doc, reason) => {
      throw new Error(`permission denied: ${reason}`)
    })
    kind = 'auth'
  } else if (type === 3) {
    kind = 'query-awareness'
  } else {
    throw new Error(`unknown message type ${type}`)
  }
  const reply = encoding.length(encoder) > 1 ? b64(encoding.toUint8Array(encoder)) : null
  return { kind, reply }
}

// -- edits: positions are taken modulo the current lengths (UTF-16 code units for text)

function elementAt (fragment, index) {
  const n = fragment.length
  return n ? fragment.get(index % n) : null
}

function applyOp (doc, op) {
  const [kind, ...a] = op
  const text = doc.getText('text')
  const fragment = doc.getXmlFragment('xml')
  if (kind === 'text_insert') text.insert(a[0] % (text.length + 1), a[1])
  else if (kind === 'text_delete') {
    if (text.length) {
      const start = a[0] % text.length
      text.delete(start, Math.min(a[1], text.length - start))
    }
  } else if (kind === 'text_format') {
    if (text.length) {
      const start = a[0] % text.length
      text.format(start, Math.min(a[1], text.length - start), { [a[2]]: a[3] })
    }
  } else if (kind === 'map_set') doc.getMap('map').set(a[0], a[1])
  else if (kind === 'map_delete') doc.getMap('map').delete(a[0])
  else if (kind === 'array_insert') {
    const array = doc.getArray('array')
    let value = a[1]
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      value = new Y.Map(Object.entries(value))
    }
    array.insert(a[0] % (array.length + 1), [value])
  } else if (kind === 'array_delete') {
    const array = doc.getArray('array')
    if (array.length) {
      const start = a[0] % array.length
      array.delete(start, Math.min(a[1], array.length - start))
    }
  } else if (kind === 'xml_element') {
    const element = new Y.XmlElement(a[1])
    element.insert(0, [new Y.XmlText(a[2])])
    fragment.insert(a[0] % (fragment.length + 1), [element])
  } else if (kind === 'xml_text' || kind === 'xml_text_delete') {
    const element = elementAt(fragment, a[0])
    const inner = element && element.get(0)
    if (inner instanceof Y.XmlText) {
      if (kind === 'xml_text') inner.insert(a[1] % (inner.length + 1), a[2])
      else if (inner.length) {
        const start = a[1] % inner.length
        inner.delete(start, Math.min(a[2], inner.length - start))
      }
    }
  } else if (kind === 'xml_attribute') {
    const element = elementAt(fragment, a[0])
    if (element) element.setAttribute(a[1], a[2])
  } else if (kind === 'xml_delete') {
    if (fragment.length) fragment.delete(a[0] % fragment.length, 1)
  } else if (kind === 'mark') doc.getMap('marks').set(a[0], a[1])
  else if (kind.startsWith('pm_')) return prosemirrorEdit(doc, kind, a)
  else throw new Error(`unknown edit ${JSON.stringify(op)}`)
  return true
}

// Positions where text may go (inside a textblock), in ProseMirror's counting: a text
// position inside a character outside the BMP is one a user cannot place a cursor at, but
// y-prosemirror's diff of two strings can cut there, and so can an edit made this way.
function textPositions (pmDoc) {
  const positions = []
  pmDoc.descendants((node, pos) => {
    if (node.isTextblock) {
      for (let i = 0; i <= node.content.size; i++) positions.push(pos + 1 + i)
      return false
    }
    return true
  })
  return positions
}

// An edit as the editor makes it: ProseMirror transaction, then y-prosemirror's diff of
// the new ProseMirror document against the Y.XmlFragment ('default', as in a records room).
function prosemirrorEdit (doc, kind, a) {
  const fragment = doc.getXmlFragment('default')
  let pmDoc
  try {
    pmDoc = yXmlFragmentToProsemirror(schema, fragment)
  } catch (error) {
    return false // concurrent edits left a shape the schema refuses: not this fuzzer's subject
  }
  const state = EditorState.create({ schema, doc: pmDoc })
  const tr = state.tr
  const positions = textPositions(pmDoc)
  if (positions.length === 0) {
    if (kind !== 'pm_insert' || a[1] === '') return false
    tr.insert(pmDoc.content.size, schema.nodes.paragraph.create(null, schema.text(a[1])))
  } else {
    const from = positions[a[0] % positions.length]
    const end = pmDoc.resolve(from).end()
    const to = Math.min(end, from + (kind === 'pm_insert' ? 0 : a[1]))
    if (kind === 'pm_insert') tr.insertText(a[1], from)
    else if (kind === 'pm_replace') {
      if (a[2] === '') tr.delete(from, to)
      else tr.insertText(a[2], from, to)
    } else if (kind === 'pm_delete') {
      if (to > from) tr.delete(from, to)
    } else if (kind === 'pm_mark') {
      if (to > from) tr.addMark(from, to, schema.marks[a[2]].create())
    } else if (kind === 'pm_split') {
      tr.setSelection(TextSelection.create(tr.doc, from))
      tr.split(from)
    } else throw new Error(`unknown edit ${kind}`)
  }
  if (!tr.docChanged) return false
  updateYFragment(doc, fragment, tr.doc, { mapping: new Map(), isOMark: new Map() })
  return true
}

// -- requests

// Whether the document now differs from what the updates it went through carry (its state
// before, then every update of the request, remote or its own): then no other replica can
// follow it. Yjs does that (a defect of Yjs, found by this fuzzer) when
// - a format() that changes no attribute starts or ends inside a surrogate pair: the pair
//   is split (both halves become U+FFFD) and nothing is emitted;
// - an item is split right after a lone high surrogate that only this client holds (see
//   `state`): Yjs replaces the next character with U+FFFD, whatever it is.
function diverged (peer, before) {
  const expected = new Y.Doc()
  Y.applyUpdate(expected, before)
  for (const update of peer.all) Y.applyUpdate(expected, update)
  const actual = new Y.Doc()
  Y.applyUpdate(actual, Y.encodeStateAsUpdate(peer.doc))
  const differs = docState(expected) !== docState(actual)
  expected.destroy()
  actual.destroy()
  peer.all = []
  return differs
}

function contains (state, update) {
  // `update` is in `state` when applying it changes nothing: its clocks are within the
  // state vector and its deletions are already deleted.
  const doc = new Y.Doc()
  Y.applyUpdate(doc, state)
  const before = Y.encodeStateAsUpdate(doc)
  const sv = Y.encodeStateVector(doc)
  Y.applyUpdate(doc, update)
  const same = Buffer.compare(Buffer.from(sv), Buffer.from(Y.encodeStateVector(doc))) === 0 &&
    Buffer.compare(Buffer.from(before), Buffer.from(Y.encodeStateAsUpdate(doc))) === 0
  return same && doc.store.pendingStructs === null
}

const handlers = {
  new: (r) => {
    newPeer(r.name, r.client_id)
    return {}
  },
  drop: (r) => {
    const peer = peers.get(r.name)
    if (peer) {
      peer.awareness.destroy()
      peer.doc.destroy()
      peers.delete(r.name)
    }
    return {}
  },
  reset: () => {
    for (const name of [...peers.keys()]) handlers.drop({ name })
    return {}
  },
  step1: (r) => ({ frame: syncFrame((e) => syncProtocol.writeSyncStep1(e, peerOf(r.name).doc)) }),
  receive: (r) => receive(peerOf(r.name), unb64(r.frame)),
  edit: (r) => {
    const peer = peerOf(r.name)
    let applied = false
    peer.doc.transact(() => {
      applied = applyOp(peer.doc, r.op)
    }, 'local')
    return { applied }
  },
  // A client's document as every other replica can know it: encoded, as Yjs sends it.
  // The encoding is lossy in one case only: a string holding half of a surrogate pair (an
  // edit or y-prosemirror's diff can insert one) is written as UTF-8, where the half
  // becomes U+FFFD; the client alone keeps the half in memory. `local_only` says so.
  state: (r) => {
    const doc = peerOf(r.name).doc
    const wire = new Y.Doc()
    Y.applyUpdate(wire, Y.encodeStateAsUpdate(doc))
    const state = docState(wire)
    wire.destroy()
    return { state, local_only: docState(doc) !== state }
  },
  // A late joiner: a fresh document given only `updates`, in order (a server's step 2, or
  // a room's stored rows).
  view: (r) => {
    const doc = new Y.Doc()
    for (const update of r.updates) Y.applyUpdate(doc, unb64(update), 'server')
    const state = docState(doc)
    doc.destroy()
    return { state }
  },
  contains: (r) => ({ contains: contains(unb64(r.state), unb64(r.update)) })
}

function answer (line) {
  let request
  try {
    request = JSON.parse(line)
  } catch (error) {
    return { id: null, ok: false, error: `bad request: ${error}` }
  }
  reported = []
  try {
    const checked = request.cmd === 'edit' || request.cmd === 'receive'
    const before = checked ? Y.encodeStateAsUpdate(peerOf(request.name).doc) : null
    if (checked) peerOf(request.name).all = []
    const handler = handlers[request.cmd]
    if (handler === undefined) throw new Error(`unknown command ${request.cmd}`)
    const result = handler(request)
    const peer = request.name !== undefined ? peers.get(request.name) : undefined
    if (peer !== undefined) {
      result.sv = stateVector(peer.doc)
      // The client's own updates, to send as y-websocket does (every update whose origin
      // is not the provider): its edits, and also what Yjs does by itself after applying a
      // remote update, such as deleting formatting made redundant by concurrent marks.
      result.updates = peer.local
      peer.local = []
      if (before !== null) result.self_diverged = diverged(peer, before)
    }
    if (reported.length) return { id: request.id, ok: false, error: reported.join('\n') }
    return { id: request.id, ok: true, ...result }
  } catch (error) {
    const text = error && error.stack ? error.stack : String(error)
    return { id: request.id, ok: false, error: [text, ...reported].join('\n') }
  }
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
lines.on('line', (line) => {
  if (line.trim()) process.stdout.write(JSON.stringify(answer(line)) + '\n')
})
lines.on('close', () => process.exit(0))
