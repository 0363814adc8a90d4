// End-to-end scenarios for the demo page, in headless Chromium driven by playwright-core.
//
//   node tests/e2e/demo_e2e.mjs --base http://127.0.0.1:PORT/demo/ --scenario NAME
//        [--daemon-pid PID] [--screenshot OUT.png] [--record ID] [--chromium /usr/bin/chromium]
//
// Scenarios: converge, carets, offline, viewer, saved (which runs --fail-cmd and --recover-cmd,
// JSON arrays of argv, to make the store fail and recover), kill (SIGKILL to --daemon-pid; the
// test restarts the daemon), history, shutdown (which sends SIGTERM to --daemon-pid).
// Prints `PASS <scenario> ...` and exits 0, or prints the failure and exits 1. Every wait has
// a deadline and the whole run stops itself after RUN_TIMEOUT_MS. playwright-core comes from
// web/demo/node_modules (devDependency) and never downloads a browser: it runs the system's.
import { execFileSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const requireDemo = createRequire(path.resolve(HERE, '../../web/demo/package.json'))
process.env.PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD = '1'
const { chromium } = requireDemo('playwright-core')

const RUN_TIMEOUT_MS = 90_000
const WAIT_MS = 15_000
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'
]

const { values: opts } = parseArgs({
  options: {
    base: { type: 'string' },
    scenario: { type: 'string' },
    'daemon-pid': { type: 'string' },
    screenshot: { type: 'string' },
    record: { type: 'string' },
    'fail-cmd': { type: 'string' },
    'recover-cmd': { type: 'string' },
    chromium: { type: 'string', default: '/usr/bin/chromium' }
  }
})
if (!opts.base || !opts.scenario) {
  console.error('usage: demo_e2e.mjs --base URL --scenario NAME [--daemon-pid PID] [--screenshot PNG]')
  process.exit(2)
}

class Failure extends Error {}
const check = (cond, message) => { if (!cond) throw new Failure(message) }
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const record = opts.record ?? `e2e-${opts.scenario}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`

/** Poll `fn` until it returns a truthy value; fail with `what` (and the last value) after `ms`. */
async function until (what, fn, ms = WAIT_MS) {
  const deadline = Date.now() + ms
  let last
  for (;;) {
    last = await fn()
    if (last) return last
    if (Date.now() > deadline) throw new Failure(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(50)
  }
}

const pageErrors = [] // uncaught exceptions and console errors: they fail the scenario
const pageNoise = []

/** A fresh browser context (own storage, own WebSockets) with the page joined to `room`. */
async function join (browser, { name, role = 'editor', room = record, viewport = { width: 720, height: 600 } }) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 })
  const page = await context.newPage()
  page.setDefaultTimeout(WAIT_MS)
  page.on('pageerror', (err) => pageErrors.push(`${name} uncaught: ${err.message}`))
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return
    // Reconnect attempts while the daemon is down are expected (shutdown scenario).
    // So is the History panel's 404 before the record's first version closes.
    const expected = /^WebSocket connection to .* failed/.test(msg.text()) ||
      (opts.scenario === 'history' && /status of 404/.test(msg.text()))
    ;(expected ? pageNoise : pageErrors).push(`${name} console: ${msg.text()}`)
  })
  await page.goto(`${opts.base}?record=${encodeURIComponent(room)}`)
  await page.getByLabel('Your name').fill(name)
  const radio = { editor: /Editor/, clerk: /Clerk/, public: /Viewer/ }[role]
  await page.getByRole('radio', { name: radio }).check()
  await page.getByRole('button', { name: 'Join' }).click()
  await page.waitForSelector('#status[data-state="connected"]')
  await until(`${name} to sync`, () => page.evaluate(() => window.civicDemo.provider?.synced === true))
  // The page asked for the daemon's control frames, and the 101 said it was understood.
  const protocol = await page.evaluate(() => window.civicDemo.provider?.ws?.protocol)
  check(protocol === 'civicrealtime.control.v1', `${name}'s socket selected ${JSON.stringify(protocol)}`)
  return { name, page, context }
}

const text = (who) => who.page.evaluate(() => window.civicDemo.text())
const paragraphs = (who) => who.page.evaluate(() => window.civicDemo.paragraphs())
const badge = (who) => who.page.locator('#status').textContent()
const editor = (who) => who.page.locator('#editor .ProseMirror')

