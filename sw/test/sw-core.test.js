'use strict'
// handleRequest with a stubbed fetch and a stubbed peer source: no browser.
const test = require('node:test')
const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const W = require('./load.js')

// One scheduler (origin slots, speed estimate) per test, as per context in a browser.
let scheduler
test.beforeEach(() => { scheduler = new W.scheduler.Scheduler() })

const ORIGIN = 'http://site.test'
const PIECE = 16384

function manifestOf (path, data) {
  const pieces = []
  for (let s = 0; s < data.length; s += PIECE) pieces.push(crypto.createHash('sha256').update(data.subarray(s, s + PIECE)).digest('hex'))
  const head = Buffer.alloc(12)
  head.writeBigUInt64BE(BigInt(data.length), 0)
  head.writeUInt32BE(PIECE, 8)
  const h = crypto.createHash('sha256').update(head)
  for (const p of pieces) h.update(Buffer.from(p, 'hex'))
  return { path, id: h.digest('hex'), size: data.length, piece_size: PIECE, pieces, content_type: 'image/jpeg', etag: '"e1"', cache_control: 'public, max-age=60' }
}

/**
 * An origin with files, and the browser's HTTP cache in front of it: it
 * counts the body bytes the origin sends. `cached` holds what the HTTP cache
 * has (path → bytes); an `only-if-cached` request never reaches the origin.
 */
function fakeOrigin (files, cached = {}) {
  const log = { bytes: 0, requests: [], cacheReads: 0 }
  async function fetchFn (url, init = {}) {
    const u = new URL(url)
    if (init.cache === 'only-if-cached') {
      log.cacheReads++
      const c = cached[u.pathname]
      // As Chromium: only-if-cached with a Range fails, even for a cached entry.
      if (!c || (init.headers && init.headers.range)) throw new TypeError('Failed to fetch (not in the HTTP cache)')
      return new Response(c, { status: 200 })
    }
    log.requests.push(u.pathname + u.search)
    if (u.pathname === '/whis/manifest') {
      const f = files[u.searchParams.get('path')]
      if (!f) return new Response('{"error":"not_found"}', { status: 404 })
      return new Response(JSON.stringify(f.manifest ?? manifestOf(u.searchParams.get('path'), f.data)), { status: 200 })
    }
    const f = files[u.pathname]
    if (!f) return new Response('nope', { status: 404 })
    const range = init.headers && init.headers.range
    const m = range && /bytes=(\d+)-(\d+)/.exec(range)
    const body = m ? f.data.subarray(Number(m[1]), Number(m[2]) + 1) : f.data
    log.bytes += body.length
    return new Response(body, { status: m ? 206 : 200 })
  }
  return { fetchFn, log }
}

/** A peer source whose peers answer every piece from `data` (optionally corrupted). */
function fakeSource (data, opts = {}) {
  const calls = { bad: [], wants: 0 }
  return {
    calls,
    want (m, indices, h) {
      calls.wants++
      setTimeout(() => {
        for (const i of indices) {
          const piece = Buffer.from(data.subarray(i * m.piece_size, (i + 1) * m.piece_size))
          if (opts.corrupt && opts.corrupt(i)) piece[0] ^= 0xff
          if (opts.missing && opts.missing(i)) { h.onMiss(i); continue }
          const ab = piece.buffer.slice(piece.byteOffset, piece.byteOffset + piece.length)
          h.onPiece(i, ab, 'pBad', 'visitor')
        }
      }, 1)
      return { done () {}, bad (i, from) { calls.bad.push([i, from]) }, close () {} }
    }
  }
}

function newSw (fetchFn) {
  return W.createServiceWorker({ origin: ORIGIN, fetch: fetchFn, openStore: async () => new W.store.MemoryStore() })
}

const get = (path, headers = {}) => new Request(`${ORIGIN}${path}`, { headers })

