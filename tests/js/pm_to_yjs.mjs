#!/usr/bin/env node
// Builds a Yjs document the way the CivicPress editor does, from ProseMirror JSON.
//
//   node pm_to_yjs.mjs <doc.json> <update.bin>
//
// Reads a ProseMirror document (JSON, editor schema), writes it into
// Y.XmlFragment('default') with y-prosemirror's prosemirrorJSONToYDoc and saves the
// document's full state (Y.encodeStateAsUpdate) to <update.bin>.

import { readFileSync, writeFileSync } from 'node:fs'
import * as Y from 'yjs'
import { prosemirrorJSONToYDoc } from 'y-prosemirror'
import { schema } from './prosemirror_schema.mjs'

const [input, output] = process.argv.slice(2)
if (input === undefined || output === undefined) {
  process.stderr.write('usage: node pm_to_yjs.mjs <doc.json> <update.bin>\n')
  process.exit(2)
}
const json = JSON.parse(readFileSync(input, 'utf8'))
// Node.fromJSON inside checks nothing; check() makes a malformed fixture fail loudly.
schema.nodeFromJSON(json).check()
const ydoc = prosemirrorJSONToYDoc(schema, json, 'default')
writeFileSync(output, Y.encodeStateAsUpdate(ydoc))
