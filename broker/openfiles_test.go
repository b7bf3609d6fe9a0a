package broker_test

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
)

// A broker limited to 64 open segment files serves produce and fetch on
// 500 partitions, each holding its own segment file: every record reads
// back, the files are reopened on demand, and the open ones stay within
// the limit (idem_log_open_files, and the process's descriptors).
func TestOpenFileLimitServes500Partitions(t *testing.T) {
	const limit, topicsN, partsN = 64, 5, 100
	b := brokertest.Run(t, broker.WithProperty("idem.log.open.files.max", fmt.Sprint(limit)))
	ctx := ctxT(t)
	cl := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	adm := kadm.NewClient(cl)
	var names []string
	for i := range topicsN {
		names = append(names, fmt.Sprintf("files-%d", i))
	}
	resp, err := adm.CreateTopics(ctx, partsN, 1, nil, names...)
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Error(); err != nil {
		t.Fatal(err)
	}
	produce := func(round int) {
		t.Helper()
		var recs []*kgo.Record
		for _, n := range names {
			for p := range partsN {
				recs = append(recs, &kgo.Record{Topic: n, Partition: int32(p), Value: fmt.Appendf(nil, "%s/%d/%d", n, p, round)})
			}
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	stopWatch := watchOpenFiles(b)
	produce(0)
	producePeak, produceFDs := stopWatch()
	// Appends to more partitions than the limit keep their files open
	// until the group commit fsyncs them (urged at once past the limit):
	// measured, not bounded.
	t.Logf("producing to %d partitions: at most %v segment files open at once, %d descriptors in the process", topicsN*partsN, producePeak, produceFDs)
	// acks=all: every write was fsynced, so every idle file beyond the
	// limit is closed by now.
	if got := mustSample(t, b, "idem_log_open_files"); got > limit {
		t.Fatalf("%v segment files open after producing to %d partitions, limit %d", got, topicsN*partsN, limit)
	}
	opensBefore := mustSample(t, b, "idem_log_file_opens_total")

	// Fetch everything while watching the count: reads open one file at a
	// time, each closed again to make room once read.
	stopWatch = watchOpenFiles(b)
	got := consumeLatest(t, b, names, topicsN*partsN)
	peak, peakFDs := stopWatch()
	for _, n := range names {
		for p := range partsN {
			if want := fmt.Sprintf("%s/%d/0", n, p); got[fmt.Sprintf("%s/%d", n, p)] != want {
				t.Fatalf("%s-%d read %q, want %q", n, p, got[fmt.Sprintf("%s/%d", n, p)], want)
			}
		}
	}
	reopened := mustSample(t, b, "idem_log_file_opens_total") - opensBefore
	t.Logf("fetching %d partitions: %v files reopened, at most %v open at once, %d descriptors in the process", topicsN*partsN, reopened, peak, peakFDs)
	if reopened < topicsN*partsN-limit {
		t.Fatalf("only %v files reopened to read %d partitions with %d open", reopened, topicsN*partsN, limit)
	}
	// A few reads may hold a file beyond the limit at the same moment.
	if peak > limit+8 {
		t.Fatalf("%v segment files open at once while fetching, limit %d", peak, limit)
	}
	// The process holds sockets, state logs and the like besides: far
	// fewer than a descriptor per partition.
	if peakFDs >= topicsN*partsN {
		t.Fatalf("%d descriptors open while fetching %d partitions with a limit of %d", peakFDs, topicsN*partsN, limit)
	}

	// Appends reopen the closed active segments and read back.
	produce(1)
	if got := mustSample(t, b, "idem_log_open_files"); got > limit {
		t.Fatalf("%v segment files open after a second round, limit %d", got, limit)
	}
}

// watchOpenFiles samples idem_log_open_files and the process's open
// descriptors every few milliseconds until the returned stop, which
// reports the most seen of each.
func watchOpenFiles(b *brokertest.Broker) (stop func() (peak float64, peakFDs int)) {
	done := make(chan struct{})
	var peak float64
	var peakFDs int
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			peak = max(peak, openFilesGauge(b))
			if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
				peakFDs = max(peakFDs, len(fds))
			}
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	})
	return func() (float64, int) {
		close(done)
		wg.Wait()
		return peak, peakFDs
	}
}

// openFilesGauge reads idem_log_open_files without t, for a goroutine.
func openFilesGauge(b *brokertest.Broker) float64 {
	mfs, _ := b.Registry().Gather()
	for _, mf := range mfs {
		if mf.GetName() == "idem_log_open_files" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

// consumeLatest reads n records from the start of topics and returns the last
// value read per "topic/partition".
func consumeLatest(t *testing.T, b *brokertest.Broker, topics []string, n int) map[string]string {
	t.Helper()
	cl := b.Client(t, kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx := ctxT(t)
	got := map[string]string{}
	for read := 0; read < n; {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			got[fmt.Sprintf("%s/%d", r.Topic, r.Partition)] = string(r.Value)
			read++
		})
	}
	return got
}
