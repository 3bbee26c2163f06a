// Piece picker: rarest-first across peers, pipelined, with an endgame.
//
// Pure and synchronous: the caller says which peers exist and what they
// hold; the picker says whom to ask for what. Invariants (property-tested):
// - never asks a peer for a piece it does not have, nor a bad peer at all;
// - never asks for a piece twice outside the endgame, never twice of one peer;
// - never exceeds `maxPerPeer` requests in flight per peer;
// - reports every needed piece that no usable peer has, so the caller can go
//   to the origin at once instead of waiting for a deadline.
;(function (W) {
  'use strict'
  class Picker {
    /** @param {Iterable<number>} needed piece indices  @param {{maxPerPeer?:number, endgameDup?:number}} [opts] */
    constructor (needed, opts = {}) {
      this.needed = new Set(needed)
      this.maxPerPeer = opts.maxPerPeer || 4
      this.endgameDup = opts.endgameDup || 2
      /** @type {Map<number, Set<string>>} piece → peers asked */
      this.inflight = new Map()
      /** @type {Map<number, Set<string>>} piece → peers that refused or failed it */
      this.refused = new Map()
      /** @type {Set<string>} */
      this.bad = new Set()
    }

    /** Requests in flight to `peer`. */
    load (peer) {
      let n = 0
      for (const asked of this.inflight.values()) if (asked.has(peer)) n++
      return n
    }

    /** The piece arrived (and verified): peers still working on it should be cancelled. */
    done (piece) {
      this.needed.delete(piece)
      const others = this.inflight.get(piece) || new Set()
      this.inflight.delete(piece)
      return [...others]
    }

    /** `peer` rejected, timed out or sent a bad copy of `piece`: do not ask it again for it. */
    failed (piece, peer) {
      const asked = this.inflight.get(piece)
      if (asked) { asked.delete(peer); if (asked.size === 0) this.inflight.delete(piece) }
      if (!this.refused.has(piece)) this.refused.set(piece, new Set())
      this.refused.get(piece).add(peer)
    }

    /** `peer` went away: what it was asked is open to others (it may come back). */
    forget (peer) {
      for (const [piece, asked] of this.inflight) if (asked.delete(peer) && asked.size === 0) this.inflight.delete(piece)
    }

    /** Never ask `peer` for anything again (bad piece, broken frames). */
    markBad (peer) {
      this.bad.add(peer)
      this.forget(peer)
    }

    /**
     * @param {Array<{id:string, has:(i:number)=>boolean}>} peers connected peers
     * @returns {{assign: Array<[string, number]>, unavailable: number[]}}
     */
    next (peers) {
      const usable = peers.filter((p) => !this.bad.has(p.id))
      const canAsk = (p, i) => p.has(i) && !(this.refused.get(i) || new Set()).has(p.id)
      const loads = new Map(usable.map((p) => [p.id, this.load(p.id)]))
      const assign = []
      const unavailable = []
      const waiting = []
      for (const i of this.needed) {
        if (this.inflight.has(i)) continue
        const holders = usable.filter((p) => canAsk(p, i))
        if (holders.length === 0) unavailable.push(i)
        else waiting.push([holders.length, i, holders])
      }
      // Rarest first; among equals the earlier piece (streams start sooner).
      waiting.sort((a, b) => a[0] - b[0] || a[1] - b[1])
      for (const [, i, holders] of waiting) {
        const p = this._leastLoaded(holders, loads)
        if (!p) continue
        this._ask(p.id, i, loads, assign)
      }
      // Endgame: nothing left to start, so duplicate what is in flight.
      const allStarted = waiting.every(([, i]) => this.inflight.has(i))
      if (allStarted && this.inflight.size > 0) {
        for (const [i, asked] of [...this.inflight].sort((a, b) => a[0] - b[0])) {
          if (asked.size >= this.endgameDup) continue
          const p = this._leastLoaded(usable.filter((q) => canAsk(q, i) && !asked.has(q.id)), loads)
          if (p) this._ask(p.id, i, loads, assign)
        }
      }
      return { assign, unavailable }
    }

    _leastLoaded (candidates, loads) {
      let best = null
      for (const p of candidates) {
        const l = loads.get(p.id) || 0
        if (l >= this.maxPerPeer) continue
        if (!best || l < loads.get(best.id)) best = p
      }
      return best
    }

    _ask (peer, i, loads, assign) {
      if (!this.inflight.has(i)) this.inflight.set(i, new Set())
      this.inflight.get(i).add(peer)
      loads.set(peer, (loads.get(peer) || 0) + 1)
      assign.push([peer, i])
    }
  }

  W.Picker = Picker
})(globalThis.Whis = globalThis.Whis || {})
