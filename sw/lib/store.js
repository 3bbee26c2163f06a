// Verified pieces, kept so this visitor can serve them to others and reload
// without the network. IndexedDB with a byte budget and LRU eviction; an
// in-memory store with the same interface when IndexedDB is missing or fails.
//
// Only verified pieces are ever put here. Readers verify again anyway: a
// store is outside Whis's control (disk errors, another extension).
;(function (W) {
  'use strict'
  const DEFAULT_BUDGET = 200 * 1024 * 1024

  class MemoryStore {
    constructor (budget = DEFAULT_BUDGET) {
      this.budget = budget
      this.bytes = 0
      /** @type {Map<string, {data: ArrayBuffer, used: number}>} */
      this.pieces = new Map()
      /** @type {Map<string, {id:string, path:string, count:number, have:Set<number>}>} */
      this.resources = new Map()
      this.clock = 0
    }

    async get (id, index) {
      const e = this.pieces.get(`${id}:${index}`)
      if (!e) return null
      e.used = ++this.clock
      return e.data
    }

    async put (id, index, data, info) {
      const key = `${id}:${index}`
      if (this.pieces.has(key)) return
      this.pieces.set(key, { data, used: ++this.clock })
      this.bytes += data.byteLength
      const r = this.resources.get(id) || { id, path: info.path, count: info.count, have: new Set() }
      r.have.add(index)
      this.resources.set(id, r)
      this._evict()
    }

    async list () { return [...this.resources.values()].map((r) => ({ id: r.id, path: r.path, count: r.count, have: new Set(r.have) })) }

    _evict () {
      if (this.bytes <= this.budget) return
      const order = [...this.pieces.entries()].sort((a, b) => a[1].used - b[1].used)
      for (const [key, e] of order) {
        if (this.bytes <= this.budget * 0.9) break
        this.pieces.delete(key)
        this.bytes -= e.data.byteLength
        const [id, index] = key.split(':')
        const r = this.resources.get(id)
        if (r) { r.have.delete(Number(index)); if (r.have.size === 0) this.resources.delete(id) }
      }
    }
  }

  function req (r) { return new Promise((resolve, reject) => { r.onsuccess = () => resolve(r.result); r.onerror = () => reject(r.error) }) }
  function done (tx) { return new Promise((resolve, reject) => { tx.oncomplete = resolve; tx.onerror = () => reject(tx.error); tx.onabort = () => reject(tx.error) }) }

  class IdbStore {
    constructor (db, budget) {
      this.db = db
      this.budget = budget
      this.bytes = null
      this.touched = new Map()
    }

    static async open (budget = DEFAULT_BUDGET) {
      const open = indexedDB.open('whis', 1)
      open.onupgradeneeded = () => {
        const db = open.result
        const pieces = db.createObjectStore('pieces', { keyPath: ['id', 'index'] })
        pieces.createIndex('used', 'used')
        db.createObjectStore('resources', { keyPath: 'id' })
      }
      const db = await req(open)
      return new IdbStore(db, budget)
    }

    async get (id, index) {
      const tx = this.db.transaction('pieces', 'readonly')
      const e = await req(tx.objectStore('pieces').get([id, index]))
      if (!e) return null
      const key = `${id}:${index}`
      // Refresh the LRU stamp at most once a minute per piece.
      if (Date.now() - (this.touched.get(key) || 0) > 60000) {
        this.touched.set(key, Date.now())
        const w = this.db.transaction('pieces', 'readwrite')
        w.objectStore('pieces').put({ ...e, used: Date.now() })
      }
      return e.data
    }

    async put (id, index, data, info) {
      const tx = this.db.transaction(['pieces', 'resources'], 'readwrite')
      tx.objectStore('pieces').put({ id, index, data, size: data.byteLength, used: Date.now() })
      const rs = tx.objectStore('resources')
      const r = (await req(rs.get(id))) || { id, path: info.path, count: info.count, have: [] }
      if (!r.have.includes(index)) r.have.push(index)
      rs.put(r)
      await done(tx)
      if (this.bytes === null) this.bytes = await this._total()
      else this.bytes += data.byteLength
      if (this.bytes > this.budget) await this._evict()
    }

    async list () {
      const tx = this.db.transaction('resources', 'readonly')
      const all = await req(tx.objectStore('resources').getAll())
      return all.map((r) => ({ id: r.id, path: r.path, count: r.count, have: new Set(r.have) }))
    }

    async _total () {
      const tx = this.db.transaction('pieces', 'readonly')
      let total = 0
      await new Promise((resolve, reject) => {
        const c = tx.objectStore('pieces').openCursor()
        c.onsuccess = () => { const cur = c.result; if (!cur) return resolve(); total += cur.value.size; cur.continue() }
        c.onerror = () => reject(c.error)
      })
      return total
    }

    async _evict () {
      const tx = this.db.transaction(['pieces', 'resources'], 'readwrite')
      const pieces = tx.objectStore('pieces')
      const resources = tx.objectStore('resources')
      const gone = []
      await new Promise((resolve, reject) => {
        const c = pieces.index('used').openCursor()
        c.onsuccess = () => {
          const cur = c.result
          if (!cur || this.bytes <= this.budget * 0.9) return resolve()
          this.bytes -= cur.value.size
          gone.push([cur.value.id, cur.value.index])
          cur.delete()
          cur.continue()
        }
        c.onerror = () => reject(c.error)
      })
      for (const [id, index] of gone) {
        const r = await req(resources.get(id))
        if (!r) continue
        r.have = r.have.filter((i) => i !== index)
        if (r.have.length) resources.put(r)
        else resources.delete(id)
      }
      await done(tx)
    }
  }

  /**
   * Recently verified pieces in memory, least recently used out first, within
   * a byte budget: served without an IndexedDB read, and shareable before
   * their write has committed.
   */
  class HotCache {
    constructor (budget) {
      this.budget = budget
      this.bytes = 0
      this.map = new Map() // key → ArrayBuffer, oldest first
    }

    put (key, data) {
      if (this.map.has(key) || data.byteLength > this.budget) return
      this.map.set(key, data)
      this.bytes += data.byteLength
      for (const [k, d] of this.map) {
        if (this.bytes <= this.budget) break
        this.map.delete(k)
        this.bytes -= d.byteLength
      }
    }

    get (key) {
      const data = this.map.get(key)
      if (!data) return null
      this.map.delete(key) // refresh its place in the order
      this.map.set(key, data)
      return data
    }
  }

  /** IndexedDB when it works, memory otherwise (fail-open). */
  async function openStore (budget) {
    try {
      if (typeof indexedDB !== 'undefined') return await IdbStore.open(budget)
    } catch (_) { /* private mode, quota, broken profile: fall through */ }
    return new MemoryStore(budget)
  }

  W.store = { MemoryStore, IdbStore, HotCache, openStore, DEFAULT_BUDGET }
})(globalThis.Whis = globalThis.Whis || {})
