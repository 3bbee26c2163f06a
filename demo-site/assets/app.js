// Whis demo site: a page whose content exists only after JavaScript runs,
// so /whis/render (prerendering in a worker browser) has something to show.
'use strict'
;(function () {
  const items = [
    ['Seahorse valley', 947], ['Elephant valley', 424], ['The whole set', 258], ['Spiral arm', 1686],
    ['Antenna', 681], ['Mini brot', 753], ['Triple spiral', 966], ['Scepter', 725]
  ]
  function render () {
    const app = document.getElementById('app')
    if (!app) return
    const list = document.createElement('ul')
    list.className = 'app-list'
    for (const [name, kb] of items) {
      const li = document.createElement('li')
      li.innerHTML = `<span>${name}</span><span class="meta">${kb} KB</span>`
      list.appendChild(li)
    }
    const note = document.createElement('p')
    note.id = 'rendered-marker'
    note.textContent = `Rendered by JavaScript: ${items.length} pictures.`
    app.replaceChildren(note, list)
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', render)
  else render()
})()
