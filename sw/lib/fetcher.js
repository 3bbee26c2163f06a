// Getting verified pieces, cheapest source first: the piece store, the
// browser's HTTP cache (bytes an earlier load left there cost the origin
// nothing), peers (through a "source", the page agent) with a per-piece
// deadline, and the origin with Range requests for whatever is late, missing
// or wrong. Used by the service worker (handleRequest), by prefetch and by the
// worker browser's seeding (seeder.js).
;(function (W) {
  'use strict'
  const M = W.manifest
  const { CODES } = W.errors

  /** Pieces per origin request: short requests free their connection soon. */
  const MAX_RUN = 4
  /** Pieces handed to the origin when peers stall (in order, so the page
   *  moves on); peers keep the rest while they resume. */
  const STALL_WINDOW = 2
  /** An origin request that sends nothing for this long is given up, so a
   *  stalled origin cannot hold one of the few slots for ever. */
  const STALL_MS = 30000

  /**
   * Fetch bytes [start, end] of `url` and hand them on in consecutive pieces
   * as they arrive: `onPiece(k, bytes)` for the k-th of `lengths`, awaited in
   * order. A 200 answer (no Range support) is skipped up to `start`. `stop()`
   * is asked after every chunk: true ends the transfer early; so does aborting
   * `ctl` (an AbortController), and so does `stallMs` without a byte (then it
   * throws origin-stalled). `init` adds fetch options (cache mode);
   * `whole` asks for the whole resource and skips to `start` (Chromium
   * answers `only-if-cached` requests only without a Range). Resolves to the
   * number of pieces handed on.
   */
  async function streamRange (fetchFn, url, start, end, { lengths, onPiece, stop = () => false, ctl, stallMs = STALL_MS, init = {}, whole = false, clock = W.scheduler.clock }) {
    // No If-Range: Chromium's HTTP cache passes any request with a
    // validator of the caller's straight to the network, and would then
    // never answer a range from what it holds. Versions cannot mix anyway:
    // every piece is checked against the manifest's hash.
    const headers = whole ? {} : { range: `bytes=${start}-${end}` }
    let stalled = false
    let stall = null
    const watch = () => {
      clock.clearTimeout(stall)
      stall = clock.setTimeout(() => { stalled = true; ctl.abort() }, stallMs)
    }
    let k = 0
    watch()
    try {
      const res = await fetchFn(url, { credentials: 'same-origin', cache: 'default', ...init, headers, signal: ctl.signal })
      if (res.status !== 206 && res.status !== 200) throw new W.WhisError(CODES.ORIGIN_STATUS, { message: `${url}: ${res.status}` })
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
      if (stalled) throw new W.WhisError(CODES.ORIGIN_STALLED, { message: `${url}: nothing came for ${stallMs} ms` })
      throw err
    } finally {
      clock.clearTimeout(stall)
    }
    return k
  }

  /**
   * One resource's pieces on their way in. `piece(i)` resolves with verified
   * bytes (or rejects: the origin disagrees with the manifest, or the
   * acquisition was closed first). Sources in order: the store, the HTTP
   * cache, peers (if a source is given) while they keep delivering, the
   * origin (unless `noOrigin`) for the rest, in contiguous runs.
   *
   * `onVerified(i, data, kind, from)` says where each piece came from:
   * 'store' (our own store: nothing to do), 'http-cache' (the browser's
   * cache: new to the store), 'peer', 'worker' or 'origin'.
   */
  class Acquisition {
    /**
     * @param {object} m manifest
     * @param {number[]} indices pieces wanted
     * @param {{fetch: Function, url: string, scheduler: object, store?: object,
     *          source?: object | (() => Promise<object|null>),
     *          httpCache?: boolean, cacheMode?: string, noOrigin?: boolean,
     *          deadlineMs?: number, patient?: boolean, stallMs?: number,
     *          onVerified?: (i:number, data:Uint8Array, kind:string, from:string|null) => void,
     *          onRejected?: (i:number, from:string) => void}} deps
     */
    constructor (m, indices, deps) {
      this.m = m
      this.deps = deps
      this.sched = deps.scheduler
      this.clock = this.sched.clock
      this.waiters = new Map(indices.map((i) => [i, deferred()]))
      this.settled = new Set()
      this.originQueue = new Set() // due from the origin, not yet grouped into requests
      this.fetching = new Set() // in an origin request (waiting for a slot or in flight)
      this.runs = new Set() // origin requests in flight: {run, ctl}
      this.watchdog = null
      this.lastPeerPiece = -Infinity // when this acquisition last got a piece from a peer
      this.stalledAt = -Infinity // when peers last stalled (and the origin took some)
      this.originWhy = {} // why pieces were sent to the origin: reason → pieces
      this.from = {} // where verified bytes came from: kind → bytes
      this.want = null
      this.closed = false
    }

    piece (i) { return this.waiters.get(i).promise }

    async start () {
      let missing = []
      for (const i of this.waiters.keys()) {
        const data = this.deps.store ? await this.deps.store.get(this.m.id, i).catch(() => null) : null
        if (data && await M.verifyPiece(this.m, i, data)) this._resolve(i, new Uint8Array(data), 'store', null)
        else missing.push(i)
      }
      if (missing.length && this.deps.httpCache) missing = await this._fromHttpCache(missing)
      if (missing.length === 0 || this.closed) return
      // A source may be a function that finds one (the service worker waits
      // a moment for a page agent that is on its way).
      const source = typeof this.deps.source === 'function' ? await this.deps.source() : this.deps.source
      if (this.closed) return
      if (!source) return missing.forEach((i) => this._toOrigin(i, 'no-agent'))
      this.want = source.want(this.m, missing, {
        onPiece: (i, data, from, role) => this._fromPeer(i, data, from, role),
        onMiss: (i) => this._toOrigin(i, 'no-holder')
      }, { patient: !!this.deps.patient })
      // Peers get the pieces they hold for as long as they keep delivering
      // (see Scheduler.peerWait); what they stop delivering goes to the origin.
      const [s0, e0] = M.pieceRange(this.m, missing[0])
      const bytes = missing.reduce((n, i) => { const [s, e] = M.pieceRange(this.m, i); return n + e - s }, 0)
      this.wait = this.sched.peerWait(this.deps.deadlineMs || this.sched.deadlineFor(e0 - s0), bytes)
      this._watch()
    }

    /**
     * When peers stall, the next pieces in order (STALL_WINDOW) go to the
     * origin, so the page moves on, and peers keep the rest while they
     * resume; when their time is up, everything left goes.
     */
    _watch () {
      if (this.closed) return
      const now = this.clock.now()
      const due = this.wait.due(now, Math.max(this.lastPeerPiece, this.stalledAt))
      if (due > now) {
        this.watchdog = this.clock.setTimeout(() => this._watch(), due - now)
        return
      }
      const open = [...this.waiters.keys()].sort((a, b) => a - b)
        .filter((i) => !this.settled.has(i) && !this.originQueue.has(i) && !this.fetching.has(i))
      if (due >= this.wait.limit) return open.forEach((i) => this._toOrigin(i, 'peers-too-slow'))
      open.slice(0, STALL_WINDOW).forEach((i) => this._toOrigin(i, 'peers-stalled'))
      this.stalledAt = now
      if (open.length > STALL_WINDOW) this._watch()
    }

    /**
     * What the browser's HTTP cache holds of the missing pieces, read without
     * a network request (`only-if-cached`), verified like any other source:
     * bytes of another version fail their hashes and are left alone. Returns
     * the pieces still missing.
     */
    async _fromHttpCache (missing) {
      const first = missing[0]
      const last = missing[missing.length - 1]
      const [start] = M.pieceRange(this.m, first)
      const [, end] = M.pieceRange(this.m, last)
      const lengths = []
      for (let i = first; i <= last; i++) { const [s, e] = M.pieceRange(this.m, i); lengths.push(e - s) }
      const wanted = new Set(missing)
      try {
        await streamRange(this.deps.fetch, this.deps.url, start, end - 1, {
          lengths,
          ctl: new AbortController(),
          clock: this.clock,
          init: { cache: 'only-if-cached', mode: 'same-origin' },
          whole: true,
          onPiece: async (k, data) => {
            const i = first + k
            if (!wanted.has(i)) return
            // Another version (or a corrupt entry): stop reading it.
            if (!(await M.verifyPiece(this.m, i, data))) throw new W.WhisError(CODES.ORIGIN_MISMATCH, { message: 'the HTTP cache holds another version' })
            this._resolve(i, data, 'http-cache', null)
          }
        })
      } catch (_) { /* not cached (or not all of it): the other sources fill in */ }
      return missing.filter((i) => !this.settled.has(i))
    }

    async _fromPeer (i, data, from, role) {
      if (this.settled.has(i) || this.closed) return
      const bytes = data instanceof Uint8Array ? data : new Uint8Array(data)
      if (await M.verifyPiece(this.m, i, bytes)) {
        this.sched.peerDelivered()
        this.lastPeerPiece = this.clock.now()
        this._resolve(i, bytes, role === 'worker' ? 'worker' : 'peer', from)
      } else {
        if (this.deps.onRejected) this.deps.onRejected(i, from)
        if (this.want) this.want.bad(i, from)
        this._toOrigin(i, 'bad-piece')
      }
    }

    /**
     * Piece i is due from the origin. It waits for a free origin slot and,
     * until its bytes are in, stays open to peers: whichever source delivers
     * first wins, and an origin request whose pieces all came from peers is
     * aborted. With `noOrigin` (prefetch) peers were its only chance.
     */
    _toOrigin (i, why) {
      if (this.settled.has(i) || this.originQueue.has(i) || this.fetching.has(i) || this.closed) return
      this.originWhy[why] = (this.originWhy[why] || 0) + 1
      if (this.deps.noOrigin) return this._reject(i, new W.WhisError(CODES.TIMEOUT, { message: `no peer gave piece ${i}` }))
      this.originQueue.add(i)
      // Gather pieces queued in the same tick into contiguous runs.
      if (this.originQueue.size === 1) queueMicrotask(() => this._flushOrigin())
    }

    _flushOrigin () {
      const queued = [...this.originQueue].filter((i) => !this.settled.has(i) && !this.fetching.has(i)).sort((a, b) => a - b)
      this.originQueue.clear()
      // The whole resource is due from the origin (nobody else has any of
      // it): one plain request, as the browser would make without Whis, so
      // the HTTP cache keeps a whole entry (a range-built one is not always
      // served whole again, or at all, by Chromium).
      if (queued.length === this.m.pieces.length && queued.length > 1) {
        queued.forEach((i) => this.fetching.add(i))
        return this._fetchRun(queued, true)
      }
      const runs = []
      for (const i of queued) {
        this.fetching.add(i)
        const last = runs[runs.length - 1]
        if (last && last[last.length - 1] === i - 1 && last.length < MAX_RUN) last.push(i)
        else runs.push([i])
      }
      for (const run of runs) this._fetchRun(run)
    }

    async _fetchRun (run, whole = false) {
      await this.sched.acquire()
      const ctl = new AbortController()
      const entry = { run, ctl }
      try {
        // Peers may have delivered the ends of the run while it waited.
        if (!whole) {
          while (run.length && this.settled.has(run[0])) run.shift()
          while (run.length && this.settled.has(run[run.length - 1])) run.pop()
        }
        if (run.length === 0 || this.closed) return
        this.runs.add(entry)
        const [start] = M.pieceRange(this.m, run[0])
        const [, end] = M.pieceRange(this.m, run[run.length - 1])
        const lengths = run.map((i) => { const [s, e] = M.pieceRange(this.m, i); return e - s })
        const t0 = this.clock.now()
        const n = await streamRange(this.deps.fetch, this.deps.url, start, end - 1, {
          lengths,
          ctl,
          whole,
          clock: this.clock,
          stallMs: this.deps.stallMs,
          // The browser's HTTP cache stays in the loop: a stale entry is
          // revalidated (a 304 costs no body), and what comes is kept.
          init: { cache: this.deps.cacheMode || 'default' },
          stop: () => this.closed || run.every((i) => this.settled.has(i)),
          onPiece: async (k, data) => {
            const i = run[k]
            if (this.settled.has(i)) return
            if (!(await M.verifyPiece(this.m, i, data))) throw new W.WhisError(CODES.ORIGIN_MISMATCH, { message: `${this.deps.url} piece ${i}: the origin's bytes do not match the manifest` })
            this._resolve(i, data, 'origin', null)
          }
        })
        this.sched.learn(lengths.slice(0, n).reduce((a, b) => a + b, 0), this.clock.now() - t0)
        if (n < run.length && !this.closed && !run.every((i) => this.settled.has(i))) {
          throw new W.WhisError(CODES.ORIGIN_SHORT, { message: `${this.deps.url}: the origin ended early` })
        }
      } catch (err) {
        // Aborted because peers (or nobody) needed the rest: not an error.
        if (!this.closed) for (const i of run) this._reject(i, err)
      } finally {
        this.runs.delete(entry)
        for (const i of run) this.fetching.delete(i)
        this.sched.release()
      }
    }

    _resolve (i, data, kind, from) {
      if (this.settled.has(i)) return
      this.settled.add(i)
      this.from[kind] = (this.from[kind] || 0) + data.byteLength
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

    /** Stop: requests are aborted, and pieces not in yet reject. */
    close () {
      if (this.closed) return
      this.closed = true
      this.clock.clearTimeout(this.watchdog)
      for (const r of this.runs) r.ctl.abort()
      if (this.want) this.want.close()
      const gone = new W.WhisError(CODES.LEAVING, { message: 'acquisition closed' })
      for (const [i, w] of this.waiters) if (!this.settled.has(i)) { this.settled.add(i); w.reject(gone) }
    }
  }

  function deferred () {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    promise.catch(() => {}) // a piece nobody awaited must not be an unhandled rejection
    return { promise, resolve, reject }
  }

  W.fetcher = { Acquisition, streamRange }
})(globalThis.Whis = globalThis.Whis || {})
