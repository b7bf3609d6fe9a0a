package partition

import (
	"context"
	"fmt"
	"time"

	"github.com/idem-dev/idem/internal/logstore"
)

// Compaction of a partition whose topic has cleanup.policy=compact: the
// partition knows what the log cleaner must respect (the last stable offset,
// the aborted transactions, the producers whose last batch must stay) and
// hands it to logstore's Cleaner.

// CleanConfig is the compaction policy of the partition's topic.
type CleanConfig struct {
	MinCompactionLag time.Duration // min.compaction.lag.ms
	DeleteRetention  time.Duration // delete.retention.ms
}

// CleaningState measures how much of the log a clean could rewrite.
func (p *Partition) CleaningState(minLag time.Duration) logstore.CleaningState {
	return p.log.CleaningState(p.LastStableOffset(), minLag)
}

// Clean runs one cleaning round with c (see logstore.Cleaner.Clean). Nothing
// at or above the last stable offset is touched; records of aborted
// transactions go; each live producer keeps its last batch, so that its
// sequence survives a restart that replays the log.
//
// Nor is anything the last producer snapshot does not cover: a restart
// rebuilds producer state from the snapshot and the log after it, and the
// cleaner removes a transaction's marker once its batches are gone; a
// snapshot taken before those batches went would still hold the
// transaction open, with no marker left after it to close it. Callers
// that want the clean to reach the end of the log call Snapshot first.
func (p *Partition) Clean(ctx context.Context, c *logstore.Cleaner, cfg CleanConfig) (logstore.CleanStats, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return logstore.CleanStats{}, ErrClosed
	}
	opts := logstore.CleanOptions{
		StableOffset:         min(p.log.DurableOffset(), max(p.snapEnd, 0)),
		MinCompactionLag:     cfg.MinCompactionLag,
		DeleteRetention:      cfg.DeleteRetention,
		ProducerLastOffsets:  map[int64]int64{},
		ProducerMarkerEpochs: map[int64]int16{},
	}
	for _, first := range p.ongoing {
		opts.StableOffset = min(opts.StableOffset, first)
	}
	for pid, e := range p.producers {
		switch n := len(e.Batches); {
		case p.expired(e):
		case n > 0:
			opts.ProducerLastOffsets[pid] = e.Batches[n-1].LastOffset
		default:
			opts.ProducerMarkerEpochs[pid] = e.Epoch
		}
	}
	for _, a := range p.aborted {
		opts.Aborted = append(opts.Aborted, logstore.AbortedRange{ProducerID: a.ProducerID, FirstOffset: a.FirstOffset, LastOffset: a.LastOffset})
	}
	p.mu.Unlock()
	return c.Clean(ctx, p.log, opts)
}

// RequireKeys refuses a batch with a record that has no key, as Kafka does
// for compacted topics (INVALID_RECORD).
func RequireKeys(batch []byte) error {
	if _, err := logstore.ParseBatch(batch); err != nil {
		return fmt.Errorf("%w: %v", ErrCorruptBatch, err)
	}
	if err := logstore.CheckKeys(batch); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRecord, err)
	}
	return nil
}
