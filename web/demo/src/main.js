// The civicrealtime demo: a record editor joined to a records room exactly as the CivicPress
// editor joins it (y-websocket provider on <ws_url>/records, token in the `auth.<token>`
// subprotocol, the document in Y.XmlFragment('default'), carets as awareness `user`), and
// opted in to the daemon's JSON control frames (docs/protocol.md).
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { EditorState, Selection } from 'prosemirror-state'
import { EditorView } from 'prosemirror-view'
import { keymap } from 'prosemirror-keymap'
import {
  baseKeymap, chainCommands, exitCode, setBlockType, toggleMark, wrapIn
} from 'prosemirror-commands'
import { liftListItem, sinkListItem, splitListItem, wrapInList } from 'prosemirror-schema-list'
import {
  defaultCursorBuilder, redo, redoCommand, undo, undoCommand, yCursorPlugin, ySyncPlugin, yUndoPlugin
} from 'y-prosemirror'
import { schema } from './schema.js'
import { ConnectionBadge } from './status.js'
import { savedLabel } from './saved.js'
// The client helper the daemon serves at /client/civicrealtime.js, bundled from the package.
import { CONTROL_SUBPROTOCOL, connectRealtime } from '../../../src/civicrealtime/http/static/client/civicrealtime.js'

const $ = (id) => document.getElementById(id)
const { nodes, marks } = schema

// Caret colours: y-prosemirror accepts #rrggbb only; dark enough for white name labels.
const COLORS = ['#b8336a', '#1f6fb2', '#2e7d32', '#8e44ad', '#c05621', '#00796b', '#6d4c41', '#3949ab']
const colorFor = (name) => {
  let hash = 0
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0
  return COLORS[hash % COLORS.length]
}

/** When an earlier client of the room already wears our colour, take the next free one. */
function avoidColorClash (awareness) {
  const mine = awareness.getLocalState()?.user
  if (!mine) return
  let clash = false
  const used = new Set()
  for (const [clientId, state] of awareness.getStates()) {
    if (clientId === awareness.clientID || !state?.user) continue
    used.add(state.user.color)
    if (state.user.color === mine.color && clientId < awareness.clientID) clash = true
  }
  if (!clash) return
  const start = COLORS.indexOf(mine.color)
  for (let k = 1; k < COLORS.length; k++) {
    const color = COLORS[(start + k) % COLORS.length]
    if (!used.has(color)) {
      awareness.setLocalStateField('user', { ...mine, color })
      $('whoami').style.setProperty('--user-color', color)
      return
    }
  }
}

const RENEW_BEFORE_S = 60

/** @type {{name: string, role: string, color: string, token: string, expiresAt: number, wsUrl: string} | null} */
let session = null
/** @type {{id: string, ydoc: Y.Doc, provider: WebsocketProvider, rt: any, view: EditorView, badge: ConnectionBadge, offline: boolean} | null} */
let room = null
let renewTimer = 0

// ---------------------------------------------------------------------------------------------
// Tokens

// The token endpoint sits beside the page: /demo/token for /demo/ (and for /demo).
const tokenUrl = () => {
  const dir = location.pathname.replace(/\/[^/]*\.[^/]*$/, '/')
  return (dir.endsWith('/') ? dir : `${dir}/`) + 'token'
}

async function fetchToken (name, role) {
  const response = await fetch(tokenUrl(), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name, role })
  })
  if (!response.ok) throw new Error(`the token endpoint answered HTTP ${response.status}`)
  const body = await response.json()
  if (typeof body.token !== 'string' || typeof body.ws_url !== 'string') {
    throw new Error('the token endpoint answered without a token')
  }
  const ws = new URL(body.ws_url)
  // A daemon listening on every address names it; the page's host is the one that works.
  if (ws.hostname === '0.0.0.0' || ws.hostname === '[::]') ws.hostname = location.hostname
  return {
    token: body.token,
    expiresAt: Date.now() + (Number(body.expires_in) || 3600) * 1000,
    wsUrl: ws.href.replace(/\/+$/, '')
  }
}

