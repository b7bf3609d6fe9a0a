package logstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"strings"
)

// Swapping cleaned segments in, crash-safely.
//
// The cleaner writes the replacement of segments S1..Sn (bases b1 < … < bn)
// as one new file, <b1>.cleaned, and fsyncs it and the directory. Then:
//
//  1. commit: the cleaner state file records the pending swap — b1, the
//     new file's size and CRC-32C, and b1..bn — replaced atomically
//     (temporary file, fsync, rename, directory fsync);
//  2. rename <b1>.cleaned over <b1>.log, fsync the directory;
//  3. remove S2..Sn and the old indexes, write the new index;
//  4. clear the pending swap.
//
// Recovery finds a pending swap and looks at the files: if <b1>.cleaned
// holds exactly the recorded bytes it redoes the rename; if <b1>.log does,
// the rename happened; either way it finishes step 3. Otherwise the commit
// never reached the new file and nothing old was touched: it removes the
// .cleaned file. S2..Sn are removed only after the rename is durable, and
// the rename is the only change to S1, so a power loss at any point leaves
// the old segments or the new one, never a mix. The rule holds even on a file
// system that could keep one side of a rename and lose the other (MemFS
// models that): recovery decides by content, not by which names exist.

// swapFault breaks the swap on purpose, for the twin of the crash test that
// shows the test can fail (compact_crash_test.go); always swapIntact
// outside that test.
var swapFault = swapIntact

const (
	swapIntact          = iota
	swapSkipsFsync      // the new segment is not fsynced before the commit
	swapRemovesOldFirst // the old segments go before the rename is durable
)

const (
	cleanerStateName  = "cleaner"
	cleanerStateMagic = "CLN1"
	cleanedSuffix     = ".cleaned"
)

func cleanedName(base int64) string { return fmt.Sprintf("%020d%s", base, cleanedSuffix) }

// cleanerState is what the cleaner remembers of a log across restarts:
//
//	"CLN1" | firstDirty int64 | minHorizon int64 | swap u8 |
//	[base int64 | size int64 | crc u32 | n u32 | n × old base int64] | crc32c
type cleanerState struct {
	// firstDirty: offsets below were cleaned against a key map of
	// everything up to it (Kafka's cleaner-offset-checkpoint); 0 when
	// nothing was cleaned yet.
	firstDirty int64
	// minHorizon is the earliest delete horizon of a batch that still holds
	// records (a tombstone or marker waiting to be removed), -1 if none.
	minHorizon int64
	swap       *pendingSwap
}

// pendingSwap is a committed swap that may not be finished on disk.
type pendingSwap struct {
	base int64 // the new segment's base: the first replaced segment's
	size int64
	sum  uint32 // CRC-32C of the new segment's bytes
	olds []int64
}

func (st cleanerState) encode() []byte {
	be := binary.BigEndian
	b := append([]byte(nil), cleanerStateMagic...)
	b = be.AppendUint64(b, uint64(st.firstDirty))
	b = be.AppendUint64(b, uint64(st.minHorizon))
	if st.swap == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = be.AppendUint64(b, uint64(st.swap.base))
		b = be.AppendUint64(b, uint64(st.swap.size))
		b = be.AppendUint32(b, st.swap.sum)
		b = be.AppendUint32(b, uint32(len(st.swap.olds)))
		for _, o := range st.swap.olds {
			b = be.AppendUint64(b, uint64(o))
		}
	}
	return be.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

var errBadCleanerState = errors.New("cleaner state invalid")

