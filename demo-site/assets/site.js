// Whis demo site: a keyboard-friendly lightbox for the gallery.
'use strict'
;(function () {
  function setup () {
    const tiles = Array.from(document.querySelectorAll('#gallery .tile'))
    if (tiles.length === 0) return
    const box = document.createElement('div')
    box.className = 'lightbox'
    box.setAttribute('role', 'dialog')
    box.setAttribute('aria-modal', 'true')
    box.innerHTML = '<img alt=""><div class="caption"></div>' +
      '<button class="prev" aria-label="Previous">‹</button>' +
      '<button class="next" aria-label="Next">›</button>' +
      '<button class="close" aria-label="Close">×</button>'
    document.body.appendChild(box)
    const big = box.querySelector('img')
    const caption = box.querySelector('.caption')
    let index = 0

    function srcOf (tile) {
      const img = tile.querySelector('img')
      return img.getAttribute('src') || img.getAttribute('data-whis-src')
    }
    function show (i) {
      index = (i + tiles.length) % tiles.length
      const tile = tiles[index]
      big.src = srcOf(tile)
      big.alt = tile.querySelector('img').alt
      caption.textContent = `${tile.querySelector('figcaption').textContent} — ${index + 1} / ${tiles.length}`
      box.classList.add('open')
    }
    function hide () { box.classList.remove('open') }

    tiles.forEach((tile, i) => {
      tile.tabIndex = 0
      tile.addEventListener('click', () => show(i))
      tile.addEventListener('keydown', (e) => { if (e.key === 'Enter') show(i) })
    })
    box.querySelector('.prev').addEventListener('click', (e) => { e.stopPropagation(); show(index - 1) })
    box.querySelector('.next').addEventListener('click', (e) => { e.stopPropagation(); show(index + 1) })
    box.querySelector('.close').addEventListener('click', hide)
    box.addEventListener('click', (e) => { if (e.target === box) hide() })
    document.addEventListener('keydown', (e) => {
      if (!box.classList.contains('open')) return
      if (e.key === 'Escape') hide()
      if (e.key === 'ArrowLeft') show(index - 1)
      if (e.key === 'ArrowRight') show(index + 1)
    })
    // Swipe on touch screens.
    let startX = null
    box.addEventListener('touchstart', (e) => { startX = e.touches[0].clientX }, { passive: true })
    box.addEventListener('touchend', (e) => {
      if (startX === null) return
      const dx = e.changedTouches[0].clientX - startX
      if (Math.abs(dx) > 50) show(index + (dx < 0 ? 1 : -1))
      startX = null
    })
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', setup)
  else setup()
})()
