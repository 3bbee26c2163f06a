// The peer wire: binary frames over an ordered RTCDataChannel.
//
// Every frame starts with a one-byte type. Resource ids are the 32 raw bytes
// of the manifest id (hex in JSON). Integers are big-endian u32.
//
//   HANDSHAKE  1 | version u8 | role u8 (0 visitor, 1 worker) | id length u8 | peer id (UTF-8)
//   BITFIELD   2 | resource 32 | piece count u32 | bits (MSB first)
//   HAVE       3 | resource 32 | piece u32
//   REQUEST    4 | resource 32 | piece u32 | offset u32 | length u32
//   BLOCK      5 | resource 32 | piece u32 | offset u32 | bytes…  (≤ 16 KiB)
//   CANCEL     6 | resource 32 | piece u32 | offset u32 | length u32
//   REJECT     7 | resource 32 | piece u32 | offset u32 | length u32
//
// decode() never trusts a length: anything malformed throws WhisError('bad-frame').
;(function (W) {
  'use strict'
  const VERSION = 1
  const T = { HANDSHAKE: 1, BITFIELD: 2, HAVE: 3, REQUEST: 4, BLOCK: 5, CANCEL: 6, REJECT: 7 }
  const NAMES = Object.fromEntries(Object.entries(T).map(([k, v]) => [v, k.toLowerCase()]))
  const BLOCK_SIZE = 16 * 1024
  const MAX_PIECES = 1 << 20
  const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))

  function bad (message) { return new W.WhisError(W.errors.CODES.BAD_FRAME, { message }) }

  /** @param {string} hex 64 hex digits → 32 bytes */
  function idToBytes (hex) {
    if (typeof hex !== 'string' || !/^[0-9a-f]{64}$/.test(hex)) throw new W.WhisError(W.errors.CODES.BAD_ID, { message: String(hex) })
    const out = new Uint8Array(32)
    for (let i = 0; i < 32; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16)
    return out
  }
  function bytesToId (b, at) {
    let s = ''
    for (let i = 0; i < 32; i++) s += HEX[b[at + i]]
    return s
  }

  function frame (type, size) {
    const buf = new Uint8Array(size)
    buf[0] = type
    return { buf, view: new DataView(buf.buffer) }
  }

  function handshake (peerId, role) {
    const id = new TextEncoder().encode(peerId)
    if (id.length > 255) throw bad('peer id too long')
    const { buf } = frame(T.HANDSHAKE, 4 + id.length)
    buf[1] = VERSION
    buf[2] = role === 'worker' ? 1 : 0
    buf[3] = id.length
    buf.set(id, 4)
    return buf
  }

  /** @param {string} id  @param {number} count  @param {(i:number)=>boolean} has */
  function bitfield (id, count, has) {
    const { buf, view } = frame(T.BITFIELD, 37 + Math.ceil(count / 8))
    buf.set(idToBytes(id), 1)
    view.setUint32(33, count)
    for (let i = 0; i < count; i++) if (has(i)) buf[37 + (i >> 3)] |= 0x80 >> (i & 7)
    return buf
  }

  function have (id, piece) {
    const { buf, view } = frame(T.HAVE, 37)
    buf.set(idToBytes(id), 1)
    view.setUint32(33, piece)
    return buf
  }

  function span (type, id, piece, offset, length) {
    const { buf, view } = frame(type, 45)
    buf.set(idToBytes(id), 1)
    view.setUint32(33, piece)
    view.setUint32(37, offset)
    view.setUint32(41, length)
    return buf
  }
  const request = (id, piece, offset, length) => span(T.REQUEST, id, piece, offset, length)
  const cancel = (id, piece, offset, length) => span(T.CANCEL, id, piece, offset, length)
  const reject = (id, piece, offset, length) => span(T.REJECT, id, piece, offset, length)

  /** @param {Uint8Array} data at most BLOCK_SIZE bytes */
  function block (id, piece, offset, data) {
    if (data.byteLength > BLOCK_SIZE) throw bad('block over 16 KiB')
    const { buf, view } = frame(T.BLOCK, 41 + data.byteLength)
    buf.set(idToBytes(id), 1)
    view.setUint32(33, piece)
    view.setUint32(37, offset)
    buf.set(data, 41)
    return buf
  }

  /** @param {ArrayBuffer|Uint8Array} input  @returns {object} a message */
  function decode (input) {
    const b = input instanceof Uint8Array ? input : input instanceof ArrayBuffer ? new Uint8Array(input) : null
    if (!b) throw bad('not binary')
    if (b.length < 1) throw bad('empty frame')
    const view = new DataView(b.buffer, b.byteOffset, b.byteLength)
    const type = b[0]
    const name = NAMES[type]
    if (!name) throw bad(`unknown type ${type}`)
    if (type === T.HANDSHAKE) {
      if (b.length < 4) throw bad('short handshake')
      if (b[1] !== VERSION) throw new W.WhisError(W.errors.CODES.BAD_FRAME, { message: `protocol version ${b[1]}, this peer speaks ${VERSION}` })
      if (b[2] > 1) throw bad('bad role')
      if (b.length !== 4 + b[3]) throw bad('handshake length')
      let peerId
      try { peerId = new TextDecoder('utf-8', { fatal: true }).decode(b.subarray(4)) } catch (_) { throw bad('peer id not UTF-8') }
      return { type: 'handshake', version: b[1], role: b[2] === 1 ? 'worker' : 'visitor', peerId }
    }
    if (b.length < 37) throw bad(`short ${name}`)
    const id = bytesToId(b, 1)
    const piece = view.getUint32(33)
    if (type === T.BITFIELD) {
      const count = piece
      if (count > MAX_PIECES) throw bad('too many pieces')
      if (b.length !== 37 + Math.ceil(count / 8)) throw bad('bitfield length')
      const bits = b.slice(37)
      // Spare bits past `count` must be zero.
      if (count % 8 && (bits[bits.length - 1] & (0xff >> (count % 8)))) throw bad('bitfield spare bits set')
      return { type: 'bitfield', id, count, has: (i) => i < count && (bits[i >> 3] & (0x80 >> (i & 7))) !== 0 }
    }
    if (type === T.HAVE) {
      if (b.length !== 37) throw bad('have length')
      return { type: 'have', id, piece }
    }
    if (b.length < 41) throw bad(`short ${name}`)
    const offset = view.getUint32(37)
    if (type === T.BLOCK) {
      if (b.length - 41 > BLOCK_SIZE) throw bad('block over 16 KiB')
      return { type: 'block', id, piece, offset, data: b.subarray(41) }
    }
    if (b.length !== 45) throw bad(`${name} length`)
    return { type: name, id, piece, offset, length: view.getUint32(41) }
  }

  W.wire = { VERSION, TYPES: T, BLOCK_SIZE, handshake, bitfield, have, request, cancel, reject, block, decode, idToBytes, bytesToId }
})(globalThis.Whis = globalThis.Whis || {})
