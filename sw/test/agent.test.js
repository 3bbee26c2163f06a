'use strict'
// The agent's core on a virtual clock: links, holdings, want sessions,
// timeouts and retries, driven with real wire frames. No browser, no timers.
const test = require('node:test')
const assert = require('node:assert/strict')
const W = require('./load.js')

const { AgentCore } = W.agentCore
const { CODES } = W.errors
const wire = W.wire
const ID = 'ab'.repeat(32)
const INFO = { id: ID, size: 10 * 1000, piece_size: 1000, count: 10, path: '/x.bin' }
const ALL = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]

/** A core that has joined as `me`, and its commands sorted by kind as they come. */
function coreAs (me = 'me', opts = {}) {
  const core = new AgentCore(opts)
  core.joined(0, me)
  core.poll()
  return core
}

const cmds = (core, kind) => core.poll().filter((c) => !kind || c.cmd === kind)

/** Link `core` to `peer` (we offer), open it, and have the peer say it holds `has` of ID. */
function settledPeer (core, peer, has, now = 0) {
  assert.ok(core.connect(now, peer))
  core.opened(now, peer)
  core.frame(now, peer, wire.handshake(peer, 'visitor'))
  core.frame(now, peer, wire.bitfield(ID, 10, (i) => has.includes(i)))
  core.tick(now + core.cfg.settleMs)
}

/** Decode the `send` commands to `peer` of the given wire type. */
function sent (commands, peer, type) {
  return commands.filter((c) => c.cmd === 'send' && c.to === peer).map((c) => wire.decode(c.frame)).filter((m) => m.type === type)
}

test('a verified piece refills the pipeline until every piece was asked for', () => {
  const core = coreAs()
  settledPeer(core, 'p1', ALL)
  core.poll()
  const sid = core.want(100, INFO, ALL)
  let asked = sent(core.poll(), 'p1', 'request').map((r) => r.piece)
  assert.equal(asked.length, 4, 'a window of four requests per peer')
  const all = new Set(asked)
  for (let round = 0; round < 10 && all.size < 10; round++) {
    for (const i of asked) core.done(100, sid, i)
    asked = sent(core.poll(), 'p1', 'request').map((r) => r.piece)
    asked.forEach((i) => all.add(i))
  }
  assert.deepEqual([...all].sort((a, b) => a - b), ALL)
})

test('requests spread over the peers that hold the pieces, never one piece twice outside the endgame', () => {
  const core = coreAs()
  settledPeer(core, 'pa', ALL)
  settledPeer(core, 'pb', ALL)
  core.poll()
  core.want(100, INFO, ALL)
  const out = core.poll()
  const a = sent(out, 'pa', 'request').map((r) => r.piece)
  const b = sent(out, 'pb', 'request').map((r) => r.piece)
  assert.equal(a.length, 4)
  assert.equal(b.length, 4)
  assert.equal(new Set([...a, ...b]).size, 8)
})

test('misses wait while we are joining and while a link is settling, and come once they are done', () => {
  const core = new AgentCore()
  core.joining()
  const sid = core.want(0, INFO, [0, 1, 2])
  assert.deepEqual(cmds(core, 'miss'), [], 'the join answer may name holders')
  core.joined(10, 'me', { peers: ['p1'] })
  assert.deepEqual(cmds(core, 'miss'), [], 'p1 is settling: it may hold them')
  core.opened(20, 'p1')
  core.frame(20, 'p1', wire.handshake('p1', 'visitor'))
  core.frame(20, 'p1', wire.bitfield(ID, 10, (i) => i === 0))
  core.tick(20 + core.cfg.settleMs)
  const out = core.poll()
  assert.deepEqual(sent(out, 'p1', 'request').map((r) => r.piece), [0])
  assert.deepEqual(out.filter((c) => c.cmd === 'miss' && c.sid === sid).map((c) => c.index).sort(), [1, 2])
})