async function renewToken () {
  if (!session) return
  clearTimeout(renewTimer)
  try {
    Object.assign(session, await fetchToken(session.name, session.role))
    // The open socket keeps its token until it closes; the next connection uses this one.
    if (room) room.provider.protocols = subprotocols()
  } catch (err) {
    notice(`Could not renew the session: ${err.message}`)
  }
  scheduleRenewal()
}

function scheduleRenewal () {
  const delay = Math.max(5000, session.expiresAt - Date.now() - RENEW_BEFORE_S * 1000)
  renewTimer = setTimeout(renewToken, delay)
}

// ---------------------------------------------------------------------------------------------
// Control frames: the daemon sends its JSON control frames (ack, errors, notices, saved) only
// to a connection that offers this subprotocol beside the token. y-websocket parses binary
// frames only: the client helper takes them out before they reach it and hands them over as
// events, and turns the "saved" frames into the indicator's status.

const subprotocols = () => [`auth.${session.token}`, CONTROL_SUBPROTOCOL]

function showControlFrames (rt) {
  rt.on('error', (error) => {
    if (error.code === 'PERMISSION_DENIED') notice('The server refused an edit: this session is read-only.')
  })
  rt.on('notice', (item) => { if (item.message) notice(String(item.message)) })
  rt.on('revoked', () => notice('The session was ended by the server.'))
}

function renderSaved (view) {
  const { state, text } = savedLabel(view)
  const indicator = $('saved')
  indicator.hidden = false
  indicator.textContent = text
  indicator.dataset.state = state
}

let noticeTimer = 0
function notice (text) {
  const el = $('notice')
  el.textContent = text
  el.hidden = false
  clearTimeout(noticeTimer)
  noticeTimer = setTimeout(() => { el.hidden = true }, 6000)
}

// ---------------------------------------------------------------------------------------------
// The editor

const insertNode = (type) => (state, dispatch) => {
  if (!type.isInline && state.selection.$from.parent.type.spec.code) return false
  if (dispatch) dispatch(state.tr.replaceSelectionWith(type.create()).scrollIntoView())
  return true
}

const hardBreak = chainCommands(exitCode, insertNode(nodes.hard_break))

const TOOLS = [
  { label: 'Bold', text: 'B', cmd: toggleMark(marks.strong), mark: marks.strong, keys: 'Mod-b' },
  { label: 'Italic', text: 'I', cmd: toggleMark(marks.em), mark: marks.em, keys: 'Mod-i' },
  { label: 'Code', text: '</>', cmd: toggleMark(marks.code), mark: marks.code, keys: 'Mod-`' },
  { label: 'Paragraph', text: '¶', cmd: setBlockType(nodes.paragraph), keys: 'Mod-Alt-0' },
  { label: 'Heading 1', text: 'H1', cmd: setBlockType(nodes.heading, { level: 1 }), keys: 'Mod-Alt-1' },
  { label: 'Heading 2', text: 'H2', cmd: setBlockType(nodes.heading, { level: 2 }), keys: 'Mod-Alt-2' },
  { label: 'Bullet list', text: '•', cmd: wrapInList(nodes.bullet_list) },
  { label: 'Numbered list', text: '1.', cmd: wrapInList(nodes.ordered_list) },
  { label: 'Quote', text: '❝', cmd: wrapIn(nodes.blockquote) },
  { label: 'Horizontal rule', text: '―', cmd: insertNode(nodes.horizontal_rule) },
  { label: 'Undo', text: '↶', cmd: undoCommand },
  { label: 'Redo', text: '↷', cmd: redoCommand }
]

const keys = {
  'Mod-z': undo,
  'Mod-y': redo,
  'Mod-Shift-z': redo,
  Enter: splitListItem(nodes.list_item),
  'Mod-[': liftListItem(nodes.list_item),
  'Mod-]': sinkListItem(nodes.list_item),
  'Shift-Enter': hardBreak,
  'Mod-Enter': hardBreak
}
for (const tool of TOOLS) if (tool.keys) keys[tool.keys] = tool.cmd

