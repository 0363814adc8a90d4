// What the "saved" indicator shows, from the client helper's status (docs/saved.md):
// only what the server acknowledged as durable is ever called saved.

/**
 * @param {{status: string, oldestUnsavedMs: number, unsaved: number}} view
 * @returns {{state: string, text: string}}
 */
export function savedLabel ({ status, oldestUnsavedMs, unsaved }) {
  switch (status) {
    case 'saved':
      return { state: 'saved', text: 'Saved' }
    case 'saving':
      return { state: 'saving', text: `Saving… ${Math.floor(oldestUnsavedMs / 1000)} s` }
    case 'error':
      return { state: 'error', text: 'Not saved: the server cannot store changes' }
    default:
      return unsaved > 0
        ? { state: 'offline', text: 'Offline: changes not saved yet' }
        : { state: 'offline', text: 'Offline' }
  }
}
