package logstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"time"

	"golang.org/x/time/rate"
)

// Log compaction (cleanup.policy=compact), as Kafka's LogCleaner does it;
// docs/compaction.md states the rules and their sources, compact_swap.go
// how a cleaned segment replaces the old ones crash-safely, and
// compact_offsets.go how offsets stay checked once batches are gone.
//
// A round cleans one log: it maps every key of the dirty part (records not
// yet cleaned, in sealed segments below the last stable offset and past
// min.compaction.lag.ms) to its last offset, then rewrites the log from its
// start up to the end of what it mapped, one group of consecutive segments
// (at most segment.bytes together) at a time, keeping per key only the
// latest record. Groups in which nothing changes are read but not written.

// CleanerConfig sizes a Cleaner, after Kafka's log.cleaner.* properties.
type CleanerConfig struct {
	// DedupeBufferBytes bounds the key map (log.cleaner.dedupe.buffer.size).
	DedupeBufferBytes int64
	// LoadFactor is how full the key map may get (log.cleaner.io.buffer.load.factor).
	LoadFactor float64
	// IOBufferBytes is the read and write buffer size (log.cleaner.io.buffer.size).
	IOBufferBytes int
	// IOBytesPerSecond caps what the cleaner reads plus writes
	// (log.cleaner.io.max.bytes.per.second); 0 or +Inf is no cap.
	IOBytesPerSecond float64
}

// Cleaner is the working memory of log cleaning: the key map, the I/O
// buffers, the codecs and the I/O rate limit. One goroutine uses it, one
// log at a time. Its memory is bounded by DedupeBufferBytes (the key map),
// 2 × IOBufferBytes (or the largest batch, if larger), and, for a compressed
// batch being filtered, its records decompressed (at most
// MaxDecompressedBatch) plus the rewritten batch.
type Cleaner struct {
	cfg     CleanerConfig
	keys    *keyMap
	limiter *rate.Limiter
	codecs  codecs
	recBuf  []byte // decompressed records
	plain   []byte // kept records, before compression
	outBuf  []byte // a rewritten batch
	kept    []kept
	hashes  []keyHash
	offsets []int64
	readBuf []byte // what a round reads
	copyBuf []byte // what a group's unchanged prefix is copied through
}

// NewCleaner returns a Cleaner; it allocates its key map as keys arrive.
func NewCleaner(cfg CleanerConfig) *Cleaner {
	if cfg.DedupeBufferBytes <= 0 {
		cfg.DedupeBufferBytes = 128 << 20
	}
	if cfg.LoadFactor <= 0 || cfg.LoadFactor > 1 {
		cfg.LoadFactor = 0.9
	}
	if cfg.IOBufferBytes <= 0 {
		cfg.IOBufferBytes = 512 << 10
	}
	c := &Cleaner{cfg: cfg, keys: newKeyMap(cfg.DedupeBufferBytes, cfg.LoadFactor)}
	if cfg.IOBytesPerSecond > 0 && !math.IsInf(cfg.IOBytesPerSecond, 1) && cfg.IOBytesPerSecond < math.MaxFloat64 {
		c.limiter = rate.NewLimiter(rate.Limit(cfg.IOBytesPerSecond), cfg.IOBufferBytes)
	}
	return c
}

// KeyMapBytes is the memory the key map holds now.
func (c *Cleaner) KeyMapBytes() int64 { return c.keys.bytes() }

// throttle waits until n more bytes of I/O are allowed.
func (c *Cleaner) throttle(ctx context.Context, n int) error {
	if c.limiter == nil {
		return ctx.Err()
	}
	for n > 0 {
		chunk := min(n, c.limiter.Burst())
		if err := c.limiter.WaitN(ctx, chunk); err != nil {
			return err
		}
		n -= chunk
	}
	return nil
}

// CleanOptions is one log's compaction policy and the partition state a
// clean must respect.
type CleanOptions struct {
	// StableOffset: nothing at or above it is cleaned (the last stable
	// offset: an open transaction's records may still be aborted).
	StableOffset int64
	// MinCompactionLag keeps records this young uncleaned
	// (min.compaction.lag.ms), by their segment's newest timestamp.
	MinCompactionLag time.Duration
	// DeleteRetention is how long tombstones and empty transactions'
	// markers stay after the clean that first sees them (delete.retention.ms).
	DeleteRetention time.Duration
	// ProducerLastOffsets maps each live idempotent producer to the last
	// offset of its last data batch; that batch is kept, empty if need be,
	// so the producer's sequence survives a replay of the log.
	ProducerLastOffsets map[int64]int64
	// ProducerMarkerEpochs maps live producers whose last write here was
	// a transaction marker to its epoch; that marker is kept likewise.
	ProducerMarkerEpochs map[int64]int16
	// Aborted lists the log's aborted transactions; their records go.
	Aborted []AbortedRange
}

