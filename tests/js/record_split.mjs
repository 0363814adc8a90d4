#!/usr/bin/env node
// Two CivicPress editors split an emoji in a record (issue #14, part 2), without a browser.
//
//   node record_split.mjs <ws base url> <record id> <token A> <token B>
//
// A adds a paragraph "Avis 😀 public" through y-prosemirror (updateYFragment, the editor's
// own path); B, once it has it, inserts "é" at UTF-16 offset 6 of that paragraph's text,
// between the emoji's two halves. When both hold the same document, prints one JSON line
// {paragraph, state}: the paragraph's text as the editors' ProseMirror shows it, and A's
// whole state (hex), from which the test computes the Markdown the editors see. Exit 1 on
// failure or an exception on a binary frame; the run stops itself after 30 s.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import { Fragment } from 'prosemirror-model'
import { updateYFragment, yXmlFragmentToProseMirrorRootNode } from 'y-prosemirror'
import { schema } from './prosemirror_schema.mjs'

const [baseUrl, recordId, tokenA, tokenB] = process.argv.slice(2)
if (!tokenB) {
  process.stderr.write('usage: node record_split.mjs <base url> <record id> <token A> <token B>\n')
  process.exit(2)
}
setTimeout(() => { process.stderr.write('timed out\n'); process.exit(1) }, 30000).unref()

// Browsers log and skip the server's JSON control frames; an exception on a binary frame
// is what this test is about.
class BrowserLikeWebSocket extends WebSocket {
  set onmessage (handler) {
    super.onmessage = (event) => {
      if (typeof event.data === 'string') return
      try {
        handler.call(this, event)
      } catch (err) {
        process.stderr.write(`exception on a binary frame: ${err && err.stack}\n`)
        process.exit(1)
      }
    }
  }
}

function open (doc, token) {
  const provider = new WebsocketProvider(`${baseUrl}/records`, recordId, doc, {
    WebSocketPolyfill: BrowserLikeWebSocket,
    protocols: [`auth.${token}`],
    disableBc: true
  })
  return new Promise((resolve) => provider.once('sync', () => resolve(provider)))
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
async function until (pred, what) {
  const deadline = Date.now() + 15000
  while (!pred()) {
    if (Date.now() > deadline) { process.stderr.write(`timed out waiting for ${what}\n`); process.exit(1) }
    await sleep(20)
  }
}

const TYPED = 'Avis 😀 public'
const a = new Y.Doc()
const b = new Y.Doc()
const pa = await open(a, tokenA)
const pb = await open(b, tokenB)
const lastText = (doc) => {
  const fragment = doc.getXmlFragment('default')
  const paragraph = fragment.get(fragment.length - 1)
  return paragraph instanceof Y.XmlElement ? paragraph.get(0) : null
}
const fragment = a.getXmlFragment('default')
const before = yXmlFragmentToProseMirrorRootNode(fragment, schema)
const after = before.copy(before.content.append(Fragment.from(schema.nodes.paragraph.create(null, schema.text(TYPED)))))
a.transact(() => updateYFragment(a, fragment, after, { mapping: new Map(), isOMark: new Map() }), 'editor')

await until(() => lastText(b)?.toString() === TYPED, 'B to receive the paragraph')
lastText(b).insert(6, 'é') // UTF-16 offset 6: between the emoji's halves
const same = () => Buffer.compare(Y.encodeStateVector(a), Y.encodeStateVector(b)) === 0 &&
  a.getXmlFragment('default').toString() === b.getXmlFragment('default').toString()
await until(() => same() && lastText(a).toString().includes('é'), 'A and B to converge')
const shown = yXmlFragmentToProseMirrorRootNode(a.getXmlFragment('default'), schema)
process.stdout.write(JSON.stringify({
  paragraph: shown.lastChild.textContent,
  state: Buffer.from(Y.encodeStateAsUpdate(a)).toString('hex')
}) + '\n')
pa.destroy()
pb.destroy()
process.exit(0)