test('an eligible file is rebuilt byte for byte from origin pieces', async () => {
  const data = crypto.randomBytes(5 * PIECE + 123)
  const { fetchFn, log } = fakeOrigin({ '/a.jpg': { data } })
  const sw = newSw(fetchFn)
  const res = await sw.handleRequest(get('/a.jpg'), 'c1')
  assert.equal(res.status, 200)
  assert.equal(res.headers.get('content-type'), 'image/jpeg')
  assert.equal(res.headers.get('content-length'), String(data.length))
  assert.deepEqual(Buffer.from(await res.arrayBuffer()), data)
  assert.equal(log.bytes, data.length, 'each byte once from the origin')
  // A second request is served from the store: the origin sends nothing more.
  const again = await sw.handleRequest(get('/a.jpg'), 'c1')
  assert.deepEqual(Buffer.from(await again.arrayBuffer()), data)
  assert.equal(log.bytes, data.length)
})

test('a Range request gets 206 with exactly those bytes', async () => {
  const data = crypto.randomBytes(4 * PIECE)
  const { fetchFn } = fakeOrigin({ '/v.webm': { data } })
  const sw = newSw(fetchFn)
  const res = await sw.handleRequest(get('/v.webm', { range: `bytes=${PIECE - 10}-${2 * PIECE + 5}` }), 'c1')
  assert.equal(res.status, 206)
  assert.equal(res.headers.get('content-range'), `bytes ${PIECE - 10}-${2 * PIECE + 5}/${data.length}`)
  assert.deepEqual(Buffer.from(await res.arrayBuffer()), data.subarray(PIECE - 10, 2 * PIECE + 6))
  const past = await sw.handleRequest(get('/v.webm', { range: `bytes=${data.length}-` }), 'c1')
  assert.equal(past.status, 416)
})

test('ineligible requests and unknown files are left to the network', async () => {
  const data = crypto.randomBytes(2 * PIECE)
  const { fetchFn, log } = fakeOrigin({ '/a.jpg': { data } })
  const sw = newSw(fetchFn)
  assert.equal(await sw.handleRequest(new Request(`${ORIGIN}/a.jpg`, { method: 'POST', body: 'x' }), 'c1'), null)
  assert.equal(await sw.handleRequest(get('/a.jpg', { authorization: 'Bearer t' }), 'c1'), null)
  assert.equal(await sw.handleRequest(get('/missing.jpg'), 'c1'), null)
  assert.equal(log.bytes, 0)
})

test('a manifest that does not name itself is refused', async () => {
  const data = crypto.randomBytes(2 * PIECE)
  const forged = { ...manifestOf('/a.jpg', data), id: 'cd'.repeat(32) }
  const { fetchFn } = fakeOrigin({ '/a.jpg': { data, manifest: forged } })
  assert.equal(await newSw(fetchFn).handleRequest(get('/a.jpg'), 'c1'), null)
})

test('an origin that changed under the manifest makes the request pass through', async () => {
  const data = crypto.randomBytes(2 * PIECE)
  const stale = manifestOf('/a.jpg', crypto.randomBytes(2 * PIECE))
  const { fetchFn } = fakeOrigin({ '/a.jpg': { data, manifest: stale } })
  assert.equal(await newSw(fetchFn).handleRequest(get('/a.jpg'), 'c1'), null)
})

test('poisoned pieces from a peer are rejected, reported and refetched', async () => {
  const data = crypto.randomBytes(6 * PIECE)
  const m = manifestOf('/a.jpg', data)
  const { fetchFn, log } = fakeOrigin({ '/a.jpg': { data } })
  const source = fakeSource(data, { corrupt: (i) => i % 2 === 0 })
  const rejected = []
  const acq = new W.fetcher.Acquisition(m, [0, 1, 2, 3, 4, 5], {
    scheduler,
    deadlineMs: 60000, // peers deliver at once here; no stall may be read into a busy machine
    fetch: fetchFn, url: `${ORIGIN}/a.jpg`, source, onRejected: (i, from) => rejected.push([i, from])
  })
  await acq.start()
  const got = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => acq.piece(i)))
  assert.deepEqual(Buffer.concat(got.map((g) => Buffer.from(g))), data)
  assert.deepEqual(rejected.map(([i]) => i), [0, 2, 4])
  assert.deepEqual(source.calls.bad.map(([, from]) => from), ['pBad', 'pBad', 'pBad'])
  assert.equal(log.bytes, 3 * PIECE, 'only the bad pieces came from the origin')
})