// CleanStats reports a round.
type CleanStats struct {
	BytesRead, BytesWritten int64 // segment bytes read and written while rewriting
	MapBytesRead            int64 // bytes read to build the key map
	RecordsRead             int64
	RecordsKept             int64
	Keys                    int // distinct keys mapped
	Unreadable              int // batches left whole because their records could not be read
	GroupsSwapped           int
	SegmentsReplaced        int
	FirstDirty, CleanedTo   int64 // the mapped range [FirstDirty, CleanedTo)
}

// CleaningState is what decides whether a log is worth cleaning.
type CleaningState struct {
	// CleanBytes and DirtyBytes are the sizes of the sealed segments below
	// the first dirty offset and from it up to the first uncleanable
	// segment; the dirty ratio is DirtyBytes / (CleanBytes + DirtyBytes).
	CleanBytes, DirtyBytes int64
	// FirstDirtyTime is the timestamp of the first batch not yet cleaned
	// in a sealed segment, -1 if none (max.compaction.lag.ms).
	FirstDirtyTime int64
	// HorizonDue: a tombstone or marker's delete horizon has passed.
	HorizonDue bool
}

// cleanSeg is a sealed segment as a round sees it.
type cleanSeg struct {
	seg        *segment
	base, next int64
	size       int64
	// f is the segment's file, read through the log's file cache like any
	// reader's: pinned for each read, so the round holds no file open
	// beyond the limit. Taken under the log's lock (retention clears
	// seg.f); if retention removes the segment during the round, reads
	// fail and the round with them, as its swap would.
	f File
}

// plan returns the sealed segments a clean may touch (from the log start up
// to the first one that holds offsets at or above stableOffset, or dirty
// records younger than minLag) and the first dirty offset.
func (l *Log) plan(stableOffset int64, minLag time.Duration, now time.Time) ([]cleanSeg, int64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, 0, ErrClosed
	}
	firstDirty := max(l.firstDirty.Load(), l.start.Load())
	var segs []cleanSeg
	for _, s := range l.segs[:len(l.segs)-1] {
		young := minLag > 0 && s.next > firstDirty && s.maxTS > now.Add(-minLag).UnixMilli()
		if s.next > stableOffset || young {
			break
		}
		segs = append(segs, cleanSeg{seg: s, base: s.base, next: s.next, size: s.size, f: s.f})
	}
	return segs, firstDirty, nil
}

// CleaningState measures the log for the cleaner's choice of what to clean.
func (l *Log) CleaningState(stableOffset int64, minLag time.Duration) CleaningState {
	now := l.cfg.Now()
	st := CleaningState{FirstDirtyTime: -1}
	segs, firstDirty, err := l.plan(stableOffset, minLag, now)
	if err != nil {
		return st
	}
	for _, s := range segs {
		if s.next <= firstDirty {
			st.CleanBytes += s.size
		} else {
			st.DirtyBytes += s.size
		}
	}
	h := l.minHorizon.Load()
	st.HorizonDue = h >= 0 && h <= now.UnixMilli()
	l.mu.RLock()
	defer l.mu.RUnlock()
	for _, s := range l.segs[:len(l.segs)-1] {
		// The time index's first entry is the segment's first timestamp
		// (its first batch's newest record), as Kafka uses it.
		if s.next > firstDirty && !l.closed && len(s.timeIdx) > 0 {
			st.FirstDirtyTime = s.timeIdx[0].ts
			break
		}
	}
	return st
}

// errCleaningStopped is returned by Clean on a log whose last swap could
// not be finished; recovery finishes it on the next open.
var errCleaningStopped = errors.New("logstore: cleaning stopped until the log is reopened")

