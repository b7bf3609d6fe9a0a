package logstore

import (
	"context"
	"fmt"
	"time"
)

// syncLoop is the group commit: one goroutine fsyncs the active segment
// whenever bytes were appended since the last fsync. Every append and waiter
// that arrives while an fsync runs is covered by the next one, so N
// concurrent durable appenders cost about one fsync per round, not N.
//
// Appends nobody waits for (acks=1) are synced too, so that the durable
// offset, which is what consumers may read, keeps up; but that sync is put
// off by up to BackgroundSyncDelay to gather more bytes per fsync and keep
// fsyncs from contending with a stream of writes. A durable waiter cuts the
// delay short.
func (l *Log) syncLoop() {
	defer close(l.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-l.quit:
			return
		case <-l.urgent:
		case <-l.kick:
			timer.Reset(l.cfg.BackgroundSyncDelay)
			select {
			case <-l.quit:
				return
			case <-l.urgent:
				timer.Stop()
			case <-timer.C:
			}
		}
		for l.syncOnce() {
		}
		l.maybeCheckpoint()
	}
}

// syncOnce fsyncs up to the current end if anything is not yet durable and
// reports whether it did (so the loop tries again for later appends).
func (l *Log) syncOnce() bool {
	if l.poison.Load() != nil {
		return false
	}
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return false
	}
	seg := l.active()
	target := seg.next
	pos := segmentPos{base: seg.base, size: seg.size, next: seg.next, maxTS: seg.maxTS}
	l.mu.RUnlock()
	if target <= l.durable.Load() {
		return false
	}
	// Bytes written after target was read may ride along in this fsync;
	// they are claimed by the next round.
	obs := l.cfg.Disk.syncObserver()
	var began time.Time
	if obs != nil {
		began = time.Now()
	}
	if err := l.cfg.Disk.syncLogFile(seg.f, l.turn); err != nil {
		l.mu.Lock()
		l.poisonLocked(fmt.Errorf("fsync %s: %w", seg.path, err))
		l.mu.Unlock()
		return false
	}
	l.waitMu.Lock()
	covered := pos.size
	if pos.base == l.durablePos.base {
		covered -= l.durablePos.size
	}
	if pos.base >= l.durablePos.base {
		l.durablePos = pos
	}
	l.waitMu.Unlock()
	// Observe before releasing the waiters: once an acknowledgement is
	// out, the fsync that made it durable is counted (a test or a scrape
	// right after an acks=all produce sees it).
	if obs != nil {
		(*obs)(time.Since(began), max(covered, 0))
	}
	l.advanceDurable(target)
	return true
}

// SyncObserver is told of every group-commit fsync of a log's active
// segment: how long fsync(2) took and how many bytes it made durable (the
// batch it covered). It runs on the log's syncer goroutine, between
// fsyncs: it must be cheap and never block (a histogram's Observe).
type SyncObserver func(took time.Duration, bytes int64)

// ObserveSyncs makes every log opened with d as its Config.Disk report its
// fsyncs to o, so one observer sees all of a data directory's logs
// (partitions and the coordinators' state logs). nil stops the reports.
// Safe to call at any time; logs pick it up at their next fsync.
func (d *Disk) ObserveSyncs(o SyncObserver) {
	if d == nil {
		return
	}
	if o == nil {
		d.syncObs.Store(nil)
		return
	}
	d.syncObs.Store(&o)
}

func (d *Disk) syncObserver() *SyncObserver {
	if d == nil {
		return nil
	}
	return d.syncObs.Load()
}

// maybeCheckpoint persists the recovery point at most once per
// CheckpointInterval, so that damage found below it on the next open is
// reported as corruption rather than truncated as a torn tail. With a
// shared recovery-point file (recoverypoints.go) the advance is recorded
// there, and one write of that file per interval covers every log of the
// data directory.
func (l *Log) maybeCheckpoint() {
	l.ckptMu.Lock()
	defer l.ckptMu.Unlock()
	now := l.cfg.Now()
	c := checkpoint{recovery: l.durable.Load(), start: l.start.Load()}
	if c == l.lastCkpt || now.Sub(l.lastCkptTime) < l.cfg.CheckpointInterval {
		return
	}
	l.mu.RLock()
	closed := l.closed
	l.mu.RUnlock()
	if closed || l.poison.Load() != nil {
		return
	}
	if l.shared != nil && c.start == l.lastCkpt.start {
		// Only the recovery point moved: that is what the shared file is
		// for (a moved log start was written to the log's own file when it
		// moved).
		l.shared.record(l.sharedKey, l.ckptGen, c.recovery)
		l.lastCkpt, l.lastCkptTime = c, now
		l.shared.maybeFlush(now, l.cfg.CheckpointInterval)
	} else if err := l.writeCheckpointLocked(c); err != nil {
		// The checkpoint only sharpens recovery's judgement; losing one is
		// not data loss, so report it without poisoning the log.
		l.log.Warn("checkpoint write failed", "err", err)
		return
	}
	// Every ActiveIndexInterval bytes, persist the index of the active
	// segment's durable prefix, so that a start after a crash scans only
	// what came after it.
	l.waitMu.Lock()
	pos := l.durablePos
	l.waitMu.Unlock()
	l.mu.RLock()
	defer l.mu.RUnlock()
	if seg := l.active(); !l.closed && seg.base == pos.base && pos.next <= c.recovery && pos.size-l.indexedSizeLocked(seg) >= l.cfg.ActiveIndexInterval {
		l.writeActiveIndexLocked(seg, pos)
	}
}

// urgeSync asks the syncer to fsync now, without BackgroundSyncDelay: the
// file cache calls it when an unsynced write keeps a file open beyond its
// limit.
func (l *Log) urgeSync() {
	select {
	case l.urgent <- struct{}{}:
	default:
	}
}

// WaitDurable blocks until every offset below end is fsynced, the log fails,
// or ctx ends. Concurrent waiters share fsyncs.
func (l *Log) WaitDurable(ctx context.Context, end int64) error {
	for {
		if l.durable.Load() >= end {
			return nil
		}
		// Take the channel before looking at the state it announces: a
		// poisoning or an advance after this point closes ch; one before
		// it is seen by the checks below. (Checking the poison before
		// taking ch left a waiter asleep on the channel that replaced the
		// one the poisoning closed, until its context ended.)
		l.waitMu.Lock()
		ch := l.advanced
		l.waitMu.Unlock()
		l.mu.RLock()
		closed, appended := l.closed, l.active().next
		l.mu.RUnlock()
		if l.durable.Load() >= end {
			return nil
		}
		if p := l.poison.Load(); p != nil {
			return *p
		}
		if closed {
			return ErrClosed
		}
		if end > appended {
			return fmt.Errorf("logstore: cannot wait for offset %d: the log ends at %d", end, appended)
		}
		select {
		case l.urgent <- struct{}{}:
		default:
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
