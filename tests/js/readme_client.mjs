// The README's client example under Node, against a daemon on its embedded defaults.
//
//   node tests/js/readme_client.mjs PORT TOKEN MINE THEIRS
//
// Joins room records:abc123 with the README's snippet, inserts MINE once synced, and waits
// until the shared text also holds THEIRS (typed by a second process running this script:
// two processes, so lib0's in-process BroadcastChannel cannot sync them behind the daemon's
// back). It fails (exit 1) on any uncaught exception, unhandled rejection, console.error,
// connection error or close it did not ask for, and after DEADLINE_MS. Prints one JSON
// summary line. Driven by tests/test_stock_clients.py.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

const DEADLINE_MS = 20_000
const [port, token, mine, theirs] = process.argv.slice(2)
if (!port || !token || !mine || !theirs) {
  process.stderr.write('usage: readme_client.mjs PORT TOKEN MINE THEIRS\n')
  process.exit(2)
}

const problems = []
const consoleError = console.error
console.error = (...args) => {
  problems.push(`console.error: ${args.map((a) => (a && a.stack) || String(a)).join(' ')}`)
  consoleError(...args)
}
// Recorded rather than fatal, so the summary says what happened; any of them fails the run.
process.on('uncaughtException', (err) => {
  problems.push(`uncaught exception: ${(err && err.stack) || err}`)
  finish()
})
process.on('unhandledRejection', (err) => {
  problems.push(`unhandled rejection: ${(err && err.stack) || err}`)
  finish()
})

const ydoc = new Y.Doc()

// README.md, "point a y-websocket client at the daemon", verbatim apart from the port, the
// token, and the WebSocket class Node 20 needs (it has no global WebSocket).
const provider = new WebsocketProvider(`ws://localhost:${port}/realtime/records`, 'abc123', ydoc, {
  protocols: [`auth.${token}`],
  WebSocketPolyfill: WebSocket,
})

const text = ydoc.getText('text')
let finished = false
const frames = { text: 0, binary: 0 }
let subprotocol = null

provider.on('status', ({ status }) => {
  if (status === 'connected' && provider.ws) {
    subprotocol = provider.ws.protocol
    provider.ws.addEventListener('message', (event) => {
      frames[typeof event.data === 'string' ? 'text' : 'binary']++
    })
  }
})
provider.on('connection-error', (event) => {
  problems.push(`connection-error: ${(event && event.message) || event}`)
})
provider.on('connection-close', (event) => {
  // null when the provider closed the socket itself (destroy)
  if (event !== null && !finished) {
    problems.push(`connection-close: code=${event.code} reason=${JSON.stringify(event.reason)}`)
  }
})
provider.on('sync', (synced) => {
  if (synced && !text.toString().includes(mine)) text.insert(text.length, mine)
})
text.observe(() => {
  // Not from inside the transaction: the provider sends our own edit on the document's
  // 'update' event, which comes after the observers; destroying it now would lose the edit.
  if (text.toString().includes(mine) && text.toString().includes(theirs)) setImmediate(finish)
})
const deadline = setTimeout(() => {
  problems.push(`timed out after ${DEADLINE_MS} ms; text is ${JSON.stringify(text.toString())}`)
  finish()
}, DEADLINE_MS)

// Whatever ends the process (a clean exit, or an event loop that ran dry), the summary and
// the exit code say what happened.
process.on('exit', () => {
  if (!finished) problems.push('the process ended before the run finished')
  process.stdout.write(JSON.stringify({
    ok: problems.length === 0,
    text: text.toString(),
    subprotocol,
    frames,
    problems
  }) + '\n')
  process.exitCode = problems.length === 0 ? 0 : 1
})

function finish () {
  if (finished) return
  finished = true
  clearTimeout(deadline)
  const ws = provider.ws
  provider.destroy()
  ydoc.destroy()
  // Exit once the closing handshake is done: our own edit went out before the close frame.
  if (ws && ws.readyState !== WebSocket.CLOSED) {
    const fallback = setTimeout(() => {
      problems.push('the socket did not close within 5 s of destroy()')
      process.exit()
    }, 5000)
    ws.addEventListener('close', () => {
      clearTimeout(fallback)
      process.exit()
    })
  } else {
    process.exit()
  }
}