test('pieces no peer has go to the origin at once, in one contiguous request', async () => {
  const data = crypto.randomBytes(5 * PIECE)
  const m = manifestOf('/a.jpg', data)
  const { fetchFn, log } = fakeOrigin({ '/a.jpg': { data } })
  const source = fakeSource(data, { missing: (i) => i >= 2 })
  const acq = new W.fetcher.Acquisition(m, [0, 1, 2, 3, 4], { scheduler, fetch: fetchFn, url: `${ORIGIN}/a.jpg`, source, deadlineMs: 60000 })
  const t0 = Date.now()
  await acq.start()
  const got = await Promise.all([0, 1, 2, 3, 4].map((i) => acq.piece(i)))
  assert.ok(Date.now() - t0 < 5000, 'no deadline was waited out')
  assert.deepEqual(Buffer.concat(got.map((g) => Buffer.from(g))), data)
  assert.equal(log.requests.filter((r) => r === '/a.jpg').length, 1)
  assert.equal(log.bytes, 3 * PIECE)
})

/**
 * An origin that sends its bytes only when told to, one piece per `send()`,
 * and stops when the request is aborted. Counts the bytes it sent.
 */
function heldOrigin (data) {
  const log = { bytes: 0, requests: 0, open: 0, maxOpen: 0, aborted: 0 }
  const streams = []
  async function fetchFn (url, init = {}) {
    if (init.cache === 'only-if-cached') throw new TypeError('not in the HTTP cache')
    const m = /bytes=(\d+)-(\d+)/.exec(init.headers.range || '')
    let pos = m ? Number(m[1]) : 0
    const end = m ? Number(m[2]) + 1 : data.length
    log.requests++
    log.open++
    log.maxOpen = Math.max(log.maxOpen, log.open)
    let controller
    const body = new ReadableStream({ start (c) { controller = c } })
    const s = {
      send () {
        if (s.done) return
        const n = Math.min(PIECE, end - pos)
        controller.enqueue(new Uint8Array(data.subarray(pos, pos + n)))
        log.bytes += n
        pos += n
        if (pos >= end) { s.done = true; log.open--; controller.close() }
      }
    }
    if (init.signal) {
      init.signal.addEventListener('abort', () => {
        if (s.done) return
        s.done = true
        log.open--
        log.aborted++
        controller.error(new Error('aborted'))
      })
    }
    streams.push(s)
    return new Response(body, { status: m ? 206 : 200 })
  }
  return { fetchFn, log, streams }
}

/** A source whose peers hold nothing yet; `deliver(i)` hands piece i over as if a peer just got it. */
function latePeers (data) {
  let h = null
  return {
    want (m, indices, handlers) {
      h = handlers
      setTimeout(() => indices.forEach((i) => handlers.onMiss(i)), 1)
      return { done () {}, bad () {}, close () {} }
    },
    deliver (i) {
      const b = Buffer.from(data.subarray(i * PIECE, (i + 1) * PIECE))
      h.onPiece(i, b.buffer.slice(b.byteOffset, b.byteOffset + b.length), 'pLate', 'visitor')
    }
  }
}

const tick = (ms = 5) => new Promise((resolve) => setTimeout(resolve, ms))

/** Wait until `cond()` holds (the code under test is asynchronous), however long the machine takes. */
async function until (cond, what = 'condition') {
  for (let i = 0; i < 2000 && !cond(); i++) await tick(5)
  assert.ok(cond(), `${what} never came`)
}

/** A clock that never moves: timers armed on it never fire (waits last until something else ends them). */
function frozenClock () {
  let n = 0
  return { now: () => 1000, setTimeout: () => ++n, clearTimeout: () => {} }
}