/** Put the caret at the end of top-level block `index` (-1: the last one). */
const caretTo = (who, index = -1) => who.page.evaluate((i) => window.civicDemo.caretToEndOfBlock(i), index)

/** Type at the end of the document like a person (one key event per character). */
async function typeAtEnd (who, words, delay = 15) {
  await caretTo(who, -1)
  await who.page.keyboard.type(words, { delay })
}

/** Both pages hold the same text and the same number of paragraphs, and contain `needles`. */
async function converged (a, b, needles, ms = WAIT_MS) {
  return until(`${a.name} and ${b.name} to converge on ${JSON.stringify(needles)}`, async () => {
    const [ta, tb, pa, pb] = await Promise.all([text(a), text(b), paragraphs(a), paragraphs(b)])
    const ok = ta === tb && pa === pb && needles.every((n) => ta.includes(n))
    return ok && { text: ta, paragraphs: pa }
  }, ms).catch(async (err) => {
    throw new Failure(`${err.message}\n  ${a.name}: ${JSON.stringify(await text(a))}\n  ${b.name}: ${JSON.stringify(await text(b))}`)
  })
}

// ---------------------------------------------------------------------------------------------

const scenarios = {
  // (a) Two editors type at the same time into the same record and converge.
  async converge (browser) {
    const ada = await join(browser, { name: 'Ada' })
    const grace = await join(browser, { name: 'Grace' })
    // Two paragraphs to start from, then each types into their own one at the same time
    // (typing at the very same position converges too, but interleaves the letters).
    await editor(ada).click()
    await typeAtEnd(ada, 'Minutes:')
    await ada.page.keyboard.press('Enter')
    await typeAtEnd(ada, 'Budget:')
    await converged(ada, grace, ['Minutes:', 'Budget:'])
    await editor(grace).click()
    await Promise.all([caretTo(ada, 0), caretTo(grace, 1)])
    const adaWords = ' Ada types the first line of the minutes.'
    const graceWords = ' Grace adds the budget figures at once.'
    await Promise.all([
      ada.page.keyboard.type(adaWords, { delay: 15 }),
      grace.page.keyboard.type(graceWords, { delay: 15 })
    ])
    await Promise.all([ada.page.keyboard.press('Enter'), grace.page.keyboard.press('Enter')])
    await Promise.all([
      ada.page.keyboard.type('Ada again.', { delay: 15 }),
      grace.page.keyboard.type('Grace again.', { delay: 15 })
    ])
    const result = await converged(ada, grace, [
      `Minutes:${adaWords}\nAda again.`, `Budget:${graceWords}\nGrace again.`
    ])
    check(result.paragraphs === 4, `expected 4 paragraphs, got ${result.paragraphs}`)
    // Same Yjs state on both sides, not only the same rendering.
    const [ya, yg] = await Promise.all([ada, grace].map((w) => w.page.evaluate(
      () => window.civicDemo.ydoc.getXmlFragment('default').toString())))
    check(ya === yg, `the Yjs fragments differ:\n  Ada:   ${ya}\n  Grace: ${yg}`)
    return `paragraphs=${result.paragraphs} text=${JSON.stringify(result.text)}`
  },

  // (b) Each page shows the other's caret labelled with the other's name; screenshot both.
  async carets (browser) {
    const ada = await join(browser, { name: 'Ada' })
    await editor(ada).click()
    await ada.page.getByRole('button', { name: 'Heading 1' }).click()
    await typeAtEnd(ada, 'Council budget 2026')
    await ada.page.keyboard.press('Enter')
    await typeAtEnd(ada, 'Parks: the maintenance line grows by 4 %. ')
    const grace = await join(browser, { name: 'Grace' })
    await until('Grace to see the heading', async () => (await text(grace)).includes('Council budget 2026'))
    await editor(grace).click()
    await caretTo(grace, -1)
    await grace.page.keyboard.press('Enter')
    await grace.page.getByRole('button', { name: 'Bold' }).click()
    await grace.page.keyboard.type('Library: ', { delay: 15 })
    await grace.page.getByRole('button', { name: 'Bold' }).click()
    await grace.page.keyboard.type('opening hours extended on Saturdays.', { delay: 15 })
    await ada.page.keyboard.type('Agreed.', { delay: 15 })
    const { text: final } = await converged(ada, grace, ['Agreed.', 'Saturdays.'])
    const expected = 'Council budget 2026\nParks: the maintenance line grows by 4 %. Agreed.\nLibrary: opening hours extended on Saturdays.'
    check(final === expected, `unexpected document ${JSON.stringify(final)}`)
    for (const [who, other] of [[ada, grace], [grace, ada]]) {
      const caret = who.page.locator('.ProseMirror-yjs-cursor', { hasText: other.name })
      await caret.first().waitFor({ state: 'visible', timeout: WAIT_MS }).catch(() => {
        throw new Failure(`${who.name}'s page shows no caret labelled ${other.name}`)
      })
      const own = await who.page.locator('.ProseMirror-yjs-cursor', { hasText: who.name }).count()
      check(own === 0, `${who.name}'s page shows its own caret`)
      const people = await who.page.locator('#people').textContent()
      check(people.includes(other.name), `${who.name}'s presence list lacks ${other.name}: ${people}`)
    }
    if (opts.screenshot) await sideBySide([ada, grace], opts.screenshot)
    return `carets ok${opts.screenshot ? `; screenshot ${opts.screenshot}` : ''}`
  },

  // (c) One page goes offline, both keep typing, it comes back: both texts everywhere.
  async offline (browser) {
    const ada = await join(browser, { name: 'Ada' })
    const grace = await join(browser, { name: 'Grace' })
    await editor(ada).click()
    await typeAtEnd(ada, 'Shared start. ')
    await converged(ada, grace, ['Shared start.'])
    await grace.page.getByRole('button', { name: 'Go offline' }).click()
    await grace.page.waitForSelector('#status[data-state="offline"]')
    check(await badge(grace) === 'disconnected', `offline badge says ${await badge(grace)}`)
    await editor(grace).click()
    await Promise.all([
      typeAtEnd(grace, 'Grace wrote this offline. '),
      typeAtEnd(ada, 'Ada wrote this meanwhile. ')
    ])
    await sleep(500)
    check(!(await text(ada)).includes('offline'), "Ada got Grace's offline text while Grace was offline")
    check(!(await text(grace)).includes('meanwhile'), "offline Grace got Ada's text")
    await grace.page.getByRole('button', { name: 'Reconnect' }).click()
    await grace.page.waitForSelector('#status[data-state="connected"]')
    const result = await converged(ada, grace, ['Shared start.', 'Grace wrote this offline.', 'Ada wrote this meanwhile.'])
    return `converged after reconnect: ${JSON.stringify(result.text)}`
  },

  // (d) A viewer's keystrokes (and even a forced local edit) never reach an editor.
  async viewer (browser) {
    const ada = await join(browser, { name: 'Ada' })
    const vera = await join(browser, { name: 'Vera', role: 'public' })
    const banner = vera.page.locator('#readonly-banner')
    check(await banner.isVisible(), 'the viewer shows no read-only banner')
    check((await banner.textContent()).includes('read-only'), 'the banner does not say read-only')
    check(await editor(vera).getAttribute('contenteditable') === 'false', 'the viewer editor is editable')
    check(!(await ada.page.locator('#readonly-banner').isVisible()), 'the editor shows the read-only banner')
    await editor(ada).click()
    await typeAtEnd(ada, 'Editor text. ')
    await until('Vera to see the editor text', async () => (await text(vera)).includes('Editor text.'))
    await editor(vera).click()
    await vera.page.keyboard.type('VIEWER-KEYS', { delay: 10 })
    await vera.page.keyboard.press('Enter')
    check(!(await text(vera)).includes('VIEWER-KEYS'), 'the viewer editor took keystrokes')
    // Bypass the read-only view: the daemon must refuse the change, not only the page.
    await vera.page.evaluate(() => {
      const { view } = window.civicDemo
      view.dispatch(view.state.tr.insertText('VIEWER-FORCED', 1))
    })
    await until('the PERMISSION_DENIED notice', () => vera.page.locator('#notice').isVisible())
    await typeAtEnd(ada, 'MARKER-FROM-EDITOR')
    await until('Vera to see the marker', async () => (await text(vera)).includes('MARKER-FROM-EDITOR'))
    await sleep(300)
    const adaText = await text(ada)
    check(!/VIEWER-(KEYS|FORCED)/.test(adaText), `viewer text reached the editor: ${JSON.stringify(adaText)}`)
    return `editor text ${JSON.stringify(adaText)}`
  },

  // (f) "Saved" means durable: Saving… then Saved; while the store refuses writes, "Not saved";
  // after it recovers, Saved again, and a fresh page holds everything typed.
  async saved (browser) {
    const run = (option) => {
      const argv = JSON.parse(opts[option] ?? 'null')
      check(Array.isArray(argv) && argv.length > 0, `saved needs --${option}`)
      execFileSync(argv[0], argv.slice(1), { stdio: 'inherit', timeout: 20000 })
    }
    const ada = await join(browser, { name: 'Ada' })
    const indicator = ada.page.locator('#saved')
    const shown = () => indicator.textContent()
    await until('the indicator to say Saved', async () => (await shown()) === 'Saved')
    // Every text the indicator shows, in order (transitions can be quicker than a poll).
    await ada.page.evaluate(() => {
      const el = document.getElementById('saved')
      window.savedSeen = [el.textContent]
      new MutationObserver(() => window.savedSeen.push(el.textContent)).observe(el, { childList: true, characterData: true, subtree: true })
    })
    await editor(ada).click()
    await typeAtEnd(ada, 'Durable words.')
    await until('Saved after typing', async () => (await shown()) === 'Saved')
    let seen = await ada.page.evaluate(() => window.savedSeen)
    check(seen.some((t) => /^Saving… \d+ s$/.test(t)), `never showed Saving…: ${JSON.stringify(seen)}`)
    run('fail-cmd')
    await typeAtEnd(ada, ' Typed while the disk fails.')
    await until('Not saved while the store fails', async () => (await shown()) === 'Not saved: the server cannot store changes')
    await sleep(500)
    check((await shown()) !== 'Saved', 'showed Saved while the store refused every write')
    run('recover-cmd')
    await until('Saved after the store recovered', async () => (await shown()) === 'Saved', 30_000)
    seen = await ada.page.evaluate(() => window.savedSeen)
    const grace = await join(browser, { name: 'Grace' })
    const graceText = await text(grace)
    check(graceText.includes('Durable words.') && graceText.includes('Typed while the disk fails.'), `fresh page text ${JSON.stringify(graceText)}`)
    return `indicator: ${JSON.stringify([...new Set(seen.map((t) => t.replace(/\d+ s$/, 'N s')))])}`
  },

  // (g) "Saved" stays true through kill -9 of the daemon (--daemon-pid; the test restarts it
  // on the same store and ports): what the page called saved is there after the restart, and
  // what was typed as it died comes back from the page itself and is saved then.
  async kill (browser) {
    const pid = Number(opts['daemon-pid'])
    check(Number.isInteger(pid) && pid > 0, 'kill needs --daemon-pid')
    const ada = await join(browser, { name: 'Ada' })
    const shown = () => ada.page.locator('#saved').textContent()
    await editor(ada).click()
    await typeAtEnd(ada, 'Saved before the kill.')
    await until('Saved before the kill', async () => (await shown()) === 'Saved')
    await typeAtEnd(ada, ' Typed as it dies.', 0)
    const atKill = await shown()
    const typed = await text(ada)
    process.kill(pid, 'SIGKILL')
    await until('the indicator to say offline', async () => (await shown()).startsWith('Offline'))
    // Ada stays away until Grace has read the store: only what the store kept is checked.
    await ada.page.getByRole('button', { name: 'Go offline' }).click()
    await until('the daemon to be back', () => fetch(opts.base).then((r) => r.ok, () => false), 60_000)
    const grace = await join(browser, { name: 'Grace' })
    const stored = await text(grace)
    check(stored.includes('Saved before the kill.'), `lost what was shown as saved: ${JSON.stringify(stored)}`)
    if (atKill === 'Saved') check(stored === typed, `shown as saved at the kill, but the store has ${JSON.stringify(stored)} of ${JSON.stringify(typed)}`)
    await ada.page.getByRole('button', { name: 'Reconnect' }).click()
    await until('Saved after reconnecting', async () => (await shown()) === 'Saved', 30_000)
    await until('Grace to get what Ada typed as the daemon died', async () => (await text(grace)).includes('Typed as it dies.'))
    return `at the kill the page showed ${JSON.stringify(atKill)}; the store then held ${JSON.stringify(stored)}; after reconnecting "Saved"`
  },

  // (h) A clerk sees the versions with their authors, compares two, and restores the first:
  // the editor's page loses the bad edit at once. An editor has no History panel.
  async history (browser) {
    const ada = await join(browser, { name: 'Ada', role: 'clerk' })
    const grace = await join(browser, { name: 'Grace' })
    check(!(await grace.page.locator('#history-panel').isVisible()), 'an editor sees the History panel')
    const rows = () => ada.page.locator('#versions tbody tr')
    const versions = (count) => until(`${count} version(s) in the History panel`, async () => {
      await ada.page.evaluate(() => window.civicDemo.loadHistory())
      return (await rows().count()) >= count
    })
    await editor(ada).click()
    await typeAtEnd(ada, 'Clerk text.')
    await converged(ada, grace, ['Clerk text.'])
    await versions(1)
    await editor(grace).click()
    await typeAtEnd(grace, ' BAD EDIT')
    await converged(ada, grace, ['BAD EDIT'])
    await versions(2)
    const newest = await rows().first().textContent()
    check(newest.includes('Grace'), `the newest version does not name Grace: ${newest}`)
    for (const box of await ada.page.locator('#versions input[type=checkbox]').all()) await box.check()
    await ada.page.getByRole('button', { name: 'Compare selected' }).click()
    await until('the diff to show the bad edit', async () =>
      (await ada.page.locator('#diff').textContent()).includes('BAD EDIT'))
    await rows().last().getByRole('button', { name: 'Restore' }).click()
    await until('the restore to reach both pages', async () =>
      !(await text(ada)).includes('BAD EDIT') && !(await text(grace)).includes('BAD EDIT'))
    const after = await converged(ada, grace, ['Clerk text.'])
    return `restored for both: ${JSON.stringify(after.text)}`
  },

  // (e) The badge says connected, then "reconnecting" (4503) when the daemon gets SIGTERM.
  async shutdown (browser) {
    const pid = Number(opts['daemon-pid'])
    check(Number.isInteger(pid) && pid > 0, 'shutdown needs --daemon-pid')
    const ada = await join(browser, { name: 'Ada' })
    check(await badge(ada) === 'connected', `badge says ${await badge(ada)}`)
    process.kill(pid, 'SIGTERM')
    await until('the badge to say reconnecting', async () => (await badge(ada)) === 'reconnecting')
    const code = await ada.page.locator('#status').getAttribute('data-code')
    check(code === '4503', `the badge's close code is ${code}, expected 4503`)
    // Reconnect attempts now fail (nothing listens): the message must stay.
    await sleep(1500)
    check(await badge(ada) === 'reconnecting', `after failed reconnects the badge says ${await badge(ada)}`)
    return 'connected -> reconnecting (4503)'
  }
}