// Clean runs one cleaning round on l. A round that fails or is cancelled
// leaves the log as it was, except for groups already swapped in, which are
// complete.
func (c *Cleaner) Clean(ctx context.Context, l *Log, opts CleanOptions) (CleanStats, error) {
	l.cleanMu.Lock()
	defer l.cleanMu.Unlock()
	var stats CleanStats
	if l.cleanBroken != nil {
		return stats, fmt.Errorf("%w: %v", errCleaningStopped, l.cleanBroken)
	}
	now := l.cfg.Now()
	segs, firstDirty, err := l.plan(opts.StableOffset, opts.MinCompactionLag, now)
	if err != nil {
		return stats, err
	}
	stats.FirstDirty, stats.CleanedTo = firstDirty, firstDirty
	h := l.minHorizon.Load()
	horizonDue := h >= 0 && h <= now.UnixMilli()
	if len(segs) == 0 || (segs[len(segs)-1].next <= firstDirty && !horizonDue) {
		return stats, nil
	}
	mapEnd, err := c.buildKeyMap(ctx, l, segs, firstDirty, opts.Aborted, &stats)
	if err != nil {
		return stats, err
	}
	stats.CleanedTo, stats.Keys = mapEnd, c.keys.used
	rs := &roundState{
		keys: c.keys, mapEnd: mapEnd, now: now.UnixMilli(), deleteRetention: opts.DeleteRetention.Milliseconds(),
		txns: newTxnTracker(opts.Aborted), lastData: opts.ProducerLastOffsets, markerEpoch: opts.ProducerMarkerEpochs,
		minHorizon: -1, stats: &stats,
	}
	for _, g := range groupSegments(segs, mapEnd, l.cfg.SegmentBytes) {
		if err := c.cleanGroup(ctx, l, g, rs); err != nil {
			if h := l.minHorizon.Load(); rs.minHorizon >= 0 && (h < 0 || rs.minHorizon < h) {
				l.minHorizon.Store(rs.minHorizon) // horizons set by groups already swapped
			}
			return stats, err
		}
	}
	l.firstDirty.Store(mapEnd)
	l.minHorizon.Store(rs.minHorizon)
	if err := l.cfg.Disk.Do(func() error { return l.writeCleanerStateLocked(l.currentCleanerState()) }); err != nil {
		// Only the next round's work is at stake: it maps from the
		// previous first dirty offset.
		l.log.Warn("could not record where cleaning got to", "err", err)
	}
	return stats, nil
}

// groupSegments splits the segments with a base below end into runs of
// consecutive segments of at most maxBytes together (a lone larger segment
// forms its own group), which the clean merges into one segment each.
func groupSegments(segs []cleanSeg, end, maxBytes int64) [][]cleanSeg {
	var groups [][]cleanSeg
	for i := 0; i < len(segs) && segs[i].base < end; {
		j, size := i+1, segs[i].size
		for j < len(segs) && segs[j].base < end && size+segs[j].size <= maxBytes {
			size += segs[j].size
			j++
		}
		groups = append(groups, segs[i:j])
		i = j
	}
	return groups
}

// buildKeyMap maps the keys of the records from firstDirty on to their last
// offsets, until the map is full or the segments end, and returns the
// offset it got to: records below it and at or above firstDirty are mapped.
func (c *Cleaner) buildKeyMap(ctx context.Context, l *Log, segs []cleanSeg, firstDirty int64, aborted []AbortedRange, stats *CleanStats) (int64, error) {
	c.keys.reset()
	txns := newTxnTracker(aborted)
	end := firstDirty
	for _, s := range segs {
		if s.next <= firstDirty {
			continue
		}
		r := c.newBatchReader(ctx, s)
		for {
			h, b, _, err := r.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return 0, err
			}
			stats.MapBytesRead += int64(len(b))
			if h.LastOffset() < firstDirty {
				continue
			}
			if h.IsControl() {
				txns.onMarker(h, b)
				end = h.NextOffset()
				continue
			}
			if txns.onData(h) {
				end = h.NextOffset()
				continue
			}
			if !c.keys.room(int(h.NumRecords)) {
				if end == firstDirty {
					return 0, fmt.Errorf("logstore: the key map (log.cleaner.dedupe.buffer.size %d bytes) cannot hold the %d records of one batch", c.cfg.DedupeBufferBytes, h.NumRecords)
				}
				return end, nil
			}
			if area, ok := c.records(h, b); ok {
				c.hashes, c.offsets = c.hashes[:0], c.offsets[:0]
				eachRecord(area, h.NumRecords, func(rec *record) error {
					if off := h.BaseOffset + int64(rec.offsetDelta); rec.hasKey && off >= firstDirty {
						c.hashes = append(c.hashes, c.keys.hash(rec.key))
						c.offsets = append(c.offsets, off)
					}
					return nil
				})
				c.keys.warm(c.hashes)
				for i, hh := range c.hashes {
					c.keys.putHash(hh, c.offsets[i])
				}
			}
			end = h.NextOffset()
		}
		end = max(end, s.next)
	}
	return end, nil
}

