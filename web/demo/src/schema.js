// The record schema of the CivicPress editor, by name: y-prosemirror names every Y.XmlElement
// after its node type and every formatting attribute after its mark, and silently drops what
// the schema does not know. These names and attribute defaults mirror
// src/civicrealtime/records/schema.py; keep them in step.
import { Schema } from 'prosemirror-model'

const alignOf = (dom) => {
  const value = dom.style.textAlign || dom.getAttribute('align')
  return value === 'left' || value === 'center' || value === 'right' ? value : null
}

const cell = (tag) => ({
  content: 'block+',
  attrs: { align: { default: null } },
  isolating: true,
  parseDOM: [{ tag, getAttrs: (dom) => ({ align: alignOf(dom) }) }],
  toDOM: (node) => [tag, node.attrs.align ? { style: `text-align: ${node.attrs.align}` } : {}, 0]
})

const REF_TYPES = ['record', 'geography', 'attachment']

// A collaborator writes the document: render only harmless link targets (a read-only viewer
// follows links on click).
const safeHref = (href) =>
  /^(https?:|mailto:|#|\/(?!\/)|\.{0,2}\/)/i.test(String(href ?? '').trim()) ? href : null

export const schema = new Schema({
  nodes: {
    doc: { content: 'block+' },
    paragraph: {
      content: 'inline*',
      group: 'block',
      parseDOM: [{ tag: 'p' }],
      toDOM: () => ['p', 0]
    },
    blockquote: {
      content: 'block+',
      group: 'block',
      defining: true,
      parseDOM: [{ tag: 'blockquote' }],
      toDOM: () => ['blockquote', 0]
    },
    horizontal_rule: {
      group: 'block',
      parseDOM: [{ tag: 'hr' }],
      toDOM: () => ['hr']
    },
    heading: {
      attrs: { level: { default: 1 } },
      content: 'inline*',
      group: 'block',
      defining: true,
      parseDOM: [1, 2, 3, 4, 5, 6].map((level) => ({ tag: `h${level}`, attrs: { level } })),
      toDOM: (node) => [`h${node.attrs.level}`, 0]
    },
    code_block: {
      attrs: { params: { default: '' } },
      content: 'text*',
      marks: '',
      group: 'block',
      code: true,
      defining: true,
      parseDOM: [{
        tag: 'pre',
        preserveWhitespace: 'full',
        getAttrs: (dom) => ({ params: dom.getAttribute('data-params') || '' })
      }],
      toDOM: (node) => [
        'pre',
        node.attrs.params ? { 'data-params': node.attrs.params } : {},
        ['code', 0]
      ]
    },
    bullet_list: {
      content: 'list_item+',
      group: 'block',
      parseDOM: [{ tag: 'ul' }],
      toDOM: () => ['ul', 0]
    },
    ordered_list: {
      attrs: { order: { default: 1 } },
      content: 'list_item+',
      group: 'block',
      parseDOM: [{
        tag: 'ol',
        getAttrs: (dom) => ({
          order: dom.hasAttribute('start') ? Number(dom.getAttribute('start')) : 1
        })
      }],
      toDOM: (node) => ['ol', node.attrs.order === 1 ? {} : { start: node.attrs.order }, 0]
    },
    list_item: {
      content: 'paragraph block*',
      defining: true,
      parseDOM: [{ tag: 'li' }],
      toDOM: () => ['li', 0]
    },
    table: {
      content: 'table_row+',
      group: 'block',
      isolating: true,
      parseDOM: [{ tag: 'table' }],
      toDOM: () => ['table', ['tbody', 0]]
    },
    table_row: {
      content: '(table_cell | table_header)+',
      parseDOM: [{ tag: 'tr' }],
      toDOM: () => ['tr', 0]
    },
    table_cell: cell('td'),
    table_header: cell('th'),
    text: { group: 'inline' },
    image: {
      inline: true,
      attrs: { src: {}, alt: { default: null }, title: { default: null } },
      group: 'inline',
      draggable: true,
      parseDOM: [{
        tag: 'img[src]',
        getAttrs: (dom) => ({
          src: dom.getAttribute('src'),
          alt: dom.getAttribute('alt'),
          title: dom.getAttribute('title')
        })
      }],
      toDOM: (node) => ['img', { src: node.attrs.src, alt: node.attrs.alt, title: node.attrs.title }]
    },
    hard_break: {
      inline: true,
      group: 'inline',
      selectable: false,
      parseDOM: [{ tag: 'br' }],
      toDOM: () => ['br']
    },
    civicRef: {
      inline: true,
      atom: true,
      group: 'inline',
      attrs: { refType: { default: 'record' }, id: { default: null }, label: { default: null } },
      parseDOM: [{
        tag: 'span[data-civic-ref]',
        getAttrs: (dom) => {
          const refType = dom.getAttribute('data-ref-type')
          return {
            refType: REF_TYPES.includes(refType) ? refType : 'record',
            id: dom.getAttribute('data-id'),
            label: dom.getAttribute('data-label')
          }
        }
      }],
      toDOM: (node) => [
        'span',
        {
          class: 'civic-ref',
          'data-civic-ref': '',
          'data-ref-type': node.attrs.refType,
          'data-id': node.attrs.id,
          'data-label': node.attrs.label,
          title: `${node.attrs.refType} ${node.attrs.id ?? ''}`.trim()
        },
        node.attrs.label || node.attrs.id || node.attrs.refType
      ]
    }
  },
  // Definition order is ProseMirror's mark rank: keep link, em, strong, code.
  marks: {
    link: {
      attrs: { href: {}, title: { default: null } },
      inclusive: false,
      parseDOM: [{
        tag: 'a[href]',
        getAttrs: (dom) => ({ href: dom.getAttribute('href'), title: dom.getAttribute('title') })
      }],
      toDOM: (mark) => [
        'a',
        { href: safeHref(mark.attrs.href), title: mark.attrs.title, rel: 'noopener noreferrer nofollow' },
        0
      ]
    },
    em: {
      parseDOM: [{ tag: 'i' }, { tag: 'em' }, { style: 'font-style=italic' }],
      toDOM: () => ['em', 0]
    },
    strong: {
      parseDOM: [{ tag: 'strong' }, { tag: 'b' }, { style: 'font-weight=bold' }],
      toDOM: () => ['strong', 0]
    },
    code: {
      parseDOM: [{ tag: 'code' }],
      toDOM: () => ['code', 0]
    }
  }
})
