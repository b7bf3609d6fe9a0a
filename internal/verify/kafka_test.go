package verify

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker/brokertest"
)

// A drain must finish on a topic whose last offsets are transaction
// markers, and return records, never markers.
func TestDrainStopsAtTransactionMarkersAndHonoursIsolation(t *testing.T) {
	b := brokertest.Run(t)
	cl := b.Client(t, kgo.TransactionalID("drain-test"), kgo.DefaultProduceTopic("drained"), kgo.AllowAutoTopicCreation())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, txn := range []struct {
		values []string
		end    kgo.TransactionEndTry
	}{
		{[]string{"c1", "c2"}, kgo.TryCommit},
		{[]string{"a1"}, kgo.TryAbort}, // the log now ends with an abort marker
	} {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for _, v := range txn.values {
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := cl.EndTransaction(ctx, txn.end); err != nil {
			t.Fatal(err)
		}
	}
	values := func(rs []Record) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Value)
		}
		return out
	}
	all, err := Drain(ctx, []string{b.Addr()}, "drained")
	if err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if got, want := values(all), []string{"c1", "c2", "a1"}; !slices.Equal(got, want) {
		t.Errorf("Drain (read_uncommitted) = %v, want %v", got, want)
	}
	committed, err := DrainCommitted(ctx, []string{b.Addr()}, "drained")
	if err != nil {
		t.Fatalf("DrainCommitted: %v", err)
	}
	if got, want := values(committed), []string{"c1", "c2"}; !slices.Equal(got, want) {
		t.Errorf("DrainCommitted = %v, want %v", got, want)
	}
}
