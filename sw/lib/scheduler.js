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
   * learns it from `join`:
   * - `offload` (default): a piece that peers may hold goes to the origin only
   *   after its deadline: about twice what the origin would take for it, at
   *   least 1 s, at most 5 s, stretched (up to four deadlines) while peers are
   *   visibly delivering.
   * - `speed`: the origin is asked after a short head start for peers (250 ms)
   *   and races them; a slow peer never holds a page back.
   */
  const POLICIES = {
    offload: { minMs: 1000, maxMs: 5000, stretch: 4 },
    speed: { minMs: 250, maxMs: 250, stretch: 1 }
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

    /** Whether a piece past its first deadline may wait longer: peers are delivering right now. */
    mayStretch (deadline, waited) {
      const busy = this.clock.now() - this.lastPeerPieceAt < deadline / 2
      return busy && waited < this.policy.stretch * deadline
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
