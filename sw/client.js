// Whis client: <script src="/whis/client.js" defer></script>, first in <head>.
//
// Registers the service worker, runs the peer agent in one tab per origin
// (Web Locks election), bridges the agent to the service worker over a
// MessagePort, resolves `data-whis-src` attributes, and exposes
// window.whis.ready() and window.whis.stats(). Anything missing (service
// workers, WebRTC, the Whis server) leaves the page loading from the origin.
//
// A site with its own service worker (which imports /whis/sw-lib.js) writes
// <script src="/whis/client.js" data-sw="/its-sw.js" defer></script> and
// Whis registers nothing itself.
;(function () {
  'use strict'
  if (window.whis || window.__whisNoAgent) return
  const script = document.currentScript
  const ownSw = script && script.dataset ? script.dataset.sw : undefined
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
  // Milestones of this page's visit, ms since navigation start: what a
  // benchmark or a curious operator reads to see where a first visit waits.
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
    /** Milestones (ms since navigation): controlled, joined, firstPeerOpen, sourcesResolved, resolvedBy. */
    timeline: () => ({ ...timeline }),
    get agent () { return agent }
  }

  if (!sw || !window.RTCPeerConnection || !window.MessageChannel || !window.isSecureContext) {
    resolveSources()
    resolveReady({ joined: false, reason: 'this browser cannot run Whis' })
    return
  }

  if (!ownSw) {
    registering = true
    sw.register('/whis-sw.js', { scope: '/' })
      .then(() => { registering = false }, () => { registering = false; resolveSources('registration failed') })
  }

  function loadLib () {
    return new Promise((resolve, reject) => {
      const s = document.createElement('script')
      s.src = '/whis/lib.js' // every file of sw/lib in one script
      s.async = false
      s.onload = resolve
      s.onerror = () => reject(new Error(`cannot load ${s.src}`))
      document.head.appendChild(s)
    })
  }

  /** Connect the agent to the service worker that controls (or will control) us. */
  function bridge () {
    const sessions = new Map()
    const ch = new MessageChannel()
    const port = ch.port1
    port.onmessage = (e) => {
      const m = e.data
      if (!m || typeof m !== 'object') return
      if (m.type === 'want') {
        sessions.set(m.req, agent.want(m.manifest, m.indices, {
          onPiece: (index, data, from, role) => port.postMessage({ type: 'piece', req: m.req, index, data, from, role }, [data]),
          onMiss: (index) => port.postMessage({ type: 'miss', req: m.req, index })
        }))
      } else if (m.type === 'stored') agent.stored(m.id, m.index, m.path, m.count, m.data)
      else if (m.type === 'report') agent.report(m)
      else {
        const s = sessions.get(m.req)
        if (!s) return
        if (m.type === 'got') s.done(m.index)
        else if (m.type === 'bad') s.bad(m.index, m.from)
        else if (m.type === 'close') { s.close(); sessions.delete(m.req) }
      }
    }
    sw.ready.then((reg) => {
      if (reg.active) reg.active.postMessage({ whis: 'agent' }, [ch.port2])
      port.postMessage({ type: 'status', peers: agent.openCount() })
    })
    return port
  }

  async function runAgent () {
    await loadLib()
    const W = window.Whis
    const store = await W.store.openStore()
    agent = new W.Agent({ store, scope: '/' })
    agent.on((type, d) => { if (type === 'peers' && d.count > 0) mark('firstPeerOpen') })
    await agent.start()
    mark('joined')
    let port = bridge()
    agent.on((type, d) => { if (type === 'peers') port.postMessage({ type: 'status', peers: d.count }) })
    // A new service worker (update) needs the agent too.
    sw.addEventListener('controllerchange', () => { port.close(); port = bridge() })
    addEventListener('pagehide', (e) => { if (!e.persisted) agent.leave() })
    resolveReady(agent.status())
    return agent
  }

  /** Resolve data-whis-src when Whis is really ready to serve: controlled, and peers had a moment. */
  async function whenUseful (agentStarted) {
    if (!ownSw && !sw.controller) await new Promise((resolve) => sw.addEventListener('controllerchange', resolve, { once: true }))
    mark('controlled')
    try {
      const a = await agentStarted
      if (a && a.peers.size > 0) {
        const t0 = Date.now()
        while (a.openCount() === 0 && Date.now() - t0 < 1000) await new Promise((resolve) => setTimeout(resolve, 50))
      }
    } catch (_) {}
    resolveSources('ready')
  }

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
  started.then((a) => { if (!a) resolveReady({ joined: false, reason: 'another tab holds the swarm connections' }) })
    .catch(() => resolveReady({ joined: false, reason: 'the Whis server is unreachable' }))
  whenUseful(started)

  if (document.documentElement.hasAttribute('data-whis-panel')) {
    const p = document.createElement('script')
    p.src = '/whis/panel.js'
    p.defer = true
    document.head.appendChild(p)
  }
})()
