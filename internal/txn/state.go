package txn

import (
	"maps"
	"math"
	"slices"
	"sync"
	"time"
)

// State is a transaction's state; the values are Kafka's (TxnMetadataValue
// and DescribeTransactions use the same numbers and names).
type State int8

const (
	Empty             State = 0
	Ongoing           State = 1
	PrepareCommit     State = 2
	PrepareAbort      State = 3
	CompleteCommit    State = 4
	CompleteAbort     State = 5
	Dead              State = 6
	PrepareEpochFence State = 7
)

var stateNames = [...]string{"Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort", "Dead", "PrepareEpochFence"}

// String returns Kafka's name for the state (what ListTransactions and
// DescribeTransactions carry).
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "Unknown"
}

// ParseState is the inverse of String; ok is false for unknown names.
func ParseState(name string) (State, bool) {
	i := slices.Index(stateNames[:], name)
	return State(i), i >= 0
}

// validPrevious lists, for each state, the states it may be entered from
// (Kafka's TransactionState.validPreviousStates). Every transition the
// coordinator makes is checked against it, so a bug shows as a refused
// transition instead of a silently corrupted transaction. PrepareAbort from
// Empty and Complete* is transaction version 2's (KIP-890 part 2): an
// EndTxn(abort) with nothing open still bumps the epoch.
var validPrevious = map[State][]State{
	Empty:             {Empty, CompleteCommit, CompleteAbort},
	Ongoing:           {Empty, Ongoing, CompleteCommit, CompleteAbort},
	PrepareCommit:     {Ongoing},
	PrepareAbort:      {Ongoing, PrepareEpochFence, Empty, CompleteCommit, CompleteAbort},
	CompleteCommit:    {PrepareCommit},
	CompleteAbort:     {PrepareAbort},
	Dead:              {Empty, CompleteCommit, CompleteAbort},
	PrepareEpochFence: {Ongoing},
}

// CanTransition reports whether from → to is a transition of the state
// machine.
func CanTransition(from, to State) bool { return slices.Contains(validPrevious[to], from) }

// TopicPartition names a partition of a transaction.
type TopicPartition struct {
	Topic     string
	Partition int32
}

func cmpTP(a, b TopicPartition) int {
	switch {
	case a.Topic < b.Topic:
		return -1
	case a.Topic > b.Topic:
		return 1
	case a.Partition < b.Partition:
		return -1
	case a.Partition > b.Partition:
		return 1
	}
	return 0
}

// noEpoch is Kafka's RecordBatch.NO_PRODUCER_EPOCH.
const noEpoch int16 = -1

// epochExhausted reports whether no more epochs may be handed out for a
// producer id. One below the maximum, as in Kafka, so that a fence (timeout
// or InitProducerId while Ongoing) can still bump an epoch that was handed
// out.
func epochExhausted(e int16) bool { return e >= math.MaxInt16-1 }

// txnState is what one record of the log says about a transactional id. It is
// a value: transitions build a new one (cloning the sets) and install it only
// once its record is appended, so a failed append leaves memory unchanged.
type txnState struct {
	pid, lastPID     int64
	epoch, lastEpoch int16
	// nextPID is the producer id a prepared transaction version 2 completion
	// hands over to (the epoch was exhausted); -1 when none.
	nextPID int64
	// tv2: the transaction (the current or last one) was run with
	// transaction version 2 (KIP-890 part 2): EndTxn bumps the epoch.
	tv2        bool
	timeout    time.Duration
	state      State
	partitions map[TopicPartition]struct{}
	groups     map[string]struct{}
	start      time.Time // when the current transaction started; zero if none
	lastUpdate time.Time
}

func (s txnState) clone() txnState {
	s.partitions = maps.Clone(s.partitions)
	s.groups = maps.Clone(s.groups)
	return s
}

func (s txnState) sortedPartitions() []TopicPartition {
	out := slices.Collect(maps.Keys(s.partitions))
	slices.SortFunc(out, cmpTP)
	return out
}

func (s txnState) sortedGroups() []string {
	out := slices.Collect(maps.Keys(s.groups))
	slices.Sort(out)
	return out
}

// txnMeta is one transactional id in memory.
type txnMeta struct {
	id string
	s  txnState
	// busy is set while a record of this id is written but not yet durable:
	// the request that wrote it has not been answered, and no other state
	// change may start (ErrConcurrentTransactions).
	busy bool
	// settled is the state before the transition that set busy, and
	// hasSettled is false if that transition wrote the id's first record:
	// while busy, Describe and List show settled (or nothing), never a
	// state a power loss could still take back.
	settled    txnState
	hasSettled bool
	// done is non-nil while a completion goroutine writes this prepared
	// transaction's markers; it is closed when the Complete record is
	// appended (or the completion stops because the coordinator closes).
	done chan struct{}
	// appends counts VerifyHold holds: batches verified for this
	// transaction and not yet appended. A completion waits for them before
	// its first marker.
	appends sync.WaitGroup
}

// Info describes one transactional id (DescribeTransactions,
// ListTransactions, `idem txn`).
type Info struct {
	TransactionalID string
	ProducerID      int64
	ProducerEpoch   int16
	State           State
	Timeout         time.Duration
	// StartTime is when the current (or last) transaction started; zero if
	// none has since the last epoch bump.
	StartTime  time.Time
	LastUpdate time.Time
	Partitions []TopicPartition // sorted
	Groups     []string         // sorted
	// TransactionVersion is 2 when the transaction (the current or last
	// one) used KIP-890 part 2, else 1.
	TransactionVersion int8
}

// visible is the state Describe and List show: t's state unless a
// transition of it is still being made durable, then the one before (ok is
// false for t nil or an id whose first record is not yet durable).
func (t *txnMeta) visible() (s txnState, ok bool) {
	switch {
	case t == nil:
		return txnState{}, false
	case t.busy:
		return t.settled, t.hasSettled
	}
	return t.s, true
}

func (s txnState) info(id string) Info {
	return Info{
		TransactionalID: id,
		ProducerID:      s.pid,
		ProducerEpoch:   s.epoch,
		State:           s.state,
		Timeout:         s.timeout,
		StartTime:       s.start,
		LastUpdate:      s.lastUpdate,
		Partitions:      s.sortedPartitions(),
		Groups:          s.sortedGroups(),

		TransactionVersion: s.version(),
	}
}

// version is the transaction version the client used: 2 or 1.
func (s txnState) version() int8 {
	if s.tv2 {
		return 2
	}
	return 1
}
