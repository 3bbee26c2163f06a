// Loads the classic-script modules of sw/lib into this Node process, the way
// importScripts and <script> tags load them in the browser, in the order of
// sw/lib/bundle.txt (the list the server's /whis/lib.js is built from).
'use strict'
const fs = require('node:fs')
const path = require('node:path')
const vm = require('node:vm')

const lib = path.join(__dirname, '..', 'lib')
const order = fs.readFileSync(path.join(lib, 'bundle.txt'), 'utf8')
  .split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))
for (const name of order) {
  const file = path.join(lib, name)
  vm.runInThisContext(fs.readFileSync(file, 'utf8'), { filename: file })
}
module.exports = globalThis.Whis
