// Time and the origin, per context (the service worker, a page, the worker
// browser's page): one Scheduler each, handed to everything that asks the
// origin for bytes, so acquisitions in one context share what they learn and
// contexts (and tests) never share state through module globals.
;(function (W) {
  'use strict'

  /** The real clock. Tests pass a virtual one with the same shape. */
  const clock = {
    now: () => Date.now(),
    setTimeout: (fn, ms) => setTimeout(fn, ms),
    clearTimeout: (t) => clearTimeout(t)
  }

  /**
   * Origin requests in flight at once, per context. Chromium opens at most six
   * connections per host, and the event stream, the signaling POSTs and the
   * manifests need some of them: a page that fired every range at once would
   * queue its own WebRTC handshake behind seconds of image bytes. Pieces
   * waiting for a slot stay open to peers.
   */
  const ORIGIN_SLOTS = 4

  /**
   * The policy a site's operator chose (`whis serve --prefer`), as the agent
   * learns it from `join`. Pieces no connected peer holds go to the origin at
   * once under either; for pieces a peer holds:
   * - `offload` (default): the origin is asked only when peers stall (no
   *   piece from a peer for one gap: about twice what the origin would take
   *   for a piece, 2 to 5 s; then the next few pieces go to the origin and
   *   peers keep the rest) or run out of time (four gaps, or as long as the
   *   resource takes at 1 MB/s, whichever is longer: then all that is left).
   *   Two seconds, not less: on a loaded machine a healthy peer's page can
   *   pause for a second.
   * - `speed`: peers get a 250 ms head start, then the origin races them.
   */
  const POLICIES = {
    offload: { minMs: 2000, maxMs: 5000, gaps: 4, floorBytesPerMs: 1000 },
    speed: { minMs: 250, maxMs: 250, gaps: 1, floorBytesPerMs: Infinity }
  }

  class Gate {
    constructor (n) { this.free = n; this.queue = [] }
    acquire () {
      if (this.free > 0) { this.free--; return Promise.resolve() }
      return new Promise((resolve) => this.queue.push(resolve))
    }
    release () {
      const next = this.queue.shift()
      if (next) next()
      else this.free++
    }
  }

  class Scheduler {
    /** @param {{clock?: object, slots?: number, prefer?: string}} [opts] */
    constructor (opts = {}) {
      this.clock = opts.clock || clock
      this.gate = new Gate(opts.slots || ORIGIN_SLOTS)
      // Optimistic start: 2 MB/s and 50 ms; learned from every origin answer.
      this.bytesPerMs = 2000
      this.rttMs = 50
      this.lastPeerPieceAt = -Infinity
      this.setPolicy({ prefer: opts.prefer })
    }

    /** @param {{prefer?: string}} p the server's policy (unknown values: offload) */
    setPolicy (p = {}) {
      this.prefer = POLICIES[p.prefer] ? p.prefer : 'offload'
      this.policy = POLICIES[this.prefer]
    }

    /** How long peers get for a piece of `bytes` before the origin is asked. */
    deadlineFor (bytes) {
      const originMs = this.rttMs + bytes / this.bytesPerMs
      return Math.min(this.policy.maxMs, Math.max(this.policy.minMs, 2 * originMs))
    }

    /**
     * How long peers may keep an acquisition of `bytes` waiting, given its
     * gap (the longest silence allowed): `due(now, lastPeerPiece)` is when
     * the origin takes over what is left, moved on by every piece a peer
     * delivers, here or for any other resource of this context (peers serve
     * one pipeline), and never past the policy's limit.
     */
    peerWait (gap, bytes) {
      const start = this.clock.now()
      const limit = start + Math.max(this.policy.gaps * gap, bytes / this.policy.floorBytesPerMs)
      return {
        gap,
        limit,
        due: (now, lastPeerPiece) => Math.min(limit, Math.max(start, lastPeerPiece, this.lastPeerPieceAt) + gap)
      }
    }

    /** An origin answer of `bytes` took `ms`. */
    learn (bytes, ms) {
      if (ms <= 0 || bytes < 16384) return
      this.bytesPerMs = 0.7 * this.bytesPerMs + 0.3 * (bytes / ms)
    }

    /** A verified piece came from a peer (of any resource). */
    peerDelivered () { this.lastPeerPieceAt = this.clock.now() }

    acquire () { return this.gate.acquire() }
    release () { this.gate.release() }
  }

  W.scheduler = { Scheduler, clock, ORIGIN_SLOTS, POLICIES }
})(globalThis.Whis = globalThis.Whis || {})
