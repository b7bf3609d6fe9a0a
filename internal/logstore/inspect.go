package logstore

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Inspection is what Inspect found in a log directory, without changing it.
type Inspection struct {
	Dir           string
	Segments      int
	Bytes         int64
	Batches       int
	StartOffset   int64 // first offset in the first segment
	EndOffset     int64 // offset after the last valid batch
	RecoveryPoint int64 // from the checkpoint; -1 when there is none
	// Leftovers counts segments below the recorded log start, left by a
	// deletion a crash interrupted; the next start removes them.
	Leftovers int
	// Damage is the first invalid batch, nil when every batch validates.
	Damage *Damage
}

// Damage locates the first invalid batch of a log and what lies after it.
type Damage struct {
	Segment  string // file holding it
	Position int64  // byte position in that file
	Offset   int64  // offset the batch should have started at
	Reason   string
	// BelowRecoveryPoint: the damaged data had been fsynced, so it was
	// acknowledged; Open refuses such a log instead of truncating it.
	BelowRecoveryPoint bool
	// What truncating to the last valid batch drops: the bytes after
	// Position in the damaged segment and every later segment.
	DropBytes    int64
	DropSegments []string
	// LastKnownOffset is the highest offset the dropped segments' names
	// claim: offsets from Offset on are lost with them (the records beyond
	// the damage cannot be counted, because they cannot be read).
	LastKnownOffset int64
}

