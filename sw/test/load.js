// Loads the classic-script modules of sw/lib into this Node process, the way
// importScripts and <script> tags load them in the browser.
'use strict'
const fs = require('node:fs')
const path = require('node:path')
const vm = require('node:vm')

// The order of /whis/lib.js (server/src/assets.rs). agent.js only touches
// browser APIs when an agent connects, so loading it here is harmless.
const ORDER = ['errors', 'wire', 'manifest', 'eligibility', 'picker', 'store', 'fetcher', 'agent', 'sw-core']
for (const name of ORDER) {
  const file = path.join(__dirname, '..', 'lib', `${name}.js`)
  vm.runInThisContext(fs.readFileSync(file, 'utf8'), { filename: file })
}
module.exports = globalThis.Whis
