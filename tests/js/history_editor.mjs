#!/usr/bin/env node
// One editing session on a record, or a live reader, through y-websocket + y-prosemirror,
// for the history test (tests/test_history_interop.py).
//
//   node history_editor.mjs <ws base url> <record id> <token> edit '<json blocks>'
//     Makes the record read as the given blocks ([["heading", "Title"], ["paragraph", "…"]])
//     through y-prosemirror's own path (updateYFragment), waits until a second client sees
//     the result, and exits 0.
//   node history_editor.mjs <ws base url> <record id> <token> watch '<json {"has": [...], "lacks": [...]}>'
//     Connects, prints "synced", then waits until its document's text has every "has" and
//     no "lacks" string (as a connected editor sees a restore arrive), prints the blocks as
//     JSON and exits 0.
// Any failure exits 1; the run stops itself after 30 s.

import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import { updateYFragment, yXmlFragmentToProseMirrorRootNode } from 'y-prosemirror'
import { schema } from './prosemirror_schema.mjs'

const [baseUrl, recordId, token, mode, arg] = process.argv.slice(2)
if (!arg) {
  process.stderr.write('usage: node history_editor.mjs <base url> <record id> <token> edit|watch <json>\n')
  process.exit(2)
}
setTimeout(() => { process.stderr.write('timed out\n'); process.exit(1) }, 30000).unref()

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

function blocksOf (fragment) {
  const root = yXmlFragmentToProseMirrorRootNode(fragment, schema)
  root.check()
  const blocks = []
  root.forEach((node) => blocks.push([node.type.name, node.textContent]))
  return blocks
}

async function until (check, what) {
  const deadline = Date.now() + 20000
  while (!check()) {
    if (Date.now() > deadline) { process.stderr.write(`${what}\n`); process.exit(1) }
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

const doc = new Y.Doc()
const provider = await open(doc)
const fragment = doc.getXmlFragment('default')

if (mode === 'edit') {
  const wanted = JSON.parse(arg)
  const nodes = wanted.map(([type, text]) => type === 'heading'
    ? schema.nodes.heading.create({ level: 1 }, schema.text(text))
    : schema.nodes.paragraph.create(null, schema.text(text)))
  const after = schema.topNodeType.create(null, nodes)
  doc.transact(() => {
    updateYFragment(doc, fragment, after, { mapping: new Map(), isOMark: new Map() })
  }, 'editor')
  const watcherDoc = new Y.Doc()
  const watcher = await open(watcherDoc)
  const expected = JSON.stringify(wanted)
  await until(() => JSON.stringify(blocksOf(watcherDoc.getXmlFragment('default'))) === expected,
    'the edit never reached the server')
  watcher.destroy()
} else if (mode === 'watch') {
  const { has, lacks } = JSON.parse(arg)
  process.stdout.write('synced\n')
  const text = () => blocksOf(fragment).map(([, t]) => t).join('\n')
  await until(() => has.every((s) => text().includes(s)) && !lacks.some((s) => text().includes(s)),
    `never converged: ${text()}`)
  process.stdout.write(JSON.stringify(blocksOf(fragment)) + '\n')
} else {
  process.stderr.write(`unknown mode ${mode}\n`)
  process.exit(2)
}
provider.destroy()
process.exit(0)
