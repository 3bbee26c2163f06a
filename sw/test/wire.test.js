'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const W = require('./load.js')
const rng = require('./rng.js')
const { wire } = W

const ID = 'ab'.repeat(32)

test('every frame type round-trips', () => {
  const hs = wire.decode(wire.handshake('pAbc_123', 'worker'))
  assert.deepEqual(hs, { type: 'handshake', version: wire.VERSION, role: 'worker', peerId: 'pAbc_123' })
  const have = new Set([0, 3, 8, 9, 20])
  const bf = wire.decode(wire.bitfield(ID, 21, (i) => have.has(i)))
  assert.equal(bf.type, 'bitfield')
  assert.equal(bf.id, ID)
  assert.equal(bf.count, 21)
  for (let i = 0; i < 25; i++) assert.equal(bf.has(i), have.has(i), `piece ${i}`)
  assert.deepEqual(wire.decode(wire.have(ID, 7)), { type: 'have', id: ID, piece: 7 })
  for (const [make, type] of [[wire.request, 'request'], [wire.cancel, 'cancel'], [wire.reject, 'reject']]) {
    assert.deepEqual(wire.decode(make(ID, 5, 16384, 999)), { type, id: ID, piece: 5, offset: 16384, length: 999 })
  }
  const data = new Uint8Array(16384).map((_, i) => i & 255)
  const blk = wire.decode(wire.block(ID, 2, 32768, data))
  assert.equal(blk.type, 'block')
  assert.equal(blk.offset, 32768)
  assert.deepEqual([...blk.data], [...data])
})

test('malformed frames are refused with bad-frame', () => {
  const cases = [
    new Uint8Array(0),
    Uint8Array.of(99),
    Uint8Array.of(1, 9, 0, 0), // wrong version
    Uint8Array.of(1, 1, 0, 5, 65), // id length lies
    Uint8Array.of(1, 1, 7, 0), // bad role
    wire.have(ID, 1).slice(0, 36), // short
    (() => { const f = wire.have(ID, 1); const g = new Uint8Array(f.length + 1); g.set(f); return g })(), // long
    (() => { const f = wire.bitfield(ID, 9, () => true); f[f.length - 1] |= 1; return f })(), // spare bit set
    (() => { const f = wire.bitfield(ID, 8, () => true); const v = new DataView(f.buffer); v.setUint32(33, 1 << 30); return f })(),
    wire.request(ID, 1, 0, 10).slice(0, 44),
    (() => { const f = new Uint8Array(41 + 16385); f[0] = 5; return f })() // block over 16 KiB
  ]
  for (const frame of cases) {
    assert.throws(() => wire.decode(frame), (e) => e.code === 'bad-frame', `frame ${[...frame.slice(0, 6)]}`)
  }
  assert.throws(() => wire.decode('text'), (e) => e.code === 'bad-frame')
})

test('random bytes never crash the decoder with anything but WhisError', () => {
  const next = rng(42)
  for (let n = 0; n < 20000; n++) {
    const len = next(80)
    const f = new Uint8Array(len).map(() => next(256))
    if (len > 0 && next(2)) f[0] = 1 + next(7) // valid type byte half the time
    try { wire.decode(f) } catch (e) { assert.equal(e.name, 'WhisError', String(e)) }
  }
})

test('ids are 32 raw bytes on the wire', () => {
  assert.throws(() => wire.idToBytes('xyz'), (e) => e.code === 'bad-id')
  assert.equal(wire.bytesToId(wire.idToBytes(ID), 0), ID)
})
