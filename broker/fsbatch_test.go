package broker_test

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker/brokertest"
)

// A producer writing many partitions at once gets them fsynced together:
// the partitions beyond idem.log.sync.solo.max gather into syncfs(2) calls
// of the data directory's file system on the real disk, and every record
// acknowledged is there. (A log counted as on another file system, or
// batching turned off by mistake, leaves idem_log_filesystem_syncs_total at
// zero.)
func TestManyPartitionsAreSyncedTogether(t *testing.T) {
	b := brokertest.Run(t)
	ctx := ctxT(t)
	const partitions = 64
	adm := kadm.NewClient(b.Client(t))
	if _, err := adm.CreateTopic(ctx, partitions, 1, nil, "wide"); err != nil {
		t.Fatal(err)
	}
	cl := b.Client(t, kgo.DefaultProduceTopic("wide"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produced := 0
	// Each round is one request naming every partition; real fsyncs take
	// long enough that more than four overlap, but a round is bounded so
	// a broker that never batches fails rather than loops.
	for round := 0; round < 50; round++ {
		var recs []*kgo.Record
		for p := range int32(partitions) {
			recs = append(recs, &kgo.Record{Partition: p, Value: fmt.Appendf(nil, "r%d-%d", round, p)})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		produced += len(recs)
		if v, _ := sample(t, b, "idem_log_filesystem_syncs_total"); v > 0 {
			break
		}
	}
	syncs := mustSample(t, b, "idem_log_filesystem_syncs_total")
	logs := mustSample(t, b, "idem_log_filesystem_synced_logs_total")
	if syncs == 0 || logs < 2*syncs {
		t.Fatalf("%v file-system syncs standing in for %v log fsyncs after %d records over %d partitions; want batches of several logs", syncs, logs, produced, partitions)
	}
	ends, err := adm.ListEndOffsets(ctx, "wide")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total != int64(produced) {
		t.Fatalf("the topic holds %d records, %d were acknowledged", total, produced)
	}
}