func decodeCleanerState(b []byte) (cleanerState, error) {
	be := binary.BigEndian
	if len(b) < 4+8+8+1+4 || string(b[:4]) != cleanerStateMagic {
		return cleanerState{}, errBadCleanerState
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != be.Uint32(b[len(b)-4:]) {
		return cleanerState{}, errBadCleanerState
	}
	st := cleanerState{firstDirty: int64(be.Uint64(body[4:])), minHorizon: int64(be.Uint64(body[12:]))}
	r := body[21:]
	switch body[20] {
	case 0:
		if len(r) != 0 {
			return cleanerState{}, errBadCleanerState
		}
	case 1:
		if len(r) < 8+8+4+4 {
			return cleanerState{}, errBadCleanerState
		}
		sw := &pendingSwap{base: int64(be.Uint64(r)), size: int64(be.Uint64(r[8:])), sum: be.Uint32(r[16:])}
		n := int(be.Uint32(r[20:]))
		r = r[24:]
		if n < 1 || len(r) != 8*n {
			return cleanerState{}, errBadCleanerState
		}
		for i := range n {
			sw.olds = append(sw.olds, int64(be.Uint64(r[8*i:])))
		}
		if sw.olds[0] != sw.base {
			return cleanerState{}, errBadCleanerState
		}
		st.swap = sw
	default:
		return cleanerState{}, errBadCleanerState
	}
	if st.firstDirty < 0 {
		return cleanerState{}, errBadCleanerState
	}
	return st, nil
}

// writeCleanerStateLocked persists st; cleanMu must be held.
func (l *Log) writeCleanerStateLocked(st cleanerState) error {
	if err := writeFileAtomic(l.fs, l.dir, cleanerStateName, st.encode()); err != nil {
		return fmt.Errorf("logstore: write cleaner state: %w", noSpace(err))
	}
	return nil
}

// currentCleanerState is the state with no swap pending.
func (l *Log) currentCleanerState() cleanerState {
	return cleanerState{firstDirty: l.firstDirty.Load(), minHorizon: l.minHorizon.Load()}
}

// recoverCleaner loads the cleaner state, finishes or rolls back a swap a
// crash interrupted, and removes leftover .cleaned files. It runs before the
// segments are listed.
func (l *Log) recoverCleaner() error {
	l.firstDirty.Store(0)
	l.minHorizon.Store(-1)
	b, err := readWholeFile(l.fs, join(l.dir, cleanerStateName), 1<<20)
	if errors.Is(err, fs.ErrNotExist) {
		return l.removeLeftoverCleaned()
	}
	if err != nil {
		return fmt.Errorf("logstore: read cleaner state: %w", err)
	}
	st, err := decodeCleanerState(b)
	if err != nil {
		// It is replaced atomically, so damage is bit rot. Without it the
		// next clean starts over; a swap it recorded cannot be finished,
		// and the segment checks below refuse the log if one was cut short.
		l.log.Warn("ignoring a damaged cleaner state file", "err", err)
		return l.removeLeftoverCleaned()
	}
	if st.swap != nil {
		if err := l.finishSwap(st.swap); err != nil {
			return err
		}
		st.swap = nil
		if err := l.writeCleanerStateLocked(st); err != nil {
			return err
		}
	}
	l.firstDirty.Store(st.firstDirty)
	l.minHorizon.Store(st.minHorizon)
	return l.removeLeftoverCleaned()
}

// finishSwap completes a pending swap whose new segment reached the disk,
// or abandons it if it did not (see the comment at the top of this file).
func (l *Log) finishSwap(sw *pendingSwap) error {
	cleaned, live := join(l.dir, cleanedName(sw.base)), join(l.dir, segmentName(sw.base))
	ok, err := fileHolds(l.fs, cleaned, sw.size, sw.sum)
	if err != nil {
		return err
	}
	if ok {
		if err := l.fs.Rename(cleaned, live); err != nil {
			return fmt.Errorf("logstore: finish cleaner swap: %w", err)
		}
		if err := l.fs.SyncDir(l.dir); err != nil {
			return fmt.Errorf("logstore: fsync directory %s: %w", l.dir, err)
		}
	} else if ok, err = fileHolds(l.fs, live, sw.size, sw.sum); err != nil {
		return err
	} else if !ok {
		l.log.Info("rolled back a cleaner swap a crash interrupted before it took effect", "segment", segmentName(sw.base))
		return nil
	}
	for i, o := range sw.olds {
		if i > 0 {
			if err := removeIfExists(l.fs, join(l.dir, segmentName(o))); err != nil {
				return err
			}
		}
		// The first one's index described the old file; the others'
		// segments are gone. Scans rebuild what is needed.
		if err := removeIfExists(l.fs, join(l.dir, indexName(o))); err != nil {
			return err
		}
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return fmt.Errorf("logstore: fsync directory %s: %w", l.dir, err)
	}
	l.log.Info("finished a cleaner swap a crash interrupted", "segment", segmentName(sw.base), "replaced", len(sw.olds))
	return nil
}

func removeIfExists(fsys FS, name string) error {
	if err := fsys.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("logstore: remove %s: %w", name, err)
	}
	return nil
}

