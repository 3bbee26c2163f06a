'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const W = require('./load.js')
const M = W.manifest

function makeManifest (data, pieceSize) {
  const pieces = []
  for (let s = 0; s < data.length; s += pieceSize) pieces.push(crypto.createHash('sha256').update(data.subarray(s, s + pieceSize)).digest('hex'))
  const h = crypto.createHash('sha256')
  const head = Buffer.alloc(12)
  head.writeBigUInt64BE(BigInt(data.length), 0)
  head.writeUInt32BE(pieceSize, 8)
  h.update(head)
  for (const p of pieces) h.update(Buffer.from(p, 'hex'))
  return { path: '/x.bin', id: h.digest('hex'), size: data.length, piece_size: pieceSize, pieces }
}

test('the resource id follows the documented formula', async () => {
  const data = crypto.randomBytes(100000)
  const m = makeManifest(data, 16384)
  assert.equal(await M.computeId(m), m.id)
  // Same value as the server's unit test for "abc".
  const abc = makeManifest(Buffer.from('abc'), 16384)
  assert.equal(abc.pieces[0], 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
})

test('pieces verify, corrupted pieces do not', async () => {
  const data = crypto.randomBytes(50000)
  const m = M.check(makeManifest(data, 16384))
  for (let i = 0; i < m.pieces.length; i++) {
    const [s, e] = M.pieceRange(m, i)
    assert.ok(await M.verifyPiece(m, i, data.subarray(s, e)))
    const bad = Buffer.from(data.subarray(s, e))
    bad[0] ^= 1
    assert.equal(await M.verifyPiece(m, i, bad), false)
    assert.equal(await M.verifyPiece(m, i, data.subarray(s, e - 1)), false, 'short piece')
  }
  assert.equal(await M.verifyPiece(m, 99, data.subarray(0, 10)), false)
  assert.throws(() => M.check({ ...m, pieces: m.pieces.slice(1) }), (e) => e.code === 'bad-manifest')
})

test('Range headers map to byte spans and pieces', () => {
  assert.deepEqual(M.parseRange('bytes=0-99', 1000), { start: 0, end: 99 })
  assert.deepEqual(M.parseRange('bytes=900-', 1000), { start: 900, end: 999 })
  assert.deepEqual(M.parseRange('bytes=-100', 1000), { start: 900, end: 999 })
  assert.deepEqual(M.parseRange('bytes=990-5000', 1000), { start: 990, end: 999 })
  assert.equal(M.parseRange('bytes=1000-', 1000), 'unsatisfiable')
  assert.equal(M.parseRange('bytes=5-2', 1000), null)
  assert.equal(M.parseRange('bytes=0-1,4-5', 1000), null)
  assert.equal(M.parseRange(null, 1000), null)
  const m = { piece_size: 100, size: 1000 }
  assert.deepEqual(M.piecesFor(m, 150, 420), [1, 2, 3, 4])
  assert.deepEqual(M.piecesFor(m, 0, 99), [0])
})
