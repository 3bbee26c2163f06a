// One error type for all of Whis's browser code, with stable codes, and the
// reasons a peer connection ends. Code that decides something from an error or
// a reason compares with these constants, never with free text.
;(function (W) {
  'use strict'
  const CODES = Object.freeze({
    // A peer broke the protocol: it is dropped and never asked again.
    BAD_FRAME: 'bad-frame',
    BAD_PIECE: 'bad-piece',
    WRONG_PEER: 'wrong-peer',
    BLOCK_OUT_OF_RANGE: 'block-out-of-range',
    // Bad input from the network that is not a peer's fault.
    BAD_ID: 'bad-id',
    BAD_MANIFEST: 'bad-manifest',
    JOIN_FAILED: 'join-failed',
    // The origin, when it is the fallback.
    ORIGIN_STATUS: 'origin-status',
    ORIGIN_STALLED: 'origin-stalled',
    ORIGIN_MISMATCH: 'origin-mismatch',
    ORIGIN_SHORT: 'origin-short',
    // Why a connection ended without anyone's fault.
    TIMEOUT: 'timeout',
    ICE_FAILED: 'ice-failed',
    NEGOTIATION_FAILED: 'negotiation-failed',
    CHANNEL_CLOSED: 'channel-closed',
    PEER_LEFT: 'peer-left',
    WORKER_DOWN: 'worker-down',
    LEAVING: 'leaving',
    REJOIN: 'rejoin',
    OVER_BUDGET: 'over-budget'
  })

  /** Reasons that cost the remote peer its connection for good. */
  const BANNING = new Set([CODES.BAD_FRAME, CODES.BAD_PIECE, CODES.WRONG_PEER, CODES.BLOCK_OUT_OF_RANGE])

  class WhisError extends Error {
    /** @param {string} code one of CODES  @param {object} [details] */
    constructor (code, details = {}) {
      super(details.message ? `${code}: ${details.message}` : code)
      this.name = 'WhisError'
      this.code = code
      this.details = details
    }
  }

  W.WhisError = WhisError
  W.errors = { CODES, WhisError, bans: (reason) => BANNING.has(reason) }
})(globalThis.Whis = globalThis.Whis || {})
