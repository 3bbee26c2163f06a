// The PeerJS side of `signal-bench`: the same load, run against the
// PeerJS server (npm `peer`), so the two can be compared in one invocation.
//
//   node e2e/peerjs-load.mjs --peers N --rate R --seconds S [--dir DIR]
//
// `signal-bench` starts it as a child process and reads the one JSON line it
// prints on stdout; it can also be run alone. It installs `peer@1` into DIR,
// starts the PeerJS CLI as a child process on 127.0.0.1 (so its memory is its
// own), then mirrors signal-bench step by step:
//   1. N peers join: one WebSocket each, held open; joined = `OPEN` received.
//   2. Memory per held peer: (server RSS held - RSS idle) / held.
//   3. Relays/s at saturation: 16 closed loops, each sends a CANDIDATE from a
//      peer to the next one in its group of 30 and waits for it to arrive
//      before sending the next (the analogue of a POST awaiting its answer).
//   4. Latency at a fixed rate: 8 senders, one relay each 8/R s on an absolute
//      schedule (missed ticks are skipped), from send to arrival at the target.
// Progress goes to stderr. Client and server share the machine's cores.

import { execFileSync, spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { randomBytes } from 'node:crypto'

const log = (...a) => console.error('[peerjs-load]', ...a)
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

function parseArgs (argv) {
  const a = { peers: 10000, rate: 2000, seconds: 5, dir: null }
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, v] = [argv[i], argv[i + 1]]
    if (v === undefined || !['--peers', '--rate', '--seconds', '--dir'].includes(flag)) {
      console.error('usage: node e2e/peerjs-load.mjs [--peers N] [--rate R] [--seconds S] [--dir DIR]')
      process.exit(2)
    }
    a[flag.slice(2)] = flag === '--dir' ? v : Number(v)
  }
  return a
}

const rssKib = pid => {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+)/m)
  return m ? Number(m[1]) : 0
}

const freePort = () => new Promise((resolve, reject) => {
  const s = createServer().on('error', reject)
  s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)) })
})

const pct = (sorted, p) => sorted.length ? sorted[Math.round((sorted.length - 1) * p)] : null

let server = null // the PeerJS child process
const sockets = []
const killServer = () => { if (server && server.exitCode === null) server.kill('SIGKILL') }
process.on('exit', killServer)
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { log(`${sig}: stopping`); process.exit(1) })