test('origin requests are capped per context, and pieces waiting for a slot still come from peers', async () => {
  const slots = W.scheduler.ORIGIN_SLOTS
  const count = slots + 2
  const data = crypto.randomBytes(count * PIECE)
  const m = manifestOf('/a.jpg', data)
  const { fetchFn, log, streams } = heldOrigin(data)
  // One acquisition per piece, like a page asking for many small files.
  const sources = []
  const acqs = []
  for (let i = 0; i < count; i++) {
    sources.push(latePeers(data))
    const acq = new W.fetcher.Acquisition(m, [i], { scheduler, fetch: fetchFn, url: `${ORIGIN}/a.jpg`, source: sources[i], deadlineMs: 60000 })
    await acq.start()
    acqs.push(acq)
  }
  await until(() => log.requests >= slots, 'the first origin requests')
  await tick(20)
  assert.equal(log.requests, slots, `only ${slots} origin requests at once`)
  // A peer delivers the last piece while it still waits for a slot.
  sources[count - 1].deliver(count - 1)
  while (streams.some((s) => !s.done)) {
    for (const s of streams) s.send()
    await tick()
  }
  const got = await Promise.all(acqs.map((a, i) => a.piece(i)))
  assert.deepEqual(Buffer.concat(got.map((g) => Buffer.from(g))), data)
  assert.equal(log.requests, slots + 1, 'the piece a peer delivered never went to the origin')
  assert.equal(log.bytes, (slots + 1) * PIECE)
  assert.equal(log.maxOpen, slots)
})

test('an origin request whose pieces all came from peers is aborted', async () => {
  const data = crypto.randomBytes(4 * PIECE)
  const m = manifestOf('/a.jpg', data)
  const { fetchFn, log, streams } = heldOrigin(data)
  const source = latePeers(data)
  const acq = new W.fetcher.Acquisition(m, [0, 1, 2, 3], { scheduler, fetch: fetchFn, url: `${ORIGIN}/a.jpg`, source, deadlineMs: 60000 })
  await acq.start()
  await until(() => log.requests === 1, 'the origin request')
  assert.equal(log.requests, 1, 'one request for the four pieces')
  streams[0].send() // the origin gets piece 0 out, then the swarm is faster
  await tick()
  for (const i of [1, 2, 3]) source.deliver(i)
  const got = await Promise.all([0, 1, 2, 3].map((i) => acq.piece(i)))
  assert.deepEqual(Buffer.concat(got.map((g) => Buffer.from(g))), data)
  await until(() => log.aborted === 1, 'the abort')
  assert.equal(log.aborted, 1, 'the origin request was stopped')
  assert.equal(log.bytes, PIECE, 'the origin sent only the piece it won')
  assert.equal(log.open, 0)
})

test('an origin that stalls loses its request, and its slot goes to the next', async () => {
  const data = crypto.randomBytes(2 * PIECE)
  const m = manifestOf('/a.jpg', data)
  const { fetchFn, log, streams } = heldOrigin(data)
  const stuck = new W.fetcher.Acquisition(m, [0], { scheduler, fetch: fetchFn, url: `${ORIGIN}/a.jpg`, stallMs: 50 })
  await stuck.start()
  await assert.rejects(stuck.piece(0), (err) => err.code === 'origin-stalled')
  assert.equal(log.aborted, 1, 'the stalled request was stopped')
  // Every slot is free again: a later request is sent at once and served.
  const next = new W.fetcher.Acquisition(m, [1], { scheduler, fetch: fetchFn, url: `${ORIGIN}/a.jpg` })
  await next.start()
  await until(() => log.requests === 2, 'the second request')
  streams[streams.length - 1].send()
  assert.deepEqual(Buffer.from(await next.piece(1)), data.subarray(PIECE))
  assert.equal(log.open, 0)
})

// ---- the browser's HTTP cache, adoption, and waiting for an agent ---------

test('what the HTTP cache holds is served without the origin, and adopted into the store', async () => {
  const data = crypto.randomBytes(3 * PIECE + 7)
  const cached = { '/a.jpg': data }
  const { fetchFn, log } = fakeOrigin({ '/a.jpg': { data } }, cached)
  const sw = newSw(fetchFn)
  const res = await sw.handleRequest(get('/a.jpg'), 'c1')
  assert.deepEqual(Buffer.from(await res.arrayBuffer()), data)
  assert.equal(log.bytes, 0, 'the origin sent nothing')
  assert.ok(log.cacheReads >= 1)
  // The HTTP cache is cleared; the bytes stay in Whis's store.
  delete cached['/a.jpg']
  const again = await sw.handleRequest(get('/a.jpg'), 'c1')
  assert.deepEqual(Buffer.from(await again.arrayBuffer()), data)
  assert.equal(log.bytes, 0)
})

