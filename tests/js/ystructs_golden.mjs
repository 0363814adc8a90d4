#!/usr/bin/env node
// Golden Yjs v1 updates for tests/protocol/test_ystructs.py, with Yjs's own reading of each.
//
//   node ystructs_golden.mjs > ../protocol/data/yjs_structs.json
//
// Each case: the update's bytes (hex) as real Yjs encodes them, and what Yjs's
// `decodeUpdate` finds in it, reduced to what our reader reports: the string items
// (client, clock, text), the split points a receiver makes (after each origin, at each right
// origin, at both ends of each deleted range) and the reach (clock past the last struct or
// deleted range, by client). Deterministic: fixed client ids, no randomness.
import * as Y from 'yjs'

const hex = (u) => Buffer.from(u).toString('hex')

function expected (update) {
  const { structs, ds } = Y.decodeUpdate(update)
  const strings = []
  const points = new Set()
  const reach = {}
  const kinds = new Set()
  const spans = {}
  const needs = {}
  let hasSkip = false
  const need = (id) => { needs[id.client] = Math.max(needs[id.client] ?? 0, id.clock + 1) }
  const grow = (client, clock) => { reach[client] = Math.max(reach[client] ?? 0, clock) }
  for (const s of structs) {
    const { client, clock } = s.id
    kinds.add(s.constructor.name === 'Item' ? s.content.constructor.name : s.constructor.name)
    spans[client] = [Math.min(spans[client]?.[0] ?? clock, clock), clock + s.length]
    if (s.constructor.name === 'Skip') { hasSkip = true; continue }
    grow(client, clock + s.length)
    if (s.constructor.name !== 'Item') continue
    if (s.origin) { points.add(`${s.origin.client},${s.origin.clock + 1}`); need(s.origin) }
    if (s.rightOrigin) { points.add(`${s.rightOrigin.client},${s.rightOrigin.clock}`); need(s.rightOrigin) }
    if (s.parent && s.parent.client !== undefined) need(s.parent) // an item id, not a root name
    if (s.content instanceof Y.ContentString) strings.push([client, clock, s.content.str])
  }
  for (const [client, items] of ds.clients) {
    for (const { clock, len } of items) {
      points.add(`${client},${clock}`)
      points.add(`${client},${clock + len}`)
      grow(client, clock + len)
    }
  }
  return {
    strings,
    split_points: [...points].map((p) => p.split(',').map(Number)).sort((a, b) => a[0] - b[0] || a[1] - b[1]),
    reach,
    structs: spans,
    needs,
    has_skip: hasSkip,
    kinds: [...kinds].sort()
  }
}

function newDoc (clientID) {
  const doc = new Y.Doc()
  doc.clientID = clientID
  return doc
}

// Updates a doc emits while `edit` runs, merged into one (what y-websocket sends per change).
function captured (doc, edit) {
  const updates = []
  const handler = (u) => updates.push(u)
  doc.on('update', handler)
  edit()
  doc.off('update', handler)
  return updates.length === 1 ? updates[0] : Y.mergeUpdates(updates)
}

const cases = {}

// The six steps: A types, B inserts at UTF-16 offset 6 (inside the emoji's pair).
const a = newDoc(1)
const b = newDoc(2)
cases.typed_emoji = captured(a, () => a.getText('text').insert(0, 'Avis 😀 public'))
Y.applyUpdate(b, cases.typed_emoji)
cases.insert_inside_pair = captured(b, () => b.getText('text').insert(6, 'é'))
Y.applyUpdate(a, cases.insert_inside_pair)
cases.editors_text = null // filled below, not an update
const editorsText = a.getText('text').toString()
delete cases.editors_text
// A delete whose range starts inside a pair (the emoji of a fresh copy) and ends inside one.
const c = newDoc(3)
cases.two_emoji = captured(c, () => c.getText('text').insert(0, 'x😀y👍🏽z'))
const d = newDoc(4)
Y.applyUpdate(d, cases.two_emoji)
cases.delete_inside_pairs = captured(d, () => d.getText('text').delete(2, 4))
const deleteText = d.getText('text').toString()

