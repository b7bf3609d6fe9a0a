package txnkit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Outcome is what the producer learnt about one transaction.
type Outcome int

const (
	Committed Outcome = iota // EndTxn(commit) answered success
	Aborted                  // aborted on purpose or after a failed produce, and the abort answered success
	Unknown                  // the outcome was never confirmed (timeout, lost connection, crash)
)

func (o Outcome) String() string { return [...]string{"committed", "aborted", "unknown"}[o] }

// History records every transaction of a Producer: its values and what the
// producer knows of its outcome. It is safe for concurrent use.
type History struct {
	mu       sync.Mutex
	values   map[int][]string
	outcomes map[int]Outcome
}

// NewHistory returns an empty History.
func NewHistory() *History {
	return &History{values: map[int][]string{}, outcomes: map[int]Outcome{}}
}

// Count counts the transactions with outcome o so far.
func (h *History) Count(o Outcome) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, got := range h.outcomes {
		if got == o {
			n++
		}
	}
	return n
}

// Producer runs back-to-back transactions, each writing perTxn values
// spread over partitions 0 and 1 of topic, committing about two in three.
// Before each transaction it calls before(i), which may inject a fault.
// Any error makes the transaction's outcome unknown (unless an abort is then
// confirmed for a transaction that was never asked to commit), and a client
// that reports a fatal error is replaced by a new instance with the same
// transactional id, which fences the old one. It runs until ctx ends or
// txns transactions were attempted.
func Producer(ctx context.Context, t testing.TB, seeds []string, topic, txnID string, txns int, h *History, before func(i int), extra ...kgo.Opt) {
	const perTxn = 4
	rng := rand.New(rand.NewPCG(uint64(len(txnID)), 7))
	newClient := func() *kgo.Client {
		opts := append([]kgo.Opt{
			kgo.SeedBrokers(seeds...),
			kgo.TransactionalID(txnID),
			kgo.TransactionTimeout(10 * time.Second),
			kgo.DefaultProduceTopic(topic),
			kgo.RecordPartitioner(kgo.ManualPartitioner()),
			kgo.RetryTimeout(30 * time.Second),
		}, extra...)
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			t.Fatalf("producer: %v", err)
		}
		return cl
	}
	cl := newClient()
	defer func() { cl.Close() }()
	for i := 0; i < txns && ctx.Err() == nil; i++ {
		if before != nil {
			before(i)
		}
		var vs []string
		for j := range perTxn {
			vs = append(vs, fmt.Sprintf("%d-%d", i, j))
		}
		wantCommit := rng.IntN(3) != 0
		h.mu.Lock()
		h.values[i] = vs
		h.outcomes[i] = Unknown
		h.mu.Unlock()
		if err := cl.BeginTransaction(); err != nil {
			t.Logf("txn %d: begin: %v; new client", i, err)
			cl.Close()
			cl = newClient()
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		// Ending gets its own context: when the run stops, the transaction
		// in flight is still resolved, so none is left open to hold a
		// partition's last stable offset back.
		ectx, ecancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
		var rs []*kgo.Record
		for j, v := range vs {
			rs = append(rs, &kgo.Record{Value: []byte(v), Partition: int32(j % 2)})
		}
		perr := cl.ProduceSync(pctx, rs...).FirstErr()
		cancel()
		var eerr error
		o := Unknown
		switch {
		case perr != nil:
			// The produce failed; its records may or may not be in the
			// log, so the transaction must not commit: abort it.
			eerr = cl.EndTransaction(ectx, kgo.TryAbort)
			if eerr == nil {
				o = Aborted
			}
		default:
			eerr = cl.EndTransaction(ectx, kgo.TransactionEndTry(wantCommit))
			switch {
			case eerr == nil && wantCommit:
				o = Committed
			case eerr == nil:
				o = Aborted
			default:
				// Unconfirmed: kgo wants a TryAbort before anything else;
				// whatever it answers, the first EndTxn may have committed.
				if aerr := cl.EndTransaction(ectx, kgo.TryAbort); aerr != nil {
					eerr = errors.Join(eerr, aerr)
				}
			}
		}
		ecancel()
		h.mu.Lock()
		h.outcomes[i] = o
		h.mu.Unlock()
		if perr != nil || eerr != nil {
			t.Logf("txn %d (commit=%v): produce: %v; end: %v → %v", i, wantCommit, perr, eerr, o)
		}
		if eerr != nil {
			// Start over with a new instance: it fences the old epoch, so
			// no late request of the old one can land.
			cl.Close()
			cl = newClient()
		}
	}
}

