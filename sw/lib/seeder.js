// Pulling whole resources into the store before anyone asks for them:
// - the worker browser seeds what its swarm uses (peers first, patiently,
//   then the origin), so it can serve every visitor who comes later;
// - a page prefetches, from peers only, what its visitor will likely open
//   next, so the next page finds its bytes in the store (a navigation tears
//   the agent down, and the next page's first requests come before any
//   connection is open again).
;(function (W) {
  'use strict'
  const M = W.manifest

  /**
   * Pull every piece of `m` we do not hold yet, verified, into the store,
   * and announce each as it comes.
   * @param {object} m a manifest (checked, id verified)
   * @param {{agent: object, store: object, fetch: Function, scheduler: object,
   *          noOrigin?: boolean, deadlineMs?: number, timeoutMs?: number}} deps
   *   noOrigin: peers or nothing (prefetch); timeoutMs: give up on what has
   *   not come by then.
   * @returns {Promise<{pieces: number, bytes: number, from: object}>} what came, by source
   */
  async function pull (m, deps) {
    const { agent, store } = deps
    const held = agent.holdings.get(m.id)
    const indices = m.pieces.map((_, i) => i).filter((i) => !(held && held.have.has(i)))
    const result = { pieces: 0, bytes: 0, from: {} }
    if (indices.length === 0) return result
    const info = { id: m.id, size: m.size, piece_size: m.piece_size, count: m.pieces.length, path: m.path }
    const acq = new W.fetcher.Acquisition(m, indices, {
      fetch: deps.fetch,
      url: m.path,
      scheduler: deps.scheduler,
      store,
      noOrigin: !!deps.noOrigin,
      // Peers may still be fetching these: wait for them, not for misses.
      source: { want: (_m, idx, h) => agent.want(info, idx, h, { patient: true }) },
      patient: true,
      deadlineMs: deps.deadlineMs,
      onVerified: (i, data, kind) => {
        result.pieces++
        result.bytes += data.byteLength
        result.from[kind] = (result.from[kind] || 0) + data.byteLength
        const buf = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data.buffer : data.slice().buffer
        if (kind === 'peer' || kind === 'worker' || kind === 'origin') agent.report({ [kind]: data.byteLength, verified: 1 })
        agent.stored(m.id, i, m.path, m.pieces.length, buf)
        if (kind !== 'store') store.put(m.id, i, buf, { path: m.path, count: m.pieces.length }).catch(() => {})
      },
      onRejected: () => agent.report({ rejected: 1 })
    })
    const clock = deps.scheduler.clock
    const timer = deps.timeoutMs ? clock.setTimeout(() => acq.close(), deps.timeoutMs) : null
    await acq.start()
    await Promise.allSettled(indices.map((i) => acq.piece(i)))
    clock.clearTimeout(timer)
    acq.close()
    return result
  }

  /**
   * Prefetch for the pages a visitor of `page` will likely open next: asks
   * the server (`POST /whis/next`) which of `links` visitors of this page
   * opened, in that order, with the manifests of what those pages use; then
   * pulls them from peers only, within the server's byte budget. Never asks
   * the origin; does nothing for a data-saving visitor or with no peer.
   * @returns {Promise<object|null>} what was fetched, or null when nothing was tried
   */
  async function run (agent, { page, from, links, fetch: fetchFn = (u, i) => fetch(u, i), scheduler = new W.scheduler.Scheduler(), waitForPeerMs = 5000 }) {
    const conn = typeof navigator !== 'undefined' ? navigator.connection : null
    if (conn && conn.saveData) return null
    const res = await fetchFn(`${agent.base}/whis/next`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ page, from: from || null, links: links || [] })
    })
    if (!res.ok) return null
    const plan = await res.json()
    const pages = Array.isArray(plan.pages) ? plan.pages : []
    const budget = Number(plan.budget_bytes) || 0
    if (!pages.length || budget <= 0) return null
    // Peers or nothing: wait a moment for a link to open.
    const t0 = scheduler.clock.now()
    while (agent.openCount() === 0 && scheduler.clock.now() - t0 < waitForPeerMs) {
      await new Promise((resolve) => scheduler.clock.setTimeout(resolve, 100))
    }
    const done = { pages: 0, resources: 0, bytes: 0, skipped: 0 }
    if (agent.openCount() === 0) return { ...done, why: 'no peer' }
    let spent = 0
    for (const p of pages) {
      for (const raw of Array.isArray(p.resources) ? p.resources : []) {
        let m
        try { m = M.check(raw); if ((await M.computeId(m)) !== m.id) continue } catch (_) { continue }
        const held = agent.holdings.get(m.id)
        const missing = m.pieces.length - (held ? held.have.size : 0)
        if (missing <= 0) continue
        if (spent + m.size > budget) { done.skipped++; continue }
        spent += m.size
        const r = await pull(m, { agent, store: agent.store, fetch: fetchFn, scheduler, noOrigin: true, deadlineMs: 4000, timeoutMs: 15000 })
        done.resources++
        done.bytes += r.bytes
      }
      done.pages++
    }
    return done
  }

  W.seeder = { pull }
  W.prefetch = { run }
})(globalThis.Whis = globalThis.Whis || {})
