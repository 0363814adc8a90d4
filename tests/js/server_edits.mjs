#!/usr/bin/env node
// Server-side edits of a live record, seen by the editor's stack (yjs + y-websocket +
// y-prosemirror + the editor schema).
//
//   node server_edits.mjs <ws base url> <ops url> <admin token> <record id> <token> <record file>
//
// Three editors open the record. A and B go offline and type (A in the paragraph the API
// changes, B in the paragraph the file changes); C stays connected and holds carets
// (Yjs relative positions). Then the API replaces the content (PUT .../content) and the
// published file is rewritten on disk. C must see both live; A and B reconnect; everyone
// must converge with every change kept, and C's carets must not move. Prints one JSON line
// with what it saw; exits 0 when everything held, 1 otherwise (20 s at most).

import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import { readFileSync, writeFileSync } from 'node:fs'
import { EditorState } from 'prosemirror-state'
import { updateYFragment, yXmlFragmentToProseMirrorRootNode } from 'y-prosemirror'
import { schema } from './prosemirror_schema.mjs'

const [baseUrl, opsUrl, adminToken, recordId, token, recordFile] = process.argv.slice(2)
if (!recordFile) {
  process.stderr.write('usage: node server_edits.mjs <ws> <ops> <admin token> <id> <token> <file>\n')
  process.exit(2)
}
setTimeout(() => { process.stderr.write('timed out\n'); process.exit(1) }, 20000).unref()

class BrowserLikeWebSocket extends WebSocket {
  set onmessage (handler) {
    super.onmessage = (event) => { if (typeof event.data !== 'string') handler.call(this, event) }
  }
}

function open (doc) {
  const provider = new WebsocketProvider(`${baseUrl}/records`, recordId, doc, {
    WebSocketPolyfill: BrowserLikeWebSocket,
    protocols: [`auth.${token}`],
    disableBc: true
  })
  return new Promise((resolve) => provider.once('sync', () => resolve(provider)))
}

async function until (what, predicate) {
  const deadline = Date.now() + 10000
  while (!predicate()) {
    if (Date.now() > deadline) { process.stderr.write(`never: ${what}\n`); process.exit(1) }
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

const pm = (doc) => yXmlFragmentToProseMirrorRootNode(doc.getXmlFragment('default'), schema)
const text = (doc) => pm(doc).textContent

function blockIndex (doc, startsWith) {
  let found = -1
  pm(doc).forEach((node, _offset, index) => { if (node.textContent.startsWith(startsWith)) found = index })
  if (found < 0) { process.stderr.write(`no block starts with ${startsWith}\n`); process.exit(1) }
  return found
}

// Typing as the editor does: a ProseMirror transaction, written back by y-prosemirror.
function typeAtEndOf (doc, startsWith, typed) {
  const before = pm(doc)
  let end = -1
  before.forEach((node, offset) => { if (node.textContent.startsWith(startsWith)) end = offset + node.nodeSize - 1 })
  const state = EditorState.create({ doc: before })
  const after = state.tr.insertText(typed, end).doc
  doc.transact(() => {
    updateYFragment(doc, doc.getXmlFragment('default'), after, { mapping: new Map(), isOMark: new Map() })
  }, 'editor')
}

const docs = { a: new Y.Doc(), b: new Y.Doc(), c: new Y.Doc() }
const providers = {}
for (const [name, doc] of Object.entries(docs)) providers[name] = await open(doc)

// C's carets: in a block nobody changes, and in the changed paragraph before the change.
const cFragment = docs.c.getXmlFragment('default')
const heading = cFragment.get(blockIndex(docs.c, 'Procès-verbal')).get(0)
const opening = cFragment.get(blockIndex(docs.c, 'La séance est ouverte')).get(0)
const carets = [
  { type: heading, index: 5, rel: Y.createRelativePositionFromTypeIndex(heading, 5) },
  { type: opening, index: 3, rel: Y.createRelativePositionFromTypeIndex(opening, 3) }
]

providers.a.disconnect()
providers.b.disconnect()
typeAtEndOf(docs.a, 'La séance est ouverte', ' [A]')
typeAtEndOf(docs.b, 'Il est proposé', ' [B]')

// The API: the Markdown being edited, with two changes (one in A's paragraph).
const headers = { Authorization: `Bearer ${adminToken}` }
const url = `${opsUrl}/admin/rooms/records:${recordId}/content`
const current = await (await fetch(url, { headers })).text()
const wanted = current.replace('19 h 02', '19 h 05').replace("Adopté à l'unanimité", 'Adopté à la majorité')
const put = await fetch(`${url}?actor=civicpress-api`, {
  method: 'PUT', headers: { ...headers, 'Content-Type': 'text/markdown' }, body: wanted
})
if (put.status !== 200) { process.stderr.write(`PUT answered ${put.status}: ${await put.text()}\n`); process.exit(1) }
await until('C sees the API edit', () => text(docs.c).includes('19 h 05') && text(docs.c).includes('la majorité'))

// The file on disk: two changes, one in B's paragraph.
const published = readFileSync(recordFile, 'utf8')
writeFileSync(recordFile, published.replace('proposé par Paul Roy', 'proposé par le conseiller Paul Roy').replace('Vote enregistré', 'Vote nominal enregistré'))
await until('C sees the file change', () => text(docs.c).includes('le conseiller Paul Roy') && text(docs.c).includes('Vote nominal'))

providers.a.connect()
providers.b.connect()
const expected = ['19 h 05', '19 h 05. [A]', 'la majorité', 'le conseiller Paul Roy', "l'ordre du jour : [B]", 'Vote nominal']
const all = () => Object.values(docs).map((doc) => JSON.stringify(pm(doc).toJSON()))
await until('everyone converges with every change', () => {
  const seen = all()
  return seen.every((json) => json === seen[0]) && expected.every((part) => text(docs.c).includes(part))
})
pm(docs.c).check()

const moved = carets.filter(({ type, index, rel }) => {
  const abs = Y.createAbsolutePositionFromRelativePosition(rel, docs.c)
  return abs === null || abs.type !== type || abs.index !== index
})
process.stdout.write(JSON.stringify({ text: text(docs.c), carets_moved: moved.length }) + '\n')
for (const provider of Object.values(providers)) provider.destroy()
process.exit(moved.length === 0 ? 0 : 1)
