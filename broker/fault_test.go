package broker_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
)

// TestLostAcknowledgements shows the promise idem makes explicit: when the
// broker writes a batch but its acknowledgement is lost, a plain retrying
// producer duplicates it (at-least-once), while an idempotent producer's retry
// is recognised and nothing is duplicated.
func TestLostAcknowledgements(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      []kgo.Opt
		wantDupes bool
	}{
		{"at-least-once", []kgo.Opt{kgo.DisableIdempotentWrite(), kgo.RequiredAcks(kgo.LeaderAck())}, true},
		{"idempotent", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := brokertest.Run(t, broker.WithTopics("acks"))
			var lost atomic.Int32
			b.SetFault(0, func(kmsg.Request) broker.Fault {
				if lost.Add(1) <= 3 {
					return broker.Fault{LoseResponse: true}
				}
				return broker.Fault{}
			})
			// MetadataMinAge: kgo refreshes metadata before retrying and
			// would otherwise wait 5s between refreshes.
			cl := b.Client(t, append([]kgo.Opt{kgo.DefaultProduceTopic("acks"), kgo.MetadataMinAge(10 * time.Millisecond)}, tc.opts...)...)
			const n = 20
			for i := range n {
				if err := cl.ProduceSync(ctxT(t), &kgo.Record{Value: fmt.Appendf(nil, "%d", i)}).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
			b.SetFault(0, nil)
			// One more record marks the end: read until it arrives.
			if err := cl.ProduceSync(ctxT(t), &kgo.Record{Value: []byte("end")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			seen := map[string]int{}
			dupes, total := 0, 0
			consumer := b.Client(t, kgo.ConsumeTopics("acks"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			for seen["end"] == 0 {
				fs := consumer.PollFetches(ctxT(t))
				if err := ctxT(t).Err(); err != nil {
					t.Fatal(err)
				}
				fs.EachRecord(func(r *kgo.Record) {
					total++
					if seen[string(r.Value)]++; seen[string(r.Value)] > 1 {
						dupes++
					}
				})
			}
			if len(seen) != n+1 {
				t.Fatalf("%d distinct records, want %d", len(seen), n+1)
			}
			if (dupes > 0) != tc.wantDupes {
				t.Fatalf("%d duplicates after 3 lost acknowledgements (want duplicates: %v)", dupes, tc.wantDupes)
			}
			t.Logf("%d records stored for %d produced (%d duplicates)", total, n, dupes)
		})
	}
}
