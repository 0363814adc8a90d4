#!/usr/bin/env node
// Server-side edits of a live record, seen by the editor's stack (yjs + y-websocket +
// y-prosemirror + the editor schema).
//
//   node server_edits.mjs <ws base url> <ops url> <admin token> <record id> <token> <record file>
//
// Four editors open the record. A and B go offline and type (A in the paragraph the API
// changes, B in the paragraph the file changes); C stays connected and holds carets
// (Yjs relative positions); D stays connected and keeps typing, a character every few
// milliseconds, at the end of the paragraph that both the API and the file change. Then the
// API changes the content (GET, then PUT with If-Match) and the published file is
// rewritten on disk. C must see both live; A and B reconnect; everyone must converge with
// every change and every typed character kept, and C's carets must not move. Prints one
// JSON line with what it saw; exits 0 when everything held, 1 otherwise (20 s at most).

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
function typeAtEndOf (doc, containing, typed) {
  const before = pm(doc)
  let end = -1
  before.forEach((node, offset) => { if (node.textContent.includes(containing)) end = offset + node.nodeSize - 1 })
  if (end < 0) { process.stderr.write(`no block holds ${containing}\n`); process.exit(1) }
  const state = EditorState.create({ doc: before })
  const after = state.tr.insertText(typed, end).doc
  doc.transact(() => {
    updateYFragment(doc, doc.getXmlFragment('default'), after, { mapping: new Map(), isOMark: new Map() })
  }, 'editor')
}

const docs = { a: new Y.Doc(), b: new Y.Doc(), c: new Y.Doc(), d: new Y.Doc() }
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

// D types live in the opening paragraph (after A's text, once A is back) until told to stop.
let typed = 0
let typing = true
const typist = (async () => {
  while (typing) {
    typeAtEndOf(docs.d, 'est ouverte', '✎')
    typed += 1
    await new Promise((resolve) => setTimeout(resolve, 3))
  }
})()
await until('D has typed a little', () => typed >= 10)

// The API: the Markdown being edited, with two changes (one in A's paragraph).
const headers = { Authorization: `Bearer ${adminToken}` }
const url = `${opsUrl}/admin/rooms/records:${recordId}/content`
const got = await fetch(url, { headers })
const current = await got.text()
await until('D types after the GET', () => typed >= 20)
const wanted = current.replace('19 h 02', '19 h 05').replace("Adopté à l'unanimité", 'Adopté à la majorité')
const put = await fetch(`${url}?actor=civicpress-api`, {
  method: 'PUT',
  headers: { ...headers, 'Content-Type': 'text/markdown', 'If-Match': got.headers.get('etag') },
  body: wanted
})
if (put.status !== 200) { process.stderr.write(`PUT answered ${put.status}: ${await put.text()}\n`); process.exit(1) }
await until('C sees the API edit', () => text(docs.c).includes('19 h 05') && text(docs.c).includes('la majorité'))

// The file on disk: two changes, one in B's paragraph.
const published = readFileSync(recordFile, 'utf8')
writeFileSync(recordFile, published
  .replace('proposé par Paul Roy', 'proposé par le conseiller Paul Roy')
  .replace('Vote enregistré', 'Vote nominal enregistré')
  .replace('La séance est ouverte', 'La séance ordinaire est ouverte'))
await until('C sees the file change', () => ['le conseiller Paul Roy', 'Vote nominal', 'séance ordinaire'].every((part) => text(docs.c).includes(part)))
typing = false
await typist

providers.a.connect()
providers.b.connect()
const expected = ['La séance ordinaire est ouverte à 19 h 05.', '✎', '[A]', 'la majorité', 'le conseiller Paul Roy', "l'ordre du jour : [B]", 'Vote nominal']
const all = () => Object.values(docs).map((doc) => JSON.stringify(pm(doc).toJSON()))
const typedKept = () => (text(docs.c).match(/✎/g) || []).length
await until('everyone converges with every change and every typed character', () => {
  const seen = all()
  return seen.every((json) => json === seen[0]) && expected.every((part) => text(docs.c).includes(part)) && typedKept() === typed
})
pm(docs.c).check()

const moved = carets.filter(({ type, index, rel }) => {
  const abs = Y.createAbsolutePositionFromRelativePosition(rel, docs.c)
  return abs === null || abs.type !== type || abs.index !== index
})
process.stdout.write(JSON.stringify({ text: text(docs.c), carets_moved: moved.length, typed, typed_kept: typedKept() }) + '\n')
for (const provider of Object.values(providers)) provider.destroy()
process.exit(moved.length === 0 ? 0 : 1)
