// Whis client: <script src="/whis/client.js" defer></script>, first in <head>.
//
// Registers the service worker, runs the peer agent in one tab per origin
// (Web Locks election), bridges the agent to the service worker over a
// MessagePort (again whenever the worker restarts or changes), hands the
// worker what this page loaded before Whis controlled it (adoption), fetches
// from peers what the visitor will likely open next (prefetch), resolves
// `data-whis-src` attributes, and exposes window.whis. Anything missing
// (service workers, WebRTC, the Whis server) leaves the page loading from the
// origin.
//
// A site with its own service worker (which imports /whis/sw-lib.js) writes
// <script src="/whis/client.js" data-sw="/its-sw.js" defer></script> and
// Whis registers nothing itself.
;(function () {
  'use strict'
  if (window.whis || window.__whisNoAgent) return
  const script = document.currentScript
  const ownSw = script && script.dataset ? script.dataset.sw : undefined
  // data-relay="only": this page's visitors reach peers only through a TURN
  // relay, so no peer learns their address (no relay: they share nothing).
  const relayOnly = !!(script && script.dataset && script.dataset.relay === 'only')
  // How long data-whis-src waits for the service worker before the origin
  // gets the request directly. A busy origin is exactly when installing the
  // worker is slow and when waiting for it pays off most.
  const FALLBACK_MS = 4000
  // ...and how much longer while the service worker is visibly installing:
  // the Whis server answered, and the worker is a congested moment away.
  const INSTALLING_MS = 12000
  const zero = { bytesFromPeers: 0, bytesFromWorker: 0, bytesFromOrigin: 0, bytesFromCache: 0, peers: 0, verifiedPieces: 0, rejectedPieces: 0 }
  const sw = navigator.serviceWorker
  let agent = null
  let W = null // window.Whis, once /whis/lib.js has loaded
  // Milestones of this page's visit, ms since navigation start: what a
  // benchmark or a curious operator reads to see where a visit waits.
  const timeline = {}
  const mark = (name) => { if (!(name in timeline)) timeline[name] = Math.round(performance.now()) }
  let resolveReady
  const ready = new Promise((resolve) => { resolveReady = resolve })

  // ---- data-whis-src: the real attribute once Whis controls the page ------
  let resolved = false
  function resolveSources (why) {
    if (resolved) return
    resolved = true
    mark('sourcesResolved')
    timeline.resolvedBy = why || 'no service worker'
    const go = () => {
      for (const el of document.querySelectorAll('[data-whis-src]')) {
        const attr = el.tagName === 'LINK' ? 'href' : 'src'
        if (!el.getAttribute(attr)) el.setAttribute(attr, el.getAttribute('data-whis-src'))
        if (el.tagName === 'SOURCE' && el.parentElement && typeof el.parentElement.load === 'function') el.parentElement.load()
      }
    }
    if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', go)
    else go()
  }
  let registering = false // our registration's script is still on its way
  function fallback () {
    if (resolved) return
    const late = () => resolveSources('fallback')
    if (!sw || performance.now() > FALLBACK_MS + INSTALLING_MS) return late()
    sw.getRegistration().then((reg) => {
      // Installing or waiting: it will take control (clients.claim). An
      // active worker that does not control us (a hard reload) never will.
      if (registering || (reg && (reg.installing || reg.waiting))) setTimeout(fallback, 250)
      else late()
    }, late)
  }
  setTimeout(fallback, FALLBACK_MS)

  window.whis = {
    /** Resolves once the agent has joined (or at once when Whis cannot run here). */
    ready: () => ready,
    /** Counters for this page; `peers` are the agent's open connections. */
    async stats () {
      const ctl = sw && sw.controller
      if (!ctl) return { ...zero, peers: agent ? agent.openCount() : 0 }
      const s = await new Promise((resolve) => {
        const ch = new MessageChannel()
        const t = setTimeout(() => resolve(null), 10000) // a busy service worker answers late, not never
        ch.port1.onmessage = (e) => { clearTimeout(t); resolve(e.data) }
        ctl.postMessage({ whis: 'stats' }, [ch.port2])
      })
      return { ...zero, ...(s || {}), peers: agent ? agent.openCount() : (s ? s.peers : 0) }
    },
    /**
     * Milestones (ms since navigation): controlled, joined, firstPeerOpen,
     * sourcesResolved, resolvedBy, adopted, prefetched; `stream`, the event
     * stream and signal counts; and `connections`, every WebRTC link's
     * negotiation steps.
     */
    timeline: () => ({ ...timeline, stream: agent ? { ...agent.stream } : null, connections: agent ? agent.connections() : [] }),
    get agent () { return agent }
  }

  if (!sw || !window.RTCPeerConnection || !window.MessageChannel || !window.isSecureContext) {
    resolveSources()
    timeline.noWhis = 'this browser cannot run Whis'
    resolveReady({ joined: false, reason: timeline.noWhis })
    return
  }

  if (!ownSw) {
    registering = true
    sw.register('/whis-sw.js', { scope: '/' })
      .then(() => { registering = false }, () => { registering = false; resolveSources('registration failed') })
  }

  const lib = new Promise((resolve, reject) => {
    const s = document.createElement('script')
    s.src = '/whis/lib.js' // every file of sw/lib in one script
    s.async = false
    s.onload = () => { W = window.Whis; resolve(W) }
    s.onerror = () => reject(new Error(`cannot load ${s.src}`))
    document.head.appendChild(s)
  })
  lib.catch(() => {})

  // ---- the bridge: agent ⇄ service worker ----------------------------------
  let port = null
  /** Give the agent to the service worker that controls us (or is about to). */
  function bridge () {
    if (port) port.close()
    const sessions = new Map()
    const ch = new MessageChannel()
    const mine = ch.port1
    port = mine
    const status = () => W.messages.make('status', { peers: agent.openCount(), settling: agent.settling(), policy: agent.policy })
    mine.onmessage = (e) => {
      const m = W.messages.read(e.data, ['want', 'got', 'bad', 'close', 'stored', 'report'])
      if (!m) return
      if (m.whis === 'want') {
        sessions.set(m.req, agent.want(m.manifest, m.indices, {
          onPiece: (index, data, from, role) => mine.postMessage(W.messages.make('piece', { req: m.req, index, data, from, role }), [data]),
          onMiss: (index) => mine.postMessage(W.messages.make('miss', { req: m.req, index }))
        }))
      } else if (m.whis === 'stored') agent.stored(m.id, m.index, m.path, m.count, m.data)
      else if (m.whis === 'report') agent.report(m)
      else {
        const s = sessions.get(m.req)
        if (!s) return
        if (m.whis === 'got') s.done(m.index)
        else if (m.whis === 'bad') s.bad(m.index, m.from)
        else { s.close(); sessions.delete(m.req) }
      }
    }
    sw.ready.then((reg) => {
      const target = sw.controller || reg.active
      if (!target || port !== mine) return
      target.postMessage(W.messages.make('agent'), [ch.port2])
      mine.postMessage(status())
      mark('bridged')
    })
    return mine
  }

  // A service worker that (re)started without an agent asks its pages.
  sw.addEventListener('message', (e) => {
    if (!W || !W.messages.read(e.data, ['need-agent'])) return
    if (agent && !agent.closed) { timeline.rebridged = (timeline.rebridged || 0) + 1; bridge() } else if (e.source) e.source.postMessage(W.messages.make('no-agent'))
  })

  async function runAgent () {
    await lib
    const store = await W.store.openStore()
    agent = new W.Agent({ store, scope: '/', relayOnly })
    // The agent of the page this tab showed before may still be listed by
    // the tracker for a moment: it is us, not a peer.
    try { agent.core.formerSelf(sessionStorage.getItem('whis-peer')) } catch (_) {}
    // A data-saving visitor fetches through Whis but uploads nothing; one on
    // a cellular link uploads at most what the operator allows (the join
    // answer's policy; nothing until it is known).
    const conn = navigator.connection
    const uploads = () => {
      const rule = W.agentCore.uploadRule(conn, agent.policy)
      agent.setServing(rule.serving)
      agent.setUploadCap(rule.cap)
      if (rule.why) timeline.uploads = rule.why
      else delete timeline.uploads
    }
    uploads()
    if (conn && conn.addEventListener) conn.addEventListener('change', uploads)
    agent.on((type, d) => {
      if (type === 'peers' && d.count > 0) mark('firstPeerOpen')
      if ((type === 'peers' || type === 'joined') && port) port.postMessage(W.messages.make('status', { peers: agent.openCount(), settling: agent.settling(), policy: agent.policy }))
    })
    // The service worker gets the agent before it has joined: its requests
    // wait for the links it is about to open rather than going to the origin.
    bridge()
    // A new service worker (update, or a first install taking control) needs it too.
    sw.addEventListener('controllerchange', () => bridge())
    addEventListener('pagehide', (e) => {
      if (e.persisted) return
      try { if (agent.id) sessionStorage.setItem('whis-peer', agent.id) } catch (_) {}
      agent.leave()
    })
    await agent.start()
    mark('joined')
    uploads()
    if (agent.noSharing) timeline.noSharing = agent.noSharing
    // What this page's own requests stored before the agent was bridged.
    if (document.readyState === 'complete') agent.syncHoldings()
    else addEventListener('load', () => agent.syncHoldings(), { once: true })
    resolveReady(agent.status())
    return agent
  }

  /** Resolve data-whis-src when Whis is really ready to serve: controlled, and peers had a moment. */
  async function whenUseful (agentStarted) {
    if (!ownSw && !sw.controller) await new Promise((resolve) => sw.addEventListener('controllerchange', resolve, { once: true }))
    mark('controlled')
    adopt()
    try {
      const a = await agentStarted
      if (a && a.core.links.size > 0) {
        const t0 = Date.now()
        while (a.openCount() === 0 && Date.now() - t0 < 1000) await new Promise((resolve) => setTimeout(resolve, 50))
      }
    } catch (_) {}
    resolveSources('ready')
  }

  // ---- adoption: what this page loaded before Whis controlled it -----------
  let adopted = 0
  /** Same-origin resources this page loaded without the service worker: they sit in the HTTP cache. */
  function adopt () {
    const ctl = sw.controller
    if (!ctl || !performance.getEntriesByType) return
    const paths = []
    for (const e of performance.getEntriesByType('resource')) {
      if (e.workerStart > 0) continue // went through the service worker already
      let u
      try { u = new URL(e.name) } catch (_) { continue }
      if (u.origin !== location.origin || u.search || u.pathname.startsWith('/whis/') || u.pathname === '/whis-sw.js') continue
      paths.push(u.pathname)
    }
    const fresh = paths.slice(adopted)
    adopted = paths.length
    if (!fresh.length) return
    lib.then(() => {
      ctl.postMessage(W.messages.make('adopt', { paths: fresh.slice(0, 1024) }))
      mark('adopted')
    }).catch(() => {})
  }
  // Resources that finish after control was gained but were requested before it.
  addEventListener('load', () => setTimeout(adopt, 0))

  let started
  if (navigator.locks && navigator.locks.request) {
    // One tab per origin holds the swarm connections; the others wait their
    // turn. Asking "if available" answers at once, however busy the machine
    // is (a timer here would give up on a slow but free lock).
    started = new Promise((resolve, reject) => {
      navigator.locks.request('whis-agent', { ifAvailable: true }, (lock) => {
        if (lock) return runAgent().then((a) => { resolve(a); return new Promise(() => {}) }, reject)
        resolve(null)
        // Take over when the tab that leads goes.
        navigator.locks.request('whis-agent', () => runAgent().then(() => new Promise(() => {}))).catch(() => {})
      }).catch(reject)
    })
  } else {
    started = runAgent()
  }
  started.then((a) => {
    if (!a) resolveReady({ joined: false, reason: 'another tab holds the swarm connections' })
    else prefetchWhenIdle(a)
  }).catch(() => resolveReady({ joined: false, reason: 'the Whis server is unreachable' }))
  whenUseful(started)

  // ---- prefetch: the next page's bytes, from peers, before it is asked ------
  function prefetchWhenIdle (a) {
    const go = () => setTimeout(() => {
      lib.then(() => W.prefetch.run(a, { page: location.pathname, from: referrerPath(), links: sameOriginLinks() }))
        .then((r) => { if (r) { mark('prefetched'); timeline.prefetch = r } })
        .catch(() => {})
    }, 500)
    if (document.readyState === 'complete') go()
    else addEventListener('load', go, { once: true })
  }

  function referrerPath () {
    try {
      const r = new URL(document.referrer)
      return r.origin === location.origin ? r.pathname : null
    } catch (_) { return null }
  }

  /** The pages this page links to, in document order, without duplicates or itself. */
  function sameOriginLinks () {
    const out = []
    for (const a of document.querySelectorAll('a[href]')) {
      let u
      try { u = new URL(a.href, location.href) } catch (_) { continue }
      if (u.origin !== location.origin || u.pathname === location.pathname || u.pathname.startsWith('/whis/')) continue
      if (!out.includes(u.pathname)) out.push(u.pathname)
      if (out.length >= 64) break
    }
    return out
  }

  if (document.documentElement.hasAttribute('data-whis-panel')) {
    const p = document.createElement('script')
    p.src = '/whis/panel.js'
    p.defer = true
    document.head.appendChild(p)
  }
})()