// cleanGroup filters the batches of a group of segments into one new
// segment and swaps it in, unless nothing changed.
func (c *Cleaner) cleanGroup(ctx context.Context, l *Log, g []cleanSeg, rs *roundState) error {
	var w *cleanedWriter
	defer func() {
		if w != nil {
			w.abandon()
		}
	}()
	if len(g) > 1 {
		// Merging small segments is a change in itself.
		var err error
		if w, err = c.newCleanedWriter(ctx, l, g[0].base); err != nil {
			return err
		}
	}
	for si, s := range g {
		r := c.newBatchReader(ctx, s)
		for {
			h, b, pos, err := r.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			rs.stats.BytesRead += int64(len(b))
			isLast := si == len(g)-1 && pos+int64(len(b)) == s.size
			out, changed := c.filterBatch(h, b, rs, isLast)
			if changed && w == nil {
				// The first change: start the new segment with the
				// batches before it, unchanged.
				if w, err = c.newCleanedWriter(ctx, l, g[0].base); err != nil {
					return err
				}
				if err := w.copyPrefix(c, g[:si+1], pos); err != nil {
					return err
				}
			}
			if w != nil && out != nil {
				if err := w.write(out); err != nil {
					return err
				}
			}
		}
	}
	if w == nil {
		return nil
	}
	rs.stats.BytesWritten += w.seg.size
	if w.seg.next != g[len(g)-1].next {
		return fmt.Errorf("logstore: cleaned segment %s ends at %d, the segments it replaces at %d", w.seg.path, w.seg.next, g[len(g)-1].next)
	}
	seg, f, sum, err := w.finish()
	if err != nil {
		return err
	}
	path := w.path
	w = nil // finished: the swap owns the file now
	olds := make([]*segment, len(g))
	for i, s := range g {
		olds[i] = s.seg
	}
	st := l.currentCleanerState()
	if h := rs.minHorizon; h >= 0 && (st.minHorizon < 0 || h < st.minHorizon) {
		st.minHorizon = h
	}
	swapped, err := l.swapIn(olds, seg, f, path, sum, st)
	if err != nil && swapped {
		l.cleanBroken = err
	}
	if err != nil {
		return err
	}
	if !swapped {
		return fmt.Errorf("logstore: %s changed while it was being cleaned", l.dir)
	}
	rs.stats.GroupsSwapped++
	rs.stats.SegmentsReplaced += len(g)
	return nil
}

// batchReader reads the batches of a sealed segment in order, through a
// buffer, validating each (CRC, length, offsets) as a scan does.
type batchReader struct {
	ctx    context.Context
	c      *Cleaner
	buf    *[]byte
	s      cleanSeg
	pos    int64  // position of the next batch
	due    int64  // offset the next batch must start at (or after, with a gap mark)
	win    []byte // file bytes from winPos
	winPos int64
}

func (c *Cleaner) newBatchReader(ctx context.Context, s cleanSeg) *batchReader {
	return &batchReader{ctx: ctx, c: c, buf: &c.readBuf, s: s, due: s.base}
}

// next returns the next batch, its header and position; the bytes are valid
// until the following call. io.EOF ends the segment.
func (r *batchReader) next() (BatchHeader, []byte, int64, error) {
	if r.pos >= r.s.size {
		return BatchHeader{}, nil, 0, io.EOF
	}
	hdr, err := r.fill(BatchHeaderSize)
	if err != nil {
		return BatchHeader{}, nil, 0, err
	}
	h := decodeHeader(hdr)
	total := int64(h.TotalSize())
	if h.Length < BatchHeaderSize-lengthPrefix || total > r.s.size-r.pos {
		return h, nil, 0, r.corrupt("batch length %d does not fit the segment", h.Length)
	}
	b, err := r.fill(int(total))
	if err != nil {
		return h, nil, 0, err
	}
	if _, _, err := parseBatchPrefix(b); err != nil {
		return h, nil, 0, r.corrupt("%v", err)
	}
	if err := followsOn(h, r.due); err != nil {
		return h, nil, 0, r.corrupt("%v", err)
	}
	pos := r.pos
	r.pos += total
	r.due = h.NextOffset()
	return h, b, pos, nil
}

func (r *batchReader) corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s at position %d: %s", ErrCorrupt, r.s.seg.path, r.pos, fmt.Sprintf(format, args...))
}

// fill returns the n bytes at r.pos, reading ahead a buffer's worth.
func (r *batchReader) fill(n int) ([]byte, error) {
	if r.pos >= r.winPos && r.pos+int64(n) <= r.winPos+int64(len(r.win)) {
		return r.win[r.pos-r.winPos:][:n], nil
	}
	want := int(min(int64(max(n, r.c.cfg.IOBufferBytes)), r.s.size-r.pos))
	if cap(*r.buf) < want {
		*r.buf = make([]byte, want)
	}
	r.win, r.winPos = (*r.buf)[:want], r.pos
	if err := r.c.throttle(r.ctx, want); err != nil {
		return nil, err
	}
	if _, err := readFull(r.s.f, r.win, r.pos); err != nil {
		return nil, fmt.Errorf("logstore: read %s: %w", r.s.seg.path, err)
	}
	return r.win[:n], nil
}

