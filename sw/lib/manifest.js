// Manifests (see docs/protocol.md): piece ranges, SHA-256 verification,
// the content-addressed resource id, and HTTP Range → pieces.
;(function (W) {
  'use strict'
  const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))
  const hex = (buf) => { const b = new Uint8Array(buf); let s = ''; for (let i = 0; i < b.length; i++) s += HEX[b[i]]; return s }

  async function sha256 (data) { return hex(await crypto.subtle.digest('SHA-256', data)) }

  /** Shape check of a manifest from the network; throws WhisError('bad-manifest'). */
  function check (m) {
    const ok = m && typeof m === 'object' && /^[0-9a-f]{64}$/.test(m.id) &&
      Number.isSafeInteger(m.size) && m.size > 0 && Number.isInteger(m.piece_size) && m.piece_size > 0 &&
      Array.isArray(m.pieces) && m.pieces.length === Math.ceil(m.size / m.piece_size) &&
      m.pieces.every((p) => typeof p === 'string' && /^[0-9a-f]{64}$/.test(p))
    if (!ok) throw new W.WhisError(W.errors.CODES.BAD_MANIFEST, { message: 'manifest has the wrong shape' })
    return m
  }

  /** The resource id recomputed from the piece list: a manifest must name itself. */
  async function computeId (m) {
    const buf = new Uint8Array(12 + 32 * m.pieces.length)
    const view = new DataView(buf.buffer)
    view.setUint32(0, Math.floor(m.size / 2 ** 32))
    view.setUint32(4, m.size >>> 0)
    view.setUint32(8, m.piece_size)
    m.pieces.forEach((p, i) => buf.set(W.wire.idToBytes(p), 12 + 32 * i))
    return sha256(buf)
  }

  /** [start, end) byte range of piece i. */
  function pieceRange (m, i) {
    const start = i * m.piece_size
    return [start, Math.min(m.size, start + m.piece_size)]
  }

  async function verifyPiece (m, i, data) {
    if (!Number.isInteger(i) || i < 0 || i >= m.pieces.length) return false
    const [s, e] = pieceRange(m, i)
    if (!data || data.byteLength !== e - s) return false
    return (await sha256(data)) === m.pieces[i]
  }

  /**
   * A request's Range header against a size: `null` (no usable Range: send
   * everything), {start, end} inclusive, or 'unsatisfiable'. Multi-ranges
   * and syntax errors count as no Range, as HTTP allows.
   */
  function parseRange (header, size) {
    if (!header) return null
    const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/.exec(header)
    if (!m || (m[1] === '' && m[2] === '')) return null
    if (m[1] === '') {
      const n = Number(m[2])
      if (n === 0) return 'unsatisfiable'
      return { start: Math.max(0, size - n), end: size - 1 }
    }
    const start = Number(m[1])
    const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)
    if (m[2] !== '' && Number(m[2]) < start) return null
    if (start >= size) return 'unsatisfiable'
    return { start, end }
  }

  /** Piece indices covering bytes [start, end] inclusive. */
  function piecesFor (m, start, end) {
    const out = []
    for (let i = Math.floor(start / m.piece_size); i <= Math.floor(end / m.piece_size); i++) out.push(i)
    return out
  }

  W.manifest = { sha256, hex, check, computeId, pieceRange, verifyPiece, parseRange, piecesFor }
})(globalThis.Whis = globalThis.Whis || {})