const markActive = (state, type) => {
  const { from, $from, to, empty } = state.selection
  return empty ? !!type.isInSet(state.storedMarks || $from.marks()) : state.doc.rangeHasMark(from, to, type)
}

function buildToolbar () {
  const bar = $('toolbar')
  for (const tool of TOOLS) {
    const button = document.createElement('button')
    button.type = 'button'
    button.textContent = tool.text
    button.title = tool.keys ? `${tool.label} (${tool.keys.replace('Mod', 'Ctrl')})` : tool.label
    button.setAttribute('aria-label', tool.label)
    if (tool.mark) button.setAttribute('aria-pressed', 'false')
    button.addEventListener('mousedown', (event) => event.preventDefault())
    button.addEventListener('click', () => {
      if (!room) return
      tool.cmd(room.view.state, room.view.dispatch, room.view)
      room.view.focus()
    })
    tool.button = button
    bar.append(button)
  }
}

function updateToolbar (view) {
  const readOnly = session?.role !== 'editor'
  for (const tool of TOOLS) {
    tool.button.disabled = readOnly || !tool.cmd(view.state, undefined, view)
    if (tool.mark) tool.button.setAttribute('aria-pressed', String(!readOnly && markActive(view.state, tool.mark)))
  }
}

// y-prosemirror keys a caret widget by client id, so ProseMirror keeps its DOM when the
// user's colour changes: mark each caret with its client and recolour it in place.
const cursorBuilder = (user, clientId) => {
  const cursor = defaultCursorBuilder(user)
  cursor.dataset.client = String(clientId)
  return cursor
}

