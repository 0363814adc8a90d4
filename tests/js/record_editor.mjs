#!/usr/bin/env node
// The CivicPress editor's view of a record room: y-websocket + y-prosemirror + the editor
// schema, without a browser.
//
//   node record_editor.mjs <ws base url, e.g. ws://127.0.0.1:3001/realtime> <record id> <token> <text to add>
//
// Connects with protocols ['auth.<token>'] exactly as the editor does, waits for the sync,
// converts Y.XmlFragment('default') to a ProseMirror document with the editor schema and
// prints one JSON line {types, text} (node type counts and the document's text). Then it
// edits through y-prosemirror's own path (updateYFragment with a new ProseMirror document
// that has one more paragraph), waits until the server has it (a second client sees it),
// and exits 0. Any failure exits 1; the whole run stops itself after 20 s.

import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import { Fragment } from 'prosemirror-model'
import { updateYFragment, yXmlFragmentToProseMirrorRootNode } from 'y-prosemirror'
import { schema } from './prosemirror_schema.mjs'

const [baseUrl, recordId, token, addition] = process.argv.slice(2)
if (!addition) {
  process.stderr.write('usage: node record_editor.mjs <base url> <record id> <token> <text>\n')
  process.exit(2)
}
setTimeout(() => { process.stderr.write('timed out\n'); process.exit(1) }, 20000).unref()

// Browsers log and skip the server's JSON control frames; so do we.
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

function countTypes (node, counts = {}) {
  counts[node.type.name] = (counts[node.type.name] || 0) + 1
  node.forEach((child) => countTypes(child, counts))
  return counts
}

const doc = new Y.Doc()
const provider = await open(doc)
const fragment = doc.getXmlFragment('default')
const before = yXmlFragmentToProseMirrorRootNode(fragment, schema)
before.check()
process.stdout.write(JSON.stringify({ types: countTypes(before), text: before.textContent }) + '\n')

const paragraph = schema.nodes.paragraph.create(null, schema.text(addition))
const after = before.copy(before.content.append(Fragment.from(paragraph)))
doc.transact(() => {
  updateYFragment(doc, fragment, after, { mapping: new Map(), isOMark: new Map() })
}, 'editor')

const watcherDoc = new Y.Doc()
const watcher = await open(watcherDoc)
const deadline = Date.now() + 10000
while (!watcherDoc.getXmlFragment('default').toString().includes(addition)) {
  if (Date.now() > deadline) { process.stderr.write('the edit never reached the server\n'); process.exit(1) }
  await new Promise((resolve) => setTimeout(resolve, 20))
}
provider.destroy()
watcher.destroy()
process.exit(0)
