// The page agent's logic, without IO: which peers we are linked to and what
// they hold, the pieces asked of whom, the want sessions that need pieces, the
// holdings we announce, and when a link that never settles is torn down and
// tried again. Events go in with the time (`now`, ms on any monotonic clock);
// what to do comes out of `poll()` as commands; `nextWake()` says when to call
// `tick(now)` next. No timers, sockets, storage or WebRTC here: agent.js is
// the thin shell that carries the commands out, and the tests drive this on a
// virtual clock.
//
// Commands (objects with a `cmd` field):
//   open   {to, initiator}        start a WebRTC link (we offer if initiator)
//   close  {to, reason}           tear a link down (the core forgot it already)
//   send   {to, frame}            a wire frame on an open link
//   serve  {to, id, piece, offset, length}   read those bytes and send them
//   unserve {to, id, piece}       the peer cancelled: drop it from the queue
//   piece  {sid, index, data, from, role}    bytes for a session, to verify
//   miss   {sid, index}           no usable peer holds it: the origin may
//   peers  {count}                the number of open links changed
;(function (W) {
  'use strict'
  const wire = W.wire
  const { CODES, bans } = W.errors

  const DEFAULTS = {
    /** Links we open or accept; the join answer may say otherwise. */
    maxConnections: 6,
    /** Offers accepted beyond that: the offerer chose us, refusing costs it a timeout. */
    extraAccepted: 2,
    /** Requests in flight per peer (a worker browser pulls harder). */
    maxPerPeer: 4,
    /** A piece asked of a peer that has not come this long is asked elsewhere. */
    requestTimeoutMs: 4000,
    /** After a handshake its bitfields follow at once on the ordered channel;
     *  after this long, what the peer did not announce it does not hold. */
    settleMs: 100,
    /** An offer unanswered this long: that peer holds no misses back any more. */
    answerGraceMs: 1500,
    /** A link that has not settled this long after it began is torn down… */
    connectTimeoutMs: 10000,
    /** …and, if we offered, offered again after these delays, then given up. */
    retryDelaysMs: [500, 3000],
    /** Steps kept per link, and ended links kept, for `timeline()`. */
    maxSteps: 64,
    maxHistory: 32
  }

  class AgentCore {
    /** @param {object} [opts] DEFAULTS to override, and `role` ('visitor' | 'worker') */
    constructor (opts = {}) {
      this.cfg = { ...DEFAULTS, ...opts }
      this.role = opts.role || 'visitor'
      if (this.role === 'worker' && !opts.maxPerPeer) this.cfg.maxPerPeer = 8
      this.me = null
      this.workerId = null
      this.links = new Map() // remote → Link
      this.sessions = new Map() // sid → Session
      this.holdings = new Map() // resource id → {count, have: Set, path}
      this.banned = new Set()
      this.former = new Set() // our own earlier ids (see formerSelf)
      this.retries = new Map() // remote → {at, attempt}
      this.unreachable = new Set() // peers we gave up on: the tracker hears of them
      this.history = []
      this.serving = true
      this.uploadCap = null // bytes we may still promise to serve in all; null: no limit
      this.uploaded = 0
      this.pendingJoin = false
      this.nextSid = 1
      this.out = []
    }

    // ---- identity, holdings, policy -------------------------------------

    /**
     * We are joining: until the answer (and the links it suggests) are in,
     * nobody can say which pieces peers hold, so no misses go out yet.
     */
    joining () { this.pendingJoin = true }

    /** We joined: our id, what the server told us, and whom to link to first. */
    joined (now, me, { maxConnections, workerId, peers = [] } = {}) {
      this.me = me
      if (maxConnections) this.cfg.maxConnections = maxConnections
      this.workerId = workerId || null
      for (const p of peers) this.connect(now, p)
      this.pendingJoin = false
      // With nobody to link to, what was held back is missed now.
      this._pumpAll(now)
    }

    /** The join failed: there are no peers to wait for. */
    joinFailed (now) {
      this.pendingJoin = false
      this._pumpAll(now)
    }

    /** Pieces we hold from before (the store, at start): announced in every bitfield. */
    hold (id, count, have, path) {
      this.holdings.set(id, { count, have: new Set(have), path })
    }

    /** Whether we serve pieces at all (a data-saving visitor does not). */
    setServing (on) { this.serving = !!on }

    /** Most bytes we serve in all (a visitor on a metered link); null: no limit. */
    setUploadCap (bytes) { this.uploadCap = bytes === null ? null : Math.max(0, Number(bytes) || 0) }

    /** A verified piece is ours now: tell every open link. False if we had it. */
    stored (now, id, index, path, count) {
      let h = this.holdings.get(id)
      if (!h) { h = { count, have: new Set(), path }; this.holdings.set(id, h) }
      if (h.have.has(index)) return false
      h.have.add(index)
      const frame = wire.have(id, index)
      for (const l of this.links.values()) if (l.open) this._send(l.remote, frame)
      return true
    }

    // ---- links -----------------------------------------------------------

    /**
     * Ids that are this visitor under another name: the agent of the page
     * this tab showed before (its goodbye may reach the server after we
     * join, and the tracker could suggest it). Never linked to.
     */
    formerSelf (id) { if (id) this.former.add(id) }

    /** Offer a link to `remote` unless over budget, banned or already linked. */
    connect (now, remote, attempt = 0) {
      if (!remote || remote === this.me || this.former.has(remote) || this.links.has(remote) || this.banned.has(remote)) return false
      if (this.links.size >= this.cfg.maxConnections) return false
      this.retries.delete(remote)
      this._link(now, remote, true, attempt)
      return true
    }

    /** A signal came from a peer we have no link to: accept it (true) or ignore it. */
    offered (now, remote) {
      if (!remote || remote === this.me || this.former.has(remote) || this.banned.has(remote)) return false
      if (this.links.has(remote)) return true
      if (this.links.size >= this.cfg.maxConnections + this.cfg.extraAccepted) return false
      this.retries.delete(remote)
      this._link(now, remote, false, 0)
      return true
    }

    _link (now, remote, initiator, attempt) {
      const role = remote === this.workerId ? 'worker' : 'visitor'
      const l = {
        remote,
        role,
        initiator,
        attempt,
        born: now,
        answered: !initiator, // it offered, or (when we offer) its answer came
        graceDone: !initiator,
        open: false,
        settleAt: null,
        settled: false,
        has: new Map(), // resource id → Set of pieces
        incoming: new Map(), // `${id}:${piece}` → {buf, got}
        steps: [],
        ended: null
      }
      this.links.set(remote, l)
      this._step(now, l, initiator ? 'offering' : 'answering', attempt ? `attempt ${attempt + 1}` : undefined)
      this.out.push({ cmd: 'open', to: remote, initiator })
    }

    /** A step of a link's negotiation, for `timeline()` (the shell reports the WebRTC ones). */
    note (now, remote, step, detail) {
      const l = this.links.get(remote)
      if (l) this._step(now, l, step, detail)
    }

    _step (now, l, step, detail) {
      if (l.steps.length < this.cfg.maxSteps) l.steps.push(detail === undefined ? [now, step] : [now, step, detail])
    }

    /** The peer answered our offer. */
    answered (now, remote) {
      const l = this.links.get(remote)
      if (!l || l.answered) return
      l.answered = true
      l.graceDone = true
      this._step(now, l, 'answered')
    }

    /** The data channel opened: introduce ourselves and say what we hold. */
    opened (now, remote) {
      const l = this.links.get(remote)
      if (!l || l.open) return
      l.open = true
      l.answered = true
      l.graceDone = true
      this._step(now, l, 'open')
      this._send(remote, wire.handshake(this.me, this.role))
      for (const [id, h] of this.holdings) this._send(remote, wire.bitfield(id, h.count, (i) => h.have.has(i)))
      this._peers()
    }

    /** The link ended (channel closed, ICE failed, negotiation broke). */
    closed (now, remote, reason) {
      const l = this._drop(now, remote, reason, false)
      if (l && !l.settled) this._retryLater(now, l)
    }

    /** The peer left the swarm (the server said so), or we leave: no retry. */
    left (now, remote, reason = CODES.PEER_LEFT) {
      this.retries.delete(remote)
      this._drop(now, remote, reason, true)
    }

    /** Forget a link; `tell` asks the shell to close it. Banning reasons ban. */
    _drop (now, remote, reason, tell) {
      if (bans(reason)) this.banned.add(remote)
      const l = this.links.get(remote)
      if (!l) return null
      this.links.delete(remote)
      l.ended = reason
      this._step(now, l, 'closed', reason)
      this.history.push(l)
      if (this.history.length > this.cfg.maxHistory) this.history.shift()
      if (tell) this.out.push({ cmd: 'close', to: remote, reason })
      for (const s of this.sessions.values()) {
        s.picker.forget(remote)
        for (const key of [...s.asked.keys()]) if (key.startsWith(`${remote}:`)) s.asked.delete(key)
      }
      if (l.open) this._peers()
      this._pumpAll(now)
      return l
    }

    /** Tear a link down ourselves (and tell the shell to close it). */
    drop (now, remote, reason) { this._drop(now, remote, reason, true) }

    // ---- frames ----------------------------------------------------------

    /** A frame arrived on `remote`'s open channel. */
    frame (now, remote, data) {
      const l = this.links.get(remote)
      if (!l) return
      let msg
      try { msg = wire.decode(data) } catch (_) {
        // A malformed frame costs the sender its connection.
        return this.drop(now, remote, CODES.BAD_FRAME)
      }
      switch (msg.type) {
        case 'handshake':
          if (msg.peerId !== remote) return this.drop(now, remote, CODES.WRONG_PEER)
          l.role = msg.role
          l.settleAt = now + this.cfg.settleMs
          this._step(now, l, 'handshake', msg.role)
          break
        case 'bitfield': {
          const set = new Set()
          for (let i = 0; i < msg.count; i++) if (msg.has(i)) set.add(i)
          l.has.set(msg.id, set)
          this._pumpFor(now, msg.id)
          break
        }
        case 'have':
          if (!l.has.has(msg.id)) l.has.set(msg.id, new Set())
          l.has.get(msg.id).add(msg.piece)
          this._pumpFor(now, msg.id)
          break
        case 'request': {
          const h = this.holdings.get(msg.id)
          const overCap = this.uploadCap !== null && this.uploaded + msg.length > this.uploadCap
          if (!this.serving || overCap || !h || !h.have.has(msg.piece) || msg.length === 0) {
            this._send(remote, wire.reject(msg.id, msg.piece, msg.offset, msg.length))
          } else {
            this.uploaded += msg.length
            this.out.push({ cmd: 'serve', to: remote, id: msg.id, piece: msg.piece, offset: msg.offset, length: msg.length })
          }
          break
        }
        case 'cancel':
          this.out.push({ cmd: 'unserve', to: remote, id: msg.id, piece: msg.piece })
          break
        case 'reject':
          l.incoming.delete(`${msg.id}:${msg.piece}`)
          for (const s of this.sessions.values()) {
            if (s.info.id !== msg.id) continue
            s.asked.delete(`${remote}:${msg.piece}`)
            s.picker.failed(msg.piece, remote)
            this._pump(now, s)
          }
          break
        case 'block':
          this._block(now, l, msg)
          break
      }
    }

    _block (now, l, msg) {
      const key = `${msg.id}:${msg.piece}`
      const inc = l.incoming.get(key)
      if (!inc) return // cancelled or never asked: ignore
      if (msg.offset + msg.data.byteLength > inc.buf.byteLength) return this.drop(now, l.remote, CODES.BLOCK_OUT_OF_RANGE)
      inc.buf.set(msg.data, msg.offset)
      inc.got += msg.data.byteLength
      if (inc.got < inc.buf.byteLength) return
      l.incoming.delete(key)
      for (const s of this.sessions.values()) {
        if (s.closed || s.info.id !== msg.id || !s.picker.needed.has(msg.piece)) continue
        s.asked.delete(`${l.remote}:${msg.piece}`)
        // Verification happens in the caller; until it says so, others keep going.
        this.out.push({ cmd: 'piece', sid: s.sid, index: msg.piece, data: inc.buf.slice().buffer, from: l.remote, role: l.role })
      }
    }

    // ---- sessions --------------------------------------------------------

    /**
     * Pieces of a resource wanted from peers.
     * @param {{id, size, piece_size, count, path}} info
     * @param {number[]} indices
     * @param {{patient?: boolean}} [opts] patient: no misses, wait for holders
     * @returns {number} the session id
     */
    want (now, info, indices, opts = {}) {
      const sid = this.nextSid++
      const s = {
        sid,
        info,
        patient: !!opts.patient,
        picker: new W.Picker(indices, { maxPerPeer: this.cfg.maxPerPeer }),
        asked: new Map(), // `${peer}:${i}` → deadline
        missed: new Set(),
        closed: false
      }
      this.sessions.set(sid, s)
      this._pump(now, s)
      return sid
    }

    /** Piece i of session sid was verified (from anyone): cancel duplicates, ask more. */
    done (now, sid, i) {
      const s = this.sessions.get(sid)
      if (!s) return
      for (const peer of s.picker.done(i)) {
        s.asked.delete(`${peer}:${i}`)
        const l = this.links.get(peer)
        if (l) { l.incoming.delete(`${s.info.id}:${i}`); this._send(peer, wire.cancel(s.info.id, i, 0, 0)) }
      }
      this._pump(now, s)
    }

    /** `from` sent a copy of piece i that failed its hash: never again. */
    bad (now, sid, i, from) {
      const s = this.sessions.get(sid)
      if (s) s.picker.markBad(from)
      this.drop(now, from, CODES.BAD_PIECE)
    }

    /** The caller needs nothing more from this session. */
    close (now, sid) {
      const s = this.sessions.get(sid)
      if (!s) return
      for (const i of [...s.picker.inflight.keys()]) this.done(now, sid, i)
      s.closed = true
      this.sessions.delete(sid)
    }

    _pumpFor (now, id) { for (const s of this.sessions.values()) if (s.info.id === id) this._pump(now, s) }
    _pumpAll (now) { for (const s of this.sessions.values()) this._pump(now, s) }

    _pump (now, s) {
      if (s.closed) return
      const peers = []
      for (const l of this.links.values()) {
        if (!l.open) continue
        const set = l.has.get(s.info.id)
        if (set) peers.push({ id: l.remote, has: (i) => set.has(i) })
      }
      const { assign, unavailable } = s.picker.next(peers)
      for (const [peer, i] of assign) {
        const len = Math.min(s.info.size, (i + 1) * s.info.piece_size) - i * s.info.piece_size
        const l = this.links.get(peer)
        const key = `${s.info.id}:${i}`
        if (!l.incoming.has(key)) l.incoming.set(key, { buf: new Uint8Array(len), got: 0 })
        this._send(peer, wire.request(s.info.id, i, 0, len))
        s.asked.set(`${peer}:${i}`, now + this.cfg.requestTimeoutMs)
      }
      // A peer still connecting may hold what nobody else has: no misses yet.
      // The service worker's per-piece deadline bounds that wait.
      if (s.patient || this.settling(now) > 0) return
      // A missed piece stays wanted: a peer that gets it meanwhile still wins.
      for (const i of unavailable) {
        if (s.missed.has(i)) continue
        s.missed.add(i)
        this.out.push({ cmd: 'miss', sid: s.sid, index: i })
      }
    }

    // ---- time ------------------------------------------------------------

    /** Expire what is due: request timeouts, settling, grace, stuck links, retries. */
    tick (now) {
      for (const l of [...this.links.values()]) {
        if (!this.links.has(l.remote)) continue
        if (!l.settled && l.settleAt !== null && now >= l.settleAt) {
          l.settled = true
          let pieces = 0
          for (const set of l.has.values()) pieces += set.size
          this._step(now, l, 'settled', `${l.has.size} resources, ${pieces} pieces`)
          this._pumpAll(now)
        }
        if (!l.graceDone && now >= l.born + this.cfg.answerGraceMs) {
          l.graceDone = true
          if (!l.answered) this._pumpAll(now)
        }
        if (!l.settled && now >= l.born + this.cfg.connectTimeoutMs) this._giveUp(now, l)
      }
      for (const s of [...this.sessions.values()]) {
        let expired = false
        for (const [key, at] of s.asked) {
          if (now < at) continue
          s.asked.delete(key)
          const cut = key.lastIndexOf(':')
          const peer = key.slice(0, cut)
          const i = Number(key.slice(cut + 1))
          const l = this.links.get(peer)
          if (l) l.incoming.delete(`${s.info.id}:${i}`)
          s.picker.failed(i, peer)
          expired = true
        }
        if (expired) this._pump(now, s)
      }
      for (const [remote, r] of [...this.retries]) {
        if (now < r.at) continue
        this.retries.delete(remote)
        if (!this.connect(now, remote, r.attempt)) this.unreachable.add(remote)
      }
    }

    /** A link that did not settle in time: close it, and offer again later. */
    _giveUp (now, l) {
      this.drop(now, l.remote, CODES.TIMEOUT)
      this._retryLater(now, l)
    }

    /**
     * A link we offered ended before it settled (timed out, ICE or the
     * negotiation failed): offer again after a delay (a fresh connection, so
     * fresh candidates), a few times, then tell the tracker it is unreachable.
     * The answering side waits for the offerer to try again.
     */
    _retryLater (now, l) {
      if (!l.initiator || this.banned.has(l.remote) || bans(l.ended)) return
      const delay = this.cfg.retryDelaysMs[l.attempt]
      if (delay !== undefined) this.retries.set(l.remote, { at: now + delay, attempt: l.attempt + 1 })
      else this.unreachable.add(l.remote)
    }

    /** When `tick` has something to do next (null: nothing pending). */
    nextWake () {
      let at = Infinity
      for (const l of this.links.values()) {
        if (!l.settled && l.settleAt !== null) at = Math.min(at, l.settleAt)
        if (!l.graceDone) at = Math.min(at, l.born + this.cfg.answerGraceMs)
        if (!l.settled) at = Math.min(at, l.born + this.cfg.connectTimeoutMs)
      }
      for (const s of this.sessions.values()) for (const d of s.asked.values()) at = Math.min(at, d)
      for (const r of this.retries.values()) at = Math.min(at, r.at)
      return at === Infinity ? null : at
    }

    // ---- reading ---------------------------------------------------------

    poll () { return this.out.splice(0) }

    openCount () { let n = 0; for (const l of this.links.values()) if (l.open) n++; return n }

    /**
     * Links whose holdings we do not know yet and that are alive: they
     * answered, or still may (within answerGraceMs).
     */
    settling (now) {
      let n = this.pendingJoin ? 1 : 0
      for (const l of this.links.values()) if (!l.settled && (l.answered || now < l.born + this.cfg.answerGraceMs)) n++
      return n
    }

    /** Peers we gave up on since last asked (for the tracker). */
    takeUnreachable () {
      const out = [...this.unreachable]
      this.unreachable.clear()
      return out
    }

    /** Every link's negotiation, current ones first, times relative to `origin`. */
    timeline (origin = 0) {
      const show = (l) => ({
        peer: l.remote,
        role: l.role,
        initiator: l.initiator,
        attempt: l.attempt + 1,
        state: l.ended ? `closed: ${l.ended}` : l.settled ? 'settled' : l.open ? 'open' : 'connecting',
        steps: l.steps.map(([t, step, detail]) => detail === undefined ? [Math.round(t - origin), step] : [Math.round(t - origin), step, detail])
      })
      return [...this.links.values()].map(show).concat(this.history.slice().reverse().map(show))
    }

    _send (to, frame) { this.out.push({ cmd: 'send', to, frame }) }
    _peers () { this.out.push({ cmd: 'peers', count: this.openCount() }) }
  }

  /**
   * What a visitor uploads, from what its browser says of its link
   * (`navigator.connection`, where there is one) and the operator's policy
   * (the join answer's `policy.metered_upload_bytes`): nothing when it asks
   * to save data, at most that many bytes per page on a cellular link.
   * @returns {{serving: boolean, cap: number|null, why: string|null}}
   */
  function uploadRule (conn, policy) {
    if (conn && conn.saveData) return { serving: false, cap: 0, why: 'save-data: uploads nothing' }
    if (conn && conn.type === 'cellular') {
      const cap = Math.max(0, Number(policy && policy.metered_upload_bytes) || 0)
      return { serving: cap > 0, cap, why: `cellular: uploads at most ${cap} bytes` }
    }
    return { serving: true, cap: null, why: null }
  }

  W.AgentCore = AgentCore
  W.agentCore = { AgentCore, DEFAULTS, uploadRule }
})(globalThis.Whis = globalThis.Whis || {})
