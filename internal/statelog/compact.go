package statelog

import (
	"context"
	"sync"
)

// Compact rewrites the owner's live state as a snapshot at the log end,
// waits until the snapshot is durable, then deletes the log below it. It
// does nothing (false, nil) unless the log holds more records since its last
// snapshot than max(2 × Config.Live(), Config.CompactRecords). Compactions
// run one at a time: a Compact called during another waits for it, so once
// Compact returns the log is compacted if it was due.
//
// owner is the lock that orders the owner's appends with its state changes.
// Compact holds it while it decides and while write adds the snapshot's
// records (write runs with it held and must not take it), and releases it
// before waiting for the fsync and deleting, so appends go on meanwhile.
// An owner without one such lock (per-key locks) passes a lock of its own
// and locks each key in write while it adds that key's records.
//
// A crash at any point loses nothing: the snapshot only repeats what the
// records before it say, and nothing is deleted before it is durable.
func (l *Log) Compact(owner sync.Locker, write func(*Snapshot)) (bool, error) {
	l.compactMu.Lock()
	defer l.compactMu.Unlock()
	owner.Lock()
	l.mu.Lock()
	before := l.records
	l.mu.Unlock()
	if !l.due(before) {
		owner.Unlock()
		return false, nil
	}
	start := l.log.EndOffset()
	s := &Snapshot{l: l}
	write(s)
	s.flush()
	l.mu.Lock()
	if s.err == nil {
		// The snapshot replaces everything before it; appends made by
		// others meanwhile (an owner with per-key locks) stay counted.
		l.records += s.n - before
	} else {
		l.records += s.n
	}
	l.checkAt = l.records
	l.mu.Unlock()
	owner.Unlock()
	if s.err != nil {
		return false, s.err
	}
	if s.n > 0 {
		if err := l.log.WaitDurable(context.Background(), s.end); err != nil {
			return false, err
		}
	}
	if err := l.deleteBefore(start); err != nil {
		return false, err
	}
	l.logger.Debug("compacted", "log", l.cfg.Name, "snapshot_records", s.n, "start", start)
	return true, nil
}

// Snapshot collects the records of one compaction and appends them in
// batches as they fill up.
type Snapshot struct {
	l      *Log
	kind   Batch
	recs   []Record
	landed []func(pos int64)
	bytes  int
	n      int   // records appended
	end    int64 // log end after the last appended batch
	err    error // the first failure; later Adds do nothing
}

// Add adds r to the snapshot, framed as b (records of different framing
// never share a batch). landed, if not nil, is called with r's log position
// once its batch is appended, still under the owner's lock, for owners
// that remember where records are (the group coordinator compares the
// positions of a committed and a pending offset).
func (s *Snapshot) Add(b Batch, r Record, landed func(pos int64)) {
	if s.err != nil {
		return
	}
	if len(s.recs) > 0 && b != s.kind {
		s.flush()
	}
	s.kind = b
	s.recs = append(s.recs, r)
	s.landed = append(s.landed, landed)
	s.bytes += len(r.Key) + len(r.Value)
	if len(s.recs) >= maxSnapshotBatchRecords || s.bytes >= maxSnapshotBatchBytes {
		s.flush()
	}
}

// Err is the first append failure of the snapshot; Compact returns it too.
func (s *Snapshot) Err() error { return s.err }

func (s *Snapshot) flush() {
	if s.err != nil || len(s.recs) == 0 {
		return
	}
	info, err := s.l.log.Append(encodeBatch(s.kind, s.recs, s.l.cfg.Now()))
	if err != nil {
		s.err = err
		return
	}
	for i, landed := range s.landed {
		if landed != nil {
			landed(info.BaseOffset + int64(i))
		}
	}
	s.n += len(s.recs)
	s.end = info.LastOffset + 1
	s.recs, s.landed, s.bytes = s.recs[:0], s.landed[:0], 0
}

// deleteBefore deletes the log below start one segment at a time, each
// removal synced before the next: logstore.Log.DeleteBefore removes all the
// segments below its offset before one directory sync, and a power loss in
// between can keep an older segment while losing a newer one, a gap that
// logstore.Open refuses as corruption.
func (l *Log) deleteBefore(start int64) error {
	for _, base := range l.log.SegmentBases() {
		if base >= start {
			break
		}
		if err := l.log.DeleteBefore(base); err != nil {
			return err
		}
	}
	return l.log.DeleteBefore(start)
}