test('a failed join releases what it held back', () => {
  const core = new AgentCore()
  core.joining()
  core.want(0, INFO, [0, 1])
  assert.deepEqual(cmds(core, 'miss'), [])
  core.joinFailed(5)
  assert.deepEqual(cmds(core, 'miss').map((c) => c.index).sort(), [0, 1])
})

test('a peer that never answers holds misses back only for the grace period', () => {
  const core = coreAs()
  settledPeer(core, 'p1', [0])
  core.connect(0, 'silent')
  core.poll()
  core.want(0, INFO, [0, 1])
  assert.deepEqual(cmds(core, 'miss'), [], 'silent offered a moment ago and may still answer')
  core.tick(core.cfg.answerGraceMs - 1)
  assert.deepEqual(cmds(core, 'miss'), [])
  core.tick(core.cfg.answerGraceMs)
  assert.deepEqual(cmds(core, 'miss').map((c) => c.index), [1], 'it never answered: it holds nothing back')
})

test('a missed piece is still asked of a peer that gets it later, once', () => {
  const core = coreAs()
  settledPeer(core, 'p1', [])
  core.poll()
  const sid = core.want(0, INFO, [0, 1])
  assert.deepEqual(cmds(core, 'miss').map((c) => c.index).sort(), [0, 1], 'nobody holds them: the origin is asked')
  core.frame(5, 'p1', wire.have(ID, 1)) // the peer got piece 1 meanwhile
  let out = core.poll()
  assert.deepEqual(sent(out, 'p1', 'request').map((r) => r.piece), [1], 'the race for piece 1 is open to the peer')
  assert.deepEqual(out.filter((c) => c.cmd === 'miss'), [], 'each miss is reported once')
  core.done(6, sid, 0) // piece 0 arrived from the origin
  core.frame(7, 'p1', wire.have(ID, 0))
  out = core.poll()
  assert.deepEqual(sent(out, 'p1', 'request'), [], 'a piece already verified is not asked for')
})

test('a piece that failed verification bans its sender and asks elsewhere', () => {
  const core = coreAs()
  settledPeer(core, 'bad', [0])
  settledPeer(core, 'good', [0])
  core.poll()
  const sid = core.want(0, INFO, [0])
  const before = core.poll()
  const first = before.find((c) => c.cmd === 'send' && wire.decode(c.frame).type === 'request')
  assert.equal(first.to, 'bad', 'the first holder (in link order) is asked first')
  core.bad(1, sid, 0, 'bad')
  const out = core.poll()
  const askedGood = [...sent(before, 'good', 'request'), ...sent(out, 'good', 'request')]
  assert.ok(core.banned.has('bad'))
  assert.ok(!core.links.has('bad'))
  assert.ok(out.some((c) => c.cmd === 'close' && c.to === 'bad' && c.reason === CODES.BAD_PIECE))
  assert.deepEqual(askedGood.map((r) => r.piece), [0], 'the other holder is asked (in the endgame, or now)')
  assert.equal(core.connect(2, 'bad'), false, 'never linked again')
  assert.equal(core.offered(2, 'bad'), false, 'nor accepted')
})

test('malformed frames and a wrong identity cost the sender its link for good', () => {
  const core = coreAs()
  settledPeer(core, 'p1', [0])
  core.poll()
  core.frame(1, 'p1', new Uint8Array([99, 1, 2]))
  assert.ok(cmds(core).some((c) => c.cmd === 'close' && c.to === 'p1' && c.reason === CODES.BAD_FRAME))
  assert.ok(core.banned.has('p1'))
  core.connect(2, 'p2')
  core.opened(2, 'p2')
  core.frame(2, 'p2', wire.handshake('someone-else', 'visitor'))
  assert.ok(cmds(core).some((c) => c.cmd === 'close' && c.to === 'p2' && c.reason === CODES.WRONG_PEER))
  assert.ok(core.banned.has('p2'))
})

