'use strict'
// PeerLink (rtc.js) over a fake RTCPeerConnection: candidates that come
// before their description, one ICE restart, flow control while serving.
const test = require('node:test')
const assert = require('node:assert/strict')
const W = require('./load.js')

const { CODES } = W.errors
const ID = 'ef'.repeat(32)

/** Just enough of RTCPeerConnection and RTCDataChannel to drive PeerLink. */
class FakePC {
  constructor (config) {
    this.config = config
    this.remoteDescription = null
    this.localDescription = null
    this.signalingState = 'stable'
    this.added = []
    this.restarts = 0
    FakePC.last = this
  }

  createDataChannel () { this.dc = new FakeDC(); return this.dc }
  async setLocalDescription () { this.localDescription = { type: this.remoteDescription ? 'answer' : 'offer', sdp: 'x', toJSON () { return { type: this.type, sdp: this.sdp } } } }
  async setRemoteDescription (d) { this.remoteDescription = d }
  async addIceCandidate (c) {
    if (!this.remoteDescription) throw Object.assign(new Error('no remote description'), { name: 'InvalidStateError' })
    this.added.push(c)
  }

  restartIce () { this.restarts++ }
  close () { this.closed = true }
}

class FakeDC {
  constructor () { this.readyState = 'open'; this.bufferedAmount = 0; this.sent = [] }
  send (frame) { this.sent.push(frame); this.bufferedAmount += frame.byteLength }
  close () { this.readyState = 'closed' }
}

function link (opts = {}) {
  const notes = []
  const out = []
  const ended = []
  const l = new W.PeerLink({
    remote: 'peer',
    initiator: opts.initiator !== false,
    polite: true,
    config: { iceServers: [] },
    signal: (d) => out.push(d),
    on: { open () {}, closed: (r) => ended.push(r), frame () {}, note: (step) => notes.push(step) },
    read: opts.read || (async () => new Uint8Array(40000).buffer),
    RTCPeerConnection: FakePC
  })
  return { l, pc: FakePC.last, notes, out, ended }
}

test('candidates that come before their description are kept, then added', async () => {
  const { l, pc, notes } = link({ initiator: false })
  await l.signal({ candidate: { candidate: 'candidate:1 1 udp 1 192.0.2.1 4000 typ host' } })
  await l.signal({ candidate: { candidate: 'candidate:2 1 udp 1 192.0.2.1 4001 typ srflx' } })
  assert.equal(pc.added.length, 0)
  await l.signal({ description: { type: 'offer', sdp: 'x' } })
  assert.equal(pc.added.length, 2, 'both added once the offer is in')
  assert.ok(notes.includes('first-remote-candidate'))
  assert.ok(notes.includes('answer-sent'))
  assert.equal(l.closed, false)
})

test('ICE that fails is restarted once by the offerer, then the link ends', () => {
  const { pc, ended } = link()
  pc.iceConnectionState = 'failed'
  pc.oniceconnectionstatechange()
  assert.equal(pc.restarts, 1)
  assert.deepEqual(ended, [])
  pc.oniceconnectionstatechange()
  assert.deepEqual(ended, [CODES.ICE_FAILED])
  assert.ok(pc.closed)
})

test('serving stops at the high-water mark, resumes when the buffer drains, and refuses past its queue', async () => {
  const { l, pc } = link()
  const dc = pc.dc
  for (let i = 0; i < 40; i++) l.serve({ id: ID, piece: i, offset: 0, length: 40000 })
  await new Promise((resolve) => setTimeout(resolve, 10))
  const blocks = () => dc.sent.filter((f) => f[0] === W.wire.TYPES.BLOCK).length
  const first = blocks()
  assert.ok(first > 0 && first < 40 * 3, `it paused with ${dc.bufferedAmount} bytes buffered`)
  assert.ok(dc.bufferedAmount >= 1024 * 1024)
  dc.bufferedAmount = 0
  dc.onbufferedamountlow()
  await new Promise((resolve) => setTimeout(resolve, 10))
  assert.ok(blocks() > first, 'it went on once the channel drained')
  for (let i = 0; i < 100; i++) l.serve({ id: ID, piece: 100 + i, offset: 0, length: 40000 })
  const rejects = dc.sent.filter((f) => f[0] === W.wire.TYPES.REJECT).length
  assert.ok(rejects > 0, 'a full queue refuses what it cannot take')
  l.unserve(ID, 150)
  assert.ok(!l.queue.some((r) => r.piece === 150))
  l.close()
  assert.equal(dc.readyState, 'closed')
})

test('a piece it no longer holds is refused, not sent short', async () => {
  const { l, pc } = link({ read: async () => null })
  l.serve({ id: ID, piece: 3, offset: 0, length: 1000 })
  await new Promise((resolve) => setTimeout(resolve, 5))
  const [frame] = pc.dc.sent
  assert.equal(W.wire.decode(frame).type, 'reject')
})
