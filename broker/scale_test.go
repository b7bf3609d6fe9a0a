package broker_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
)

// TestScaleRestart10kPartitions measures issue 17's start: 10,000
// partitions (100 topics × 100) holding one record each, then a restart in
// a fresh process, which prints how long opening every partition took, its
// resident memory and its open file descriptors. It is a measurement, not a
// CI test: it runs only with IDEM_SCALE=1 and takes about a minute.
//
//	IDEM_SCALE=1 go test -p 1 -run TestScaleRestart10kPartitions -v ./broker/
//
// IDEM_SCALE_PROPS=name=value,... adds broker properties to the restart
// (idem.log.open.files.max=0 measures without a limit); IDEM_SCALE_DIR
// keeps the data directory, and IDEM_SCALE_RESTART_DIR=<that directory>
// then measures another restart alone.
func TestScaleRestart10kPartitions(t *testing.T) {
	if dir := os.Getenv("IDEM_SCALE_RESTART_DIR"); dir != "" {
		scaleRestart(t, dir)
		return
	}
	if os.Getenv("IDEM_SCALE") != "1" {
		t.Skip("a measurement: set IDEM_SCALE=1 to run it")
	}
	const topicsN, partsN = 100, 100
	// IDEM_SCALE_DIR keeps the data for further restarts:
	// IDEM_SCALE_RESTART_DIR=<dir> runs only the restart.
	dir := os.Getenv("IDEM_SCALE_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	b, err := broker.New(broker.WithDataDir(dir), broker.WithKafkaAddr("127.0.0.1:0"), broker.WithAdminAddr(""),
		broker.WithProperty("idem.disk.reserve.bytes", "0"),
		broker.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	adm := kadm.NewClient(cl)
	names := make([]string, topicsN)
	for i := range names {
		names[i] = fmt.Sprintf("scale-%03d", i)
	}
	for i := 0; i < topicsN; i += 10 {
		resp, err := adm.CreateTopics(ctx, partsN, 1, nil, names[i:i+10]...)
		if err != nil {
			t.Fatal(err)
		}
		if err := resp.Error(); err != nil {
			t.Fatal(err)
		}
	}
	began := time.Now()
	var recs []*kgo.Record
	for _, n := range names {
		for p := range partsN {
			recs = append(recs, &kgo.Record{Topic: n, Partition: int32(p), Value: []byte("one")})
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	t.Logf("created and produced to %d partitions in %v", topicsN*partsN, time.Since(began).Round(time.Millisecond))
	cl.Close()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// The restart runs in a fresh process, so its memory is the start's
	// own, not what producing left behind.
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestScaleRestart10kPartitions$", "-test.v")
	cmd.Env = append(os.Environ(), "IDEM_SCALE_RESTART_DIR="+dir)
	out, err := cmd.CombinedOutput()
	t.Logf("restart:\n%s", out)
	if err != nil {
		t.Fatal(err)
	}
}

// scaleRestart starts a broker on dir, waits until every partition is open
// and reports the figures.
func scaleRestart(t *testing.T, dir string) {
	opened := make(chan string, 1)
	opts := []broker.Option{broker.WithDataDir(dir), broker.WithKafkaAddr("127.0.0.1:0"), broker.WithAdminAddr(""),
		broker.WithProperty("idem.disk.reserve.bytes", "0"),
		broker.WithLogger(slog.New(&watchHandler{msg: "opened every partition", seen: opened}))}
	for kv := range strings.SplitSeq(os.Getenv("IDEM_SCALE_PROPS"), ",") {
		if name, value, ok := strings.Cut(kv, "="); ok {
			opts = append(opts, broker.WithProperty(name, value))
		}
	}
	began := time.Now()
	b, err := broker.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		began := time.Now()
		if err := b.Close(); err != nil {
			t.Error(err)
		}
		t.Logf("close: %v", time.Since(began).Round(time.Millisecond))
	}()
	var took string
	select {
	case took = <-opened:
	case <-time.After(5 * time.Minute):
		t.Fatal("partitions still loading after 5 minutes")
	}
	wall := time.Since(began)
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	gauge := "absent"
	if mfs, err := b.Registry().Gather(); err == nil {
		for _, mf := range mfs {
			if mf.GetName() == "idem_log_open_files" {
				gauge = strconv.FormatFloat(mf.GetMetric()[0].GetGauge().GetValue(), 'f', -1, 64)
			}
		}
	}
	t.Logf("start to every partition open: %v (loaders report %s); VmRSS %s, VmHWM %s; open fds %d; idem_log_open_files %s",
		wall.Round(time.Millisecond), took, procStatus(t, "VmRSS"), procStatus(t, "VmHWM"), len(fds), gauge)
}

func procStatus(t *testing.T, field string) string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// watchHandler passes one record's "took" attribute to seen when a record
// with message msg is logged; everything else is discarded.
type watchHandler struct {
	msg  string
	seen chan string
}

func (h *watchHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *watchHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *watchHandler) WithGroup(string) slog.Handler            { return h }
func (h *watchHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message != h.msg {
		return nil
	}
	took := "?"
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "took" {
			took = a.Value.String()
		}
		return true
	})
	select {
	case h.seen <- took:
	default:
	}
	return nil
}
