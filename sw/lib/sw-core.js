// The service worker's logic, apart from the listeners: a testable
// `handleRequest(request, clientId)` that answers an eligible request from
// verified pieces (or returns null: the caller then fetches it untouched),
// and `handleMessage` for the page agent's port and the pages' stats queries.
;(function (W) {
  'use strict'
  const M = W.manifest
  const MANIFEST_TTL = 30000
  const NEGATIVE_TTL = 60000

  /**
   * @param {{origin: string, fetch: Function, openStore: () => Promise<object>,
   *          clientAlive?: (id: string) => Promise<boolean>}} deps
   */
  function createServiceWorker (deps) {
    const manifests = new Map() // path → {m, at} | {negative: true, at}
    const stats = new Map() // clientId → counters
    let store = null
    let agent = null // {port, clientId, peers}
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

    /** The manifest of `path`, or null if Whis must not (or cannot) share it. */
    async function getManifest (path, fresh = false) {
      const cached = manifests.get(path)
      const now = Date.now()
      // A reload asks for fresh bytes: revalidate the manifest (cheaply, by ETag).
      if (fresh && cached && cached.m) cached.at = 0
      if (cached && cached.negative && now - cached.at < NEGATIVE_TTL) return null
      if (cached && cached.m && now - cached.at < MANIFEST_TTL) return cached.m
      try {
        const headers = cached && cached.m ? { 'if-none-match': `"${cached.m.id}"` } : {}
        const res = await deps.fetch(`${deps.origin}/whis/manifest?path=${encodeURIComponent(path)}`, { headers, cache: 'no-store' })
        if (res.status === 304 && cached && cached.m) { cached.at = now; return cached.m }
        if (!res.ok) { manifests.set(path, { negative: true, at: now }); return null }
        const m = M.check(await res.json())
        if (m.path !== path || (await M.computeId(m)) !== m.id) throw new W.WhisError('bad-manifest', { message: 'manifest does not name itself' })
        manifests.set(path, { m, at: now })
        return m
      } catch (_) {
        // Whis server down or confused: this request goes to the origin.
        manifests.set(path, { negative: true, at: now })
        return null
      }
    }

    /** The page agent as a piece source, if one is connected. */
    function source () {
      if (!agent) return null
      const port = agent.port
      return {
        want (m, indices, handlers) {
          const req = nextReq++
          wants.set(req, handlers)
          port.postMessage({ type: 'want', req, manifest: { id: m.id, size: m.size, piece_size: m.piece_size, count: m.pieces.length, path: m.path }, indices })
          return {
            done (i) { port.postMessage({ type: 'got', req, index: i }) },
            bad (i, from) { port.postMessage({ type: 'bad', req, index: i, from }) },
            close () { wants.delete(req); port.postMessage({ type: 'close', req }) }
          }
        }
      }
    }

    function onAgentMessage (msg) {
      if (!msg || typeof msg !== 'object') return
      const h = wants.get(msg.req)
      if (msg.type === 'piece' && h && msg.data instanceof ArrayBuffer) h.onPiece(msg.index, msg.data, String(msg.from), msg.role)
      else if (msg.type === 'miss' && h) h.onMiss(msg.index)
      else if (msg.type === 'status' && agent) agent.peers = Number(msg.peers) || 0
    }

    function report (m, index, data, kind, clientId) {
      const s = statsFor(clientId)
      const n = data.byteLength
      if (kind === 'peer') { s.bytesFromPeers += n; pending.peer += n } else if (kind === 'worker') { s.bytesFromWorker += n; pending.worker += n } else if (kind === 'origin') { s.bytesFromOrigin += n; pending.origin += n } else s.bytesFromCache += n
      if (kind !== 'cache') { s.verifiedPieces++; pending.verified++ }
      if (kind === 'cache') return
      const buf = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data.buffer : data.slice().buffer
      // The agent gets a copy at once and can seed it before the write commits.
      if (agent) agent.port.postMessage({ type: 'stored', id: m.id, index, path: m.path, count: m.pieces.length, data: buf })
      getStore()
        .then((st) => st.put(m.id, index, buf, { path: m.path, count: m.pieces.length }))
        .catch(() => { /* storage full or gone: the agent serves it while it is hot */ })
      flushReport()
    }

    function flushReport () {
      if (!agent || (pending.peer + pending.worker + pending.origin + pending.verified + pending.rejected) === 0) return
      agent.port.postMessage({ type: 'report', ...pending })
      for (const k of Object.keys(pending)) pending[k] = 0
    }

    /**
     * @param {Request} request
     * @param {string} clientId the page the request is for (stats)
     * @returns {Promise<Response|null>} null: fetch it untouched
     */
    async function handleRequest (request, clientId) {
      if (W.eligibility.requestIneligible(request, deps.origin)) return null
      const path = new URL(request.url).pathname
      const m = await getManifest(path, ['reload', 'no-cache', 'no-store'].includes(request.cache))
      if (!m) return null
      if (agent && deps.clientAlive && !(await deps.clientAlive(agent.clientId))) agent = null
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
      const acq = new W.fetcher.Acquisition(m, indices, {
        fetch: deps.fetch,
        url: request.url,
        store: await getStore(),
        source: source(),
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
            if (k === indices.length) { controller.close(); acq.close() }
          } catch (err) {
            manifests.delete(path)
            acq.close()
            controller.error(err)
          }
        },
        cancel () { acq.close() }
      })
      headers.set('content-length', String(end - start + 1))
      if (range) {
        headers.set('content-range', `bytes ${start}-${end}/${m.size}`)
        return new Response(body, { status: 206, headers })
      }
      return new Response(body, { status: 200, headers })
    }

    /** A message from a page: the agent's port, or a stats query. */
    function handleMessage (data, ports, clientId) {
      if (!data || typeof data !== 'object') return
      if (data.whis === 'agent' && ports[0]) {
        agent = { port: ports[0], clientId, peers: 0 }
        ports[0].onmessage = (e) => onAgentMessage(e.data)
        flushReport()
      } else if (data.whis === 'stats' && ports[0]) {
        ports[0].postMessage({ ...statsFor(clientId), peers: agent ? agent.peers : 0, agent: !!agent })
      }
    }

    return { handleRequest, handleMessage, getManifest, get agent () { return agent } }
  }

  W.createServiceWorker = createServiceWorker
})(globalThis.Whis = globalThis.Whis || {})