test('an HTTP cache entry of another version is not served; the origin fills in', async () => {
  const data = crypto.randomBytes(2 * PIECE)
  const old = crypto.randomBytes(2 * PIECE)
  const { fetchFn, log } = fakeOrigin({ '/a.jpg': { data } }, { '/a.jpg': old })
  const res = await newSw(fetchFn).handleRequest(get('/a.jpg'), 'c1')
  assert.deepEqual(Buffer.from(await res.arrayBuffer()), data)
  assert.equal(log.bytes, data.length)
})

test('origin requests go through the HTTP cache (revalidation, 304s), unless the page said no-store', async () => {
  const data = crypto.randomBytes(PIECE)
  const modes = []
  const { fetchFn } = fakeOrigin({ '/a.jpg': { data }, '/b.jpg': { data: crypto.randomBytes(PIECE) } })
  const spy = (url, init = {}) => { if (!String(url).includes('/whis/')) modes.push(init.cache); return fetchFn(url, init) }
  const sw = newSw(spy)
  await (await sw.handleRequest(get('/a.jpg'), 'c1')).arrayBuffer()
  await (await sw.handleRequest(new Request(`${ORIGIN}/b.jpg`, { cache: 'no-store' }), 'c1')).arrayBuffer()
  assert.deepEqual(modes, ['only-if-cached', 'default', 'only-if-cached', 'no-store'])
})

test('adopt: resources a page loaded before Whis controlled it are stored from the HTTP cache, not the network', async () => {
  const a = crypto.randomBytes(2 * PIECE + 1)
  const b = crypto.randomBytes(PIECE)
  const { fetchFn, log } = fakeOrigin({ '/a.jpg': { data: a }, '/b.jpg': { data: b }, '/c.jpg': { data: b } }, { '/a.jpg': a, '/b.jpg': b })
  const store = new W.store.MemoryStore()
  const sw = W.createServiceWorker({ origin: ORIGIN, fetch: fetchFn, openStore: async () => store })
  const adopted = await sw.handleMessage(W.messages.make('adopt', { paths: ['/a.jpg', '/b.jpg', '/c.jpg', '/missing.jpg'] }), [], 'c1')
  assert.equal(adopted, 4, 'three pieces of a, one of b; c is not cached')
  assert.equal(log.bytes, 0, 'no byte from the origin')
  const held = await store.list()
  assert.deepEqual(held.map((r) => r.path).sort(), ['/a.jpg', '/b.jpg'])
})

test('a request with no agent waits for the one a page is bringing, then gets its pieces from peers', async () => {
  const data = crypto.randomBytes(3 * PIECE)
  const { fetchFn, log } = fakeOrigin({ '/a.jpg': { data } })
  let asked = 0
  // On a clock that never moves the wait for the agent can only end when it comes.
  const sw = W.createServiceWorker({
    origin: ORIGIN,
    fetch: fetchFn,
    openStore: async () => new W.store.MemoryStore(),
    askForAgent: async () => { asked++; return 1 },
    scheduler: new W.scheduler.Scheduler({ clock: frozenClock() })
  })
  const pending = sw.handleRequest(get('/a.jpg'), 'c1')
  await until(() => asked === 1, 'the question to the open page')
  // The page answers with an agent whose peers hold everything.
  const ch = new MessageChannel()
  const source = fakeSource(data)
  ch.port2.onmessage = (e) => {
    const m = W.messages.read(e.data)
    if (m && m.whis === 'want') {
      source.want({ piece_size: PIECE }, m.indices, {
        onPiece: (i, ab, from, role) => ch.port2.postMessage(W.messages.make('piece', { req: m.req, index: i, data: ab, from, role }), [ab]),
        onMiss: (i) => ch.port2.postMessage(W.messages.make('miss', { req: m.req, index: i }))
      })
    }
  }
  sw.handleMessage(W.messages.make('agent'), [ch.port1], 'page')
  const res = await pending
  assert.deepEqual(Buffer.from(await res.arrayBuffer()), data)
  assert.equal(log.bytes, 0, 'every byte came from peers')
  ch.port1.close()
  ch.port2.close()
})

