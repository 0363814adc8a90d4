#!/usr/bin/env node
// Reads a Yjs update the way the CivicPress editor does and prints what it sees.
//
//   node yjs_to_pm.mjs <update.bin | base64>
//
// Applies the update to a fresh Y.Doc, converts Y.XmlFragment('default') with
// y-prosemirror's yXmlFragmentToProseMirrorRootNode and the editor schema, and prints one
// JSON object: { doc, valid, error, yElements, pmNodes, yText, pmText }.
// y-prosemirror silently drops elements and marks its schema rejects (deleting them from
// the Y.Doc), so the counts are taken from the Yjs side first and compared by the caller:
// yElements (every Y.XmlElement) against pmNodes (every non-text ProseMirror node), yText
// (characters in Y.XmlText) against pmText (characters in ProseMirror text nodes).
// `valid` is ProseMirror's content check of the whole document (Node.check()).

import { existsSync, readFileSync } from 'node:fs'
import * as Y from 'yjs'
import { yXmlFragmentToProseMirrorRootNode } from 'y-prosemirror'
import { schema } from './prosemirror_schema.mjs'

function readUpdate (arg) {
  if (arg === undefined) {
    process.stderr.write('usage: node yjs_to_pm.mjs <update file | base64>\n')
    process.exit(2)
  }
  return existsSync(arg) ? new Uint8Array(readFileSync(arg)) : Buffer.from(arg, 'base64')
}

function countY (type) {
  let elements = 0
  let text = 0
  for (const child of type.toArray()) {
    if (child instanceof Y.XmlElement) {
      elements += 1
      const inner = countY(child)
      elements += inner.elements
      text += inner.text
    } else if (child instanceof Y.XmlText) {
      text += child.toString().length === 0 ? 0 : child.toDelta().reduce(
        (sum, op) => sum + (typeof op.insert === 'string' ? op.insert.length : 0), 0)
    }
  }
  return { elements, text }
}

const ydoc = new Y.Doc()
Y.applyUpdate(ydoc, readUpdate(process.argv[2]))
const fragment = ydoc.getXmlFragment('default')
const counted = countY(fragment)

const doc = yXmlFragmentToProseMirrorRootNode(fragment, schema)
let pmNodes = 0
let pmText = 0
doc.descendants((node) => {
  if (node.isText) pmText += node.text.length
  else pmNodes += 1
})
let valid = true
let error = null
try {
  doc.check()
} catch (exc) {
  valid = false
  error = String(exc && exc.message)
}
process.stdout.write(JSON.stringify({
  doc: doc.toJSON(),
  valid,
  error,
  yElements: counted.elements,
  pmNodes,
  yText: counted.text,
  pmText
}) + '\n')
