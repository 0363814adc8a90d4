// The stock y-websocket provider in headless Chromium, against the daemon on its defaults.
//
//   node tests/e2e/stock_provider.mjs --ws ws://127.0.0.1:PORT/realtime --room ID
//        --token-a JWT --token-b JWT [--chromium /usr/bin/chromium]
//
// Bundles yjs and y-websocket from web/demo/node_modules into a bare page (no wrapper around
// the WebSocket, no control subprotocol: what a site embedding the stock provider does),
// opens it in two browser contexts (so BroadcastChannel cannot sync them behind the daemon's
// back), joins both to the same records room as the README does, and has each see the
// other's edit. Any console error or uncaught exception fails the run (a text frame makes
// the stock provider throw). Prints `PASS stock-provider ...` and exits 0, or the failure
// and exits 1; the whole run stops itself after RUN_TIMEOUT_MS.
import { createServer } from 'node:http'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const DEMO = path.resolve(HERE, '../../web/demo')
const requireDemo = createRequire(path.join(DEMO, 'package.json'))
process.env.PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD = '1'
const { chromium } = requireDemo('playwright-core')
const esbuild = requireDemo('esbuild')

const RUN_TIMEOUT_MS = 60_000
const WAIT_MS = 15_000
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'
]

const { values: opts } = parseArgs({
  options: {
    ws: { type: 'string' },
    room: { type: 'string' },
    'token-a': { type: 'string' },
    'token-b': { type: 'string' },
    chromium: { type: 'string', default: '/usr/bin/chromium' }
  }
})
if (!opts.ws || !opts.room || !opts['token-a'] || !opts['token-b']) {
  console.error('usage: stock_provider.mjs --ws URL --room ID --token-a JWT --token-b JWT')
  process.exit(2)
}

class Failure extends Error {}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function until (what, fn) {
  const deadline = Date.now() + WAIT_MS
  for (;;) {
    if (await fn()) return
    if (Date.now() > deadline) throw new Failure(`timed out after ${WAIT_MS} ms waiting for ${what}`)
    await sleep(50)
  }
}

const bundle = await esbuild.build({
  stdin: {
    contents: "import * as Y from 'yjs'\nimport { WebsocketProvider } from 'y-websocket'\n" +
      'window.Y = Y\nwindow.WebsocketProvider = WebsocketProvider\n',
    resolveDir: DEMO,
    loader: 'js'
  },
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: 'es2020',
  write: false,
  logLevel: 'warning'
})
const page = `<!doctype html><meta charset="utf-8"><title>stock provider</title>
<script>${bundle.outputFiles[0].text.replaceAll('</script', '<\\/script')}</script>`

// Served from loopback like the demo page: Chromium's local network access checks keep a page
// of another address space (a routed or public one) from opening a loopback WebSocket.
const server = createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
  res.end(page)
})
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
const PAGE = `http://127.0.0.1:${server.address().port}/`

const problems = [] // console errors and uncaught exceptions, from both pages

async function open (browser, name, token) {
  const context = await browser.newContext()
  const tab = await context.newPage()
  tab.setDefaultTimeout(WAIT_MS)
  tab.on('pageerror', (err) => problems.push(`${name} uncaught: ${err.message}`))
  tab.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`${name} console.error: ${msg.text()}`)
  })
  await tab.goto(PAGE)
  await tab.evaluate(({ ws, room, token }) => {
    const { Y, WebsocketProvider } = window
    const ydoc = new Y.Doc()
    window.ydoc = ydoc
    window.textFrames = 0
    // README.md, "point a y-websocket client at the daemon", with this run's URL and room.
    window.provider = new WebsocketProvider(`${ws}/records`, room, ydoc, {
      protocols: [`auth.${token}`]
    })
    window.provider.on('status', ({ status }) => {
      if (status !== 'connected') return
      window.provider.ws.addEventListener('message', (event) => {
        if (typeof event.data === 'string') window.textFrames++
      })
    })
  }, { ws: opts.ws, room: opts.room, token })
  await until(`${name} to sync`, () => tab.evaluate(() => window.provider.synced === true))
  return { name, tab, context }
}

const text = (who) => who.tab.evaluate(() => window.ydoc.getText('text').toString())
const insert = (who, words) => who.tab.evaluate((w) => {
  const t = window.ydoc.getText('text')
  t.insert(t.length, w)
}, words)

const stopper = setTimeout(() => {
  console.error(`FAIL stock-provider: the run took over ${RUN_TIMEOUT_MS} ms`)
  process.exit(1)
}, RUN_TIMEOUT_MS)

const browser = await chromium.launch({ executablePath: opts.chromium, args: CHROMIUM_ARGS })
let code = 1
try {
  const ada = await open(browser, 'ada', opts['token-a'])
  const grace = await open(browser, 'grace', opts['token-b'])
  await insert(ada, 'Ada writes. ')
  await until("Ada's edit at Grace's", async () => (await text(grace)).includes('Ada writes. '))
  await insert(grace, 'Grace answers.')
  await until("Grace's edit at Ada's", async () => (await text(ada)).includes('Grace answers.'))
  const [a, b] = [await text(ada), await text(grace)]
  if (a !== b) throw new Failure(`the pages differ: ${JSON.stringify(a)} / ${JSON.stringify(b)}`)
  const frames = {
    ada: await ada.tab.evaluate(() => window.textFrames),
    grace: await grace.tab.evaluate(() => window.textFrames)
  }
  const protocol = await ada.tab.evaluate(() => window.provider.ws.protocol)
  for (const who of [ada, grace]) await who.tab.evaluate(() => window.provider.destroy())
  if (frames.ada || frames.grace) throw new Failure(`text frames reached the pages: ${JSON.stringify(frames)}`)
  if (problems.length) throw new Failure(`errors in the pages:\n  ${problems.join('\n  ')}`)
  console.log(`PASS stock-provider text=${JSON.stringify(a)} subprotocol=${protocol.slice(0, 5)}…`)
  code = 0
} catch (err) {
  console.error(`FAIL stock-provider: ${err instanceof Failure ? err.message : err.stack}`)
  if (problems.length) console.error(`page errors:\n  ${problems.join('\n  ')}`)
} finally {
  await browser.close()
  server.close()
  clearTimeout(stopper)
}
process.exit(code)
