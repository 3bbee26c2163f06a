'use strict'
// The page agent's scheduling and serving logic, with fake connections in
// place of WebRTC: no browser.
const test = require('node:test')
const assert = require('node:assert/strict')
const W = require('./load.js')

const ID = 'ab'.repeat(32)
const INFO = { id: ID, size: 10 * 1000, piece_size: 1000, count: 10, path: '/x.bin' }

/** A connection that holds `has` and records what it is asked. */
function fakeConn (remote, has, { open = true, settled = true, answered = true, born = Date.now() } = {}) {
  return {
    remote,
    open,
    settled,
    answered,
    born,
    has: new Map([[ID, new Set(has)]]),
    asked: [],
    cancelled: [],
    request (id, i) { this.asked.push(i); return true },
    cancel (id, i) { this.cancelled.push(i) },
    close () {}
  }
}

function agentWith (...conns) {
  const agent = new W.Agent({ store: new W.store.MemoryStore() })
  for (const c of conns) agent.peers.set(c.remote, c)
  return agent
}

function sink () {
  const s = { pieces: [], misses: [] }
  s.onPiece = (i) => s.pieces.push(i)
  s.onMiss = (i) => s.misses.push(i)
  return s
}

test('a finished piece refills the pipeline until every piece was asked for', () => {
  const peer = fakeConn('p1', [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
  const agent = agentWith(peer)
  const s = agent.want(INFO, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], sink())
  assert.equal(peer.asked.length, 4, 'a window of four requests per peer')
  for (let round = 0; round < 10 && peer.asked.length < 10; round++) {
    for (const i of [...s.picker.inflight.keys()]) s.done(i)
  }
  assert.deepEqual([...peer.asked].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
  s.close()
})

test('requests spread over the peers that hold the pieces', () => {
  const a = fakeConn('pa', [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
  const b = fakeConn('pb', [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
  const agent = agentWith(a, b)
  const s = agent.want(INFO, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], sink())
  assert.equal(a.asked.length, 4)
  assert.equal(b.asked.length, 4)
  assert.equal(new Set([...a.asked, ...b.asked]).size, 8, 'no piece asked twice outside the endgame')
  s.close()
})

test('misses wait while a connection is settling, and come once it has', () => {
  const holder = fakeConn('p1', [0, 1, 2])
  const newcomer = fakeConn('p2', [], { settled: false, open: false })
  const agent = agentWith(holder, newcomer)
  const out = sink()
  const s = agent.want(INFO, [0, 1, 2, 3, 4], out)
  assert.deepEqual(out.misses, [], 'p2 may still hold pieces 3 and 4')
  newcomer.settled = true
  newcomer.open = true
  s.pump()
  assert.deepEqual(out.misses.sort(), [3, 4], 'nobody holds them: the origin gets them')
  s.close()
})

test('a peer that never answers holds misses back only for a grace period', () => {
  const holder = fakeConn('p1', [0])
  const fresh = fakeConn('p2', [], { settled: false, open: false, answered: false })
  const silent = fakeConn('p3', [], { settled: false, open: false, answered: false, born: Date.now() - 60000 })
  const agent = agentWith(holder, fresh, silent)
  const out = sink()
  const s = agent.want(INFO, [0, 1], out)
  assert.deepEqual(out.misses, [], 'p2 offered a moment ago and may still answer')
  agent.peers.delete('p2')
  s.pump()
  assert.deepEqual(out.misses, [1], 'p3 never answered: it holds nothing back')
  s.close()
})

test('a missed piece is still asked of a peer that gets it later, once', () => {
  const peer = fakeConn('p1', [])
  const agent = agentWith(peer)
  const out = sink()
  const s = agent.want(INFO, [0, 1], out)
  assert.deepEqual(out.misses.sort(), [0, 1], 'nobody holds them yet: the origin is asked')
  // The peer got piece 1 (from the origin, or from someone else) first.
  peer.has.get(ID).add(1)
  s.pump()
  assert.deepEqual(peer.asked, [1], 'the race for piece 1 is open to the peer')
  s.pump()
  assert.deepEqual(out.misses.sort(), [0, 1], 'each miss is reported once')
  s.done(0) // piece 0 arrived from the origin
  peer.has.get(ID).add(0)
  s.pump()
  assert.deepEqual(peer.asked, [1], 'a piece already verified is not asked for')
  s.close()
})

test('a piece that failed verification bans its sender and asks elsewhere', () => {
  const bad = fakeConn('bad', [0])
  const good = fakeConn('good', [0])
  const agent = agentWith(bad, good)
  const s = agent.want(INFO, [0], sink())
  const first = bad.asked.length ? 'bad' : 'good'
  assert.equal(first, 'bad', 'the first holder (in connection order) is asked first')
  s.bad(0, 'bad')
  assert.ok(agent.banned.has('bad'))
  assert.ok(!agent.peers.has('bad'))
  assert.ok(good.asked.includes(0))
  s.close()
})

test('verified pieces are served from memory, within a byte budget, oldest out first', async () => {
  const agent = new W.Agent({ store: new W.store.MemoryStore(), hotBudget: 3500 })
  for (let i = 0; i < 3; i++) agent.stored(ID, i, '/x.bin', 10, new Uint8Array(1000).fill(i).buffer)
  assert.equal(agent.hotBytes, 3000)
  assert.equal(new Uint8Array(await agent.pieceData(ID, 0))[0], 0)
  agent.stored(ID, 3, '/x.bin', 10, new Uint8Array(1000).fill(3).buffer)
  assert.equal(agent.hotBytes, 3000)
  assert.equal(await agent.pieceData(ID, 1), null, 'the least recently used piece left memory (and was never in the store)')
  assert.equal(new Uint8Array(await agent.pieceData(ID, 0))[0], 0, 'piece 0 was used recently and stayed')
  assert.deepEqual([...agent.holdings.get(ID).have].sort(), [0, 1, 2, 3], 'every verified piece is announced')
  clearTimeout(agent.soon)
})