// CheckOutcomes reads topic with read_committed and checks what each
// transaction left: a committed one all its values, an aborted one none, an
// unknown one all or none (never torn), and no value twice.
func CheckOutcomes(t testing.TB, seeds []string, topic string, h *History) {
	t.Helper()
	h.mu.Lock()
	minValues := 0
	for i, o := range h.outcomes {
		if o == Committed {
			minValues += len(h.values[i])
		}
	}
	h.mu.Unlock()
	s := DrainCommitted(t, seeds, topic, minValues, 2*time.Second, 30*time.Second)
	s.mu.Lock()
	defer s.mu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	var lost, visibleAborts, torn, dups, unexpected []string
	for v, ps := range s.pos {
		if len(ps) > 1 {
			dups = append(dups, fmt.Sprintf("%s@%v", v, keys(ps)))
		}
		i, err := strconv.Atoi(strings.SplitN(v, "-", 2)[0])
		if err != nil || h.values[i] == nil {
			unexpected = append(unexpected, v)
		}
	}
	counts := map[Outcome]int{}
	for i, o := range h.outcomes {
		counts[o]++
		present := 0
		for _, v := range h.values[i] {
			if s.pos[v] != nil {
				present++
			}
		}
		all, none := present == len(h.values[i]), present == 0
		switch {
		case o == Committed && !all:
			lost = append(lost, fmt.Sprintf("txn %d (%d/%d visible)", i, present, len(h.values[i])))
		case o == Aborted && !none:
			visibleAborts = append(visibleAborts, fmt.Sprintf("txn %d (%d/%d visible)", i, present, len(h.values[i])))
		case !all && !none:
			torn = append(torn, fmt.Sprintf("txn %d (%d/%d visible)", i, present, len(h.values[i])))
		}
	}
	t.Logf("transactions: %d committed, %d aborted, %d unknown; %d values visible", counts[Committed], counts[Aborted], counts[Unknown], len(s.pos))
	for name, bad := range map[string][]string{
		"committed transactions lost (wholly or partly)": lost,
		"aborted transactions visible":                   visibleAborts,
		"torn transactions":                              torn,
		"duplicated values":                              dups,
		"values nobody wrote":                            unexpected,
	} {
		if len(bad) > 0 {
			sort.Strings(bad)
			t.Errorf("%s: %d %v", name, len(bad), first(bad))
		}
	}
	if counts[Committed] == 0 || counts[Aborted] == 0 {
		t.Errorf("the run needs both committed (%d) and aborted (%d) transactions to prove anything", counts[Committed], counts[Aborted])
	}
}

// CheckNoHangingTransactions waits until every partition of topic has its
// last stable offset at its high watermark: once the producer has resolved
// all its transactions, none may stay open on a partition (a hanging
// transaction would block read_committed consumers forever).
func CheckNoHangingTransactions(t testing.TB, seeds []string, topic string, within time.Duration) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		hwm, err1 := adm.ListEndOffsets(ctx, topic)
		lso, err2 := adm.ListCommittedOffsets(ctx, topic)
		cancel()
		stuck := []string{}
		if err := errors.Join(err1, err2); err != nil {
			stuck = append(stuck, err.Error())
		} else {
			hwm.Each(func(o kadm.ListedOffset) {
				if l, ok := lso.Lookup(topic, o.Partition); !ok || l.Offset != o.Offset {
					stuck = append(stuck, fmt.Sprintf("partition %d: LSO %d, high watermark %d", o.Partition, l.Offset, o.Offset))
				}
			})
		}
		if len(stuck) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("transactions still open %v after the producer stopped: %v", within, stuck)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
