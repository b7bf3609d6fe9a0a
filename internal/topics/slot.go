package topics

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/idem-dev/idem/internal/catalog"
	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/partition"
)

// Errors of partition lookups (the Kafka layer maps them to error codes).
var (
	// ErrUnknownPartition: no such topic or partition. It wraps
	// catalog.ErrUnknownTopic so that both map to UNKNOWN_TOPIC_OR_PARTITION.
	ErrUnknownPartition = fmt.Errorf("%w or partition", catalog.ErrUnknownTopic)
	// ErrOffline: the partition exists but its storage failed to open (or
	// failed since); it is not served until it is repaired or the cause goes
	// away. Everything else keeps being served (KAFKA_STORAGE_ERROR).
	ErrOffline = errors.New("topics: partition offline")
	// ErrLoading: the broker is still opening the partition after a start
	// (retriable: clients ask again).
	ErrLoading = errors.New("topics: partition still loading")
)

// slotState is where a partition is in its life after a start.
type slotState int

const (
	queued  slotState = iota // waiting for a loader
	opening                  // a loader or a request is opening it
	online                   // open and served
	offline                  // its storage failed; err says why
)

// slot is one partition of a topic: open, offline with the reason, or on its
// way. Partitions are opened in the background after a start, so a slot is
// created before its partition is.
type slot struct {
	topic catalog.Topic
	index int32

	mu     sync.Mutex // guards state, p, err, ready and closed
	state  slotState
	p      *partition.Partition
	err    error
	ready  chan struct{} // closed when the slot leaves queued/opening
	closed bool          // the topic was deleted or the manager closed: never reopen
}

func newSlot(t catalog.Topic, index int32) *slot {
	return &slot{topic: t, index: index, ready: make(chan struct{})}
}

// claim moves a queued slot to opening; it reports whether the caller won
// the right to open it.
func (s *slot) claim() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != queued {
		return false
	}
	s.state = opening
	return true
}

// settle records the outcome of an open and wakes waiters.
func (s *slot) settle(p *partition.Partition, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.state, s.err = offline, err
	} else {
		s.state, s.p, s.err = online, p, nil
	}
	select {
	case <-s.ready:
	default:
		close(s.ready)
	}
}

// get returns the partition if it is online, or why it is not.
func (s *slot) get() (*partition.Partition, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case online:
		if err := s.p.Err(); err != nil {
			// A log poisoned by a failed fsync refuses writes until restart.
			return s.p, fmt.Errorf("%w: %s-%d: %w", ErrOffline, s.topic.Name, s.index, err)
		}
		return s.p, nil
	case offline:
		return nil, fmt.Errorf("%w: %s-%d: %w", ErrOffline, s.topic.Name, s.index, s.err)
	default:
		return nil, fmt.Errorf("%w: %s-%d", ErrLoading, s.topic.Name, s.index)
	}
}

// wait blocks until the slot has settled, then returns what get returns.
func (s *slot) wait(ctx context.Context) (*partition.Partition, error) {
	s.mu.Lock()
	ready := s.ready
	s.mu.Unlock()
	select {
	case <-ready:
		return s.get()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// retriable reports whether an offline slot may come back by itself (a full
// disk, too many open files, a permission an operator fixes) rather than
// needing a repair (corruption below the recovery point).
func (s *slot) retriable() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == offline && !s.closed && !errors.Is(s.err, logstore.ErrCorrupt)
}

// reset makes an offline slot queued again for another attempt.
func (s *slot) reset() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != offline || s.closed {
		return false
	}
	s.state, s.err = opening, nil
	s.ready = make(chan struct{})
	return true
}

// close closes an online partition, waiting for an open in progress first;
// a slot nobody has started to open is settled as closed.
func (s *slot) close() error {
	s.mu.Lock()
	s.closed = true
	if s.state == queued {
		s.state, s.err = offline, ErrManagerClosed
		close(s.ready)
	}
	ready := s.ready
	s.mu.Unlock()
	<-ready
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == online {
		s.state, s.err = offline, partition.ErrClosed
		return s.p.Close()
	}
	return nil
}

// status reports the slot's state for health and metrics.
func (s *slot) status() (slotState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == online && s.p.Err() != nil {
		return offline, s.p.Err()
	}
	return s.state, s.err
}
