'use strict'
/** A small seeded PRNG (mulberry32) so property tests are reproducible. */
module.exports = function rng (seed) {
  let a = seed >>> 0
  return function next (n) {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    const r = ((t ^ (t >>> 14)) >>> 0) / 4294967296
    return n === undefined ? r : Math.floor(r * n)
  }
}
