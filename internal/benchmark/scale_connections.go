package benchmark

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The connections scenario: many idempotent producers, each its own client
// and so its own connections, each producing slowly. What matters is what
// the number of clients costs: produce latency and broker memory.

// ConnectionsRow is one producer count.
type ConnectionsRow struct {
	Producers int     `json:"producers"`
	RatePerS  int     `json:"rate_per_s"` // per producer
	Records   int     `json:"records"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	MaxMs     float64 `json:"max_ms"`
	// RSSIdleBytes is before the producers connect, RSSPeakBytes the
	// highest RSS sampled (every 100 ms) while they produced.
	RSSIdleBytes int64 `json:"rss_idle_bytes"`
	RSSPeakBytes int64 `json:"rss_peak_bytes"`
	FDs          int   `json:"fds"` // while every producer is connected
	// RecordsStored is what the topic held afterwards: it must equal
	// Records.
	RecordsStored int64 `json:"records_stored"`
}

// ConnectionsReport is the connections scenario's result.
type ConnectionsReport struct {
	Seconds float64          `json:"seconds"` // each producer's run
	Rows    []ConnectionsRow `json:"rows"`
}

// RunConnections runs each of cfg.Connections producer counts on a fresh
// broker child: every producer is a separate idempotent acks=all kgo client
// sending one 100-byte record every 1/ConnectionRate s (paced against the
// schedule) for ConnectionDuration, and the latency of each record is the
// time from Produce to its acknowledgement.
func RunConnections(ctx context.Context, cfg ScaleConfig) (*ConnectionsReport, error) {
	if cfg.ConnectionRate <= 0 || cfg.ConnectionDuration <= 0 {
		return nil, fmt.Errorf("rate %d/s for %v: want both positive", cfg.ConnectionRate, cfg.ConnectionDuration)
	}
	rep := &ConnectionsReport{Seconds: cfg.ConnectionDuration.Seconds()}
	for _, n := range cfg.Connections {
		if n <= 0 {
			return nil, fmt.Errorf("%d producers: want at least 1", n)
		}
		row, err := runConnectionCount(ctx, cfg, n)
		if err != nil {
			return nil, fmt.Errorf("%d producers: %w", n, err)
		}
		rep.Rows = append(rep.Rows, row)
	}
	return rep, nil
}

func runConnectionCount(ctx context.Context, cfg ScaleConfig, n int) (ConnectionsRow, error) {
	row := ConnectionsRow{Producers: n, RatePerS: cfg.ConnectionRate}
	dir, remove, err := scaleDataDir(cfg, "connections")
	if err != nil {
		return row, err
	}
	defer remove()
	sp, err := newSpawner(cfg)
	if err != nil {
		return row, err
	}
	child, _, err := sp.start(ctx, dir)
	if err != nil {
		return row, err
	}
	defer child.kill()
	const topic = "connections"
	if err := child.createTopics(ctx, 16, topic); err != nil {
		return row, err
	}
	st, err := child.stats()
	if err != nil {
		return row, err
	}
	row.RSSIdleBytes = st.RSS

	progressf(cfg.Progress, "connections %d: connect %d producers", n, n)
	clients := make([]*kgo.Client, 0, n)
	defer func() {
		for _, cl := range clients {
			cl.Close()
		}
	}()
	for range n {
		cl, err := kgo.NewClient(kgo.SeedBrokers(child.addr), kgo.DefaultProduceTopic(topic),
			kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0))
		if err != nil {
			return row, err
		}
		clients = append(clients, cl)
	}
	// Connect every client (and get its producer ID) before the clock
	// starts: the run measures steady traffic, not n simultaneous logins.
	if err := connectAll(ctx, clients); err != nil {
		return row, err
	}

	progressf(cfg.Progress, "connections %d: produce %d/s each for %v", n, cfg.ConnectionRate, cfg.ConnectionDuration)
	sampler := sampleRSS(child)
	perProducer := int(float64(cfg.ConnectionRate) * cfg.ConnectionDuration.Seconds())
	interval := time.Second / time.Duration(cfg.ConnectionRate)
	var lat latencyRecorder
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	start := time.Now()
	for i, cl := range clients {
		wg.Go(func() {
			// Spread the producers over the first interval so they do
			// not all send in the same millisecond.
			offset := interval * time.Duration(i) / time.Duration(n)
			for k := range perProducer {
				if d := time.Until(start.Add(offset + time.Duration(k)*interval)); d > 0 {
					select {
					case <-time.After(d):
					case <-ctx.Done():
						return
					}
				}
				sent := time.Now()
				cl.Produce(ctx, &kgo.Record{Value: make([]byte, 100)}, func(_ *kgo.Record, err error) {
					if err != nil {
						firstErr.CompareAndSwap(nil, &err)
						return
					}
					lat.add(time.Since(sent))
				})
			}
			if err := cl.Flush(ctx); err != nil {
				firstErr.CompareAndSwap(nil, &err)
			}
		})
	}
	wg.Wait()
	if st, err = child.stats(); err != nil {
		return row, err
	}
	row.FDs = st.FDs
	if row.RSSPeakBytes, err = sampler.stop(); err != nil {
		return row, err
	}
	if p := firstErr.Load(); p != nil {
		return row, fmt.Errorf("produce: %w", *p)
	}
	row.Records = n * perProducer
	row.P50Ms, row.P99Ms, row.MaxMs = lat.quantiles()
	if row.RecordsStored, err = child.endOffsets(ctx, topic); err != nil {
		return row, err
	}
	row.RecordsStored -= int64(n) // the warm-up records (connectAll)
	return row, nil
}

// connectAll brings each client to the state of a producer that has been
// running for a while, a few at a time so the bench does not stampede the
// broker itself: connected, metadata known, and a producer id obtained by
// one record produced and acknowledged. Without that, every producer's
// first record of the measured run waits for InitProducerID and metadata:
// 2 % of the records at 1,000 producers, which made the p99 the warm-up's
// (226 ms here) rather than the steady state's.
func connectAll(ctx context.Context, clients []*kgo.Client) error {
	sem := make(chan struct{}, 32)
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for _, cl := range clients {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("warm-up")}).FirstErr(); err != nil {
				firstErr.CompareAndSwap(nil, &err)
			}
		})
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return fmt.Errorf("connect: %w", *p)
	}
	return nil
}

// Format prints one line per producer count.
func (r *ConnectionsReport) Format(w io.Writer) {
	fmt.Fprintf(w, "connections: separate idempotent acks=all producers, 100-byte records, %.0f s each\n", r.Seconds)
	fmt.Fprintf(w, "%10s %8s %9s %8s %8s %8s %10s %10s %7s\n", "producers", "msg/s ea", "records", "p50 ms", "p99 ms", "max ms", "RSS idle", "RSS peak", "fds")
	for _, row := range r.Rows {
		fmt.Fprintf(w, "%10d %8d %9d %8.2f %8.2f %8.2f %7.1fMiB %7.1fMiB %7d\n", row.Producers, row.RatePerS, row.Records,
			row.P50Ms, row.P99Ms, row.MaxMs, mib(row.RSSIdleBytes), mib(row.RSSPeakBytes), row.FDs)
	}
}

// Charts are latency and memory by producer count.
func (r *ConnectionsReport) Charts() []Chart {
	cats := make([]string, len(r.Rows))
	var p50, p99, idle, peak []float64
	for i, row := range r.Rows {
		cats[i] = strconv.Itoa(row.Producers)
		p50 = append(p50, row.P50Ms)
		p99 = append(p99, row.P99Ms)
		idle = append(idle, mib(row.RSSIdleBytes))
		peak = append(peak, mib(row.RSSPeakBytes))
	}
	return []Chart{
		{File: "connections-latency.svg", Title: "Produce latency by concurrent producers (acks=all)",
			XLabel: "producers (one client each)", YLabel: "milliseconds", Categories: cats, ValueDecimals: 1,
			Series: []Series{{"p50", p50}, {"p99", p99}}},
		{File: "connections-memory.svg", Title: "Broker RSS by concurrent producers",
			XLabel: "producers (one client each)", YLabel: "MiB", Categories: cats,
			Series: []Series{{"idle", idle}, {"peak while producing", peak}}},
	}
}
