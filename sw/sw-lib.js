// Whis for a site's own service worker: `importScripts('/whis/sw-lib.js')`.
//
// Registers a fetch listener that answers only requests Whis may share.
// Imported into a site's worker, it claims a request only once it knows the
// path's manifest (learned in the background on first sight), so the site's
// own fetch handler keeps everything else; as /whis-sw.js it claims every
// eligible request and passes unknown ones through untouched.
/* global importScripts */
importScripts('/whis/lib.js') // every file of sw/lib in one script
;(function () {
  'use strict'
  const W = self.Whis
  const standalone = self.WHIS_STANDALONE === true
  const sw = W.createServiceWorker({
    origin: self.location.origin,
    fetch: (input, init) => fetch(input, init),
    openStore: () => W.store.openStore(),
    clientAlive: async (id) => !!(await self.clients.get(id)),
    clientUrl: async (id) => {
      const c = await self.clients.get(id)
      return c ? new URL(c.url).pathname : null
    },
    // The pages of the site that are open: any of them may run the agent.
    askForAgent: async () => {
      const pages = await self.clients.matchAll({ type: 'window' })
      for (const c of pages) c.postMessage(W.messages.make('need-agent'))
      return pages.length
    }
  })
  const known = new Set() // paths with a manifest: safe to claim even as a library

  self.addEventListener('fetch', (event) => {
    const request = event.request
    if (W.eligibility.requestIneligible(request, self.location.origin)) return
    const path = new URL(request.url).pathname
    if (!standalone && !known.has(path)) {
      // Learn for next time; let the site's handler (or the network) answer now.
      sw.getManifest(path).then((m) => { if (m) known.add(path) })
      return
    }
    event.respondWith((async () => {
      try {
        const response = await sw.handleRequest(request, event.clientId || event.resultingClientId || '')
        if (response) return response
      } catch (_) { /* fail open */ }
      return fetch(request)
    })())
  })

  self.addEventListener('message', (event) => {
    const done = sw.handleMessage(event.data, event.ports, event.source && event.source.id)
    // Adoption reads the HTTP cache for a while: keep the worker alive for it.
    if (done && typeof event.waitUntil === 'function') event.waitUntil(done)
  })

  // A worker that starts (installed now, or restarted by the browser after
  // idling) has no agent: ask the open pages for theirs.
  sw.wakeUp()

  self.whis = sw
})()
