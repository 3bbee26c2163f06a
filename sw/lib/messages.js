// Every message between a page of the site and the service worker, in one
// place. Both sides build messages with `make` and read them with `read`, so a
// field cannot be renamed on one side only, and a message from somewhere else
// (the site's own postMessage traffic, a stale tab running older code) is
// recognised and ignored instead of being half-understood.
//
// Every message is a plain object whose `whis` field names its kind.
//
// page → service worker (postMessage to the worker, a port transferred):
//   agent       + port   this page runs the agent; the port carries the rest
//   stats       + port   this page asks for its counters
//   adopt       {paths}  same-origin resources this page loaded before Whis
//                        controlled it: take them from the HTTP cache
// service worker → page (Client.postMessage):
//   need-agent           the service worker (re)started without an agent
// page → service worker, the answer when it cannot give one:
//   no-agent             this page runs no agent (and will not soon)
// over the agent port, service worker → agent:
//   want   {req, manifest: {id, size, piece_size, count, path}, indices}
//   got    {req, index}            piece verified (from anyone): stop asking
//   bad    {req, index, from}      `from` sent a piece that failed its hash
//   close  {req}
//   stored {id, index, path, count, data}   a verified piece, to keep and share
//   report {peer, worker, origin, verified, rejected}   counters since last time
// agent → service worker:
//   piece  {req, index, data, from, role}   bytes to verify (data transferred)
//   miss   {req, index}                     no connected peer holds it
//   status {peers, settling, policy}        connections, and the server's policy
;(function (W) {
  'use strict'
  const int = (v) => Number.isSafeInteger(v) && v >= 0
  const str = (v) => typeof v === 'string' && v.length <= 4096
  const buf = (v) => v instanceof ArrayBuffer
  const ints = (v) => Array.isArray(v) && v.length <= 1 << 20 && v.every(int)
  const strs = (v) => Array.isArray(v) && v.length <= 1024 && v.every(str)
  const any = () => true
  const info = (v) => !!v && typeof v === 'object' && /^[0-9a-f]{64}$/.test(v.id) && int(v.size) &&
    int(v.piece_size) && v.piece_size > 0 && int(v.count) && str(v.path)
  const opt = (check) => (v) => v === undefined || check(v)

  /** kind → {field: check}. Unknown fields are dropped by `read`. */
  const KINDS = {
    agent: {},
    stats: {},
    adopt: { paths: strs },
    'need-agent': {},
    'no-agent': {},
    want: { req: int, manifest: info, indices: ints },
    got: { req: int, index: int },
    bad: { req: int, index: int, from: str },
    close: { req: int },
    stored: { id: (v) => /^[0-9a-f]{64}$/.test(v), index: int, path: str, count: int, data: opt(buf) },
    report: { peer: int, worker: int, origin: int, verified: int, rejected: int },
    piece: { req: int, index: int, data: buf, from: str, role: str },
    miss: { req: int, index: int },
    status: { peers: int, settling: opt(int), policy: opt(any) }
  }

  /** Build a message; throws on a field of the wrong shape (a bug on our side). */
  function make (kind, fields = {}) {
    const spec = KINDS[kind]
    if (!spec) throw new Error(`no Whis message kind ${kind}`)
    const msg = { whis: kind }
    for (const [k, check] of Object.entries(spec)) {
      if (!check(fields[k])) throw new Error(`Whis message ${kind}: bad field ${k}`)
      if (fields[k] !== undefined) msg[k] = fields[k]
    }
    return msg
  }

  /** The message if it is a well-formed Whis message (of one of `kinds`, if given), else null. */
  function read (data, kinds) {
    if (!data || typeof data !== 'object' || typeof data.whis !== 'string') return null
    const spec = KINDS[data.whis]
    if (!spec || (kinds && !kinds.includes(data.whis))) return null
    const msg = { whis: data.whis }
    for (const [k, check] of Object.entries(spec)) {
      if (!check(data[k])) return null
      if (data[k] !== undefined) msg[k] = data[k]
    }
    return msg
  }

  W.messages = { make, read, KINDS: Object.freeze(Object.keys(KINDS)) }
})(globalThis.Whis = globalThis.Whis || {})
