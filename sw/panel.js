// A small live panel for demo pages (<html data-whis-panel>): where this
// page's bytes came from, how many peers this tab is connected to, and (click
// "links") every WebRTC link's negotiation, step by step: what an operator
// reads when two visitors that should share do not.
;(function () {
  'use strict'
  const fmt = (n) => n >= 1048576 ? (n / 1048576).toFixed(1) + ' MB' : (n / 1024).toFixed(0) + ' KB'
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c])

  /** One line per link: peer, state, then each step as "ms step (detail)". */
  function linksView (connections) {
    if (!connections.length) return '<br><i>no links yet</i>'
    return connections.slice(0, 8).map((c) => {
      const steps = c.steps.map(([t, step, detail]) => `${t} ${esc(step)}${detail ? ' (' + esc(detail) + ')' : ''}`).join(' · ')
      return `<div style="margin-top:6px;max-width:420px"><b>${esc(c.peer.slice(0, 8))}</b> ${esc(c.role)}, ${c.initiator ? 'we offer' : 'it offers'}, try ${c.attempt}: ` +
        `<span style="color:${c.state === 'settled' ? '#7ee787' : c.state.startsWith('closed') ? '#f85149' : '#f0883e'}">${esc(c.state)}</span>` +
        `<div style="color:#8b949e;font-size:11px">${steps}</div></div>`
    }).join('')
  }

  function mount () {
    const box = document.createElement('aside')
    box.id = 'whis-panel'
    box.style.cssText = 'position:fixed;right:12px;bottom:12px;z-index:99;font:12px/1.5 system-ui,sans-serif;' +
      'background:rgba(13,17,23,.92);color:#e6edf3;padding:10px 12px;border-radius:10px;min-width:190px;max-height:70vh;overflow:auto;box-shadow:0 6px 24px rgba(0,0,0,.4)'
    document.body.appendChild(box)
    let showLinks = false
    box.addEventListener('click', (e) => { if (e.target.dataset.toggle) { e.preventDefault(); showLinks = !showLinks; tick() } })
    async function tick () {
      try {
        const s = await window.whis.stats()
        const total = s.bytesFromPeers + s.bytesFromWorker + s.bytesFromOrigin + s.bytesFromCache
        const pct = (n) => total ? Math.round(100 * n / total) : 0
        box.innerHTML = '<b>Whis</b> · ' + s.peers + ' peer' + (s.peers === 1 ? '' : 's') +
          ' · <a href="#" data-toggle="1" style="color:#79c0ff">' + (showLinks ? 'hide links' : 'links') + '</a>' +
          '<br><span style="color:#7ee787">peers ' + fmt(s.bytesFromPeers) + ' (' + pct(s.bytesFromPeers) + '%)</span>' +
          '<br><span style="color:#79c0ff">worker ' + fmt(s.bytesFromWorker) + ' (' + pct(s.bytesFromWorker) + '%)</span>' +
          '<br><span style="color:#f0883e">origin ' + fmt(s.bytesFromOrigin) + ' (' + pct(s.bytesFromOrigin) + '%)</span>' +
          (s.bytesFromCache ? '<br>cache ' + fmt(s.bytesFromCache) : '') +
          (s.rejectedPieces ? '<br><span style="color:#f85149">rejected pieces ' + s.rejectedPieces + '</span>' : '') +
          (showLinks ? linksView(window.whis.timeline().connections || []) : '')
      } catch (_) {}
    }
    tick()
    setInterval(tick, 1000)
  }
  if (document.body) mount()
  else document.addEventListener('DOMContentLoaded', mount)
})()
