package logstore

import (
	"errors"
	"fmt"
	"io/fs"
)

// Truncate removes every batch whose last offset is >= end, so the log ends
// at or before end (a batch straddling end goes whole, as in Kafka).
func (l *Log) Truncate(end int64) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.ckptMu.Lock()
	defer l.ckptMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if p := l.poison.Load(); p != nil {
		return *p
	}
	if end >= l.active().next {
		return nil
	}
	start := l.start.Load()
	if end < start {
		return fmt.Errorf("%w: cannot truncate to %d below the log start %d", ErrOffsetOutOfRange, end, start)
	}
	// Lower the recovery point first: a crash half way through must not
	// find a checkpoint that vouches for bytes about to be removed.
	if err := l.writeCheckpointLocked(checkpoint{recovery: min(end, l.lastCkpt.recovery), start: start}); err != nil {
		return err
	}
	i := l.segmentFor(end)
	for _, seg := range l.segs[i+1:] {
		if err := l.removeSegmentFiles(seg); err != nil {
			return err
		}
	}
	l.segs = l.segs[:i+1]
	seg := l.segs[i]
	pos, err := l.findBatchLocked(seg, end)
	if err != nil {
		return err
	}
	if err := seg.f.Truncate(pos); err != nil {
		l.poisonLocked(fmt.Errorf("truncate %s: %w", seg.path, err))
		return *l.poison.Load()
	}
	if _, err := seg.scan(seg.f, pos, l.cfg.IndexIntervalBytes); err != nil {
		return err
	}
	if err := seg.f.Sync(); err != nil {
		l.poisonLocked(fmt.Errorf("fsync %s: %w", seg.path, err))
		return *l.poison.Load()
	}
	// The segment is active again; its old persisted index no longer applies.
	if err := l.fs.Remove(join(l.dir, indexName(seg.base))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return err
	}
	seg.rollTime = l.cfg.Now().Add(l.cfg.RollInterval)
	l.durable.Store(seg.next)
	return l.writeCheckpointLocked(checkpoint{recovery: seg.next, start: start})
}

// DeleteBefore advances the log start offset to offset (Kafka's
// DeleteRecords) and removes segments that lie wholly below it.
func (l *Log) DeleteBefore(offset int64) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.ckptMu.Lock()
	defer l.ckptMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if end := l.active().next; offset > end {
		return fmt.Errorf("%w: cannot delete up to %d past the end %d", ErrOffsetOutOfRange, offset, end)
	}
	if offset <= l.start.Load() {
		return nil
	}
	if err := l.writeCheckpointLocked(checkpoint{recovery: l.lastCkpt.recovery, start: offset}); err != nil {
		return err
	}
	l.start.Store(offset)
	return l.dropSegmentsBelowStartLocked()
}

// EnforceRetention deletes sealed segments that are older than RetentionTime
// or that put the log over RetentionBytes. The active segment always stays.
func (l *Log) EnforceRetention() error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.ckptMu.Lock()
	defer l.ckptMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	var total int64
	for _, s := range l.segs {
		total += s.size
	}
	cutoff := int64(-1)
	if l.cfg.RetentionTime > 0 {
		cutoff = l.cfg.Now().Add(-l.cfg.RetentionTime).UnixMilli()
	}
	newStart := l.start.Load()
	for _, seg := range l.segs[:len(l.segs)-1] {
		expired := cutoff >= 0 && seg.maxTS >= 0 && seg.maxTS < cutoff
		oversize := l.cfg.RetentionBytes > 0 && total-seg.size >= l.cfg.RetentionBytes
		if !expired && !oversize {
			break
		}
		total -= seg.size
		newStart = max(newStart, seg.next)
	}
	if newStart == l.start.Load() {
		return nil
	}
	if err := l.writeCheckpointLocked(checkpoint{recovery: l.lastCkpt.recovery, start: newStart}); err != nil {
		return err
	}
	l.start.Store(newStart)
	return l.dropSegmentsBelowStartLocked()
}

// dropSegmentsBelowStartLocked removes sealed segments that end at or below
// the log start offset. Callers hold mu (and syncMu once the syncer runs).
func (l *Log) dropSegmentsBelowStartLocked() error {
	start := l.start.Load()
	n := 0
	for n < len(l.segs)-1 && l.segs[n].next <= start {
		if err := l.removeSegmentFiles(l.segs[n]); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return nil
	}
	l.segs = append(l.segs[:0:0], l.segs[n:]...)
	return l.fs.SyncDir(l.dir)
}

func (l *Log) removeSegmentFiles(seg *segment) error {
	if err := seg.f.Close(); err != nil {
		return fmt.Errorf("logstore: close %s: %w", seg.path, err)
	}
	seg.f = nil
	if err := l.fs.Remove(seg.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("logstore: remove %s: %w", seg.path, err)
	}
	if err := l.fs.Remove(join(l.dir, indexName(seg.base))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("logstore: remove index of %s: %w", seg.path, err)
	}
	return nil
}
