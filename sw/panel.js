// A small live panel for demo pages (<html data-whis-panel>): where this
// page's bytes came from, and how many peers this tab is connected to.
;(function () {
  'use strict'
  const fmt = (n) => n >= 1048576 ? (n / 1048576).toFixed(1) + ' MB' : (n / 1024).toFixed(0) + ' KB'
  function mount () {
    const box = document.createElement('aside')
    box.id = 'whis-panel'
    box.style.cssText = 'position:fixed;right:12px;bottom:12px;z-index:99;font:12px/1.5 system-ui,sans-serif;' +
      'background:rgba(13,17,23,.92);color:#e6edf3;padding:10px 12px;border-radius:10px;min-width:190px;box-shadow:0 6px 24px rgba(0,0,0,.4)'
    document.body.appendChild(box)
    async function tick () {
      try {
        const s = await window.whis.stats()
        const total = s.bytesFromPeers + s.bytesFromWorker + s.bytesFromOrigin + s.bytesFromCache
        const pct = (n) => total ? Math.round(100 * n / total) : 0
        box.innerHTML = '<b>Whis</b> · ' + s.peers + ' peer' + (s.peers === 1 ? '' : 's') +
          '<br><span style="color:#7ee787">peers ' + fmt(s.bytesFromPeers) + ' (' + pct(s.bytesFromPeers) + '%)</span>' +
          '<br><span style="color:#79c0ff">worker ' + fmt(s.bytesFromWorker) + ' (' + pct(s.bytesFromWorker) + '%)</span>' +
          '<br><span style="color:#f0883e">origin ' + fmt(s.bytesFromOrigin) + ' (' + pct(s.bytesFromOrigin) + '%)</span>' +
          (s.bytesFromCache ? '<br>cache ' + fmt(s.bytesFromCache) : '') +
          (s.rejectedPieces ? '<br><span style="color:#f85149">rejected pieces ' + s.rejectedPieces + '</span>' : '')
      } catch (_) {}
    }
    tick()
    setInterval(tick, 1000)
  }
  if (document.body) mount()
  else document.addEventListener('DOMContentLoaded', mount)
})()
