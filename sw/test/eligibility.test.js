'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const W = require('./load.js')
const E = W.eligibility

const ORIGIN = 'http://site.test'
function req (url, opts = {}) {
  const headers = new Map(Object.entries(opts.headers || {}))
  return { method: opts.method || 'GET', url, mode: opts.mode || 'no-cors', cache: opts.cache || 'default', headers: { get: (n) => headers.get(n) || null } }
}

test('request rules', () => {
  assert.equal(E.requestIneligible(req(`${ORIGIN}/img/a.jpg`), ORIGIN), null)
  assert.equal(E.requestIneligible(req(`${ORIGIN}/v.webm`, { headers: { range: 'bytes=0-' } }), ORIGIN), null)
  const refused = [
    req(`${ORIGIN}/a.jpg`, { method: 'POST' }),
    req('http://other.test/a.jpg'),
    req(`${ORIGIN}/`, { mode: 'navigate' }),
    req(`${ORIGIN}/whis/client.js`),
    req(`${ORIGIN}/whis-sw.js`),
    req(`${ORIGIN}/a.jpg?v=2`),
    req(`${ORIGIN}/a.jpg`, { headers: { authorization: 'Bearer x' } }),
    req(`${ORIGIN}/a.jpg`, { headers: { range: 'bytes=0-1,5-6' } }),
    req(`${ORIGIN}/a.jpg`, { cache: 'only-if-cached' })
  ]
  for (const r of refused) assert.notEqual(E.requestIneligible(r, ORIGIN), null, `${r.method} ${r.url}`)
})

test('response rules', () => {
  const h = (o) => ({ get: (n) => o[n] || null })
  assert.equal(E.responseIneligible(h({ 'cache-control': 'public, max-age=60' })), null)
  assert.notEqual(E.responseIneligible(h({ 'cache-control': 'Private' })), null)
  assert.notEqual(E.responseIneligible(h({ 'cache-control': 'max-age=0, no-store' })), null)
  assert.notEqual(E.responseIneligible(h({ 'set-cookie': 'a=b' })), null)
  assert.notEqual(E.responseIneligible(h({ vary: 'Accept-Encoding, Cookie' })), null)
  assert.equal(E.responseIneligible(h({ vary: 'Accept-Encoding' })), null)
})
