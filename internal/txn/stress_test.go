package txn

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// Several producers run transactions concurrently while the log is
// compacted again and again; then the power fails. Whatever each producer
// had been told must hold after the restart: its epoch was not handed out
// again, and its last acknowledged EndTxn outcome is the state it finds.
func TestConcurrentProducersAcrossCompactionAndPowerLoss(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.CompactRecords = 16; c.SegmentBytes = 2048 })
	const producers, rounds = 6, 60
	type acked struct {
		p     ProducerIDEpoch
		state State // the state the last acknowledged request left
	}
	last := make([]acked, producers)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var compactions sync.WaitGroup
	compactions.Add(1)
	go func() { // the timer's compaction, as often as possible
		defer compactions.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := e.c.compact(); err != nil {
				t.Errorf("compact: %v", err)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	for i := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			id := fmt.Sprint("p", i)
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			p, err := e.c.InitProducerID(ctx, id, time.Minute, NoProducer)
			if err != nil {
				t.Errorf("%s: init: %v", id, err)
				return
			}
			last[i] = acked{p, Empty}
			for range rounds {
				parts := []TopicPartition{{"t", int32(rng.IntN(4))}, {"u", int32(rng.IntN(4))}}
				if err := e.c.AddPartitions(ctx, id, p.ProducerID, p.Epoch, parts); err != nil {
					t.Errorf("%s: add: %v", id, err)
					return
				}
				last[i].state = Ongoing
				commit := rng.IntN(2) == 0
				if err := e.c.EndTxn(ctx, id, p.ProducerID, p.Epoch, commit); err != nil {
					t.Errorf("%s: end: %v", id, err)
					return
				}
				last[i].state = CompleteAbort
				if commit {
					last[i].state = CompleteCommit
				}
				if rng.IntN(5) == 0 {
					if p, err = e.c.InitProducerID(ctx, id, time.Minute, p); err != nil {
						t.Errorf("%s: re-init: %v", id, err)
						return
					}
					last[i] = acked{p, Empty}
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	compactions.Wait()
	if e.c.log.Start() == 0 {
		t.Error("the log was never compacted")
	}
	e.crash()
	e.waitIdle()
	for i, a := range last {
		id := fmt.Sprint("p", i)
		info, err := e.c.Describe(id)
		if err != nil {
			t.Fatalf("%s after the power loss: %v", id, err)
		}
		if info.ProducerID != a.p.ProducerID || info.ProducerEpoch != a.p.Epoch || info.State != a.state {
			t.Errorf("%s after the power loss: %v/%d %v, want %v/%d %v", id,
				info.ProducerID, info.ProducerEpoch, info.State, a.p.ProducerID, a.p.Epoch, a.state)
		}
		p, err := e.c.InitProducerID(context.Background(), id, time.Minute, NoProducer)
		if err != nil || p.ProducerID != a.p.ProducerID || p.Epoch != a.p.Epoch+1 {
			t.Errorf("%s: the next init gave %v (%v), want epoch %d", id, p, err, a.p.Epoch+1)
		}
	}
}

// List filters by state, producer id and how long a transaction has been
// open; Describe reports what an open transaction holds.
func TestListAndDescribe(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.init("a")
	b := e.init("b")
	e.init("c")
	wantErr(t, "add a", e.c.AddPartitions(ctx, "a", a.ProducerID, a.Epoch, []TopicPartition{{"t", 1}, {"s", 0}}), nil)
	wantErr(t, "offsets a", e.c.AddOffsets(ctx, "a", a.ProducerID, a.Epoch, "g"), nil)
	e.clock.Advance(30 * time.Second)
	wantErr(t, "add b", e.c.AddPartitions(ctx, "b", b.ProducerID, b.Epoch, []TopicPartition{{"t", 0}}), nil)
	ids := func(f ListFilter) string {
		infos, err := e.c.List(f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, in := range infos {
			out = append(out, in.TransactionalID)
		}
		return fmt.Sprint(out)
	}
	for _, c := range []struct {
		f    ListFilter
		want string
	}{
		{ListFilter{}, "[a b c]"},
		{ListFilter{States: []State{Ongoing}}, "[a b]"},
		{ListFilter{States: []State{Empty}}, "[c]"},
		{ListFilter{ProducerIDs: []int64{b.ProducerID, 9999}}, "[b]"},
		{ListFilter{MinDuration: 20 * time.Second}, "[a]"},
		{ListFilter{MinDuration: time.Minute}, "[]"},
	} {
		if got := ids(c.f); got != c.want {
			t.Errorf("List(%+v) = %s, want %s", c.f, got, c.want)
		}
	}
	info, err := e.c.Describe("a")
	wantErr(t, "describe", err, nil)
	want := Info{TransactionalID: "a", ProducerID: a.ProducerID, ProducerEpoch: 0, State: Ongoing, Timeout: time.Minute,
		StartTime: e.clock.Now().Add(-30 * time.Second), LastUpdate: e.clock.Now().Add(-30 * time.Second),
		Partitions: []TopicPartition{{"s", 0}, {"t", 1}}, Groups: []string{"g"}, TransactionVersion: 1}
	if fmt.Sprint(info) != fmt.Sprint(want) {
		t.Errorf("Describe(a):\n got  %+v\n want %+v", info, want)
	}
	_, err = e.c.Describe("zzz")
	wantErr(t, "describe unknown", err, ErrTransactionalIDNotFound)
}
