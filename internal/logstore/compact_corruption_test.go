package logstore

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestBitFlipsInCompactedSegments is C2 for compacted segments: their
// batches have gaps between them, yet a flipped bit anywhere in one (base
// offset and gap mark included) is still refused, never served: a base
// offset is covered by its predecessor's end or by its own mark. Half the
// trials also remove the segment's index, so recovery scans it.
func TestBitFlipsInCompactedSegments(t *testing.T) {
	clock := newTestClock()
	fsys := NewMemFS()
	l := compactLog(t, fsys, clock, 500)
	for i := range 80 {
		spec := plainSpec(clock.Millis())
		spec.codec = int8(i % 5)
		recs := []kv{put(fmt.Sprint("k", i%7), fmt.Sprint("v", i))}
		if i%3 == 0 {
			recs = append(recs, put(fmt.Sprint("u", i), "x"))
		}
		mustAppendDurable(t, l, keyedBatch(t, spec, recs...))
	}
	before, _ := readBack(t, l)
	clean(t, testCleaner(), l, CleanOptions{})
	after, batches := readBack(t, l)
	gaps := 0
	for i := 1; i < len(batches); i++ {
		if batches[i].BaseOffset != batches[i-1].NextOffset() {
			gaps++
		}
	}
	if gaps < 5 || len(after) >= len(before) {
		t.Fatalf("test setup: the clean left %d gaps and %d of %d records", gaps, len(after), len(before))
	}
	bases := l.SegmentBases()
	if err := l.Close(); err != nil { // checkpoint: everything below the end is durable
		t.Fatal(err)
	}
	sealed := bases[:len(bases)-1]
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := range 400 {
		img := fsys.CrashClone(CrashOptions{})
		base := sealed[rng.IntN(len(sealed))]
		path := join("/p", segmentName(base))
		data, err := img.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		bit := rng.IntN(len(data) * 8)
		if trial%3 == 0 {
			bit = rng.IntN(min(len(data), 16) * 8) // base offset, length and epoch of the first batch
		}
		data[bit/8] ^= 1 << (bit % 8)
		if err := img.WriteFile(path, data); err != nil {
			t.Fatal(err)
		}
		if trial%2 == 0 {
			img.Remove(join("/p", indexName(base)))
		}
		what := fmt.Sprintf("trial %d: bit %d of %s", trial, bit, path)
		r, err := Open(img, "/p", Config{Logger: quietLogger})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s: recovery failed with %v, want ErrCorrupt", what, err)
			}
			continue
		}
		got, _, err := readBackErr(r)
		r.Close()
		if err == nil {
			t.Fatalf("%s: damage in a compacted segment was served silently (%d records)", what, len(got))
		}
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: reading failed with %v, want ErrCorrupt", what, err)
		}
	}
}

// TestGapMarksAreNeverServed: clients see leader epoch 0 on every batch,
// cleaned or not (readBack checks it on every batch it reads).
func TestGapMarksAreNeverServed(t *testing.T) {
	clock := newTestClock()
	l := compactLog(t, NewMemFS(), clock, 300)
	defer l.Close()
	for i := range 30 {
		mustAppendDurable(t, l, keyedBatch(t, plainSpec(clock.Millis()), put("k", fmt.Sprint(i))))
	}
	clean(t, testCleaner(), l, CleanOptions{})
	marked := 0
	for _, s := range l.segs {
		res, err := s.scan(s.f, s.size, 1<<30)
		if err != nil || res.badErr != nil {
			t.Fatal(err, res.badErr)
		}
		for pos := int64(0); pos < s.size; {
			var hdr [BatchHeaderSize]byte
			readFull(s.f, hdr[:], pos)
			h := decodeHeader(hdr[:])
			if h.PartitionLeaderEpoch != 0 {
				marked++
			}
			pos += int64(h.TotalSize())
		}
	}
	if marked == 0 {
		t.Fatal("test setup: no batch on disk carries a gap mark")
	}
	readBack(t, l)
}
