// The peer agent, as the page (or the worker browser's page) runs it: the
// thin shell around agent-core.js. It joins the swarm, keeps the event stream,
// posts signals and announces, creates a PeerLink (rtc.js) when the core says
// so, reads held pieces for serving (memory, then the store), and hands the
// core's decisions to whoever wants pieces (the service worker's port, the
// seeder). Every decision is the core's; every browser API call is here.
;(function (W) {
  'use strict'
  const { CODES } = W.errors
  const HOT_BUDGET = 64 * 1024 * 1024
  /** How soon after a new piece the server hears of it (batched). */
  const ANNOUNCE_SOON_MS = 300
  /** Event stream back-off: the first wait when the server gave none, and the longest. */
  const RECONNECT_MS = 1000
  const RECONNECT_MAX_MS = 60000
  /** Holdings re-announced after a reconnect (a restarted server knows none). */
  const REANNOUNCE_MAX = 256

  /** The page's clock: ms since navigation, so timelines line up with Resource Timing. */
  const pageClock = typeof performance !== 'undefined' && performance.now
    ? { now: () => performance.now(), setTimeout: (f, ms) => setTimeout(f, ms), clearTimeout: (t) => clearTimeout(t) }
    : W.scheduler.clock

  /** Whether some ICE server is a TURN relay (`turn:` or `turns:`). */
  function hasTurn (servers) {
    return servers.some((s) => s && [].concat(s.urls || []).some((u) => /^turns?:/.test(String(u))))
  }

  class Agent {
    /**
     * @param {{base?: string, scope?: string, role?: string, secret?: string, swarm?: string,
     *          store: object, fetch?: Function, clock?: object, hotBudget?: number,
     *          EventSource?: Function, RTCPeerConnection?: Function, relayOnly?: boolean}} opts
     */
    constructor (opts) {
      this.base = opts.base || ''
      this.scope = opts.scope || '/'
      this.role = opts.role || 'visitor'
      this.secret = opts.secret
      this.swarm = opts.swarm
      this.store = opts.store
      this.fetch = opts.fetch || ((u, i) => fetch(u, i))
      this.clock = opts.clock || pageClock
      this.ES = opts.EventSource || globalThis.EventSource
      this.RTC = opts.RTCPeerConnection
      // The page asked that peers never learn our address (data-relay="only").
      this.relayOnly = !!opts.relayOnly
      /** Why this agent shares nothing, if it does not (for the timeline). */
      this.noSharing = null
      this.core = new W.AgentCore({ role: this.role })
      this.links = new Map() // remote → PeerLink
      this.outbox = new Map() // remote → the last signal on its way (signals go in order)
      this.sinks = new Map() // session id → {onPiece, onMiss}
      this.hot = new W.store.HotCache(opts.hotBudget || HOT_BUDGET)
      this.pending = { peer: 0, worker: 0, origin: 0, verified: 0, rejected: 0, have: new Set(), paths: new Map() }
      this.servedBefore = 0 // bytes served by links that have ended
      this.listeners = new Set()
      this.policy = {}
      this.iceConfig = { iceServers: [] }
      this.id = null
      this.token = null
      this.wake = null
      this.closed = false
      // The event stream and signals, for the timeline: when it opened, how
      // often it failed, what went through it.
      this.stream = { opened: null, errors: 0, signalsIn: 0, signalsOut: 0, signalErrors: 0 }
    }

    /** Resource id → {count, have: Set, path}: what we hold and announce. */
    get holdings () { return this.core.holdings }
    get workerId () { return this.core.workerId }

    /** Join, open the event stream, connect to the suggested peers. */
    async start () {
      // Before the first await: a want that comes while we read the store
      // and join must wait for the peers the join answer names.
      this.core.joining()
      try {
        for (const r of await this.store.list()) this.core.hold(r.id, r.count, r.have, r.path)
      } catch (_) { /* a broken store holds nothing */ }
      this.synced = Date.now()
      const body = { scope: this.scope, have: [...this.core.holdings.keys()].slice(0, 4096) }
      if (this.role === 'worker') Object.assign(body, { role: 'worker', worker_secret: this.secret, swarm: this.swarm })
      let j
      try {
        const res = await this.fetch(`${this.base}/whis/join`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
        if (!res.ok) throw new W.WhisError(CODES.JOIN_FAILED, { message: `join answered ${res.status}` })
        j = await res.json()
      } catch (err) {
        this._run((c, now) => c.joinFailed(now))
        throw err
      }
      this.id = j.peer_id
      this.token = j.token
      this.swarmId = j.swarm_id
      this.iceConfig = { iceServers: Array.isArray(j.ice_servers) ? j.ice_servers : [] }
      const relay = j.ice_transport_policy === 'relay' || this.relayOnly
      if (relay) this.iceConfig.iceTransportPolicy = 'relay'
      this.policy = j.policy && typeof j.policy === 'object' ? j.policy : {}
      if (relay && !hasTurn(this.iceConfig.iceServers)) {
        // Privacy without a relay to keep it: share nothing rather than
        // reveal our address. Every piece goes to the origin at once.
        this.noSharing = 'relay only, and the server offers no TURN relay'
        this._run((c, now) => c.joinFailed(now))
        this.fetch(`${this.base}/whis/leave?token=${encodeURIComponent(this.token)}`, { method: 'POST' }).catch(() => {})
        return j
      }
      this.heartbeatMs = j.heartbeat_ms || 15000
      this._openEvents()
      this._run((c, now) => c.joined(now, j.peer_id, { maxConnections: j.max_connections, workerId: j.worker, peers: j.peers || [] }))
      this.timer = setInterval(() => this.announce(), Math.min(5000, this.heartbeatMs / 3))
      this.announce()
      this._emit('joined', { peerId: this.id, swarm: this.swarmId })
      return j
    }

    _openEvents () {
      this.clock.clearTimeout(this.reconnectTimer)
      this.reconnectTimer = null
      if (this.events) this.events.close()
      // A new EventSource cannot send Last-Event-ID: the query carries it.
      const resume = this.lastEventId ? `&last_event_id=${encodeURIComponent(this.lastEventId)}` : ''
      const es = new this.ES(`${this.base}/whis/events?token=${encodeURIComponent(this.token)}${resume}`)
      this.events = es
      const on = (name, fn) => es.addEventListener(name, (e) => {
        if (e.lastEventId) this.lastEventId = e.lastEventId
        let d
        try { d = JSON.parse(e.data) } catch (_) { return /* a bad event is ignored */ }
        fn(d || {})
      })
      on('hello', (d) => { this.core.workerId = d.worker || null })
      es.addEventListener('open', () => {
        // Any reopening (ours or the browser's): the server may have restarted.
        if (this.stream.opened === null) this.stream.opened = Math.round(this.clock.now())
        else this._reannounce()
        this.reconnects = 0
      })
      on('signal', (d) => { this.stream.signalsIn++; this._onSignal(d.from, d.data) })
      on('peer-left', (d) => this._run((c, now) => c.left(now, d.peer_id)))
      on('worker-down', (d) => {
        this._run((c, now) => c.left(now, d.peer_id, CODES.WORKER_DOWN))
        this.core.workerId = null
        this._emit('worker-down', d)
      })
      on('worker-up', (d) => {
        this.core.workerId = d.peer_id
        this._run((c, now) => c.connect(now, d.peer_id))
        this._emit('worker-up', d)
      })
      on('hot', (d) => this._emit('hot', d))
      on('going-away', (d) => this._reconnect(Number(d.retry_ms) || RECONNECT_MS))
      // EventSource reconnects by itself after a network error and resumes
      // with Last-Event-ID; after an HTTP error (a front proxy's 502 while
      // whis restarts) it gives up, and we reopen it. A stream the server
      // refuses (our token is unknown) is rejoined by announce.
      es.onerror = () => {
        this.stream.errors++
        this._emit('events-error', {})
        if (es.readyState === 2 && this.events === es) this._reconnect(RECONNECT_MS)
      }
    }

    /**
     * The server is going away (a restart) or refused the stream: reopen it
     * after `after` ms (doubling while it keeps failing, at most a minute),
     * each wait spread over 1-2 times itself so a swarm does not return at
     * once. Links stay open: data channels do not need the server.
     */
    _reconnect (after) {
      if (this.closed || this.reconnectTimer) return
      if (this.events) this.events.close()
      const wait = Math.min(RECONNECT_MAX_MS, after * 2 ** Math.min(this.reconnects || 0, 6)) * (1 + Math.random())
      this.reconnects = (this.reconnects || 0) + 1
      this.reconnectTimer = this.clock.setTimeout(() => {
        this.reconnectTimer = null
        this._openEvents()
        this.announce()
      }, wait)
    }

    /** After a reconnect, tell the server again what we hold (a restarted one knows nothing). */
    _reannounce () {
      let n = 0
      for (const [id, h] of this.core.holdings) {
        if (n++ >= REANNOUNCE_MAX) break
        this.pending.have.add(id)
        if (h.path) this.pending.paths.set(id, h.path)
      }
      this.announce()
    }

    _emit (type, data) { for (const l of this.listeners) { try { l(type, data) } catch (_) {} } }
    on (fn) { this.listeners.add(fn) }

    // ---- the core and its commands ---------------------------------------

    /** Feed the core one input (with the time) and carry out what it decides. */
    _run (input) {
      if (this.closed) return
      input(this.core, this.clock.now())
      this._drain()
    }

    _drain () {
      for (const c of this.core.poll()) {
        const link = this.links.get(c.to)
        switch (c.cmd) {
          case 'open': this._open(c.to, c.initiator); break
          case 'close': if (link) { this._forget(c.to, link); link.close() } break
          case 'send': if (link) link.send(c.frame); break
          case 'serve': if (link) link.serve(c); break
          case 'unserve': if (link) link.unserve(c.id, c.piece); break
          case 'piece': { const s = this.sinks.get(c.sid); if (s) s.onPiece(c.index, c.data, c.from, c.role); break }
          case 'miss': { const s = this.sinks.get(c.sid); if (s) s.onMiss(c.index); break }
          case 'peers': this._emit('peers', { count: c.count }); break
        }
      }
      this._schedule()
    }

    _schedule () {
      const at = this.core.nextWake()
      if (this.wakeAt === at) return
      this.clock.clearTimeout(this.wake)
      this.wakeAt = at
      if (at === null) return
      this.wake = this.clock.setTimeout(() => { this.wakeAt = null; this._run((c, now) => c.tick(now)) }, Math.max(0, at - this.clock.now()))
    }

    _open (remote, initiator) {
      let link
      const mine = () => this.links.get(remote) === link
      const on = {
        open: () => { if (mine()) this._run((c, now) => c.opened(now, remote)) },
        closed: (reason) => {
          if (!mine()) return
          this._forget(remote, link)
          this._run((c, now) => c.closed(now, remote, reason))
        },
        frame: (data) => { if (mine()) this._run((c, now) => c.frame(now, remote, data)) },
        note: (step, detail) => { if (mine()) this.core.note(this.clock.now(), remote, step, detail) }
      }
      try {
        link = new W.PeerLink({
          remote,
          initiator,
          polite: this.id > remote, // the larger id yields when offers cross
          config: this.iceConfig,
          signal: (data) => this.signal(remote, data),
          on,
          read: (id, piece) => this.pieceData(id, piece),
          RTCPeerConnection: this.RTC
        })
      } catch (err) {
        // No WebRTC here, or a configuration it refuses: this link cannot be.
        this.core.note(this.clock.now(), remote, 'rtc-error', String(err && err.message))
        return this._run((c, now) => c.closed(now, remote, CODES.NEGOTIATION_FAILED))
      }
      this.links.set(remote, link)
    }

    _forget (remote, link) {
      this.links.delete(remote)
      this.servedBefore += link.bytesServed
    }

    _onSignal (from, data) {
      if (!from || !data || typeof data !== 'object' || this.closed) return
      if (!this.links.has(from)) {
        this._run((c, now) => c.offered(now, from))
        if (!this.links.has(from)) return // over budget or banned: it times out
      }
      if (data.description && data.description.type === 'answer') this._run((c, now) => c.answered(now, from))
      this.links.get(from).signal(data)
    }

    /**
     * Send an offer, answer or candidate to `to`, in order: each POST waits
     * for the one before it, or the browser's connections could deliver a
     * candidate ahead of its offer.
     */
    signal (to, data) {
      this.stream.signalsOut++
      const prev = this.outbox.get(to) || Promise.resolve()
      const next = prev.then(() => this.fetch(`${this.base}/whis/signal`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${this.token}` },
        body: JSON.stringify({ to, data })
      })).then((res) => { if (!res.ok) this.stream.signalErrors++ }, () => { this.stream.signalErrors++ })
      this.outbox.set(to, next)
      next.then(() => { if (this.outbox.get(to) === next) this.outbox.delete(to) })
      return next
    }

    // ---- pieces ------------------------------------------------------------

    /**
     * Fetch pieces of a resource from peers.
     * @param {{id, size, piece_size, count, path}} info
     * @param {number[]} indices
     * @param {{onPiece: Function, onMiss: Function}} sink
     * @param {{patient?: boolean}} [opts] patient: wait for holders instead of reporting misses
     * @returns {{done(i), bad(i, from), close()}}
     */
    want (info, indices, sink, opts = {}) {
      this.pending.paths.set(info.id, info.path)
      if (this.closed) return { done () {}, bad () {}, close () {} }
      const sid = this.core.want(this.clock.now(), info, indices, opts)
      this.sinks.set(sid, sink)
      this._drain()
      return {
        done: (i) => this._run((c, now) => c.done(now, sid, i)),
        bad: (i, from) => this._run((c, now) => c.bad(now, sid, i, from)),
        close: () => { this.sinks.delete(sid); this._run((c, now) => c.close(now, sid)) }
      }
    }

    /**
     * A piece was verified (and is on its way to the store): keep it hot,
     * announce it and tell peers.
     * @param {ArrayBuffer} [data] the piece's bytes, if the caller has them
     */
    stored (id, index, path, count, data) {
      if (data instanceof ArrayBuffer) this.hot.put(`${id}:${index}`, data)
      const known = this.core.holdings.has(id)
      let fresh = false
      this._run((c, now) => { fresh = c.stored(now, id, index, path, count) })
      if (!fresh) return
      if (!known) this.pending.paths.set(id, path)
      this.pending.have.add(id)
      clearTimeout(this.soon)
      this.soon = setTimeout(() => this.announce(), ANNOUNCE_SOON_MS)
    }

    /** A held piece's bytes: from memory if hot, else from the store (or null). */
    async pieceData (id, index) {
      return this.hot.get(`${id}:${index}`) || this.store.get(id, index).catch(() => null)
    }

    report (delta) {
      for (const k of ['peer', 'worker', 'origin', 'verified', 'rejected']) this.pending[k] += Number(delta[k]) || 0
    }

    /** Serve pieces to others or not (a data-saving visitor does not). */
    setServing (on) { this.core.setServing(on) }

    /** Most bytes served to others from now on, in all (null: no limit). */
    setUploadCap (bytes) { this.core.setUploadCap(bytes) }

    // ---- the server ----------------------------------------------------------

    /**
     * Take in what reached the store without us: pieces the service worker
     * stored while no agent was attached (between two pages, or before this
     * one bridged) are shared from now on.
     */
    async syncHoldings () {
      let list
      try { list = await this.store.list() } catch (_) { return }
      for (const r of list) {
        for (const i of r.have) this.stored(r.id, i, r.path, r.count)
      }
    }

    /** Tell the server what we hold and want, and the byte counts since last time. */
    async announce () {
      if (!this.token || this.closed || this.noSharing) return
      // Every few beats, what the store holds that we do not know of yet.
      if (Date.now() - this.synced > 10000) { this.synced = Date.now(); await this.syncHoldings() }
      const p = this.pending
      const body = {
        have: [...p.have],
        want: [...new Set([...this.core.sessions.values()].map((s) => s.info.id))],
        paths: Object.fromEntries(p.paths),
        bytes: { peer: p.peer, worker: p.worker, origin: p.origin },
        pieces: { verified: p.verified, rejected: p.rejected },
        // Peers we gave up on: the tracker stops sending us (and, when
        // several say so, anyone) there.
        unreachable: this.core.takeUnreachable()
      }
      Object.assign(p, { peer: 0, worker: 0, origin: 0, verified: 0, rejected: 0, have: new Set(), paths: new Map() })
      try {
        const res = await this.fetch(`${this.base}/whis/announce`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${this.token}` },
          body: JSON.stringify(body)
        })
        if (res.status === 401) return this._rejoin()
        if (!res.ok) return
        const a = await res.json()
        this._run((c, now) => { for (const peer of a.peers || []) c.connect(now, peer) })
      } catch (_) { /* server away: try again next beat */ }
    }

    /** Our token expired (the server restarted, or we were silent too long). */
    async _rejoin () {
      if (this.rejoining || this.closed) return
      this.rejoining = true
      try {
        if (this.events) this.events.close()
        this.clock.clearTimeout(this.reconnectTimer)
        this.reconnectTimer = null
        this.lastEventId = null
        clearInterval(this.timer)
        this._run((c, now) => { for (const id of [...c.links.keys()]) c.left(now, id, CODES.REJOIN) })
        await this.start()
      } catch (_) {} finally { this.rejoining = false }
    }

    // ---- reading -------------------------------------------------------------

    openCount () { return this.core.openCount() }
    settling () { return this.core.settling(this.clock.now()) }

    status () {
      let resources = 0
      for (const h of this.core.holdings.values()) if (h.have.size === h.count) resources++
      let bytesServed = this.servedBefore
      for (const l of this.links.values()) bytesServed += l.bytesServed
      return { joined: !!this.id, peerId: this.id, swarm: this.swarmId, peers: this.openCount(), resources, bytesServed }
    }

    /** Every link's negotiation steps (ms on this page's clock), newest links first. */
    connections () { return this.core.timeline(0) }

    leave () {
      if (this.closed) return
      this._run((c, now) => { for (const id of [...c.links.keys()]) c.left(now, id, CODES.LEAVING) })
      this.closed = true
      clearInterval(this.timer)
      clearTimeout(this.soon)
      this.clock.clearTimeout(this.reconnectTimer)
      this.clock.clearTimeout(this.wake)
      if (this.events) this.events.close()
      if (this.token && typeof navigator !== 'undefined' && navigator.sendBeacon) {
        navigator.sendBeacon(`${this.base}/whis/leave?token=${encodeURIComponent(this.token)}`)
      }
    }
  }

  W.Agent = Agent
})(globalThis.Whis = globalThis.Whis || {})
