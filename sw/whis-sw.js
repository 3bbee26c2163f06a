// The Whis service worker, registered by /whis/client.js with scope /.
/* global importScripts */
self.WHIS_STANDALONE = true
importScripts('/whis/sw-lib.js')
// Control pages at once, even a first visit: heavy assets marked
// data-whis-src wait for this before they load.
self.addEventListener('install', () => self.skipWaiting())
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()))
