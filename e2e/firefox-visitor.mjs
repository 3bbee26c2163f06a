// One Firefox ESR visitor for the e2e tests (e2e/tests/firefox.rs), driven
// over WebDriver BiDi with puppeteer-core (npm), which is installed into DIR
// on first use (no browser download: Debian's firefox-esr is the browser).
//
//   node e2e/firefox-visitor.mjs --dir DIR [--firefox /usr/bin/firefox-esr]
//
// Launches Firefox headless with a fresh profile, prints {"ready": true, ...}
// on stdout, then answers one JSON command per stdin line, in order:
//   {"id": 1, "goto": URL}  -> {"id": 1, "ok": true}
//   {"id": 2, "eval": JS}   -> {"id": 2, "ok": true, "value": <JSON>}
//                           or {"id": 2, "ok": false, "error": "..."}
// `eval` takes an expression; a promise is awaited. The page's console goes
// to stderr when WHIS_E2E_CONSOLE is set. End of stdin closes Firefox.

import { execFileSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { existsSync, mkdirSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { join } from 'node:path'

const log = (...a) => console.error('[firefox-visitor]', ...a)

function parseArgs (argv) {
  const a = { dir: null, firefox: '/usr/bin/firefox-esr' }
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, v] = [argv[i], argv[i + 1]]
    if (v === undefined || !['--dir', '--firefox'].includes(flag)) {
      console.error('usage: node e2e/firefox-visitor.mjs --dir DIR [--firefox PATH]')
      process.exit(2)
    }
    a[flag.slice(2)] = v
  }
  if (!a.dir) {
    console.error('--dir DIR is required (where puppeteer-core is installed)')
    process.exit(2)
  }
  return a
}

const send = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

async function main () {
  const args = parseArgs(process.argv.slice(2))
  if (!existsSync(args.firefox)) {
    throw new Error(`no Firefox at ${args.firefox}: apt-get install -y firefox-esr`)
  }
  const pkgDir = join(args.dir, 'node_modules', 'puppeteer-core')
  if (!existsSync(join(pkgDir, 'package.json'))) {
    mkdirSync(args.dir, { recursive: true })
    log(`installing puppeteer-core@24 in ${args.dir}`)
    execFileSync('npm', ['install', '--no-save', '--no-audit', '--no-fund', 'puppeteer-core@24'],
      { cwd: args.dir, stdio: ['ignore', 2, 2], env: { ...process.env, PUPPETEER_SKIP_DOWNLOAD: '1' } })
  }
  const puppeteer = createRequire(join(pkgDir, 'package.json'))('puppeteer-core')

  const browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: args.firefox,
    // Firefox as a visitor has it: no WebRTC prefs changed.
    headless: true
  })
  const close = async () => { try { await browser.close() } catch (e) { log(`close: ${e.message}`) } }
  process.on('SIGTERM', () => { close().finally(() => process.exit(1)) })
  const page = await browser.newPage()
  if (process.env.WHIS_E2E_CONSOLE) {
    page.on('console', (m) => log(`console.${m.type()}: ${m.text()}`))
    page.on('pageerror', (e) => log(`pageerror: ${e.message}`))
  }
  send({ ready: true, version: await browser.version() })

  const lines = createInterface({ input: process.stdin })
  for await (const line of lines) {
    if (!line.trim()) continue
    let cmd
    try { cmd = JSON.parse(line) } catch (e) { send({ id: null, ok: false, error: `bad command: ${e.message}` }); continue }
    try {
      if (typeof cmd.goto === 'string') {
        await page.goto(cmd.goto, { waitUntil: 'load', timeout: 60000 })
        send({ id: cmd.id, ok: true })
      } else if (typeof cmd.eval === 'string') {
        const value = await page.evaluate(cmd.eval)
        send({ id: cmd.id, ok: true, value: value === undefined ? null : value })
      } else {
        send({ id: cmd.id, ok: false, error: 'a command has "goto" or "eval"' })
      }
    } catch (e) {
      send({ id: cmd.id, ok: false, error: String(e && e.message ? e.message : e) })
    }
  }
  await close()
}

main().catch((e) => { log(e.stack || String(e)); process.exit(1) })