test('with no page to bring an agent, or pages that have none, nobody waits', async () => {
  const data = crypto.randomBytes(PIECE)
  const { fetchFn, log } = fakeOrigin({ '/a.jpg': { data } })
  // On a clock that never moves, a wait for an agent would never end: that
  // these requests complete shows they did not wait.
  const frozen = () => new W.scheduler.Scheduler({ clock: frozenClock() })
  const alone = W.createServiceWorker({ origin: ORIGIN, fetch: fetchFn, openStore: async () => new W.store.MemoryStore(), askForAgent: async () => 0, scheduler: frozen() })
  await (await alone.handleRequest(get('/a.jpg'), 'c1')).arrayBuffer()
  let asked = 0
  const refusing = W.createServiceWorker({ origin: ORIGIN, fetch: fetchFn, openStore: async () => new W.store.MemoryStore(), askForAgent: async () => { asked++; return 1 }, scheduler: frozen() })
  const pending = refusing.handleRequest(get('/a.jpg'), 'c1')
  await until(() => asked === 1, 'the question to the open page')
  refusing.handleMessage(W.messages.make('no-agent'), [], 'page')
  const res = await pending
  assert.deepEqual(Buffer.from(await res.arrayBuffer()), data)
  assert.equal(log.bytes, 2 * data.length)
})

test('the manifest request names the page that asked, so the server learns what pages use', async () => {
  const data = crypto.randomBytes(PIECE)
  const { fetchFn, log } = fakeOrigin({ '/a.jpg': { data } })
  const sw = W.createServiceWorker({ origin: ORIGIN, fetch: fetchFn, openStore: async () => new W.store.MemoryStore(), clientUrl: async () => '/gallery.html' })
  await (await sw.handleRequest(get('/a.jpg'), 'c1')).arrayBuffer()
  assert.ok(log.requests.includes('/whis/manifest?path=%2Fa.jpg&page=%2Fgallery.html'), log.requests.join(' '))
})

/** A clock the test moves: timers fire, in order, when it passes their time. */
function manualClock () {
  let t = 0
  let n = 0
  const timers = new Map()
  return {
    now: () => t,
    setTimeout: (fn, ms) => { timers.set(++n, { at: t + ms, fn }); return n },
    clearTimeout: (id) => { timers.delete(id) },
    advance (ms) {
      const end = t + ms
      for (;;) {
        const due = [...timers].filter(([, x]) => x.at <= end).sort((a, b) => a[1].at - b[1].at)[0]
        if (!due) break
        timers.delete(due[0])
        t = due[1].at
        due[1].fn()
      }
      t = end
    }
  }
}

/** Peers that hold every piece and hand one over when the test says (`deliver(i)`). */
function heldPeers (data) {
  let h = null
  return {
    want (m, indices, handlers) { h = handlers; return { done () {}, bad () {}, close () {} } },
    deliver (i) {
      const b = Buffer.from(data.subarray(i * PIECE, (i + 1) * PIECE))
      h.onPiece(i, b.buffer.slice(b.byteOffset, b.byteOffset + b.length), 'pSlow', 'visitor')
    }
  }
}