// removeLeftoverCleaned removes .cleaned files no pending swap refers to: a
// clean that a crash or an error stopped before its commit.
func (l *Log) removeLeftoverCleaned() error {
	names, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("logstore: list %s: %w", l.dir, err)
	}
	removed := false
	for _, n := range names {
		if strings.HasSuffix(n, cleanedSuffix) {
			if err := removeIfExists(l.fs, join(l.dir, n)); err != nil {
				return err
			}
			removed = true
		}
	}
	if removed {
		return l.fs.SyncDir(l.dir)
	}
	return nil
}

// fileHolds reports whether name exists with exactly size bytes whose
// CRC-32C is sum.
func fileHolds(fsys FS, name string, size int64, sum uint32) (bool, error) {
	f, err := fsys.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("logstore: open %s: %w", name, err)
	}
	defer f.Close()
	if n, err := f.Size(); err != nil || n != size {
		return false, err
	}
	var crc uint32
	buf := make([]byte, 1<<20)
	for pos := int64(0); pos < size; {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-pos)], pos)
		crc = crc32.Update(crc, castagnoli, buf[:n])
		pos += int64(n)
		if err != nil && !(errors.Is(err, io.EOF) && pos == size) {
			return false, fmt.Errorf("logstore: read %s: %w", name, err)
		}
	}
	return crc == sum, nil
}

