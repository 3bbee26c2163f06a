// Getting verified pieces: from the local store, from peers (through a
// "source", the page agent), and from the origin with Range requests for
// whatever is late, missing or wrong. Used by the service worker (handleRequest)
// and by the worker browser's seeding.
;(function (W) {
  'use strict'
  const M = W.manifest

  /** Origin speed estimate, shared by all acquisitions in this context. */
  const originSpeed = { bytesPerMs: 2000, rttMs: 50 } // optimistic start: 2 MB/s, 50 ms
  /** When a verified piece last came from a peer, for any resource: peers are delivering. */
  const peerFlow = { lastPieceAt: 0 }

  /** How long peers get for one piece before the origin is asked: about what the origin would take, at least 1 s. */
  function deadlineFor (bytes) {
    const originMs = originSpeed.rttMs + bytes / originSpeed.bytesPerMs
    return Math.min(5000, Math.max(1000, 2 * originMs))
  }

  function learn (bytes, ms) {
    if (ms <= 0 || bytes < 16384) return
    originSpeed.bytesPerMs = 0.7 * originSpeed.bytesPerMs + 0.3 * (bytes / ms)
  }

  /**
   * Origin requests in flight at once, per context (service worker or worker
   * page). Chromium opens at most six connections per host, and the event
   * stream, the signaling POSTs and the manifests need some of them: a page
   * that fired every range at once would queue its own WebRTC handshake
   * behind seconds of image bytes. Pieces waiting here stay open to peers.
   */
  const ORIGIN_SLOTS = 4
  /** Pieces per origin request: short requests free their connection soon. */
  const MAX_RUN = 4
  /** An origin request that sends nothing for this long is given up, so a
   *  stalled origin cannot hold one of the few slots for ever. */
  const STALL_MS = 30000

  /** A counting semaphore, first come first served. */
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
  const originGate = new Gate(ORIGIN_SLOTS)

  /**
   * Fetch bytes [start, end] of `url` from the origin and hand them on in
   * consecutive pieces as they arrive: `onPiece(k, bytes)` for the k-th of
   * `lengths`, awaited in order. A 200 answer (no Range support) is skipped
   * up to `start`. `stop()` is asked after every chunk: true ends the
   * transfer early; so does aborting `ctl` (an AbortController), and so does
   * `stallMs` without a byte (then it throws origin-stalled). Resolves to the
   * number of pieces handed on.
   */
  async function streamRange (fetchFn, url, start, end, { validator, lengths, onPiece, stop, ctl, stallMs = STALL_MS }) {
    const headers = { range: `bytes=${start}-${end}` }
    if (validator) headers['if-range'] = validator
    const t0 = Date.now()
    let stalled = false
    let stall = null
    const watch = () => {
      clearTimeout(stall)
      stall = setTimeout(() => { stalled = true; ctl.abort() }, stallMs)
    }
    let k = 0
    watch()
    try {
      const res = await fetchFn(url, { headers, cache: 'no-store', credentials: 'same-origin', signal: ctl.signal })
      if (res.status !== 206 && res.status !== 200) throw new W.WhisError('origin-status', { message: `${url}: ${res.status}` })
      let pos = res.status === 206 ? start : 0 // offset in the file of the next byte read
      let buf = new Uint8Array(lengths[0])
      let filled = 0
      const reader = res.body.getReader()
      try {
        while (k < lengths.length) {
          const { done, value } = await reader.read()
          if (done) break
          watch()
          let v = value
          if (pos < start) {
            const skip = Math.min(v.byteLength, start - pos)
            v = v.subarray(skip)
            pos += skip
          }
          while (v.byteLength > 0 && k < lengths.length) {
            const take = Math.min(v.byteLength, buf.byteLength - filled)
            buf.set(v.subarray(0, take), filled)
            filled += take
            pos += take
            v = v.subarray(take)
            if (filled === buf.byteLength) {
              await onPiece(k, buf)
              k++
              if (k < lengths.length) { buf = new Uint8Array(lengths[k]); filled = 0 }
            }
          }
          if (k < lengths.length && stop()) break
        }
      } finally {
        if (k < lengths.length) {
          ctl.abort()
          reader.cancel().catch(() => {})
        }
      }
    } catch (err) {
      if (stalled) throw new W.WhisError('origin-stalled', { message: `${url}: nothing came for ${stallMs} ms` })
      throw err
    } finally {
      clearTimeout(stall)
    }
    learn(lengths.slice(0, k).reduce((a, b) => a + b, 0), Date.now() - t0)
    return k
  }

  /**
   * One resource's pieces on their way in. `piece(i)` resolves with verified
   * bytes. Peers are asked first (if a source is given) with a deadline per
   * piece; the origin fills the rest, in contiguous runs.
   */
  class Acquisition {
    /**
     * @param {object} m manifest
     * @param {number[]} indices pieces wanted
     * @param {{fetch: Function, url: string, store?: object, source?: object,
     *          deadlineMs?: number, patient?: boolean, stallMs?: number,
     *          onVerified?: (i:number, data:Uint8Array, kind:string) => void,
     *          onRejected?: (i:number, from:string) => void}} deps
     */
    constructor (m, indices, deps) {
      this.m = m
      this.deps = deps
      this.waiters = new Map(indices.map((i) => [i, deferred()]))
      this.settled = new Set()
      this.originQueue = new Set() // due from the origin, not yet grouped into requests
      this.fetching = new Set() // in an origin request (waiting for a slot or in flight)
      this.runs = new Set() // origin requests in flight: {run, ctl}
      this.timers = new Map()
      this.want = null
      this.closed = false
    }

    piece (i) { return this.waiters.get(i).promise }

    async start () {
      const missing = []
      for (const i of this.waiters.keys()) {
        const data = this.deps.store ? await this.deps.store.get(this.m.id, i).catch(() => null) : null
        if (data && await M.verifyPiece(this.m, i, data)) this._resolve(i, new Uint8Array(data), 'cache', null)
        else missing.push(i)
      }
      if (missing.length === 0) return
      if (this.deps.source) {
        this.want = this.deps.source.want(this.m, missing, {
          onPiece: (i, data, from, role) => this._fromPeer(i, data, from, role),
          onMiss: (i) => this._toOrigin(i)
        }, { patient: !!this.deps.patient })
        const started = Date.now()
        for (const i of missing) {
          const [s, e] = M.pieceRange(this.m, i)
          const deadline = this.deps.deadlineMs || deadlineFor(e - s)
          // Past its deadline a piece goes to the origin, unless peers are
          // visibly delivering right now (then it is queued behind their
          // pipeline, which is shared by every resource in flight, not lost);
          // never past four deadlines.
          const check = () => {
            if (this.settled.has(i)) return
            const busy = Date.now() - peerFlow.lastPieceAt < deadline / 2
            if (busy && Date.now() - started < 4 * deadline) this.timers.set(i, setTimeout(check, deadline / 2))
            else this._toOrigin(i)
          }
          this.timers.set(i, setTimeout(check, deadline))
        }
      } else {
        missing.forEach((i) => this._toOrigin(i))
      }
    }

    async _fromPeer (i, data, from, role) {
      if (this.settled.has(i) || this.closed) return
      const bytes = data instanceof Uint8Array ? data : new Uint8Array(data)
      if (await M.verifyPiece(this.m, i, bytes)) {
        peerFlow.lastPieceAt = Date.now()
        this._resolve(i, bytes, role === 'worker' ? 'worker' : 'peer', from)
      } else {
        if (this.deps.onRejected) this.deps.onRejected(i, from)
        if (this.want) this.want.bad(i, from)
        this._toOrigin(i)
      }
    }

    /**
     * Piece i is due from the origin. It waits for a free origin slot and,
     * until its bytes are in, stays open to peers: whichever source delivers
     * first wins, and an origin request whose pieces all came from peers is
     * aborted.
     */
    _toOrigin (i) {
      if (this.settled.has(i) || this.originQueue.has(i) || this.closed) return
      this.originQueue.add(i)
      // Gather pieces queued in the same tick into contiguous runs.
      if (this.originQueue.size === 1) queueMicrotask(() => this._flushOrigin())
    }

    _flushOrigin () {
      const queued = [...this.originQueue].filter((i) => !this.settled.has(i) && !this.fetching.has(i)).sort((a, b) => a - b)
      this.originQueue.clear()
      const runs = []
      for (const i of queued) {
        this.fetching.add(i)
        const last = runs[runs.length - 1]
        if (last && last[last.length - 1] === i - 1 && last.length < MAX_RUN) last.push(i)
        else runs.push([i])
      }
      for (const run of runs) this._fetchRun(run)
    }

    async _fetchRun (run) {
      await originGate.acquire()
      const ctl = new AbortController()
      const entry = { run, ctl }
      try {
        // Peers may have delivered the ends of the run while it waited.
        while (run.length && this.settled.has(run[0])) run.shift()
        while (run.length && this.settled.has(run[run.length - 1])) run.pop()
        if (run.length === 0 || this.closed) return
        this.runs.add(entry)
        const [start] = M.pieceRange(this.m, run[0])
        const [, end] = M.pieceRange(this.m, run[run.length - 1])
        const lengths = run.map((i) => { const [s, e] = M.pieceRange(this.m, i); return e - s })
        const n = await streamRange(this.deps.fetch, this.deps.url, start, end - 1, {
          validator: this.m.etag,
          lengths,
          ctl,
          stallMs: this.deps.stallMs,
          stop: () => this.closed || run.every((i) => this.settled.has(i)),
          onPiece: async (k, data) => {
            const i = run[k]
            if (this.settled.has(i)) return
            if (!(await M.verifyPiece(this.m, i, data))) throw new W.WhisError('origin-mismatch', { message: `${this.deps.url} piece ${i}: the origin's bytes do not match the manifest` })
            this._resolve(i, data, 'origin', null)
          }
        })
        if (n < run.length && !this.closed && !run.every((i) => this.settled.has(i))) {
          throw new W.WhisError('origin-short', { message: `${this.deps.url}: the origin ended early` })
        }
      } catch (err) {
        // Aborted because peers (or nobody) needed the rest: not an error.
        if (!this.closed) for (const i of run) this._reject(i, err)
      } finally {
        this.runs.delete(entry)
        for (const i of run) this.fetching.delete(i)
        originGate.release()
      }
    }

    _resolve (i, data, kind, from) {
      if (this.settled.has(i)) return
      this.settled.add(i)
      clearTimeout(this.timers.get(i))
      if (this.want) this.want.done(i)
      if (this.deps.onVerified) this.deps.onVerified(i, data, kind, from)
      this.waiters.get(i).resolve(data)
      // An origin request with nothing left to bring is stopped now.
      if (kind !== 'origin') for (const r of this.runs) if (r.run.every((j) => this.settled.has(j))) r.ctl.abort()
      this._maybeClose()
    }

    _reject (i, err) {
      if (this.settled.has(i)) return
      this.settled.add(i)
      this.waiters.get(i).reject(err)
      this._maybeClose()
    }

    _maybeClose () { if (this.settled.size === this.waiters.size) this.close() }

    close () {
      if (this.closed) return
      this.closed = true
      for (const t of this.timers.values()) clearTimeout(t)
      for (const r of this.runs) r.ctl.abort()
      if (this.want) this.want.close()
    }
  }

  function deferred () {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    promise.catch(() => {}) // a piece nobody awaited must not be an unhandled rejection
    return { promise, resolve, reject }
  }

  W.fetcher = { Acquisition, deadlineFor, originSpeed, ORIGIN_SLOTS }
})(globalThis.Whis = globalThis.Whis || {})
