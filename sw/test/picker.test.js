'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const W = require('./load.js')
const rng = require('./rng.js')

function peersFrom (holdings) {
  return Object.entries(holdings).map(([id, set]) => ({ id, has: (i) => set.has(i) }))
}

test('rarest first, spread over peers, unavailable reported', () => {
  const p = new W.Picker([0, 1, 2, 3], { maxPerPeer: 4 })
  const { assign, unavailable } = p.next(peersFrom({ a: new Set([0, 1, 2]), b: new Set([0, 1]) }))
  assert.deepEqual(unavailable, [3])
  assert.equal(assign[0][1], 2, 'piece 2 (one holder) goes first')
  const byPeer = assign.reduce((m, [peer]) => ({ ...m, [peer]: (m[peer] || 0) + 1 }), {})
  assert.ok(byPeer.a >= 1 && byPeer.b >= 1, 'both peers get work')
})

test('a bad peer is never asked again', () => {
  const p = new W.Picker([0, 1], { maxPerPeer: 1 })
  const peers = peersFrom({ a: new Set([0, 1]), b: new Set([0, 1]) })
  p.next(peers)
  p.markBad('a')
  for (let k = 0; k < 5; k++) {
    const { assign } = p.next(peers)
    assert.ok(assign.every(([peer]) => peer !== 'a'))
    for (const [, i] of assign) p.done(i)
  }
})

test('property: the picker keeps its invariants and always finishes', () => {
  for (let seed = 1; seed <= 300; seed++) {
    const next = rng(seed)
    const pieces = 1 + next(40)
    const nPeers = next(6)
    const holdings = {}
    for (let q = 0; q < nPeers; q++) holdings[`p${q}`] = new Set([...Array(pieces).keys()].filter(() => next(3) > 0))
    const maxPerPeer = 1 + next(4)
    const picker = new W.Picker([...Array(pieces).keys()], { maxPerPeer })
    const fromOrigin = new Set()
    const peers = peersFrom(holdings)
    const asked = new Map() // piece → peers asked (ever)
    for (let round = 0; round < 500 && picker.needed.size > 0; round++) {
      const { assign, unavailable } = picker.next(peers)
      for (const i of unavailable) { fromOrigin.add(i); picker.done(i) }
      const allStarted = [...picker.needed].every((i) => picker.inflight.has(i))
      for (const [peer, i] of assign) {
        assert.ok(holdings[peer].has(i), `seed ${seed}: asked ${peer} for piece ${i} it lacks`)
        assert.ok(!picker.bad.has(peer), `seed ${seed}: asked bad peer ${peer}`)
        const before = asked.get(i) || new Set()
        assert.ok(!before.has(peer) || !picker.inflight.get(i) || true)
        if (!allStarted) assert.ok(picker.inflight.get(i).size === 1 || before.size > 0, `seed ${seed}: duplicate outside endgame`)
        before.add(peer)
        asked.set(i, before)
      }
      for (const peer of Object.keys(holdings)) assert.ok(picker.load(peer) <= maxPerPeer, `seed ${seed}: ${peer} over its pipeline`)
      // Random outcomes: answered, rejected, or the peer turns bad.
      for (const [i, set] of [...picker.inflight]) {
        const peer = [...set][next(set.size)]
        const r = next(10)
        if (r < 6) picker.done(i)
        else if (r < 9) picker.failed(i, peer)
        else picker.markBad(peer)
      }
    }
    assert.equal(picker.needed.size, 0, `seed ${seed}: did not finish`)
  }
})
