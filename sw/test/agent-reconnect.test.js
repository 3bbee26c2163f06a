'use strict'
// The agent's event stream across a server restart: `going-away`, the
// jittered back-off, resuming with the last event id, and telling a
// restarted server what we hold. A fake EventSource and server, a virtual clock.
const test = require('node:test')
const assert = require('node:assert/strict')
const W = require('./load.js')

const ID = 'cd'.repeat(32)

class FakeES {
  constructor (url) {
    this.url = url
    this.readyState = 0
    this.listeners = {}
    FakeES.all.push(this)
  }

  addEventListener (name, fn) { (this.listeners[name] = this.listeners[name] || []).push(fn) }
  emit (name, data, lastEventId = '') { for (const f of this.listeners[name] || []) f({ data: JSON.stringify(data), lastEventId }) }
  open () { this.readyState = 1; for (const f of this.listeners.open || []) f({}) }
  /** An HTTP error (a proxy's 502): the browser gives up on this EventSource. */
  fail () { this.readyState = 2; if (this.onerror) this.onerror({}) }
  close () { this.readyState = 2; this.closed = true }
}

function virtualClock () {
  let now = 0
  let timers = []
  let next = 1
  return {
    now: () => now,
    setTimeout (f, ms) { const id = next++; timers.push({ id, at: now + ms, f }); return id },
    clearTimeout (id) { timers = timers.filter((t) => t.id !== id) },
    advance (ms) {
      const end = now + ms
      for (;;) {
        const due = timers.filter((t) => t.at <= end).sort((a, b) => a.at - b.at)[0]
        if (!due) break
        timers = timers.filter((t) => t !== due)
        now = due.at
        due.f()
      }
      now = end
    }
  }
}

function fakeServer () {
  const announces = []
  const fetch = async (url, init) => {
    const answer = (body) => ({ ok: true, status: 200, json: async () => body })
    if (url.endsWith('/whis/join')) return answer({ peer_id: 'p1', token: 'w1.tok', swarm_id: 's1', peers: [], heartbeat_ms: 15000, max_connections: 6 })
    if (url.endsWith('/whis/announce')) { announces.push(JSON.parse(init.body)); return answer({ peers: [], worker: null }) }
    throw new Error(`unexpected ${url}`)
  }
  return { fetch, announces }
}

const settle = () => new Promise((resolve) => setImmediate(resolve))

async function startedAgent () {
  FakeES.all = []
  const clock = virtualClock()
  const server = fakeServer()
  const store = { list: async () => [{ id: ID, count: 2, have: [0, 1], path: '/img/a.jpg' }], get: async () => null }
  const agent = new W.Agent({ store, fetch: server.fetch, clock, EventSource: FakeES })
  await agent.start()
  await settle()
  return { agent, clock, server }
}

test('going-away closes the stream and reopens it once, after the delay, resuming after the last event', async () => {
  const { agent, clock, server } = await startedAgent()
  try {
    const first = FakeES.all[0]
    assert.equal(first.url, '/whis/events?token=w1.tok')
    first.open()
    first.emit('hot', { resources: [] }, '17')
    first.emit('going-away', { retry_ms: 2000 })
    assert.ok(first.closed, 'the old stream is closed at once')
    clock.advance(1999)
    assert.equal(FakeES.all.length, 1, 'nobody comes back before the delay')
    first.emit('going-away', { retry_ms: 2000 }) // a second word changes nothing
    clock.advance(2001)
    assert.equal(FakeES.all.length, 2, 'back within 1-2 times the delay, once')
    const second = FakeES.all[1]
    assert.equal(second.url, '/whis/events?token=w1.tok&last_event_id=17')
    const before = server.announces.length
    second.open()
    await settle()
    const told = server.announces.slice(before).find((a) => a.have.includes(ID))
    assert.ok(told, 'a restarted server hears what we hold')
    assert.equal(told.paths[ID], '/img/a.jpg')
  } finally {
    agent.leave()
  }
})

test('a stream refused again and again is retried with doubling, bounded waits', async () => {
  const { agent, clock } = await startedAgent()
  try {
    const waits = []
    for (let round = 0; round < 9; round++) {
      const es = FakeES.all[FakeES.all.length - 1]
      const count = FakeES.all.length
      const from = clock.now()
      es.fail()
      while (FakeES.all.length === count) clock.advance(100)
      waits.push(clock.now() - from)
    }
    // 1 s doubling, each spread over 1-2 times itself, at most a minute (two with the spread).
    for (let i = 0; i < waits.length; i++) {
      const base = Math.min(60000, 1000 * 2 ** Math.min(i, 6))
      assert.ok(waits[i] >= base && waits[i] <= 2 * base + 100, `wait ${i}: ${waits[i]} for ${base}`)
    }
    // Once a stream opens, the next failure starts from the bottom again.
    FakeES.all[FakeES.all.length - 1].open()
    const count = FakeES.all.length
    const from = clock.now()
    FakeES.all[count - 1].fail()
    while (FakeES.all.length === count) clock.advance(100)
    assert.ok(clock.now() - from <= 2100)
  } finally {
    agent.leave()
  }
})

test('an error the browser recovers from itself is left to it, and leaving stops every retry', async () => {
  const { agent, clock } = await startedAgent()
  const es = FakeES.all[0]
  es.readyState = 0 // CONNECTING: EventSource retries on its own
  es.onerror({})
  clock.advance(120000)
  assert.equal(FakeES.all.length, 1)
  es.fail()
  agent.leave()
  clock.advance(120000)
  assert.equal(FakeES.all.length, 1, 'a closed agent does not come back')
})
