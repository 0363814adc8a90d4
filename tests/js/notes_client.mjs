#!/usr/bin/env node
// A plain Yjs client of a `notes` room (the example plugin room type, examples/notes).
//
//   node notes_client.mjs <ws base url, e.g. ws://127.0.0.1:3001/realtime> <room id> <token> <text to add>
//
// Connects to <base>/notes/<room id> with y-websocket and protocols ['auth.<token>'],
// waits for the sync and prints one JSON line {text} (the Y.Text 'content' as served).
// Then it appends the text, waits until the server has it (a second client sees it), and
// exits 0. Any failure exits 1; the whole run stops itself after 20 s.

import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

const [baseUrl, roomId, token, addition] = process.argv.slice(2)
if (!addition) {
  process.stderr.write('usage: node notes_client.mjs <base url> <room id> <token> <text>\n')
  process.exit(2)
}
setTimeout(() => { process.stderr.write('timed out\n'); process.exit(1) }, 20000).unref()

// The server's JSON control frames are for CivicPress's editor; skip them as browsers do.
class BinaryOnlyWebSocket extends WebSocket {
  set onmessage (handler) {
    super.onmessage = (event) => { if (typeof event.data !== 'string') handler.call(this, event) }
  }
}

function open (doc) {
  const provider = new WebsocketProvider(`${baseUrl}/notes`, roomId, doc, {
    WebSocketPolyfill: BinaryOnlyWebSocket,
    protocols: [`auth.${token}`],
    disableBc: true
  })
  // A close by the server (a refused token, a missing permission) fails the run at once;
  // `event` is null when we close ourselves (destroy).
  provider.on('connection-close', (event) => {
    if (event == null) return
    process.stderr.write(`closed by the server: ${event.code} ${event.reason}\n`)
    process.exit(1)
  })
  return new Promise((resolve) => provider.once('sync', () => resolve(provider)))
}

const doc = new Y.Doc()
const provider = await open(doc)
const text = doc.getText('content')
process.stdout.write(JSON.stringify({ text: text.toString() }) + '\n')
text.insert(text.length, addition)

const watcherDoc = new Y.Doc()
const watcher = await open(watcherDoc)
const deadline = Date.now() + 10000
while (!watcherDoc.getText('content').toString().includes(addition)) {
  if (Date.now() > deadline) { process.stderr.write('the edit never reached the server\n'); process.exit(1) }
  await new Promise((resolve) => setTimeout(resolve, 20))
}
provider.destroy()
watcher.destroy()
process.exit(0)