// cleanedWriter writes a group's new segment to <base>.cleaned, tracking
// its index and the CRC-32C of its bytes.
type cleanedWriter struct {
	ctx  context.Context
	c    *Cleaner
	l    *Log
	path string
	f    File // the new segment's file, until the swap takes it
	bw   *bufio.Writer
	seg  *segment
	sum  uint32
	done bool // finished or abandoned
	// unsynced counts bytes written since the last fsync: the new segment
	// is fsynced every cleanerSyncBytes, so that no large fsync at the end
	// holds up the producers' fsyncs behind it.
	unsynced int
}

// cleanerSyncBytes is how much the cleaner writes between fsyncs of a new
// segment (RocksDB's bytes_per_sync, for the same reason).
const cleanerSyncBytes = 4 << 20

func (c *Cleaner) newCleanedWriter(ctx context.Context, l *Log, base int64) (*cleanedWriter, error) {
	path := join(l.dir, cleanedName(base))
	f, err := l.fs.Create(path)
	if err != nil {
		return nil, fmt.Errorf("logstore: create %s: %w", path, noSpace(err))
	}
	w := &cleanedWriter{ctx: ctx, c: c, l: l, path: path, f: f,
		seg: &segment{base: base, path: join(l.dir, segmentName(base)), next: base, maxTS: -1}}
	w.bw = bufio.NewWriterSize(fileWriter{f}, c.cfg.IOBufferBytes)
	return w, nil
}

// fileWriter adapts a File to io.Writer for bufio.
type fileWriter struct{ f File }

func (w fileWriter) Write(p []byte) (int, error) { return w.f.Write(p) }

// write appends one batch, stamping its offset fields for where it lands.
func (w *cleanedWriter) write(b []byte) error {
	stampOffsetFields(b, w.seg.next)
	if err := w.c.throttle(w.ctx, len(b)); err != nil {
		return err
	}
	if _, err := w.bw.Write(b); err != nil {
		return fmt.Errorf("logstore: write %s: %w", w.path, noSpace(err))
	}
	w.sum = crc32.Update(w.sum, castagnoli, b)
	w.seg.track(decodeHeader(b), w.seg.size, len(b), w.l.cfg.IndexIntervalBytes)
	if w.unsynced += len(b); w.unsynced >= cleanerSyncBytes && swapFault != swapSkipsFsync {
		w.unsynced = 0
		if err := w.bw.Flush(); err != nil {
			return fmt.Errorf("logstore: write %s: %w", w.path, noSpace(err))
		}
		if err := w.f.Sync(); err != nil {
			return fmt.Errorf("logstore: fsync %s: %w", w.path, err)
		}
	}
	return nil
}

// copyPrefix writes, unchanged, the batches of segs before position until
// in the last of them.
func (w *cleanedWriter) copyPrefix(c *Cleaner, segs []cleanSeg, until int64) error {
	for i, s := range segs {
		r := &batchReader{ctx: w.ctx, c: c, buf: &c.copyBuf, s: s, due: s.base}
		for {
			_, b, pos, err := r.next()
			if err == io.EOF || (i == len(segs)-1 && pos >= until) {
				break
			}
			if err != nil {
				return err
			}
			if err := w.write(b); err != nil {
				return err
			}
		}
	}
	return nil
}

// finish makes the new segment durable, file and directory entry, and
// returns it with its open file and its checksum.
func (w *cleanedWriter) finish() (*segment, File, uint32, error) {
	if err := w.bw.Flush(); err != nil {
		w.abandon()
		return nil, nil, 0, fmt.Errorf("logstore: write %s: %w", w.path, noSpace(err))
	}
	if swapFault != swapSkipsFsync {
		if err := w.f.Sync(); err != nil {
			w.abandon()
			return nil, nil, 0, fmt.Errorf("logstore: fsync %s: %w", w.path, err)
		}
	}
	if err := w.l.fs.SyncDir(w.l.dir); err != nil {
		w.abandon()
		return nil, nil, 0, fmt.Errorf("logstore: fsync directory %s: %w", w.l.dir, err)
	}
	return w.seg, w.f, w.sum, nil
}

// abandon removes the unfinished file.
func (w *cleanedWriter) abandon() {
	if !w.done {
		w.done = true
		w.f.Close()
		w.l.fs.Remove(w.path)
	}
}
