// The demo's "saved" indicator: node --test tests/e2e/saved_label.test.mjs
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { savedLabel } from '../../web/demo/src/saved.js'

test('saved, saving with its age, the store failing, offline', () => {
  assert.deepEqual(savedLabel({ status: 'saved', oldestUnsavedMs: 0, unsaved: 0 }), { state: 'saved', text: 'Saved' })
  assert.deepEqual(savedLabel({ status: 'saving', oldestUnsavedMs: 2400, unsaved: 3 }), { state: 'saving', text: 'Saving… 2 s' })
  assert.equal(savedLabel({ status: 'error', oldestUnsavedMs: 9000, unsaved: 1 }).text, 'Not saved: the server cannot store changes')
  assert.equal(savedLabel({ status: 'offline', oldestUnsavedMs: 0, unsaved: 0 }).text, 'Offline')
  assert.equal(savedLabel({ status: 'offline', oldestUnsavedMs: 10, unsaved: 2 }).text, 'Offline: changes not saved yet')
})