test('blocks are put together into pieces; a block past its piece drops the sender', () => {
  const core = coreAs()
  settledPeer(core, 'p1', [0, 1])
  core.poll()
  const sid = core.want(0, INFO, [0, 1])
  core.poll()
  const bytes = new Uint8Array(1000).map((_, i) => i % 251)
  core.frame(1, 'p1', wire.block(ID, 0, 0, bytes.subarray(0, 600)))
  assert.deepEqual(cmds(core, 'piece'), [], 'half a piece is not a piece')
  core.frame(2, 'p1', wire.block(ID, 0, 600, bytes.subarray(600)))
  const [piece] = cmds(core, 'piece')
  assert.equal(piece.sid, sid)
  assert.equal(piece.index, 0)
  assert.equal(piece.from, 'p1')
  assert.deepEqual(new Uint8Array(piece.data), bytes)
  core.frame(3, 'p1', wire.block(ID, 1, 900, new Uint8Array(200)))
  assert.ok(cmds(core).some((c) => c.cmd === 'close' && c.reason === CODES.BLOCK_OUT_OF_RANGE))
})

test('requests for held pieces are served; others, and all of them while serving is off, are refused', () => {
  const core = coreAs()
  core.stored(0, ID, 3, '/x.bin', 10)
  settledPeer(core, 'p1', [])
  core.poll()
  core.frame(1, 'p1', wire.request(ID, 3, 0, 1000))
  assert.deepEqual(cmds(core, 'serve').map((c) => [c.to, c.piece, c.length]), [['p1', 3, 1000]])
  core.frame(2, 'p1', wire.request(ID, 4, 0, 1000))
  assert.deepEqual(sent(core.poll(), 'p1', 'reject').map((r) => r.piece), [4], 'not held')
  core.setServing(false)
  core.frame(3, 'p1', wire.request(ID, 3, 0, 1000))
  assert.deepEqual(sent(core.poll(), 'p1', 'reject').map((r) => r.piece), [3], 'a data-saving visitor uploads nothing')
  core.frame(4, 'p1', wire.cancel(ID, 3, 0, 0))
  assert.deepEqual(cmds(core, 'unserve').map((c) => c.piece), [3])
})

test('a new piece is announced to every open link, once', () => {
  const core = coreAs()
  settledPeer(core, 'p1', [])
  settledPeer(core, 'p2', [])
  core.poll()
  assert.equal(core.stored(1, ID, 5, '/x.bin', 10), true)
  const out = core.poll()
  assert.deepEqual(sent(out, 'p1', 'have').map((h) => h.piece), [5])
  assert.deepEqual(sent(out, 'p2', 'have').map((h) => h.piece), [5])
  assert.equal(core.stored(2, ID, 5, '/x.bin', 10), false)
  assert.deepEqual(core.poll(), [])
})

test('a request that times out is given up on that peer: the piece is missed, and the origin may have it', () => {
  const core = coreAs()
  settledPeer(core, 'slow', [0])
  core.poll()
  const sid = core.want(0, INFO, [0])
  assert.deepEqual(sent(core.poll(), 'slow', 'request').map((r) => r.piece), [0])
  assert.equal(core.nextWake(), core.cfg.requestTimeoutMs)
  core.tick(core.cfg.requestTimeoutMs - 1)
  assert.deepEqual(core.poll(), [])
  core.tick(core.cfg.requestTimeoutMs)
  assert.deepEqual(cmds(core, 'miss').map((c) => [c.sid, c.index]), [[sid, 0]])
  // Its late bytes are ignored: the piece is no longer expected from it.
  core.frame(core.cfg.requestTimeoutMs + 1, 'slow', wire.block(ID, 0, 0, new Uint8Array(1000)))
  assert.deepEqual(cmds(core, 'piece'), [])
})

