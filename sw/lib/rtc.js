// One WebRTC link to one peer: the RTCPeerConnection, its data channel, the
// negotiation (perfect negotiation, trickle ICE), flow control of what we
// serve, and a report of every negotiation step. A thin shell: what the link
// means (handshakes, holdings, requests) is decided in agent-core.js.
;(function (W) {
  'use strict'
  const { CODES } = W.errors
  const wire = W.wire
  /** Serving pauses while this much is queued in the channel, and resumes below LOW_WATER. */
  const HIGH_WATER = 1024 * 1024
  const LOW_WATER = 256 * 1024
  /** Requests queued per link; more are refused (the peer asks someone else). */
  const SERVE_QUEUE = 64

  class PeerLink {
    /**
     * @param {object} o
     * @param {string} o.remote  the peer's id
     * @param {boolean} o.initiator  we offer
     * @param {boolean} o.polite  we yield when offers cross
     * @param {RTCConfiguration} o.config  iceServers, iceTransportPolicy
     * @param {(data: object) => void} o.signal  send an offer/answer/candidate to the peer
     * @param {{open(), closed(reason), frame(data), note(step, detail?)}} o.on  what the agent hears
     * @param {(id, piece) => Promise<ArrayBuffer|null>} o.read  a held piece's bytes
     * @param {Function} [o.RTCPeerConnection]
     */
    constructor (o) {
      this.remote = o.remote
      this.polite = o.polite
      this.on = o.on
      this.read = o.read
      this.signalOut = o.signal
      this.queue = [] // serve requests: {id, piece, offset, length}
      this.flushing = false
      this.closed = false
      this.makingOffer = false
      this.ignoreOffer = false
      this.restarted = false
      this.initiator = o.initiator
      this.bytesServed = 0
      this.localCandidates = 0
      this.remoteCandidates = 0
      this.early = [] // candidates that came before the description they belong to
      const PC = o.RTCPeerConnection || globalThis.RTCPeerConnection
      const pc = new PC(o.config)
      this.pc = pc
      pc.onicecandidate = (e) => {
        if (!e.candidate) return this.on.note('candidates-done', `${this.localCandidates} local`)
        if (this.localCandidates++ === 0) this.on.note('first-local-candidate', candidateType(e.candidate))
        this.signalOut({ candidate: e.candidate.toJSON() })
      }
      pc.oniceconnectionstatechange = () => {
        const s = pc.iceConnectionState
        this.on.note(`ice-${s}`)
        // One ICE restart (fresh candidates, same connection) before giving up.
        if (s === 'failed' && this.initiator && !this.restarted && typeof pc.restartIce === 'function') {
          this.restarted = true
          pc.restartIce()
        } else if (s === 'failed') this._end(CODES.ICE_FAILED)
      }
      pc.onconnectionstatechange = () => {
        if (pc.connectionState === 'closed') this._end(CODES.CHANNEL_CLOSED)
      }
      pc.onnegotiationneeded = async () => {
        try {
          this.makingOffer = true
          await pc.setLocalDescription()
          this.on.note('offer-sent')
          this.signalOut({ description: pc.localDescription.toJSON() })
        } catch (err) {
          this.on.note('offer-failed', String(err && err.name))
        } finally { this.makingOffer = false }
      }
      pc.ondatachannel = (e) => this._channel(e.channel)
      if (o.initiator) this._channel(pc.createDataChannel('whis', { ordered: true }))
    }

    /** An offer, answer or candidate from the peer (through the server). */
    async signal (data) {
      if (this.closed || !data || typeof data !== 'object') return
      const pc = this.pc
      try {
        if (data.description) {
          const d = data.description
          const collision = d.type === 'offer' && (this.makingOffer || pc.signalingState !== 'stable')
          this.ignoreOffer = !this.polite && collision
          if (this.ignoreOffer) return this.on.note('offer-ignored', 'crossed offers; we are impolite')
          this.on.note(d.type === 'offer' ? 'offer-received' : 'answer-received')
          await pc.setRemoteDescription(d)
          for (const c of this.early.splice(0)) await pc.addIceCandidate(c).catch(() => {})
          if (d.type === 'offer') {
            await pc.setLocalDescription()
            this.on.note('answer-sent')
            this.signalOut({ description: pc.localDescription.toJSON() })
          }
        } else if (data.candidate) {
          if (this.remoteCandidates++ === 0) this.on.note('first-remote-candidate', candidateType(data.candidate))
          // Before its description a candidate cannot be added: keep it.
          if (!pc.remoteDescription) this.early.push(data.candidate)
          else { try { await pc.addIceCandidate(data.candidate) } catch (err) { if (!this.ignoreOffer) throw err } }
        }
      } catch (err) {
        this.on.note('negotiation-error', String(err && err.name))
        this._end(CODES.NEGOTIATION_FAILED)
      }
    }

    _channel (dc) {
      this.dc = dc
      dc.binaryType = 'arraybuffer'
      dc.bufferedAmountLowThreshold = LOW_WATER
      dc.onopen = () => { if (!this.closed) this.on.open() }
      dc.onclose = () => this._end(CODES.CHANNEL_CLOSED)
      dc.onmessage = (e) => { if (!this.closed) this.on.frame(e.data) }
      dc.onbufferedamountlow = () => this._flush()
    }

    send (frame) {
      if (this.closed || !this.dc || this.dc.readyState !== 'open') return false
      try { this.dc.send(frame); return true } catch (_) { return false }
    }

    /** Queue a request to serve; refused at once when the queue is full. */
    serve (r) {
      if (this.queue.length >= SERVE_QUEUE) return this.send(wire.reject(r.id, r.piece, r.offset, r.length))
      this.queue.push(r)
      this._flush()
    }

    unserve (id, piece) { this.queue = this.queue.filter((r) => !(r.id === id && r.piece === piece)) }

    /** Serve queued requests while the channel's buffer has room. */
    async _flush () {
      if (this.flushing) return
      this.flushing = true
      try {
        while (this.queue.length && !this.closed && this.dc && this.dc.readyState === 'open' && this.dc.bufferedAmount < HIGH_WATER) {
          const r = this.queue.shift()
          const data = await this.read(r.id, r.piece)
          if (!data || r.offset + r.length > data.byteLength) {
            this.send(wire.reject(r.id, r.piece, r.offset, r.length))
            continue
          }
          const bytes = new Uint8Array(data, r.offset, r.length)
          for (let off = 0; off < bytes.byteLength; off += wire.BLOCK_SIZE) {
            this.send(wire.block(r.id, r.piece, r.offset + off, bytes.subarray(off, off + wire.BLOCK_SIZE)))
          }
          this.bytesServed += r.length
        }
      } finally { this.flushing = false }
    }

    /** The link ended by itself: tell the agent once. */
    _end (reason) {
      if (this.closed) return
      this.close()
      this.on.closed(reason)
    }

    /** Close it (the agent decided, or it ended). */
    close () {
      if (this.closed) return
      this.closed = true
      this.queue = []
      try { if (this.dc) this.dc.close() } catch (_) {}
      try { this.pc.close() } catch (_) {}
    }
  }

  /** host, srflx, relay, prflx — or '?' (what kind of address a candidate is). */
  function candidateType (c) {
    const m = / typ (\w+)/.exec((c && c.candidate) || '')
    return m ? m[1] : '?'
  }

  W.PeerLink = PeerLink
})(globalThis.Whis = globalThis.Whis || {})