// The same story in a records room (y-prosemirror's shape: fragment > paragraph > text).
const pa = newDoc(8)
const pb = newDoc(9)
cases.xml_typed = captured(pa, () => {
  const paragraph = new Y.XmlElement('paragraph')
  pa.getXmlFragment('default').insert(0, [paragraph])
  const text = new Y.XmlText()
  paragraph.insert(0, [text])
  text.insert(0, 'Avis 😀 public')
})
Y.applyUpdate(pb, cases.xml_typed)
cases.xml_insert_inside_pair = captured(pb, () => {
  pb.getXmlFragment('default').get(0).get(0).insert(6, 'é')
})
Y.applyUpdate(pa, cases.xml_insert_inside_pair)

// Every content type and struct kind.
const e = newDoc(5)
cases.map_any = captured(e, () => {
  const m = e.getMap('map')
  m.set('int', 42)
  m.set('neg', -70000)
  m.set('float', 1.5)
  m.set('big', 2n ** 60n)
  m.set('null', null)
  m.set('undef', undefined)
  m.set('yes', true)
  m.set('no', false)
  m.set('str', 'héllo 😀')
  m.set('obj', { a: [1, { b: 'c' }], d: null })
  m.set('bin', new Uint8Array([1, 2, 3]))
})
cases.array_any = captured(e, () => e.getArray('array').insert(0, [1, 'two', { three: 3 }, [4], 2.25]))
cases.nested_types = captured(e, () => {
  const sub = new Y.Map()
  e.getArray('array').insert(0, [sub])
  sub.set('inner', 'value') // parent given as an item id
  const frag = e.getXmlFragment('default')
  const p = new Y.XmlElement('paragraph')
  const t = new Y.XmlText()
  frag.insert(0, [p])
  p.insert(0, [t])
  t.insert(0, 'bold 😀', { bold: true })
  t.insertEmbed(3, { image: 'x.png' })
  t.format(0, 2, { italic: true })
})
// Its own case: yrs (pycrdt 0.14) cannot read a YXmlHook, Yjs and our reader can.
cases.xml_hook = captured(e, () => e.getXmlFragment('hooks').insert(0, [new Y.XmlHook('hook')]))
cases.subdoc = captured(e, () => e.getMap('map').set('doc', new Y.Doc({ guid: 'sub-guid' })))
cases.deleted_and_gc = (() => {
  const f = newDoc(6)
  f.getText('text').insert(0, 'gone 😀 soon')
  f.getText('text').insert(0, 'kept ')
  f.getText('text').delete(5, 8)
  f.getMap('map').set('k', 'v1')
  f.getMap('map').set('k', 'v2')
  const nested = new Y.Map()
  f.getMap('map').set('nested', nested)
  nested.set('x', 'inside')
  f.getMap('map').delete('nested') // its children become GC structs
  return Y.encodeStateAsUpdate(f)
})()
cases.skip = (() => {
  const g = newDoc(7)
  const parts = []
  g.on('update', (u) => parts.push(u))
  g.getText('text').insert(0, 'one')
  g.getText('text').insert(3, ' two 😀')
  g.getText('text').insert(0, 'three ')
  return Y.mergeUpdates([parts[0], parts[2]]) // the middle one missing: a Skip
})()
cases.empty = Y.encodeStateAsUpdate(new Y.Doc())

// What the editors hold after each two-step story: A then B, and C then D.
// xml_editor_state: everything editor A holds at the end of the records story.
const out = {
  editors_text: editorsText,
  delete_text: deleteText,
  xml_editor_state: hex(Y.encodeStateAsUpdate(pa)),
  cases: {}
}
for (const [name, update] of Object.entries(cases)) {
  out.cases[name] = { update: hex(update), ...expected(update) }
}
console.log(JSON.stringify(out, null, 1))