test('a link that never settles is torn down, offered again, and at last reported unreachable', () => {
  const core = coreAs('me', { retryDelaysMs: [500, 3000] })
  core.connect(0, 'ghost')
  let out = core.poll()
  assert.deepEqual(out.filter((c) => c.cmd === 'open').map((c) => [c.to, c.initiator]), [['ghost', true]])
  let now = core.cfg.connectTimeoutMs
  assert.equal(core.nextWake(), core.cfg.answerGraceMs)
  core.tick(core.cfg.answerGraceMs)
  core.tick(now)
  out = core.poll()
  assert.ok(out.some((c) => c.cmd === 'close' && c.to === 'ghost' && c.reason === CODES.TIMEOUT))
  assert.equal(core.nextWake(), now + 500, 'a retry is due')
  now += 500
  core.tick(now)
  assert.deepEqual(cmds(core, 'open').map((c) => c.to), ['ghost'], 'a fresh link')
  // ICE fails on the second attempt: one more retry, then it is given up.
  core.closed(now + 100, 'ghost', CODES.ICE_FAILED)
  now += 100 + 3000
  core.tick(now)
  assert.deepEqual(cmds(core, 'open').map((c) => c.to), ['ghost'])
  core.tick(now + core.cfg.connectTimeoutMs)
  assert.deepEqual(core.takeUnreachable(), ['ghost'])
  assert.equal(core.nextWake(), null, 'nothing left to do')
  const [last] = core.timeline()
  assert.equal(last.peer, 'ghost')
  assert.equal(last.attempt, 3)
  assert.deepEqual(last.steps.map((s) => s[1]), ['offering', 'closed'])
})

test('the answering side never retries, and a peer that left is not offered again', () => {
  const core = coreAs()
  assert.ok(core.offered(0, 'p1'))
  core.poll()
  core.tick(core.cfg.connectTimeoutMs)
  assert.ok(cmds(core).some((c) => c.cmd === 'close' && c.to === 'p1'))
  assert.equal(core.nextWake(), null, 'the offerer offers again, not us')
  core.connect(1, 'p2')
  core.left(2, 'p2')
  assert.ok(cmds(core).some((c) => c.cmd === 'close' && c.to === 'p2' && c.reason === CODES.PEER_LEFT))
  assert.equal(core.nextWake(), null)
})

test('the agent of the page this tab showed before is never linked to', () => {
  const core = coreAs()
  core.formerSelf('me-before')
  assert.equal(core.connect(0, 'me-before'), false)
  assert.equal(core.offered(0, 'me-before'), false)
  assert.ok(core.connect(0, 'someone'))
})

test('links are bounded; offers beyond the budget are refused', () => {
  const core = coreAs('me', { maxConnections: 2, extraAccepted: 1 })
  assert.ok(core.connect(0, 'a'))
  assert.ok(core.connect(0, 'b'))
  assert.equal(core.connect(0, 'c'), false)
  assert.ok(core.offered(0, 'd'), 'one offer beyond the budget is accepted')
  assert.equal(core.offered(0, 'e'), false)
})

test('the timeline shows each step of a link, with the steps the shell reports', () => {
  const core = coreAs()
  core.connect(10, 'p1')
  core.note(12, 'p1', 'offer-sent')
  core.answered(40, 'p1')
  core.note(45, 'p1', 'ice-connected')
  core.opened(50, 'p1')
  core.frame(51, 'p1', wire.handshake('p1', 'worker'))
  core.frame(51, 'p1', wire.bitfield(ID, 10, () => true))
  core.tick(51 + core.cfg.settleMs)
  const [t] = core.timeline(10)
  assert.equal(t.state, 'settled')
  assert.equal(t.role, 'worker')
  assert.deepEqual(t.steps.map((s) => s.slice(0, 2)), [[0, 'offering'], [2, 'offer-sent'], [30, 'answered'], [35, 'ice-connected'], [40, 'open'], [41, 'handshake'], [141, 'settled']])
  assert.equal(t.steps[6][2], '1 resources, 10 pieces')
})