// Inspect validates every batch of every segment in dir (CRC, offsets) and
// reports what it finds. It opens files read-only and writes nothing, so an
// operator can run it against a broker's data before deciding anything.
//
// points is the data directory's shared recovery points (LoadRecoveryPoints;
// the zero value when the log has none): the recovery point is the log's
// checkpoint advanced by them, as Open sees it.
func Inspect(fsys FS, dir string, points RecoveryPoints) (Inspection, error) {
	in := Inspection{Dir: dir, RecoveryPoint: -1}
	names, err := fsys.ReadDir(dir)
	if err != nil {
		return in, fmt.Errorf("logstore: list %s: %w", dir, err)
	}
	var bases []int64
	for _, n := range names {
		if b, ok := parseSegmentName(n, ".log"); ok {
			bases = append(bases, b)
		}
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	// A cleaner swap a crash interrupted: see the segments as the next
	// start will once it has finished or rolled it back.
	bases, cleanedAs, err := pendingSwapView(fsys, dir, bases)
	if err != nil {
		return in, err
	}
	if ck, gen, ok, err := readCheckpoint(fsys, dir); err == nil && ok {
		in.RecoveryPoint = ck.recovery
		if r, ok := points.For(dir, gen); ok && r > ck.recovery {
			in.RecoveryPoint = r
		}
		// Segments wholly below the recorded log start are leftovers of a
		// deletion a crash interrupted; a start removes them.
		keep := 0
		for i, b := range bases {
			if b <= ck.start {
				keep = i
			}
		}
		in.Leftovers = keep
		bases = bases[keep:]
	}
	in.Segments = len(bases)
	if len(bases) > 0 {
		in.StartOffset, in.EndOffset = bases[0], bases[0]
	}
	for i, base := range bases {
		path := join(dir, segmentName(base))
		if p, ok := cleanedAs[base]; ok {
			path = p
		}
		f, err := fsys.Open(path)
		if err != nil {
			return in, fmt.Errorf("logstore: open %s: %w", path, err)
		}
		seg := &segment{base: base, path: path, maxTS: -1}
		size, err := f.Size()
		if err != nil {
			f.Close()
			return in, fmt.Errorf("logstore: size of %s: %w", path, err)
		}
		in.Bytes += size
		res, err := seg.scan(f, size, 1<<30)
		f.Close()
		if err != nil {
			return in, fmt.Errorf("logstore: read %s: %w", path, err)
		}
		in.Batches += res.batches
		switch {
		case res.badErr == nil && i > 0 && base != in.EndOffset:
			res.badErr = fmt.Errorf("segment starts at offset %d but the one before ends at %d", base, in.EndOffset)
			res.valid = 0
		case res.badErr == nil:
			in.EndOffset = seg.next
			continue
		default:
			in.EndOffset = seg.next
		}
		d := &Damage{
			Segment: path, Position: res.valid, Offset: in.EndOffset, Reason: res.badErr.Error(),
			DropBytes:       size - res.valid,
			LastKnownOffset: in.EndOffset,
		}
		d.BelowRecoveryPoint = in.RecoveryPoint > d.Offset || i < len(bases)-1
		for _, later := range bases[i+1:] {
			p := join(dir, segmentName(later))
			d.DropSegments = append(d.DropSegments, p)
			if sz, err := fsys.Stat(p); err == nil {
				d.DropBytes += sz
				in.Bytes += sz
			}
			d.LastKnownOffset = max(d.LastKnownOffset, later)
		}
		in.Damage = d
		break
	}
	return in, nil
}

// RepairReport says what Repair removed and where it put it.
type RepairReport struct {
	Before     Inspection
	Quarantine string   // directory holding everything removed from the log
	Moved      []string // files moved there whole, and the tail file cut from the damaged segment
	NewEnd     int64    // the log's end offset after the repair
}

// Repair truncates the log in dir to its last valid batch, for an operator
// who has decided that the data after the damage is lost (Open refuses a log
// damaged below its recovery point and never does this by itself). Nothing
// is deleted: the damaged tail of the segment and every later segment are
// moved into quarantine, a directory outside the log, so they can still be
// examined. The checkpoint is rewritten to the new end. It returns the
// inspection it acted on; a log without damage is left untouched.
func Repair(fsys FS, dir, quarantine string, points RecoveryPoints) (RepairReport, error) {
	if err := FinishPendingSwap(fsys, dir); err != nil {
		return RepairReport{}, err
	}
	in, err := Inspect(fsys, dir, points)
	rep := RepairReport{Before: in, Quarantine: quarantine, NewEnd: in.EndOffset}
	if err != nil || in.Damage == nil {
		return rep, err
	}
	d := in.Damage
	if err := fsys.MkdirAll(quarantine); err != nil {
		return rep, fmt.Errorf("logstore: create %s: %w", quarantine, err)
	}
	// Later segments first, newest first, so an interrupted repair leaves a
	// log that still ends cleanly at a segment boundary.
	for i := len(d.DropSegments) - 1; i >= 0; i-- {
		p := d.DropSegments[i]
		if err := moveFile(fsys, p, join(quarantine, filepath.Base(p))); err != nil {
			return rep, err
		}
		rep.Moved = append(rep.Moved, p)
		idx := strings.TrimSuffix(p, ".log") + ".index"
		if err := fsys.Remove(idx); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return rep, fmt.Errorf("logstore: remove %s: %w", idx, err)
		}
	}
	// The damaged tail: copy it out, make the copy durable, then cut it.
	src, err := fsys.OpenReadWrite(d.Segment)
	if err != nil {
		return rep, fmt.Errorf("logstore: open %s: %w", d.Segment, err)
	}
	defer src.Close()
	size, err := src.Size()
	if err != nil {
		return rep, err
	}
	if size > d.Position {
		tail := make([]byte, size-d.Position)
		if _, err := readFull(src, tail, d.Position); err != nil {
			return rep, fmt.Errorf("logstore: read tail of %s: %w", d.Segment, err)
		}
		tailName := join(quarantine, fmt.Sprintf("%s.from-byte-%d", filepath.Base(d.Segment), d.Position))
		if err := WriteFileAtomic(fsys, tailName, tail); err != nil {
			return rep, err
		}
		rep.Moved = append(rep.Moved, tailName)
		if err := src.Truncate(d.Position); err != nil {
			return rep, fmt.Errorf("logstore: truncate %s: %w", d.Segment, err)
		}
		if err := src.Sync(); err != nil {
			return rep, fmt.Errorf("logstore: fsync %s: %w", d.Segment, err)
		}
	}
	idx := strings.TrimSuffix(d.Segment, ".log") + ".index"
	if err := fsys.Remove(idx); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return rep, fmt.Errorf("logstore: remove %s: %w", idx, err)
	}
	if err := fsys.SyncDir(dir); err != nil {
		return rep, err
	}
	ck, gen, ok, _ := readCheckpoint(fsys, dir)
	start := in.StartOffset
	if ok && ck.start > start && ck.start <= d.Offset {
		start = ck.start
	}
	// A new generation, one no shared entry names (even when the old
	// checkpoint was unreadable): the shared file's advances of the old
	// checkpoint vouch for offsets the repair just cut.
	gen = max(gen+1, uint64(time.Now().UnixNano()))
	if err := writeFileAtomic(fsys, dir, checkpointName, encodeCheckpoint(checkpoint{recovery: d.Offset, start: start}, gen)); err != nil {
		return rep, err
	}
	rep.NewEnd = d.Offset
	return rep, nil
}

// moveFile renames src to dst durably (both directories synced).
func moveFile(fsys FS, src, dst string) error {
	if err := fsys.Rename(src, dst); err != nil {
		return fmt.Errorf("logstore: move %s to %s: %w", src, dst, err)
	}
	if err := fsys.SyncDir(filepath.Dir(dst)); err != nil {
		return err
	}
	return fsys.SyncDir(filepath.Dir(src))
}