// swapIn replaces the sealed segments olds, which must still be in the log,
// by seg, whose bytes are in the fsynced file cleanedPath (CRC-32C sum),
// open as f, which swapIn takes over. It reports false, having removed the
// file, when the log changed under the clean (retention, truncation, close)
// so the swap no longer applies. cleanMu must be held; st is the cleaner
// state to commit with the swap.
func (l *Log) swapIn(olds []*segment, seg *segment, f File, cleanedPath string, sum uint32, st cleanerState) (bool, error) {
	// ckptMu keeps retention, DeleteBefore, Truncate and Close out until
	// the swap is finished; appends and reads go on except for the moment
	// the segment list changes.
	l.ckptMu.Lock()
	defer l.ckptMu.Unlock()
	l.mu.RLock()
	at := -1
	if !l.closed {
		for i, s := range l.segs[:len(l.segs)-1] {
			if s == olds[0] {
				at = i
				break
			}
		}
	}
	still := at >= 0 && at+len(olds) < len(l.segs)
	for i := 0; still && i < len(olds); i++ {
		still = l.segs[at+i] == olds[i]
	}
	l.mu.RUnlock()
	if !still {
		f.Close()
		return false, removeIfExists(l.fs, cleanedPath)
	}
	// The rename below gives the first old segment's path to the new
	// segment, while readers may still read the old one until the segment
	// list changes: its file is held open across the change, because a
	// reopen by path would find the new bytes (filecache.go).
	if _, _, err := olds[0].f.pin(); err != nil {
		f.Close()
		return false, errors.Join(err, removeIfExists(l.fs, cleanedPath))
	}
	defer olds[0].f.unpin(false, 0, false)
	bases := make([]int64, len(olds))
	for i, o := range olds {
		bases[i] = o.base
	}
	st.swap = &pendingSwap{base: seg.base, size: seg.size, sum: sum, olds: bases}
	if err := l.writeCleanerStateLocked(st); err != nil {
		f.Close()
		return false, errors.Join(err, removeIfExists(l.fs, cleanedPath))
	}
	committed := st
	committed.swap = nil

	// Readers and appends use open files, not names, so the rename needs
	// only ckptMu; mu is held just to switch the segment list (ckptMu keeps
	// out everything but rolls, which append to it).
	if err := l.fs.Rename(cleanedPath, seg.path); err != nil {
		f.Close()
		// Nothing old was touched: abandon the swap.
		return false, errors.Join(fmt.Errorf("logstore: rename %s: %w", cleanedPath, err), removeIfExists(l.fs, cleanedPath), l.writeCleanerStateLocked(committed))
	}
	// Only now that the path names the new file may the cache reopen it.
	seg.f = l.cfg.Files.adopt(l.fs, seg.path, l.urgeSync, f)
	l.mu.Lock()
	l.segs = append(l.segs[:at:at], append([]*segment{seg}, l.segs[at+len(olds):]...)...)
	l.mu.Unlock()
	for _, o := range olds {
		o.f.Close() // the first closes when the deferred unpin releases it
	}
	if swapFault == swapRemovesOldFirst {
		for _, o := range olds[1:] {
			l.fs.Remove(o.path)
		}
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		// Whether the rename is durable is unknown, so the old segments
		// must stay until recovery decides; a directory fsync that failed
		// may have dropped other changes too (fsyncgate): stop writing.
		l.mu.Lock()
		l.poisonLocked(fmt.Errorf("fsync directory %s after a cleaner swap: %w", l.dir, err))
		l.mu.Unlock()
		return true, *l.poison.Load()
	}
	for i, o := range olds {
		if i > 0 {
			if err := removeIfExists(l.fs, o.path); err != nil {
				return true, err
			}
		}
		if err := removeIfExists(l.fs, join(l.dir, indexName(o.base))); err != nil {
			return true, err
		}
	}
	if err := l.cfg.Disk.Do(func() error { return writeFileAtomic(l.fs, l.dir, indexName(seg.base), seg.encodeIndex()) }); err != nil {
		// The removals above are not yet durable either; the pending swap
		// tells recovery to finish them.
		return true, fmt.Errorf("logstore: write index of %s: %w", seg.path, noSpace(err))
	}
	return true, l.cfg.Disk.Do(func() error { return l.writeCleanerStateLocked(committed) })
}

// pendingSwapView returns the segment bases as the next start will see them
// once it has dealt with a swap a crash interrupted, and, when the new
// segment is still named .cleaned, the file that holds it. It writes
// nothing (Inspect).
func pendingSwapView(fsys FS, dir string, bases []int64) ([]int64, map[int64]string, error) {
	b, err := readWholeFile(fsys, join(dir, cleanerStateName), 1<<20)
	if errors.Is(err, fs.ErrNotExist) {
		return bases, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("logstore: read cleaner state: %w", err)
	}
	st, err := decodeCleanerState(b)
	if err != nil || st.swap == nil {
		return bases, nil, nil
	}
	sw := st.swap
	cleaned := join(dir, cleanedName(sw.base))
	inCleaned, err := fileHolds(fsys, cleaned, sw.size, sw.sum)
	if err != nil {
		return nil, nil, err
	}
	inLive, err := fileHolds(fsys, join(dir, segmentName(sw.base)), sw.size, sw.sum)
	if err != nil || (!inCleaned && !inLive) {
		return bases, nil, err
	}
	gone := map[int64]bool{}
	for _, o := range sw.olds[1:] {
		gone[o] = true
	}
	var out []int64
	for _, b := range bases {
		if !gone[b] {
			out = append(out, b)
		}
	}
	if inCleaned {
		return out, map[int64]string{sw.base: cleaned}, nil
	}
	return out, nil, nil
}

// FinishPendingSwap finishes or rolls back a cleaner swap a crash
// interrupted in the log in dir, as opening it would; for tools that work
// on a stopped broker's files.
func FinishPendingSwap(fsys FS, dir string) error {
	l := &Log{fs: fsys, dir: dir, log: slog.New(slog.DiscardHandler)}
	return l.recoverCleaner()
}
