'use strict'
// The agent's shell (agent.js) with a fake server, event stream and WebRTC:
// what it posts, in which order, and what it does when the join fails.
const test = require('node:test')
const assert = require('node:assert/strict')
const W = require('./load.js')

const ID = 'ab'.repeat(32)
const INFO = { id: ID, size: 2000, piece_size: 1000, count: 2, path: '/x.bin' }

class FakeES {
  constructor (url) { this.url = url; this.listeners = {}; FakeES.last = this }
  addEventListener (name, fn) { (this.listeners[name] = this.listeners[name] || []).push(fn) }
  emit (name, data) { for (const fn of this.listeners[name] || []) fn({ data: JSON.stringify(data) }) }
  close () { this.closed = true }
}

class FakePC {
  constructor () { FakePC.made.push(this) }
  createDataChannel () { return { close () {} } }
  async setLocalDescription () { this.localDescription = { toJSON: () => ({ type: 'offer', sdp: 'x' }) } }
  async setRemoteDescription () {}
  async addIceCandidate () {}
  close () {}
}
FakePC.made = []

/** A whis that answers join and records every POST body, in arrival order. */
function fakeServer ({ joinStatus = 200, peers = [], delays = [] } = {}) {
  const posts = []
  let n = 0
  async function fetchFn (url, init = {}) {
    const path = new URL(url, 'http://site.test').pathname
    const body = init.body ? JSON.parse(init.body) : null
    if (path === '/whis/join') {
      if (joinStatus !== 200) return new Response('{}', { status: joinStatus })
      return new Response(JSON.stringify({ peer_id: 'me', token: 't', swarm_id: 's1', peers, ice_servers: [], max_connections: 6 }), { status: 200 })
    }
    // A later signal may travel faster than an earlier one (another connection).
    const delay = path === '/whis/signal' ? delays[n++] || 0 : 0
    await new Promise((resolve) => setTimeout(resolve, delay))
    posts.push({ path, body })
    return new Response('{"peers":[]}', { status: 200 })
  }
  return { fetchFn, posts }
}

function agentWith (server) {
  return new W.Agent({ store: new W.store.MemoryStore(), fetch: server.fetchFn, EventSource: FakeES, RTCPeerConnection: FakePC })
}

test('signals to one peer reach the server in the order they were sent', async () => {
  const server = fakeServer({ delays: [30, 0, 0] }) // the first POST is the slowest
  const agent = agentWith(server)
  await agent.start()
  server.posts.length = 0
  await Promise.all([agent.signal('p1', { description: { type: 'offer' } }), agent.signal('p1', { candidate: { c: 1 } }), agent.signal('p1', { candidate: { c: 2 } })])
  const signals = server.posts.filter((p) => p.path === '/whis/signal').map((p) => p.body.data)
  assert.deepEqual(signals, [{ description: { type: 'offer' } }, { candidate: { c: 1 } }, { candidate: { c: 2 } }])
  agent.leave()
})

test('a failed join releases the misses it held back, so the origin is asked at once', async () => {
  const agent = agentWith(fakeServer({ joinStatus: 503 }))
  const misses = []
  const starting = agent.start()
  agent.want(INFO, [0, 1], { onPiece () {}, onMiss: (i) => misses.push(i) })
  assert.deepEqual(misses, [], 'held while joining')
  await assert.rejects(starting, (e) => e.code === W.errors.CODES.JOIN_FAILED)
  assert.deepEqual(misses.sort(), [0, 1])
})

test('the peers named in the join answer are offered links, and a peer that left is let go', async () => {
  FakePC.made.length = 0
  const agent = agentWith(fakeServer({ peers: ['pa', 'pb'] }))
  await agent.start()
  assert.equal(FakePC.made.length, 2, 'one RTCPeerConnection per suggested peer')
  assert.deepEqual([...agent.links.keys()].sort(), ['pa', 'pb'])
  FakeES.last.emit('peer-left', { peer_id: 'pa' })
  assert.deepEqual([...agent.links.keys()], ['pb'])
  agent.leave()
  assert.equal(agent.links.size, 0)
  assert.ok(FakeES.last.closed)
})

test('announce tells the tracker of peers whose links were given up', async () => {
  const server = fakeServer()
  const agent = agentWith(server)
  await agent.start()
  agent.core.unreachable.add('ghost')
  await agent.announce()
  const last = server.posts.filter((p) => p.path === '/whis/announce').pop()
  assert.deepEqual(last.body.unreachable, ['ghost'])
  await agent.announce()
  assert.deepEqual(server.posts.filter((p) => p.path === '/whis/announce').pop().body.unreachable, [], 'said once')
  agent.leave()
})

test('asked to use relays only, with no TURN server offered, the agent shares nothing and says why', async () => {
  const posts = []
  const answer = { peer_id: 'pme', token: 't', swarm_id: 's1', role: 'visitor', ice_servers: [{ urls: 'stun:example.org:3478' }], ice_transport_policy: 'all', peers: ['pother'], worker: null, policy: {} }
  const fetch = async (url, init) => {
    posts.push(url)
    return { ok: true, status: 200, json: async () => answer }
  }
  const agent = new W.Agent({ store: new W.store.MemoryStore(), fetch, relayOnly: true, EventSource: function () { throw new Error('no stream expected') }, RTCPeerConnection: FakePC })
  await agent.start()
  assert.equal(agent.noSharing, 'relay only, and the server offers no TURN relay')
  assert.equal(agent.iceConfig.iceTransportPolicy, 'relay')
  assert.equal(agent.links.size, 0, 'no link to the suggested peer')
  assert.ok(posts.some((u) => u.startsWith('/whis/leave?token=t')), 'it left the swarm')
  const misses = []
  agent.want(INFO, [0, 1], { onPiece () {}, onMiss: (i) => misses.push(i) })
  assert.deepEqual(misses, [0, 1], 'every piece goes to the origin at once')
  agent.leave()
})

test('with a TURN server offered, a relay-only agent links through it', async () => {
  const answer = { peer_id: 'pme', token: 't', swarm_id: 's1', role: 'visitor', ice_servers: [{ urls: ['turn:example.org:3478'], username: 'u', credential: 'c' }], ice_transport_policy: 'relay', peers: [], worker: null, policy: {} }
  const fetch = async () => ({ ok: true, status: 200, json: async () => answer })
  const agent = new W.Agent({ store: new W.store.MemoryStore(), fetch, EventSource: FakeES, RTCPeerConnection: FakePC })
  await agent.start()
  assert.equal(agent.noSharing, null)
  assert.equal(agent.iceConfig.iceTransportPolicy, 'relay')
  agent.leave()
})
