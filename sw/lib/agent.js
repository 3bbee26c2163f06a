// The peer agent: lives in a page (service workers have no RTCPeerConnection).
// Joins the swarm, keeps the SSE stream, holds the WebRTC data channels,
// serves verified pieces from the store, and fetches pieces for the service
// worker (over a MessagePort) or, in a worker browser, for seeding.
;(function (W) {
  'use strict'
  const wire = W.wire
  const HIGH_WATER = 1024 * 1024
  const LOW_WATER = 256 * 1024
  const REQUEST_TIMEOUT = 4000
  const HOT_BUDGET = 64 * 1024 * 1024
  const SETTLE_MS = 100
  // A peer that has not answered our offer this long is probably gone (its
  // tab closed without a goodbye): it stops holding misses back.
  const ANSWER_GRACE_MS = 1500

  class Agent {
    /**
     * @param {{base?: string, scope?: string, role?: string, secret?: string, swarm?: string,
     *          store: object, fetch?: Function}} opts
     */
    constructor (opts) {
      this.base = opts.base || ''
      this.scope = opts.scope || '/'
      this.role = opts.role || 'visitor'
      this.secret = opts.secret
      this.swarm = opts.swarm
      this.store = opts.store
      this.fetch = opts.fetch || ((u, i) => fetch(u, i))
      this.id = null
      this.token = null
      this.maxConnections = 6
      this.peers = new Map() // remote id → PeerConn
      this.banned = new Set() // peers that sent bad pieces or frames: never again
      this.holdings = new Map() // resource id → {count, have: Set, path}
      this.sessions = new Set()
      this.pending = { peer: 0, worker: 0, origin: 0, verified: 0, rejected: 0, have: new Set(), paths: new Map() }
      this.bytesServed = 0
      // Recently verified pieces, served from memory: no IndexedDB read on the
      // hot path, and a piece can be shared before its write has committed.
      this.hot = new Map() // `${id}:${index}` → ArrayBuffer, oldest first
      this.hotBytes = 0
      this.hotBudget = opts.hotBudget || HOT_BUDGET
      this.workerId = null
      this.listeners = new Set()
      this.closed = false
    }

    /** Join, open the event stream, connect to the suggested peers. */
    async start () {
      for (const r of await this.store.list()) this.holdings.set(r.id, { count: r.count, have: r.have, path: r.path })
      const body = { scope: this.scope, have: [...this.holdings.keys()].slice(0, 4096) }
      if (this.role === 'worker') Object.assign(body, { role: 'worker', worker_secret: this.secret, swarm: this.swarm })
      const res = await this.fetch(`${this.base}/whis/join`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
      if (!res.ok) throw new W.WhisError('join-failed', { message: `join answered ${res.status}` })
      const j = await res.json()
      this.id = j.peer_id
      this.token = j.token
      this.swarmId = j.swarm_id
      this.iceServers = j.ice_servers || []
      this.maxConnections = j.max_connections || 6
      this.heartbeatMs = j.heartbeat_ms || 15000
      this.workerId = j.worker
      this._openEvents()
      for (const p of j.peers || []) this.connect(p)
      this.timer = setInterval(() => this.announce(), Math.min(5000, this.heartbeatMs / 3))
      this.announce()
      return j
    }

    _openEvents () {
      const es = new EventSource(`${this.base}/whis/events?token=${encodeURIComponent(this.token)}`)
      this.events = es
      const on = (name, fn) => es.addEventListener(name, (e) => { try { fn(JSON.parse(e.data)) } catch (_) { /* ignore a bad event */ } })
      on('hello', (d) => { this.workerId = d.worker })
      on('signal', (d) => this._onSignal(d.from, d.data))
      on('peer-left', (d) => this.dropPeer(d.peer_id, 'left'))
      on('worker-down', (d) => { this.dropPeer(d.peer_id, 'worker down'); this.workerId = null; this._emit('worker-down', d) })
      on('worker-up', (d) => { this.workerId = d.peer_id; this.connect(d.peer_id); this._emit('worker-up', d) })
      on('hot', (d) => this._emit('hot', d))
      // EventSource reconnects by itself and resumes with Last-Event-ID.
      es.onerror = () => this._emit('events-error', {})
    }

    _emit (type, data) { for (const l of this.listeners) { try { l(type, data) } catch (_) {} } }
    on (fn) { this.listeners.add(fn) }

    openCount () { let n = 0; for (const p of this.peers.values()) if (p.open) n++; return n }

    /**
     * Connections whose peer has not yet told us what it holds, and that are
     * alive: it answered, or it still may (within ANSWER_GRACE_MS).
     */
    settling () {
      let n = 0
      const now = Date.now()
      for (const p of this.peers.values()) if (!p.settled && (p.answered || now - p.born < ANSWER_GRACE_MS)) n++
      return n
    }

    /** Start a connection (we offer) unless over budget or already connected. */
    connect (remote) {
      if (!remote || remote === this.id || this.peers.has(remote) || this.banned.has(remote) || this.closed) return
      if (this.peers.size >= this.maxConnections) return
      this.peers.set(remote, new PeerConn(this, remote, true))
    }

    _onSignal (from, data) {
      if (!from || !data || this.closed || this.banned.has(from)) return
      let p = this.peers.get(from)
      if (!p) {
        if (this.peers.size >= this.maxConnections + 2) return // over budget: let it time out
        p = new PeerConn(this, from, false)
        this.peers.set(from, p)
      }
      p.onSignal(data).catch(() => this.dropPeer(from, 'negotiation failed'))
    }

    signal (to, data) {
      return this.fetch(`${this.base}/whis/signal`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${this.token}` },
        body: JSON.stringify({ to, data })
      }).catch(() => {})
    }

    dropPeer (remote, why) {
      if (['bad piece', 'bad-frame', 'wrong peer id', 'block out of range'].includes(why)) this.banned.add(remote)
      const p = this.peers.get(remote)
      if (!p) return
      this.peers.delete(remote)
      p.close(why)
      for (const s of this.sessions) s.peerGone(remote)
      this._emit('peers', { count: this.openCount() })
    }

    /** Tell the server what we hold and want, and the byte counts since last time. */
    async announce () {
      if (!this.token || this.closed) return
      const p = this.pending
      const body = {
        have: [...p.have],
        want: [...new Set([...this.sessions].map((s) => s.info.id))],
        paths: Object.fromEntries(p.paths),
        bytes: { peer: p.peer, worker: p.worker, origin: p.origin },
        pieces: { verified: p.verified, rejected: p.rejected }
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
        for (const peer of a.peers || []) this.connect(peer)
      } catch (_) { /* server away: try again next beat */ }
    }

    /** Our token expired (server restarted, or we were silent too long). */
    async _rejoin () {
      if (this.rejoining) return
      this.rejoining = true
      try {
        if (this.events) this.events.close()
        for (const id of [...this.peers.keys()]) this.dropPeer(id, 'rejoin')
        clearInterval(this.timer)
        await this.start()
      } catch (_) {} finally { this.rejoining = false }
    }

    /**
     * A piece was verified (and is on its way to the store): keep it hot,
     * announce it and tell peers.
     * @param {ArrayBuffer} [data] the piece's bytes, if the caller has them
     */
    stored (id, index, path, count, data) {
      if (data instanceof ArrayBuffer) this._keepHot(`${id}:${index}`, data)
      let h = this.holdings.get(id)
      if (!h) { h = { count, have: new Set(), path }; this.holdings.set(id, h); this.pending.paths.set(id, path) }
      if (h.have.has(index)) return
      h.have.add(index)
      this.pending.have.add(id)
      const frame = wire.have(id, index)
      for (const p of this.peers.values()) p.send(frame)
      clearTimeout(this.soon)
      this.soon = setTimeout(() => this.announce(), 300)
    }

    _keepHot (key, data) {
      if (this.hot.has(key) || data.byteLength > this.hotBudget) return
      this.hot.set(key, data)
      this.hotBytes += data.byteLength
      for (const [k, d] of this.hot) {
        if (this.hotBytes <= this.hotBudget) break
        this.hot.delete(k)
        this.hotBytes -= d.byteLength
      }
    }

    /** A held piece's bytes: from memory if hot, else from the store (or null). */
    async pieceData (id, index) {
      const key = `${id}:${index}`
      const hot = this.hot.get(key)
      if (hot) {
        this.hot.delete(key) // refresh its place in the LRU order
        this.hot.set(key, hot)
        return hot
      }
      return this.store.get(id, index).catch(() => null)
    }

    report (delta) {
      for (const k of ['peer', 'worker', 'origin', 'verified', 'rejected']) this.pending[k] += Number(delta[k]) || 0
    }

    /**
     * Fetch pieces of a resource from peers.
     * @param {{id, size, piece_size, count, path}} info
     * @param {number[]} indices
     * @param {{onPiece: Function, onMiss: Function}} sink
     * @param {{patient?: boolean}} [opts] patient: wait for holders instead of reporting misses
     */
    want (info, indices, sink, opts = {}) {
      const s = new WantSession(this, info, indices, sink, opts)
      this.sessions.add(s)
      this.pending.paths.set(info.id, info.path)
      s.pump()
      return s
    }

    status () {
      let resources = 0
      for (const h of this.holdings.values()) if (h.have.size === h.count) resources++
      return { joined: !!this.id, peerId: this.id, swarm: this.swarmId, peers: this.openCount(), resources, bytesServed: this.bytesServed }
    }

    leave () {
      if (this.closed) return
      this.closed = true
      clearInterval(this.timer)
      if (this.events) this.events.close()
      for (const id of [...this.peers.keys()]) this.dropPeer(id, 'leaving')
      if (this.token && typeof navigator !== 'undefined' && navigator.sendBeacon) {
        navigator.sendBeacon(`${this.base}/whis/leave?token=${encodeURIComponent(this.token)}`)
      }
    }
  }

  /** One WebRTC connection and its data channel, speaking wire.js. */
  class PeerConn {
    constructor (agent, remote, initiator) {
      this.agent = agent
      this.remote = remote
      this.polite = agent.id > remote // the larger id yields on glare
      this.open = false
      this.settled = false // handshake and bitfields received: its holdings are known
      this.born = Date.now()
      this.answered = !initiator // it offered, or (when we offer) its answer came
      this.role = remote === agent.workerId ? 'worker' : 'visitor'
      this.has = new Map() // resource id → Set of pieces
      this.incoming = new Map() // `${id}:${piece}` → {buf, got}
      this.serving = [] // queued outgoing requests
      this.makingOffer = false
      this.pc = new RTCPeerConnection({ iceServers: agent.iceServers })
      this.pc.onicecandidate = (e) => { if (e.candidate) agent.signal(remote, { candidate: e.candidate.toJSON() }) }
      this.pc.onconnectionstatechange = () => {
        if (['failed', 'closed'].includes(this.pc.connectionState)) agent.dropPeer(remote, this.pc.connectionState)
      }
      this.pc.onnegotiationneeded = async () => {
        try {
          this.makingOffer = true
          await this.pc.setLocalDescription()
          agent.signal(remote, { description: this.pc.localDescription.toJSON() })
        } catch (_) {} finally { this.makingOffer = false }
      }
      this.pc.ondatachannel = (e) => this._channel(e.channel)
      if (initiator) this._channel(this.pc.createDataChannel('whis', { ordered: true }))
      // A connection that does not open in 15 s is abandoned.
      this.openTimer = setTimeout(() => { if (!this.open) agent.dropPeer(remote, 'timeout') }, 15000)
      // Silent past the grace: the misses it held back go out now.
      this.graceTimer = setTimeout(() => { if (!this.answered) for (const s of agent.sessions) s.pump() }, ANSWER_GRACE_MS)
    }

    async onSignal (data) {
      if (data.description) {
        this.answered = true
        const d = data.description
        const collision = d.type === 'offer' && (this.makingOffer || this.pc.signalingState !== 'stable')
        this.ignoreOffer = !this.polite && collision
        if (this.ignoreOffer) return
        await this.pc.setRemoteDescription(d)
        if (d.type === 'offer') {
          await this.pc.setLocalDescription()
          this.agent.signal(this.remote, { description: this.pc.localDescription.toJSON() })
        }
      } else if (data.candidate) {
        try { await this.pc.addIceCandidate(data.candidate) } catch (err) { if (!this.ignoreOffer) throw err }
      }
    }

    _channel (dc) {
      this.dc = dc
      dc.binaryType = 'arraybuffer'
      dc.bufferedAmountLowThreshold = LOW_WATER
      dc.onopen = () => {
        this.open = true
        clearTimeout(this.openTimer)
        this.send(wire.handshake(this.agent.id, this.agent.role))
        for (const [id, h] of this.agent.holdings) this.send(wire.bitfield(id, h.count, (i) => h.have.has(i)))
        this.agent._emit('peers', { count: this.agent.openCount() })
      }
      dc.onclose = () => this.agent.dropPeer(this.remote, 'channel closed')
      dc.onmessage = (e) => {
        let msg
        try { msg = wire.decode(e.data) } catch (err) {
          // A malformed frame costs the sender its connection.
          this.agent.dropPeer(this.remote, err.code || 'bad-frame')
          return
        }
        this._onMessage(msg)
      }
      dc.onbufferedamountlow = () => this._flush()
    }

    send (frame) {
      if (!this.dc || this.dc.readyState !== 'open') return false
      try { this.dc.send(frame); return true } catch (_) { return false }
    }

    _onMessage (msg) {
      const agent = this.agent
      switch (msg.type) {
        case 'handshake':
          if (msg.peerId !== this.remote) return agent.dropPeer(this.remote, 'wrong peer id')
          this.role = msg.role
          // Its bitfields follow the handshake at once on this ordered channel;
          // after a moment, whatever it did not announce it does not hold.
          setTimeout(() => {
            this.settled = true
            for (const s of agent.sessions) s.pump()
          }, SETTLE_MS)
          break
        case 'bitfield': {
          const set = new Set()
          for (let i = 0; i < msg.count; i++) if (msg.has(i)) set.add(i)
          this.has.set(msg.id, set)
          for (const s of agent.sessions) if (s.info.id === msg.id) s.pump()
          break
        }
        case 'have':
          if (!this.has.has(msg.id)) this.has.set(msg.id, new Set())
          this.has.get(msg.id).add(msg.piece)
          for (const s of agent.sessions) if (s.info.id === msg.id) s.pump()
          break
        case 'request':
          if (this.serving.length >= 64) { this.send(wire.reject(msg.id, msg.piece, msg.offset, msg.length)); break }
          this.serving.push(msg)
          this._flush()
          break
        case 'cancel':
          this.serving = this.serving.filter((r) => !(r.id === msg.id && r.piece === msg.piece))
          break
        case 'reject':
          this.incoming.delete(`${msg.id}:${msg.piece}`)
          for (const s of agent.sessions) if (s.info.id === msg.id) s.rejected(msg.piece, this.remote)
          break
        case 'block':
          this._onBlock(msg)
          break
      }
    }

    /** Queue a request for a whole piece of `len` bytes. */
    request (id, piece, len) {
      const key = `${id}:${piece}`
      if (!this.incoming.has(key)) this.incoming.set(key, { buf: new Uint8Array(len), got: 0 })
      return this.send(wire.request(id, piece, 0, len))
    }

    cancel (id, piece) {
      this.incoming.delete(`${id}:${piece}`)
      this.send(wire.cancel(id, piece, 0, 0))
    }

    _onBlock (msg) {
      const key = `${msg.id}:${msg.piece}`
      const inc = this.incoming.get(key)
      if (!inc) return // cancelled or never asked: ignore
      if (msg.offset + msg.data.byteLength > inc.buf.byteLength) return this.agent.dropPeer(this.remote, 'block out of range')
      inc.buf.set(msg.data, msg.offset)
      inc.got += msg.data.byteLength
      if (inc.got >= inc.buf.byteLength) {
        this.incoming.delete(key)
        for (const s of this.agent.sessions) if (s.info.id === msg.id) s.received(msg.piece, inc.buf.slice(), this.remote, this.role)
      }
    }

    /** Serve queued requests while the channel's buffer has room. */
    async _flush () {
      if (this.flushing) return
      this.flushing = true
      try {
        while (this.serving.length && this.dc && this.dc.readyState === 'open' && this.dc.bufferedAmount < HIGH_WATER) {
          const r = this.serving.shift()
          const data = await this.agent.pieceData(r.id, r.piece)
          if (!data || r.offset + r.length > data.byteLength || r.length === 0) {
            this.send(wire.reject(r.id, r.piece, r.offset, r.length))
            continue
          }
          const bytes = new Uint8Array(data, r.offset, r.length)
          for (let off = 0; off < bytes.byteLength; off += wire.BLOCK_SIZE) {
            this.send(wire.block(r.id, r.piece, r.offset + off, bytes.subarray(off, off + wire.BLOCK_SIZE)))
          }
          this.agent.bytesServed += r.length
        }
      } finally { this.flushing = false }
    }

    close () {
      clearTimeout(this.openTimer)
      clearTimeout(this.graceTimer)
      this.open = false
      try { if (this.dc) this.dc.close() } catch (_) {}
      try { this.pc.close() } catch (_) {}
    }
  }

  /** Pieces of one resource wanted from peers, scheduled by the picker. */
  class WantSession {
    constructor (agent, info, indices, sink, opts) {
      this.agent = agent
      this.info = info
      this.sink = sink
      this.patient = !!opts.patient
      this.picker = new W.Picker(indices, { maxPerPeer: agent.role === 'worker' ? 8 : 4 })
      this.timers = new Map()
      this.missed = new Set()
      this.closed = false
    }

    pieceLen (i) { return Math.min(this.info.size, (i + 1) * this.info.piece_size) - i * this.info.piece_size }

    pump () {
      if (this.closed) return
      const peers = []
      for (const p of this.agent.peers.values()) {
        if (!p.open) continue
        const set = p.has.get(this.info.id)
        if (set) peers.push({ id: p.remote, has: (i) => set.has(i) })
      }
      const { assign, unavailable } = this.picker.next(peers)
      for (const [peer, i] of assign) {
        const p = this.agent.peers.get(peer)
        if (!p || !p.request(this.info.id, i, this.pieceLen(i))) { this.picker.failed(i, peer); continue }
        clearTimeout(this.timers.get(`${peer}:${i}`))
        this.timers.set(`${peer}:${i}`, setTimeout(() => { this.picker.failed(i, peer); this.pump() }, REQUEST_TIMEOUT))
      }
      // A peer still connecting may hold what nobody else has: no misses
      // yet. The service worker's per-piece deadline bounds the wait.
      if (this.patient || this.agent.settling() > 0) return
      // A missed piece stays wanted: it waits for an origin slot, and a peer
      // that gets it meanwhile still wins the race.
      for (const i of unavailable) {
        if (this.missed.has(i)) continue
        this.missed.add(i)
        this.sink.onMiss(i)
      }
    }

    received (i, data, from, role) {
      if (this.closed || !this.picker.needed.has(i)) return
      clearTimeout(this.timers.get(`${from}:${i}`))
      // Verification happens in the caller; until it says so, keep others going.
      this.sink.onPiece(i, data.buffer, from, role)
    }

    rejected (i, from) { clearTimeout(this.timers.get(`${from}:${i}`)); this.picker.failed(i, from); this.pump() }
    peerGone (peer) { this.picker.markBad(peer); this.pump() }

    /** The caller verified piece i (from anyone): cancel duplicates, refill the pipeline. */
    done (i) {
      for (const peer of this.picker.done(i)) {
        const p = this.agent.peers.get(peer)
        if (p) p.cancel(this.info.id, i)
      }
      this.pump()
    }

    /** `from` sent a piece that failed verification: never again. */
    bad (i, from) {
      this.picker.markBad(from)
      this.agent.dropPeer(from, 'bad piece')
      this.pump()
    }

    close () {
      if (this.closed) return
      this.closed = true
      for (const t of this.timers.values()) clearTimeout(t)
      for (const i of [...this.picker.inflight.keys()]) this.done(i)
      this.agent.sessions.delete(this)
    }
  }

  W.Agent = Agent
})(globalThis.Whis = globalThis.Whis || {})