async function main () {
  const args = parseArgs(process.argv.slice(2))
  const dir = args.dir ?? mkdtempSync(join(tmpdir(), 'peerjs-load-'))
  const peerDir = join(dir, 'node_modules', 'peer')
  if (!existsSync(peerDir)) {
    mkdirSync(dir, { recursive: true })
    log(`installing peer@1 in ${dir}`)
    execFileSync('npm', ['install', '--no-save', '--no-audit', '--no-fund', 'peer@1'], { cwd: dir, stdio: ['ignore', 2, 2] })
  }
  const pkg = JSON.parse(readFileSync(join(peerDir, 'package.json'), 'utf8'))
  const WebSocket = createRequire(join(peerDir, 'package.json'))('ws')

  // The stock CLI. concurrent_limit (default 5000) refuses peers past it, and
  // alive_timeout (default 60 s) drops peers that send no HEARTBEAT: raise both.
  const port = await freePort()
  const cli = join(peerDir, typeof pkg.bin === 'string' ? pkg.bin : pkg.bin.peerjs)
  const opts = ['--host', '127.0.0.1', '--port', String(port), '--key', 'peerjs',
    '--concurrent_limit', String(args.peers + 100), '--alive_timeout', String(24 * 3600 * 1000)]
  server = spawn(process.execPath, [cli, ...opts], { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('PeerJS server did not start in 15 s')), 15000)
    server.on('exit', code => reject(new Error(`PeerJS server exited (${code})`)))
    // Keep draining stdout: the CLI logs every connection, synchronously.
    server.stdout.on('data', d => { if (/Started PeerServer/.test(d)) { clearTimeout(timer); resolve() } })
  })
  server.on('exit', code => log(`PeerJS server exited early (${code})`))
  await sleep(500)
  const rssIdle = rssKib(server.pid)
  log(`peer ${pkg.version} pid ${server.pid} on 127.0.0.1:${port} (${opts.join(' ')}); idle RSS ${rssIdle} KiB`)

  // Arrivals: every relay carries {s: sender, t: send time}; a closed-loop
  // sender waits in `waiting[s]`, a timed one records its latency.
  const waiting = []
  let lat = null
  const onArrival = (data) => {
    const m = JSON.parse(data)
    if (m.type !== 'CANDIDATE') return
    const now = performance.now()
    if (lat && m.payload.t) lat.push(now - m.payload.t)
    const w = waiting[m.payload.s]
    if (w) { waiting[m.payload.s] = null; w() }
  }

  // 1. Join: N WebSockets, 200 opening at a time.
  let failed = 0; let firstError = null; let closed = 0
  const open = (i) => new Promise(resolve => {
    const id = `p${i}`
    const url = `ws://127.0.0.1:${port}/peerjs?key=peerjs&id=${id}&token=${randomBytes(8).toString('hex')}`
    const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: 30000 })
    let done = false
    const fail = (err) => {
      if (done) return
      done = true; failed++; firstError ??= err; ws.terminate(); resolve(null)
    }
    ws.on('error', e => fail(e.code ? `${e.code}: ${e.message}` : e.message))
    ws.on('close', () => done ? closed++ : fail('closed before OPEN'))
    ws.on('message', data => {
      if (done) return onArrival(data)
      const m = JSON.parse(data)
      if (m.type !== 'OPEN') return fail(`server answered ${data}`)
      done = true; sockets.push(ws); resolve({ id, ws })
    })
  })
  const tJoin = performance.now()
  const peers = new Array(args.peers)
  let next = 0
  await Promise.all(Array.from({ length: Math.min(200, args.peers) }, async () => {
    while (next < args.peers) { const i = next++; peers[i] = await open(i) }
  }))
  const joined = peers.filter(Boolean)
  const joinsPerS = joined.length / ((performance.now() - tJoin) / 1000)
  if (failed) {
    const hint = /EMFILE/.test(firstError) ? ' (raise the open-files limit: ulimit -n)' : ''
    log(`${failed} of ${args.peers} peers failed to join; first error: ${firstError}${hint}`)
  }
  await sleep(1000)
  const held = sockets.filter(ws => ws.readyState === WebSocket.OPEN).length
  const rssHeld = rssKib(server.pid)
  const bytesPerPeer = (rssHeld - rssIdle) * 1024 / Math.max(held, 1)
  log(`held ${held} peers (${joinsPerS.toFixed(0)} joins/s); RSS ${rssHeld} KiB, ${(bytesPerPeer / 1024).toFixed(1)} KiB per peer`)
  if (joined.length < 2) throw new Error('fewer than 2 peers joined')

  // Pairs in groups of 30, joined in order: i -> i+1.
  const pairs = []
  for (let g = 0; g < joined.length; g += 30) {
    const group = joined.slice(g, g + 30)
    for (let k = 0; k + 1 < group.length; k++) pairs.push([group[k].ws, group[k + 1].id])
  }
  const relay = (s, [ws, to], t = 0) => ws.send(JSON.stringify({ type: 'CANDIDATE', dst: to, payload: { s, t } }))
  const withDeadline = (p, ms, what) => Promise.race([p, sleep(ms).then(() => { throw new Error(`${what} did not finish: a relay was lost`) })])

  // 2. Saturation: 16 closed loops.
  let relays = 0
  let stop = performance.now() + args.seconds * 1000
  await withDeadline(Promise.all(Array.from({ length: 16 }, async (_, c) => {
    for (let i = c; performance.now() < stop; i += 16) {
      const arrived = new Promise(resolve => { waiting[c] = resolve })
      relay(c, pairs[i % pairs.length])
      await arrived
      relays++
    }
  })), args.seconds * 1000 + 10000, 'saturation')
  const relaysPerS = relays / args.seconds
  log(`saturation: ${relaysPerS.toFixed(0)} relays/s`)

  // 3. Latency at R relays/s: 8 senders, absolute schedule, missed ticks skipped.
  lat = []
  const interval = 8000 / args.rate
  const start = performance.now()
  stop = start + args.seconds * 1000
  await Promise.all(Array.from({ length: 8 }, async (_, c) => {
    for (let i = c * 7919, due = start; performance.now() < stop; i++) {
      // Timers may fire up to 1 ms early: sleep until the tick is really due.
      for (let wait; (wait = due - performance.now()) > 0;) await sleep(wait)
      relay(100 + c, pairs[i % pairs.length], performance.now())
      due = start + (Math.floor((performance.now() - start) / interval) + 1) * interval
    }
  }))
  await sleep(500)
  const sorted = lat.sort((x, y) => x - y)
  const achieved = sorted.length / args.seconds
  const [p50, p99] = [pct(sorted, 0.5), pct(sorted, 0.99)]
  log(`latency at ${args.rate}/s offered (${achieved.toFixed(0)}/s achieved): p50 ${p50?.toFixed(2)} ms, p99 ${p99?.toFixed(2)} ms`)
  if (closed) log(`${closed} sockets closed during the run`)

  const round = (x, d = 2) => x === null ? null : Number(x.toFixed(d))
  console.log(JSON.stringify({
    server: 'peerjs',
    version: pkg.version,
    peers: args.peers,
    held,
    joins_per_s: round(joinsPerS, 1),
    rss_idle_kib: rssIdle,
    rss_held_kib: rssHeld,
    bytes_per_peer: round(bytesPerPeer, 1),
    relays_per_s: round(relaysPerS, 1),
    rate: args.rate,
    achieved_rate: round(achieved, 1),
    latency_p50_ms: round(p50, 3),
    latency_p99_ms: round(p99, 3)
  }))
}

main().then(() => {
  for (const ws of sockets) ws.terminate()
  killServer()
  process.exit(0)
}, err => {
  log(`failed: ${err.stack ?? err}`)
  killServer()
  process.exit(1)
})
