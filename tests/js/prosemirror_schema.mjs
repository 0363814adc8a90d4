// The CivicPress editor's document schema, as far as the realtime server relies on it:
// the node and mark names, attributes (with defaults) and content rules of the reference
// page (ProseMirror basic + list schemas, GFM tables, civicRef). Mirrored on the Python
// side by src/civicrealtime/records/schema.py; y-prosemirror drops any element or mark
// whose name is not here, so the two must agree.

import { Schema } from 'prosemirror-model'

const cellAttrs = { align: { default: null } }

export const nodes = {
  // The first block type is the default one ProseMirror fills required content with.
  doc: { content: 'block+' },
  paragraph: { content: 'inline*', group: 'block' },
  blockquote: { content: 'block+', group: 'block', defining: true },
  horizontal_rule: { group: 'block' },
  heading: {
    attrs: { level: { default: 1 } },
    content: 'inline*',
    group: 'block',
    defining: true
  },
  code_block: {
    attrs: { params: { default: '' } },
    content: 'text*',
    marks: '',
    group: 'block',
    code: true,
    defining: true
  },
  bullet_list: { content: 'list_item+', group: 'block' },
  ordered_list: { attrs: { order: { default: 1 } }, content: 'list_item+', group: 'block' },
  list_item: { content: 'paragraph block*', defining: true },
  table: { content: 'table_row+', group: 'block', tableRole: 'table', isolating: true },
  table_row: { content: '(table_cell | table_header)*', tableRole: 'row' },
  table_cell: { attrs: cellAttrs, content: 'block+', tableRole: 'cell', isolating: true },
  table_header: { attrs: cellAttrs, content: 'block+', tableRole: 'header_cell', isolating: true },
  text: { group: 'inline' },
  image: {
    inline: true,
    attrs: { src: {}, alt: { default: null }, title: { default: null } },
    group: 'inline',
    draggable: true
  },
  hard_break: { inline: true, group: 'inline', selectable: false },
  civicRef: {
    inline: true,
    atom: true,
    group: 'inline',
    attrs: { refType: { default: 'record' }, id: {}, label: { default: null } }
  }
}

export const marks = {
  link: { attrs: { href: {}, title: { default: null } }, inclusive: false },
  em: {},
  strong: {},
  code: {}
}

export const schema = new Schema({ nodes, marks })
