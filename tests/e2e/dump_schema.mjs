// Prints the demo editor's schema as JSON: node and mark names in definition order, with each
// attribute's default (`{"required": true}` when it has none). tests/e2e/test_demo_units.py
// compares it with src/civicrealtime/records/schema.py.
import { schema } from '../../web/demo/src/schema.js'

const attrsOf = (spec) => Object.entries(spec.attrs ?? {}).map(([name, attr]) => [
  name, 'default' in attr ? { default: attr.default } : { required: true }
])
const dump = (map) => {
  const out = []
  map.forEach((name, spec) => out.push({ name, attrs: attrsOf(spec), inline: !!spec.inline, atom: !!spec.atom, group: spec.group ?? null, content: spec.content ?? null }))
  return out
}
console.log(JSON.stringify({ nodes: dump(schema.spec.nodes), marks: dump(schema.spec.marks) }))
