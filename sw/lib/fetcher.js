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
   * Fetch bytes [start, end] of `url` from the origin; a 200 answer (no Range
   * support) is sliced. Resolves to a Uint8Array of exactly that span.
   */
  async function fetchRange (fetchFn, url, start, end, validator) {
    const headers = { range: `bytes=${start}-${end}` }
    if (validator) headers['if-range'] = validator
    const t0 = Date.now()
    const res = await fetchFn(url, { headers, cache: 'no-store', credentials: 'same-origin' })
    if (res.status !== 206 && res.status !== 200) throw new W.WhisError('origin-status', { message: `${url}: ${res.status}` })
    let buf = new Uint8Array(await res.arrayBuffer())
    if (res.status === 200) buf = buf.subarray(start, end + 1)
    if (buf.byteLength !== end - start + 1) throw new W.WhisError('origin-short', { message: `${url}: ${buf.byteLength} bytes for ${start}-${end}` })
    learn(buf.byteLength, Date.now() - t0)
    return buf
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
     *          deadlineMs?: number, patient?: boolean,
     *          onVerified?: (i:number, data:Uint8Array, kind:string) => void,
     *          onRejected?: (i:number, from:string) => void}} deps
     */
    constructor (m, indices, deps) {
      this.m = m
      this.deps = deps
      this.waiters = new Map(indices.map((i) => [i, deferred()]))
      this.settled = new Set()
      this.originQueue = new Set()
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

    _toOrigin (i) {
      if (this.settled.has(i) || this.originQueue.has(i) || this.closed) return
      this.originQueue.add(i)
      if (this.want) this.want.cancel(i)
      // Gather pieces queued in the same tick into contiguous runs.
      if (this.originQueue.size === 1) queueMicrotask(() => this._flushOrigin())
    }

    async _flushOrigin () {
      const queued = [...this.originQueue].filter((i) => !this.settled.has(i) && !this._fetching?.has(i)).sort((a, b) => a - b)
      this._fetching = this._fetching || new Set()
      const runs = []
      for (const i of queued) {
        this._fetching.add(i)
        const last = runs[runs.length - 1]
        if (last && last[last.length - 1] === i - 1 && last.length < 16) last.push(i)
        else runs.push([i])
      }
      this.originQueue.clear()
      await Promise.all(runs.map((run) => this._fetchRun(run)))
    }

    async _fetchRun (run) {
      const [start] = M.pieceRange(this.m, run[0])
      const [, end] = M.pieceRange(this.m, run[run.length - 1])
      try {
        const buf = await fetchRange(this.deps.fetch, this.deps.url, start, end - 1, this.m.etag)
        for (const i of run) {
          const [s, e] = M.pieceRange(this.m, i)
          const data = buf.slice(s - start, e - start)
          if (this.settled.has(i)) continue
          if (!(await M.verifyPiece(this.m, i, data))) throw new W.WhisError('origin-mismatch', { message: `${this.deps.url} piece ${i}: the origin's bytes do not match the manifest` })
          this._resolve(i, data, 'origin', null)
        }
      } catch (err) {
        for (const i of run) this._reject(i, err)
      }
    }

    _resolve (i, data, kind, from) {
      if (this.settled.has(i)) return
      this.settled.add(i)
      clearTimeout(this.timers.get(i))
      if (this.want && kind !== 'origin') this.want.done(i)
      if (this.deps.onVerified) this.deps.onVerified(i, data, kind, from)
      this.waiters.get(i).resolve(data)
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
      if (this.want) this.want.close()
    }
  }

  function deferred () {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    promise.catch(() => {}) // a piece nobody awaited must not be an unhandled rejection
    return { promise, resolve, reject }
  }

  W.fetcher = { Acquisition, fetchRange, deadlineFor, originSpeed }
})(globalThis.Whis = globalThis.Whis || {})