/** Screenshot each page and compose them side by side into one PNG. */
async function sideBySide (people, out) {
  const shots = []
  for (const who of people) {
    await who.page.mouse.move(0, 0)
    shots.push((await who.page.screenshot({ type: 'png', fullPage: true })).toString('base64'))
  }
  const context = await people[0].context.browser().newContext({ viewport: { width: 1480, height: 400 } })
  const page = await context.newPage()
  const imgs = shots.map((b64) => `<img src="data:image/png;base64,${b64}">`).join('')
  await page.setContent(`<!doctype html><body style="margin:0;background:#8a94a6;display:flex;gap:12px;padding:10px;width:max-content">${imgs}</body>`)
  await page.waitForFunction(() => [...document.images].every((img) => img.complete && img.naturalWidth > 0))
  await page.locator('body').screenshot({ path: out, type: 'png' })
  await context.close()
}

// ---------------------------------------------------------------------------------------------

async function main () {
  const scenario = scenarios[opts.scenario]
  if (!scenario) throw new Failure(`unknown scenario ${opts.scenario}; known: ${Object.keys(scenarios).join(', ')}`)
  const browser = await chromium.launch({
    executablePath: opts.chromium,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 30_000
  })
  try {
    const detail = await scenario(browser)
    check(pageErrors.length === 0, 'the pages logged errors')
    if (pageNoise.length) console.log(`expected console errors: ${pageNoise.length}`)
    console.log(`PASS ${opts.scenario} ${detail}`)
  } finally {
    await browser.close()
  }
}

const watchdog = setTimeout(() => {
  console.error(`FAIL ${opts.scenario}: the run took over ${RUN_TIMEOUT_MS} ms`)
  process.exit(1)
}, RUN_TIMEOUT_MS)

main().then(() => {
  clearTimeout(watchdog)
}, (err) => {
  console.error(`FAIL ${opts.scenario}: ${err instanceof Failure ? err.message : err.stack}`)
  if (pageErrors.length) console.error(`page errors:\n  ${pageErrors.join('\n  ')}`)
  process.exit(1)
})