function recolourCarets (awareness) {
  for (const cursor of document.querySelectorAll('.ProseMirror-yjs-cursor[data-client]')) {
    const color = awareness.getStates().get(Number(cursor.dataset.client))?.user?.color
    if (!/^#[0-9a-f]{6}$/i.test(color ?? '')) continue
    cursor.style.borderColor = color
    if (cursor.firstElementChild) cursor.firstElementChild.style.backgroundColor = color
  }
}

function createView (mount, fragment, awareness, readOnly) {
  const state = EditorState.create({
    schema,
    plugins: [
      ySyncPlugin(fragment),
      yCursorPlugin(awareness, { cursorBuilder }),
      yUndoPlugin(),
      keymap(keys),
      keymap(baseKeymap)
    ]
  })
  return new EditorView(mount, {
    state,
    editable: () => !readOnly,
    attributes: {
      role: 'textbox',
      'aria-multiline': 'true',
      'aria-labelledby': 'editor-label',
      'aria-readonly': String(readOnly),
      spellcheck: 'false'
    },
    dispatchTransaction (tr) {
      this.updateState(this.state.apply(tr))
      updateToolbar(this)
    }
  })
}

// ---------------------------------------------------------------------------------------------
// Rooms

function renderBadge ({ state, label, code }) {
  const badge = $('status')
  badge.textContent = label
  badge.dataset.state = state
  if (code === null) delete badge.dataset.code
  else badge.dataset.code = String(code)
}

function renderPeople (awareness) {
  const list = $('people')
  const people = []
  for (const [clientId, state] of awareness.getStates()) {
    if (state?.user?.name) people.push({ clientId, ...state.user })
  }
  people.sort((a, b) => a.name.localeCompare(b.name) || a.clientId - b.clientId)
  list.replaceChildren(...people.map((person) => {
    const item = document.createElement('li')
    const dot = document.createElement('span')
    dot.className = 'dot'
    dot.style.background = /^#[0-9a-f]{6}$/i.test(person.color) ? person.color : '#777'
    item.append(dot, person.name + (person.clientId === awareness.clientID ? ' (you)' : ''))
    return item
  }))
}

// ---------------------------------------------------------------------------------------------
// History (clerks: a token with records:history; docs/history.md)

const historyUrl = (suffix) =>
  `/admin/rooms/${encodeURIComponent(`records:${room.id}`)}${suffix}`

async function historyCall (suffix, body) {
  const response = await fetch(historyUrl(suffix), {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${session.token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  const answer = await response.json().catch(() => ({}))
  if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`)
  return answer
}

function historyError (message) {
  $('history-error').textContent = message
  $('history-error').hidden = !message
}

const when = (ms) => new Date(ms).toLocaleString()

async function loadHistory () {
  if (!room || session.role !== 'clerk') return
  historyError('')
  const rows = $('versions').tBodies[0]
  let versions = []
  try {
    versions = (await historyCall('/history')).versions
  } catch (err) {
    rows.replaceChildren()
    historyError(err.message.startsWith('no history') ? 'No version yet.' : err.message)
    return
  }
  rows.replaceChildren(...versions.slice().reverse().map((version) => {
    const row = document.createElement('tr')
    const cells = [
      `v${version.version} (${version.reason})`,
      `${when(version.started_at)} – ${when(version.ended_at)}`,
      version.authors.map((a) => `${a.name || a.user} (${a.changes})`).join(', ')
    ].map((text) => {
      const cell = document.createElement('td')
      cell.textContent = text
      return cell
    })
    const pick = document.createElement('td')
    const box = document.createElement('input')
    box.type = 'checkbox'
    box.value = String(version.version)
    box.setAttribute('aria-label', `compare version ${version.version}`)
    pick.append(box)
    const action = document.createElement('td')
    const restore = document.createElement('button')
    restore.type = 'button'
    restore.textContent = 'Restore'
    restore.addEventListener('click', () => restoreVersion(version.version))
    action.append(restore)
    row.append(...cells, pick, action)
    return row
  }))
}

async function showDiff () {
  const picked = [...$('versions').querySelectorAll('input:checked')].map((box) => Number(box.value))
  if (picked.length !== 2) {
    historyError('Pick two versions to compare.')
    return
  }
  const [a, b] = picked.sort((x, y) => x - y)
  try {
    const diff = await historyCall(`/history/${a}/diff/${b}`)
    const { changed, added, removed } = diff.summary
    $('diff').textContent = `v${a} → v${b}: ${changed} changed, ${added} added, ${removed} removed\n\n` +
      (diff.unified || '(no difference)')
    $('diff').hidden = false
    historyError('')
  } catch (err) {
    historyError(err.message)
  }
}

async function restoreVersion (number) {
  try {
    await historyCall('/restore', { version: number })
    notice(`Version ${number} restored: every editor sees it now.`)
    await loadHistory()
  } catch (err) {
    historyError(`Restore refused: ${err.message}`)
  }
}

function closeRoom () {
  if (!room) return
  room.rt.destroy()
  room.view.destroy()
  room.ydoc.destroy()
  room = null
}

function openRoom (id) {
  closeRoom()
  const readOnly = session.role === 'public'
  const ydoc = new Y.Doc()
  const rt = connectRealtime({
    WebsocketProvider,
    url: `${session.wsUrl}/records`,
    room: id,
    doc: ydoc,
    token: session.token,
    errorAfterMs: 20000,
    // Every change goes through the daemon, which enforces read-only viewers.
    providerOptions: { disableBc: true }
  })
  const provider = rt.provider
  showControlFrames(rt)
  rt.on('status', renderSaved)
  renderSaved({ status: rt.status, oldestUnsavedMs: rt.oldestUnsavedMs, unsaved: rt.unsaved })
  const badge = new ConnectionBadge(renderBadge)
  provider.on('status', ({ status }) => badge.onStatus(status))
  provider.on('connection-close', (event) => {
    if (room?.offline) return
    badge.onClose(event)
    if (event?.code === 4001 && Date.now() > session.expiresAt - RENEW_BEFORE_S * 1000) renewToken()
  })
  provider.awareness.setLocalStateField('user', { name: session.name, color: session.color })
  $('whoami').style.setProperty('--user-color', session.color)
  provider.awareness.on('change', () => {
    avoidColorClash(provider.awareness)
    renderPeople(provider.awareness)
    recolourCarets(provider.awareness)
  })
  renderPeople(provider.awareness)

  const mount = $('editor')
  mount.replaceChildren()
  const view = createView(mount, ydoc.getXmlFragment('default'), provider.awareness, readOnly)
  room = { id, ydoc, provider, rt, view, badge, offline: false }
  updateToolbar(view)
  setOffline(false)

  $('room').value = id
  $('room-title').textContent = id
  $('history-panel').hidden = session.role !== 'clerk'
  $('diff').hidden = true
  loadHistory()
  const url = new URL(location.href)
  url.searchParams.set('record', id)
  history.replaceState(null, '', url)
}

function setOffline (offline) {
  const button = $('toggle-connection')
  button.textContent = offline ? 'Reconnect' : 'Go offline'
  button.setAttribute('aria-pressed', String(offline))
  if (!room || room.offline === offline) return
  room.offline = offline
  if (offline) {
    room.provider.disconnect()
    room.badge.offline()
  } else {
    room.badge.reset()
    room.provider.connect()
  }
}

// ---------------------------------------------------------------------------------------------
// The page

const cleanRoomId = (value) => value.trim()

async function join (event) {
  event.preventDefault()
  const form = event.currentTarget
  const name = $('name').value.trim()
  const chosen = form.elements.role.value
  const role = chosen === 'public' || chosen === 'clerk' ? chosen : 'editor'
  const id = cleanRoomId($('join-room').value)
  if (!name || !id) return
  const button = form.querySelector('button[type=submit]')
  button.disabled = true
  $('join-error').hidden = true
  try {
    session = { name, role, color: colorFor(name), ...(await fetchToken(name, role)) }
  } catch (err) {
    $('join-error').textContent = `Could not join: ${err.message}`
    $('join-error').hidden = false
    button.disabled = false
    return
  }
  scheduleRenewal()
  $('join').hidden = true
  $('workspace').hidden = false
  $('toggle-connection').hidden = false
  $('whoami').textContent = `${name} · ${role === 'public' ? 'viewer' : role}`
  $('readonly-banner').hidden = role !== 'public'
  $('toolbar').hidden = role === 'public'
  openRoom(id)
  if (role !== 'public') room.view.focus()
}

function init () {
  buildToolbar()
  const requested = new URL(location.href).searchParams.get('record')
  if (requested) $('join-room').value = requested
  $('join').addEventListener('submit', join)
  $('room-form').addEventListener('submit', (event) => {
    event.preventDefault()
    const id = cleanRoomId($('room').value)
    if (id && id !== room?.id) openRoom(id)
  })
  for (const button of document.querySelectorAll('[data-example]')) {
    button.addEventListener('click', () => openRoom(button.dataset.example))
  }
  $('toggle-connection').addEventListener('click', () => setOffline(!room?.offline))
  $('history-refresh').addEventListener('click', loadHistory)
  $('history-diff').addEventListener('click', showDiff)
  $('name').focus()
}

// For the end-to-end tests and curious visitors (browser console).
window.civicDemo = {
  get provider () { return room?.provider ?? null },
  get view () { return room?.view ?? null },
  get ydoc () { return room?.ydoc ?? null },
  get room () { return room?.id ?? null },
  text: () => room ? room.view.state.doc.textBetween(0, room.view.state.doc.content.size, '\n') : '',
  paragraphs: () => {
    let count = 0
    room?.view.state.doc.descendants((node) => { if (node.type === nodes.paragraph) count++ })
    return count
  },
  /** Focus the editor with the caret at the end of top-level block `index` (-1: the last). */
  caretToEndOfBlock: (index = -1) => {
    const { view } = room
    const { doc } = view.state
    const i = index < 0 ? doc.childCount + index : index
    let pos = 0
    for (let k = 0; k <= i; k++) pos += doc.child(k).nodeSize
    view.dispatch(view.state.tr.setSelection(Selection.near(doc.resolve(pos - 1), -1)))
    view.focus()
  },
  disconnect: () => setOffline(true),
  connect: () => setOffline(false),
  openRoom: (id) => openRoom(id),
  loadHistory: () => loadHistory()
}

init()