test('offload: peers that keep delivering are waited for; peers that stall lose the next pieces to the origin', async () => {
  const data = crypto.randomBytes(8 * PIECE)
  const m = manifestOf('/a.jpg', data)
  const all = [0, 1, 2, 3, 4, 5, 6, 7]
  // A piece every 45 ms with a gap of 100 ms: the whole takes 360 ms, far
  // past one gap, never a gap without a piece, within the limit (four gaps).
  const clock = manualClock()
  const steady = fakeOrigin({ '/a.jpg': { data } })
  const peers = heldPeers(data)
  const acq = new W.fetcher.Acquisition(m, all, { scheduler: new W.scheduler.Scheduler({ clock }), fetch: steady.fetchFn, url: `${ORIGIN}/a.jpg`, source: peers, deadlineMs: 100 })
  await acq.start()
  for (const i of all) {
    clock.advance(45)
    peers.deliver(i)
    await until(() => acq.settled.has(i), `piece ${i}`)
  }
  const got = await Promise.all(all.map((i) => acq.piece(i)))
  assert.deepEqual(Buffer.concat(got.map((g) => Buffer.from(g))), data)
  assert.equal(steady.log.bytes, 0, 'every piece from the peers, none from the origin')

  // Two pieces, then silence: after each gap the origin gets the next two.
  const clock2 = manualClock()
  const stalling = fakeOrigin({ '/a.jpg': { data } })
  const peers2 = heldPeers(data)
  const acq2 = new W.fetcher.Acquisition(m, all, { scheduler: new W.scheduler.Scheduler({ clock: clock2 }), fetch: stalling.fetchFn, url: `${ORIGIN}/a.jpg`, source: peers2, deadlineMs: 100 })
  await acq2.start()
  for (const i of [0, 1]) { peers2.deliver(i); await until(() => acq2.settled.has(i), `piece ${i}`) }
  clock2.advance(100)
  await until(() => acq2.settled.has(2) && acq2.settled.has(3), 'pieces 2 and 3 from the origin')
  assert.equal(stalling.log.bytes, 2 * PIECE, 'one stall: the next two pieces')
  assert.ok(!acq2.settled.has(4), 'the rest stays with the peers')
  peers2.deliver(4) // a peer is back
  await until(() => acq2.settled.has(4), 'piece 4')
  clock2.advance(100)
  await until(() => acq2.settled.has(5) && acq2.settled.has(6), 'pieces 5 and 6')
  clock2.advance(100)
  await until(() => acq2.settled.has(7), 'piece 7')
  const got2 = await Promise.all(all.map((i) => acq2.piece(i)))
  assert.deepEqual(Buffer.concat(got2.map((g) => Buffer.from(g))), data)
  assert.equal(stalling.log.bytes, 5 * PIECE, 'the origin sent what the peers stopped sending, two by two')

  // Peers that never stall but crawl: at the limit (four gaps) the origin takes all that is left.
  const clock3 = manualClock()
  const crawling = fakeOrigin({ '/a.jpg': { data } })
  const peers3 = heldPeers(data)
  const acq3 = new W.fetcher.Acquisition(m, all, { scheduler: new W.scheduler.Scheduler({ clock: clock3 }), fetch: crawling.fetchFn, url: `${ORIGIN}/a.jpg`, source: peers3, deadlineMs: 100 })
  await acq3.start()
  for (const i of [0, 1, 2, 3]) {
    clock3.advance(90)
    peers3.deliver(i)
    await until(() => acq3.settled.has(i), `piece ${i}`)
  }
  clock3.advance(90) // 450 ms: past the 400 ms limit
  await until(() => all.every((i) => acq3.settled.has(i)), 'the rest from the origin')
  assert.equal(crawling.log.bytes, 4 * PIECE, 'the four pieces left came from the origin')
  assert.equal(acq3.originWhy['peers-too-slow'], 4)
})

test('a resource nobody else holds is fetched whole, as the browser would; a part of one by Range', async () => {
  const data = crypto.randomBytes(5 * PIECE)
  const { fetchFn } = fakeOrigin({ '/a.jpg': { data } })
  const ranges = []
  const spy = (url, init = {}) => {
    if (!String(url).includes('/whis/') && init.cache !== 'only-if-cached') ranges.push((init.headers && init.headers.range) || 'whole')
    return fetchFn(url, init)
  }
  const sw = newSw(spy)
  assert.deepEqual(Buffer.from(await (await sw.handleRequest(get('/a.jpg'), 'c1')).arrayBuffer()), data)
  assert.deepEqual(ranges, ['whole'], 'one plain request: the HTTP cache keeps a whole entry')
  const other = newSw(spy)
  const part = await other.handleRequest(get('/a.jpg', { range: `bytes=${PIECE}-${2 * PIECE - 1}` }), 'c1')
  assert.deepEqual(Buffer.from(await part.arrayBuffer()), data.subarray(PIECE, 2 * PIECE))
  assert.deepEqual(ranges, ['whole', `bytes=${PIECE}-${2 * PIECE - 1}`])
})
