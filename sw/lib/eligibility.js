// Which requests Whis may touch (SPEC section 5). Everything else goes to the
// network untouched.
;(function (W) {
  'use strict'
  /**
   * @param {{method:string, url:string, mode?:string, headers:{get(n:string):string|null}}} req
   * @param {string} origin the site's origin (self.location.origin)
   * @returns {string|null} why not, or null when eligible
   */
  function requestIneligible (req, origin) {
    if (req.method !== 'GET') return 'not a GET'
    let url
    try { url = new URL(req.url) } catch (_) { return 'bad URL' }
    if (url.origin !== origin) return 'cross-origin'
    if (req.mode === 'navigate') return 'a navigation'
    if (url.pathname === '/whis-sw.js' || url.pathname.startsWith('/whis/')) return "Whis's own file"
    if (url.search) return 'has a query string'
    if (req.headers.get('authorization')) return 'carries Authorization'
    const range = req.headers.get('range')
    if (range && !/^\s*bytes\s*=\s*\d*\s*-\s*\d*\s*$/.test(range)) return 'multi-range or non-byte Range'
    if (req.cache === 'only-if-cached') return 'only-if-cached'
    return null
  }

  /** @param {{get(n:string):string|null}} h response headers */
  function responseIneligible (h) {
    const cc = (h.get('cache-control') || '').toLowerCase()
    if (cc.split(',').some((d) => ['private', 'no-store'].includes(d.trim().split('=')[0]))) return 'private or no-store'
    if (h.get('set-cookie')) return 'sets a cookie'
    const vary = (h.get('vary') || '').toLowerCase().split(',').map((v) => v.trim())
    if (vary.includes('*') || vary.includes('cookie')) return 'varies by cookie'
    return null
  }

  W.eligibility = { requestIneligible, responseIneligible }
})(globalThis.Whis = globalThis.Whis || {})
