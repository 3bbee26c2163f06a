// One error type for all of Whis's browser code, with stable codes
// (bad-frame, bad-piece, no-manifest, origin-mismatch, timeout, closed …).
;(function (W) {
  'use strict'
  class WhisError extends Error {
    /** @param {string} code stable machine-readable code  @param {object} [details] */
    constructor (code, details = {}) {
      super(details.message ? `${code}: ${details.message}` : code)
      this.name = 'WhisError'
      this.code = code
      this.details = details
    }
  }
  W.WhisError = WhisError
})(globalThis.Whis = globalThis.Whis || {})
