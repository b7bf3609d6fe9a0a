package logstore

import (
	"hash/maphash"
	"math/bits"
)

// keyMap maps a key to the last offset it was written at in the dirty part
// of a log, like Kafka's SkimpyOffsetMap: it keeps a 128-bit hash of each
// key, not the key, so its memory depends only on how many keys it holds.
// Each slot is 24 bytes (two 64-bit hashes under independent random seeds,
// and the offset); the table grows by doubling up to maxBytes
// (log.cleaner.dedupe.buffer.size) and is full at loadFactor
// (log.cleaner.io.buffer.load.factor). Two distinct keys share a hash with
// probability about n²/2¹²⁹ for n keys; the older one's value would then be
// dropped, the same risk Kafka takes with MD5.
type keyMap struct {
	seed1, seed2 maphash.Seed
	slots        []keySlot // len is a power of two
	used         int
	maxSlots     int
	loadFactor   float64
	sink         int64 // keeps warm's loads from being optimised away
}

type keySlot struct {
	h1, h2 uint64
	off    int64 // offset+1; 0 marks an empty slot
}

// keyHash is a key's 128-bit hash.
type keyHash struct{ h1, h2 uint64 }

const keySlotBytes = 24

func newKeyMap(maxBytes int64, loadFactor float64) *keyMap {
	maxSlots := 2 // one slot always stays free, so probing ends
	if n := maxBytes / keySlotBytes; n > 2 {
		maxSlots = 1 << (bits.Len64(uint64(n)) - 1) // largest power of two that fits
	}
	return &keyMap{seed1: maphash.MakeSeed(), seed2: maphash.MakeSeed(), maxSlots: maxSlots, loadFactor: loadFactor}
}

// reset empties the map, keeping its memory.
func (m *keyMap) reset() {
	clear(m.slots)
	m.used = 0
	m.seed1, m.seed2 = maphash.MakeSeed(), maphash.MakeSeed()
}

// bytes is the memory the table holds.
func (m *keyMap) bytes() int64 { return int64(len(m.slots)) * keySlotBytes }

// capacity is how many keys the map can hold at its largest.
func (m *keyMap) capacity() int {
	return max(1, min(int(float64(m.maxSlots)*m.loadFactor), m.maxSlots-1))
}

// room reports whether n more keys surely fit.
func (m *keyMap) room(n int) bool { return m.used+n <= m.capacity() }

func (m *keyMap) hash(key []byte) keyHash {
	return keyHash{maphash.Bytes(m.seed1, key), maphash.Bytes(m.seed2, key)}
}

// warm touches the home slots of hs before they are probed one by one:
// these loads do not depend on each other, so the processor overlaps their
// cache and TLB misses, which the dependent probes that follow cannot.
// The table is far larger than the caches, so this is most of a clean's
// time (a batch's keys are warmed together).
func (m *keyMap) warm(hs []keyHash) {
	if len(m.slots) == 0 {
		return
	}
	mask := uint64(len(m.slots) - 1)
	var sink int64
	for _, h := range hs {
		sink += m.slots[h.h1&mask].off
	}
	m.sink += sink
}

// probe returns the slot holding (h1, h2) or the empty slot where it goes,
// by linear probing: neighbouring slots share cache lines, and the table
// stays at most half full until it reaches its memory bound.
func (m *keyMap) probe(h1, h2 uint64) *keySlot {
	mask := uint64(len(m.slots) - 1)
	for i := h1 & mask; ; i = (i + 1) & mask {
		s := &m.slots[i]
		if s.off == 0 || (s.h1 == h1 && s.h2 == h2) {
			return s
		}
	}
}

// growAt is the load at which the table doubles while it may still grow.
const growAt = 0.5

// put records that key was written at off (offsets arrive in ascending
// order). The caller checks room first; put grows the table as needed.
func (m *keyMap) put(key []byte, off int64) { m.putHash(m.hash(key), off) }

func (m *keyMap) putHash(h keyHash, off int64) {
	if len(m.slots) < m.maxSlots && float64(m.used+1) > float64(len(m.slots))*growAt || len(m.slots) == 0 {
		m.grow()
	}
	s := m.probe(h.h1, h.h2)
	if s.off == 0 {
		m.used++
		s.h1, s.h2 = h.h1, h.h2
	}
	s.off = off + 1
}

// get returns the last offset recorded for key, or -1.
func (m *keyMap) get(key []byte) int64 { return m.getHash(m.hash(key)) }

func (m *keyMap) getHash(h keyHash) int64 {
	if len(m.slots) == 0 {
		return -1
	}
	return m.probe(h.h1, h.h2).off - 1
}

func (m *keyMap) grow() {
	n := min(max(1024, 2*len(m.slots)), m.maxSlots)
	if n == len(m.slots) {
		return // the caller checked room; at maxSlots the load factor still leaves free slots
	}
	old := m.slots
	m.slots = make([]keySlot, n)
	for _, s := range old {
		if s.off != 0 {
			*m.probe(s.h1, s.h2) = s
		}
	}
}