test('two cores back to back: every piece one holds reaches the other, byte for byte', async () => {
  // The two ends of one link, wired through their commands.
  const piece = (i) => new Uint8Array(Math.min(1000, INFO.size - i * 1000)).fill(i + 1)
  const a = coreAs('a')
  const b = coreAs('b')
  for (const i of ALL) a.stored(0, ID, i, '/x.bin', 10)
  b.connect(0, 'a')
  a.offered(0, 'b')
  a.opened(1, 'b')
  b.opened(1, 'a')
  const got = new Map()
  let sid = null
  let now = 1
  for (let round = 0; round < 50 && got.size < 10; round++) {
    now += 10
    for (const c of a.poll()) {
      if (c.cmd === 'send') b.frame(now, 'a', c.frame)
      if (c.cmd === 'serve') {
        const bytes = piece(c.piece).subarray(c.offset, c.offset + c.length)
        for (let off = 0; off < bytes.length; off += 300) b.frame(now, 'a', wire.block(c.id, c.piece, c.offset + off, bytes.subarray(off, off + 300)))
      }
    }
    b.tick(now)
    if (sid === null && round === 3) sid = b.want(now, INFO, ALL)
    for (const c of b.poll()) {
      if (c.cmd === 'send') a.frame(now, 'b', c.frame)
      if (c.cmd === 'piece') { got.set(c.index, new Uint8Array(c.data)); b.done(now, sid, c.index) }
      assert.notEqual(c.cmd, 'miss', 'a holds every piece')
    }
  }
  assert.deepEqual([...got.keys()].sort((x, y) => x - y), ALL)
  for (const i of ALL) assert.deepEqual(got.get(i), piece(i))
})

test('verified pieces are served from memory, within a byte budget, oldest out first', () => {
  const hot = new W.store.HotCache(3500)
  for (let i = 0; i < 3; i++) hot.put(`k${i}`, new Uint8Array(1000).fill(i).buffer)
  assert.equal(hot.bytes, 3000)
  assert.equal(new Uint8Array(hot.get('k0'))[0], 0, 'k0 is used: it moves to the back')
  hot.put('k3', new Uint8Array(1000).fill(3).buffer)
  assert.equal(hot.bytes, 3000)
  assert.equal(hot.get('k1'), null, 'the least recently used piece left memory')
  assert.equal(new Uint8Array(hot.get('k0'))[0], 0, 'k0 stayed')
  hot.put('big', new ArrayBuffer(4000))
  assert.equal(hot.get('big'), null, 'a piece over the whole budget is not kept')
})

test('a requester is served up to the upload cap, then refused', () => {
  const core = coreAs()
  core.stored(0, ID, 3, '/x.bin', 10)
  core.stored(0, ID, 4, '/x.bin', 10)
  settledPeer(core, 'p1', [])
  core.poll()
  core.setUploadCap(1500)
  core.frame(1, 'p1', wire.request(ID, 3, 0, 1000))
  assert.deepEqual(cmds(core, 'serve').map((c) => c.piece), [3])
  core.frame(2, 'p1', wire.request(ID, 4, 0, 1000))
  assert.deepEqual(sent(core.poll(), 'p1', 'reject').map((r) => r.piece), [4], '1000 more would pass 1500')
  core.setUploadCap(null)
  core.frame(3, 'p1', wire.request(ID, 4, 0, 1000))
  assert.deepEqual(cmds(core, 'serve').map((c) => c.piece), [4], 'no cap, no limit')
})

test('data-saving visitors upload nothing, cellular ones what the operator allows', () => {
  const { uploadRule } = W.agentCore
  const policy = { metered_upload_bytes: 4096 }
  assert.deepEqual(uploadRule(undefined, policy), { serving: true, cap: null, why: null })
  assert.deepEqual(uploadRule({ type: 'wifi' }, policy), { serving: true, cap: null, why: null })
  assert.equal(uploadRule({ saveData: true, type: 'wifi' }, policy).serving, false)
  assert.deepEqual(uploadRule({ type: 'cellular' }, policy), { serving: true, cap: 4096, why: 'cellular: uploads at most 4096 bytes' })
  assert.equal(uploadRule({ type: 'cellular' }, {}).serving, false, 'no policy yet: nothing')
  assert.equal(uploadRule({ type: 'cellular', saveData: true }, policy).cap, 0)
})
