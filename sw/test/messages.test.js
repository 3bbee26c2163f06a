'use strict'
// The service worker ⇄ page messages (one module for both sides), and the
// per-context scheduler's policy.
const test = require('node:test')
const assert = require('node:assert/strict')
const W = require('./load.js')

const msg = W.messages
const ID = 'cd'.repeat(32)

test('every message built by one side is read back by the other', () => {
  const data = new ArrayBuffer(8)
  const cases = [
    ['agent', {}],
    ['stats', {}],
    ['adopt', { paths: ['/a.jpg'] }],
    ['need-agent', {}],
    ['no-agent', {}],
    ['want', { req: 1, manifest: { id: ID, size: 10, piece_size: 4, count: 3, path: '/x' }, indices: [0, 2] }],
    ['got', { req: 1, index: 0 }],
    ['bad', { req: 1, index: 0, from: 'p1' }],
    ['close', { req: 1 }],
    ['stored', { id: ID, index: 2, path: '/x', count: 3, data }],
    ['report', { peer: 1, worker: 2, origin: 3, verified: 4, rejected: 0 }],
    ['piece', { req: 1, index: 0, data, from: 'p1', role: 'visitor' }],
    ['miss', { req: 1, index: 0 }],
    ['status', { peers: 2, settling: 0, policy: { prefer: 'offload' } }]
  ]
  assert.deepEqual(cases.map(([k]) => k).sort(), [...msg.KINDS].sort(), 'every kind is tested')
  for (const [kind, fields] of cases) {
    const m = msg.make(kind, fields)
    assert.deepEqual(msg.read(m), { whis: kind, ...fields }, kind)
  }
})

test('foreign and malformed messages are ignored, not half-understood', () => {
  assert.equal(msg.read(null), null)
  assert.equal(msg.read('stats'), null)
  assert.equal(msg.read({ type: 'want', req: 1 }), null, "the site's own messages")
  assert.equal(msg.read({ whis: 'launch-missiles' }), null)
  assert.equal(msg.read({ whis: 'got', req: -1, index: 0 }), null)
  assert.equal(msg.read({ whis: 'got', req: 1 }), null, 'a field missing')
  assert.equal(msg.read({ whis: 'piece', req: 1, index: 0, data: 'not bytes', from: 'p', role: 'visitor' }), null)
  assert.equal(msg.read({ whis: 'want', req: 1, manifest: { id: 'short', size: 1, piece_size: 1, count: 1, path: '/' }, indices: [] }), null)
  assert.equal(msg.read(msg.make('got', { req: 1, index: 0 }), ['want']), null, 'a kind the reader does not take')
  assert.deepEqual(msg.read({ whis: 'close', req: 3, extra: 'dropped' }), { whis: 'close', req: 3 })
  assert.throws(() => msg.make('got', { req: 'x', index: 0 }))
  assert.throws(() => msg.make('nope'))
})

test('offload waits for peers while they deliver, within a bounded time; speed gives them a short head start', () => {
  let now = 0
  const clock = { now: () => now, setTimeout, clearTimeout }
  const s = new W.scheduler.Scheduler({ clock })
  assert.equal(s.prefer, 'offload')
  assert.equal(s.deadlineFor(16384), 2000, 'a gap is at least 2 s')
  for (let i = 0; i < 30; i++) s.learn(1e6, 1e5) // a crawling origin: 10 B/ms
  assert.equal(s.deadlineFor(262144), 5000, 'and at most 5 s')
  // 2 MB with a 1 s gap: peers may take up to 4 s, or 2 s at 1 MB/s: 4 s.
  const w = s.peerWait(1000, 2e6)
  assert.equal(w.due(0, -Infinity), 1000, 'silent peers: the origin after one gap')
  now = 900
  s.peerDelivered()
  assert.equal(w.due(900, -Infinity), 1900, 'a piece from a peer (any resource) moves it on')
  assert.equal(w.due(3500, 3500), 4000, 'never past the limit')
  // 20 MB: the 1 MB/s floor gives peers 20 s.
  assert.equal(s.peerWait(1000, 20e6).limit, 20900)
  s.setPolicy({ prefer: 'speed' })
  assert.equal(s.deadlineFor(262144), 250)
  assert.equal(s.peerWait(250, 20e6).due(now, now), now + 250, 'the origin races after 250 ms, however big')
  s.setPolicy({ prefer: 'nonsense' })
  assert.equal(s.prefer, 'offload', 'an unknown policy is the default')
})

test('the origin gate lets four requests through per context, first come first served', async () => {
  const s = new W.scheduler.Scheduler()
  const order = []
  const holders = []
  for (let i = 0; i < 6; i++) holders.push(s.acquire().then(() => order.push(i)))
  await new Promise((resolve) => setTimeout(resolve, 5))
  assert.deepEqual(order, [0, 1, 2, 3])
  s.release()
  s.release()
  await Promise.all(holders)
  assert.deepEqual(order, [0, 1, 2, 3, 4, 5])
})
