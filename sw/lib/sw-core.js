// The service worker's logic, apart from the listeners: a testable
// `handleRequest(request, clientId)` that answers an eligible request from
// verified pieces (or returns null: the caller then lets the request go on
// untouched), `handleMessage` for the pages' messages (the agent's port,
// stats, adoption), and `wakeUp` for a worker that (re)started.
//
// Where a piece comes from, cheapest first: the piece store; the browser's
// HTTP cache; peers through the page agent (a per-piece deadline, see
// scheduler.js); the origin, through the HTTP cache (so a stale entry is
// revalidated, and a 304 costs no body). Every piece is verified against the
// manifest before a byte of it reaches the page, whatever its source.
;(function (W) {
  'use strict'
  const M = W.manifest
  const msg = W.messages
  const MANIFEST_TTL = 30000
  const NEGATIVE_TTL = 60000
  /**
   * A request that finds no agent waits this long for one when a page of
   * the site is open: after a navigation the new page's agent attaches a
   * moment after the page's first requests, and a service worker the
   * browser restarted asks its pages for their agent again.
   */
  const AGENT_WAIT_MS = 1500

  /**
   * @param {{origin: string, fetch: Function, openStore: () => Promise<object>,
   *          clientAlive?: (id: string) => Promise<boolean>,
   *          clientUrl?: (id: string) => Promise<string|null>,
   *          askForAgent?: () => Promise<number>,
   *          scheduler?: object}} deps
   *   clientUrl: the page a request is for (so the server learns what each
   *   page uses); askForAgent: ask the open pages for their agent, resolves to
   *   how many were asked.
   */
  function createServiceWorker (deps) {
    const sched = deps.scheduler || new W.scheduler.Scheduler()
    const clock = sched.clock
    const manifests = new Map() // path → {m, at} | {negative: true, at}
    const stats = new Map() // clientId → counters
    /** The last requests Whis answered: where their bytes came from, and why any came from the origin. */
    const recent = []
    const RECENT = 30
    let store = null
    let agent = null // {port, clientId, peers, settling}
    const agentWaiters = [] // resolve functions of requests waiting for an agent
    let expectAgentUntil = -Infinity // a page was asked for its agent; wait for it until then
    let asking = null // {at, p}: the last time the pages were asked for an agent
    let nextReq = 1
    const wants = new Map() // req → handlers
    const pending = { peer: 0, worker: 0, origin: 0, verified: 0, rejected: 0 }

    async function getStore () {
      if (!store) store = deps.openStore().catch(() => new W.store.MemoryStore())
      return store
    }

    function statsFor (clientId) {
      if (!stats.has(clientId)) {
        stats.set(clientId, { bytesFromPeers: 0, bytesFromWorker: 0, bytesFromOrigin: 0, bytesFromCache: 0, verifiedPieces: 0, rejectedPieces: 0 })
        if (stats.size > 200) stats.delete(stats.keys().next().value)
      }
      return stats.get(clientId)
    }

    /**
     * The manifest of `path`, or null if Whis must not (or cannot) share it.
     * `page` is the page that asked (the server learns what pages use).
     */
    async function getManifest (path, { fresh = false, page = null } = {}) {
      const cached = manifests.get(path)
      const now = clock.now()
      // A reload asks for fresh bytes: revalidate the manifest (cheaply, by ETag).
      if (fresh && cached && cached.m) cached.at = -Infinity
      if (cached && cached.negative && now - cached.at < NEGATIVE_TTL) return null
      if (cached && cached.m && now - cached.at < MANIFEST_TTL) return cached.m
      try {
        const headers = cached && cached.m ? { 'if-none-match': `"${cached.m.id}"` } : {}
        let url = `${deps.origin}/whis/manifest?path=${encodeURIComponent(path)}`
        if (page) url += `&page=${encodeURIComponent(page)}`
        const res = await deps.fetch(url, { headers, cache: 'no-store' })
        if (res.status === 304 && cached && cached.m) { cached.at = now; return cached.m }
        if (!res.ok) { manifests.set(path, { negative: true, at: now }); return null }
        const m = M.check(await res.json())
        if (m.path !== path || (await M.computeId(m)) !== m.id) throw new W.WhisError(W.errors.CODES.BAD_MANIFEST, { message: 'manifest does not name itself' })
        manifests.set(path, { m, at: now })
        return m
      } catch (_) {
        // Whis server down or confused: this request goes to the origin.
        manifests.set(path, { negative: true, at: now })
        return null
      }
    }

    /**
     * Ask the open pages for their agent (at most once per AGENT_WAIT_MS);
     * resolves to how many pages were asked.
     */
    function askPages () {
      const now = clock.now()
      if (asking && now - asking.at < AGENT_WAIT_MS) return asking.p
      const p = (deps.askForAgent ? deps.askForAgent().catch(() => 0) : Promise.resolve(0)).then((n) => {
        if (n) expectAgentUntil = Math.max(expectAgentUntil, clock.now() + AGENT_WAIT_MS)
        return n
      })
      asking = { at: now, p, asked: 0, refused: 0 }
      p.then((n) => { if (asking && asking.p === p) asking.asked = n })
      return p
    }

    /**
     * The page agent, once one is attached. With none, a request waits up to
     * AGENT_WAIT_MS when one is expected (a page was asked for it, or the one
     * we had just went away with its page); else null at once.
     */
    async function currentAgent () {
      if (agent && deps.clientAlive && !(await deps.clientAlive(agent.clientId))) {
        agent = null
        expectAgentUntil = clock.now() + AGENT_WAIT_MS // its page navigated on: the next page brings one
      }
      if (agent) return agent
      if (clock.now() >= expectAgentUntil && !(await askPages())) return null
      const left = expectAgentUntil - clock.now()
      if (agent || left <= 0) return agent
      await new Promise((resolve) => {
        const t = clock.setTimeout(resolve, left)
        agentWaiters.push(() => { clock.clearTimeout(t); resolve() })
      })
      return agent
    }

    /** The page agent as a piece source. */
    function sourceFor (a) {
      return {
        want (m, indices, handlers) {
          const req = nextReq++
          wants.set(req, handlers)
          const info = { id: m.id, size: m.size, piece_size: m.piece_size, count: m.pieces.length, path: m.path }
          a.port.postMessage(msg.make('want', { req, manifest: info, indices }))
          return {
            done (i) { a.port.postMessage(msg.make('got', { req, index: i })) },
            bad (i, from) { a.port.postMessage(msg.make('bad', { req, index: i, from })) },
            close () { wants.delete(req); a.port.postMessage(msg.make('close', { req })) }
          }
        }
      }
    }

    function onAgentMessage (data) {
      const m = msg.read(data, ['piece', 'miss', 'status'])
      if (!m) return
      if (m.whis === 'status') {
        if (!agent) return
        agent.peers = m.peers
        if (m.policy) sched.setPolicy(m.policy)
        return
      }
      const h = wants.get(m.req)
      if (!h) return
      if (m.whis === 'piece') h.onPiece(m.index, m.data, m.from, m.role)
      else h.onMiss(m.index)
    }

    /** A verified piece from `kind`: count it, and keep and share what is new to the store. */
    function report (m, index, data, kind, clientId) {
      const s = statsFor(clientId)
      const n = data.byteLength
      if (kind === 'peer') { s.bytesFromPeers += n; pending.peer += n } else if (kind === 'worker') { s.bytesFromWorker += n; pending.worker += n } else if (kind === 'origin') { s.bytesFromOrigin += n; pending.origin += n } else s.bytesFromCache += n
      // Every piece the page gets was verified, whatever its source; the
      // server's counters are about transfers (peers, worker, origin) only.
      s.verifiedPieces++
      if (kind === 'peer' || kind === 'worker' || kind === 'origin') pending.verified++
      if (kind === 'store') return
      keep(m, index, data)
      flushReport()
    }

    /** Store a verified piece, and hand the agent a copy so it can share it at once. */
    function keep (m, index, data) {
      const buf = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data.buffer : data.slice().buffer
      if (agent) agent.port.postMessage(msg.make('stored', { id: m.id, index, path: m.path, count: m.pieces.length, data: buf }))
      getStore()
        .then((st) => st.put(m.id, index, buf, { path: m.path, count: m.pieces.length }))
        .catch(() => { /* storage full or gone: the agent serves it while it is hot */ })
    }

    function flushReport () {
      if (!agent || (pending.peer + pending.worker + pending.origin + pending.verified + pending.rejected) === 0) return
      agent.port.postMessage(msg.make('report', { ...pending }))
      for (const k of Object.keys(pending)) pending[k] = 0
    }

    /**
     * @param {Request} request
     * @param {string} clientId the page the request is for (stats)
     * @returns {Promise<Response|null>} null: let the request go on untouched
     */
    async function handleRequest (request, clientId) {
      if (W.eligibility.requestIneligible(request, deps.origin)) return null
      const path = new URL(request.url).pathname
      const page = clientId && deps.clientUrl ? await deps.clientUrl(clientId).catch(() => null) : null
      const m = await getManifest(path, { fresh: ['reload', 'no-cache', 'no-store'].includes(request.cache), page })
      if (!m) return null
      const range = M.parseRange(request.headers.get('range'), m.size)
      const headers = new Headers()
      if (m.content_type) headers.set('content-type', m.content_type)
      if (m.etag) headers.set('etag', m.etag)
      if (m.last_modified) headers.set('last-modified', m.last_modified)
      if (m.cache_control) headers.set('cache-control', m.cache_control)
      headers.set('accept-ranges', 'bytes')
      headers.set('x-whis', m.id.slice(0, 16))
      if (range === 'unsatisfiable') {
        headers.set('content-range', `bytes */${m.size}`)
        return new Response(null, { status: 416, headers })
      }
      const start = range ? range.start : 0
      const end = range ? range.end : m.size - 1
      const indices = M.piecesFor(m, start, end)
      const st = await getStore()
      const record = { path, pieces: indices.length, agentWaitMs: 0 }
      const done = () => {
        if (record.done) return
        record.done = true
        record.from = acq.from
        record.originWhy = acq.originWhy
        recent.push(record)
        if (recent.length > RECENT) recent.shift()
      }
      const acq = new W.fetcher.Acquisition(m, indices, {
        fetch: deps.fetch,
        url: request.url,
        scheduler: sched,
        store: st,
        httpCache: true,
        cacheMode: request.cache === 'no-store' ? 'no-store' : 'default',
        // Asked for lazily: pieces in the store or the HTTP cache need no agent.
        source: async () => {
          const t0 = clock.now()
          const a = await currentAgent()
          record.agentWaitMs = Math.round(clock.now() - t0)
          return a ? sourceFor(a) : null
        },
        onVerified: (i, data, kind) => report(m, i, data, kind, clientId),
        onRejected: () => { statsFor(clientId).rejectedPieces++; pending.rejected++ }
      })
      await acq.start()
      let first
      try {
        first = await acq.piece(indices[0])
      } catch (err) {
        // The origin disagrees with the manifest (the file changed): forget
        // the manifest and let this request go to the network untouched.
        manifests.delete(path)
        acq.close()
        done()
        return null
      }
      let k = 0
      const body = new ReadableStream({
        async pull (controller) {
          try {
            const i = indices[k]
            const data = k === 0 ? first : await acq.piece(i)
            const [ps] = M.pieceRange(m, i)
            const from = Math.max(start, ps) - ps
            const to = Math.min(end + 1, ps + data.byteLength) - ps
            controller.enqueue(data.subarray(from, to))
            k++
            if (k === indices.length) { controller.close(); acq.close(); done() }
          } catch (err) {
            manifests.delete(path)
            acq.close()
            done()
            controller.error(err)
          }
        },
        cancel () { acq.close(); done() }
      })
      headers.set('content-length', String(end - start + 1))
      if (range) {
        headers.set('content-range', `bytes ${start}-${end}/${m.size}`)
        return new Response(body, { status: 206, headers })
      }
      return new Response(body, { status: 200, headers })
    }

    /**
     * Resources a page loaded before Whis controlled it: what the browser's
     * HTTP cache holds of them is verified against their manifests, stored
     * and announced, without a network request for the bytes. Resolves to the
     * number of pieces adopted.
     */
    async function adopt (paths, clientId) {
      let adopted = 0
      const page = clientId && deps.clientUrl ? await deps.clientUrl(clientId).catch(() => null) : null
      for (const path of new Set(paths)) {
        const m = await getManifest(path, { page })
        if (!m) continue
        const indices = m.pieces.map((_, i) => i)
        const acq = new W.fetcher.Acquisition(m, indices, {
          fetch: deps.fetch,
          url: `${deps.origin}${path}`,
          scheduler: sched,
          store: await getStore(),
          httpCache: true,
          noOrigin: true,
          onVerified: (i, data, kind) => {
            if (kind !== 'http-cache') return
            adopted++
            keep(m, i, data)
          }
        })
        await acq.start()
        acq.close()
      }
      return adopted
    }

    /** A message from a page: the agent's port, a stats query, resources to adopt. */
    function handleMessage (data, ports, clientId) {
      const m = msg.read(data, ['agent', 'stats', 'adopt', 'no-agent'])
      if (!m) return
      if (m.whis === 'agent' && ports[0]) {
        agent = { port: ports[0], clientId, peers: 0 }
        ports[0].onmessage = (e) => onAgentMessage(e.data)
        for (const wake of agentWaiters.splice(0)) wake()
        flushReport()
      } else if (m.whis === 'stats' && ports[0]) {
        ports[0].postMessage({ ...statsFor(clientId), peers: agent ? agent.peers : 0, agent: !!agent, recent: recent.slice() })
      } else if (m.whis === 'adopt') {
        return adopt(m.paths, clientId)
      } else if (m.whis === 'no-agent' && asking) {
        // Every page asked said it has none: nothing to wait for.
        if (++asking.refused >= asking.asked && !agent) {
          expectAgentUntil = clock.now()
          for (const wake of agentWaiters.splice(0)) wake()
        }
      }
    }

    /** This worker just started (first install, or the browser restarted it): find an agent. */
    function wakeUp () { return agent ? Promise.resolve(0) : askPages() }

    return { handleRequest, handleMessage, getManifest, adopt, wakeUp, scheduler: sched, get agent () { return agent } }
  }

  W.createServiceWorker = createServiceWorker
  W.swCore = { createServiceWorker, AGENT_WAIT_MS }
})(globalThis.Whis = globalThis.Whis || {})
