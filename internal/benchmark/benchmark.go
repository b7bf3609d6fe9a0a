// Package benchmark drives a Kafka-compatible broker with franz-go and
// measures what `idem bench` reports: produce throughput with acks=all and
// acks=1, consume throughput, and end-to-end latency at fixed rates. It runs
// against any bootstrap address, so the same numbers can be taken from idem
// and from a peer on the same machine.
package benchmark

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Config says what to run. Zero counts skip that part.
type Config struct {
	Brokers    []string
	Partitions int32 // partitions of each benchmark topic (default 4)
	// Records100 and Records1K are how many 100-byte and 1-KiB records the
	// throughput runs produce (issue targets: 1,000,000 and 200,000).
	Records100, Records1K int
	// Rates are the fixed produce rates (msgs/s) of the latency runs, each
	// lasting LatencyDuration.
	Rates           []int
	LatencyDuration time.Duration
	// LatencyInFlight, when above 1, makes the latency runs' producer
	// non-idempotent with that many produce requests in flight. An
	// idempotent franz-go producer keeps one request in flight per broker,
	// so a record sent while one is in flight waits for its whole round
	// trip; this separates that client wait from the broker's own latency.
	// 0 or 1: the default idempotent producer.
	LatencyInFlight int
	// ShareRecords is how many 100-byte records the share-group runs
	// consume, with ShareConsumers share consumers acknowledging each one
	// and as many classic group consumers committing after each poll.
	ShareRecords   int
	ShareConsumers int
	// ShareMaxLocks, if set, is the share group's
	// share.partition.max.record.locks (the in-flight window; the broker's
	// default, 2000, otherwise).
	ShareMaxLocks int
	// Progress, when set, receives a one-line progress report per second.
	Progress io.Writer
	// ClientOpts are added to every client: how to connect (TLS, SASL).
	ClientOpts []kgo.Opt
}

// newClient is kgo.NewClient with the connection options every client gets.
func (cfg Config) newClient(opts ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(append(opts, cfg.ClientOpts...)...)
}

// Throughput is one produce or consume run.
type Throughput struct {
	Name     string  `json:"name"`
	Records  int     `json:"records"`
	Bytes    int64   `json:"bytes"`
	Seconds  float64 `json:"seconds"`
	MsgsPerS float64 `json:"msgs_per_s"`
	MBPerS   float64 `json:"mb_per_s"`
}

// Latency is one fixed-rate end-to-end run: produce (acks=all) to consume.
type Latency struct {
	RatePerS int     `json:"rate_per_s"`
	Records  int     `json:"records"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
	P999Ms   float64 `json:"p999_ms"`
	MaxMs    float64 `json:"max_ms"`
	// AckP50Ms and AckP99Ms are the producer's side alone: from the
	// record's send time to its acknowledgement (acks=all: the broker's
	// fsync). The end-to-end figures add the consumer's fetch and, with an
	// idempotent producer (one request in flight per broker), the wait of
	// a record behind the request before it.
	AckP50Ms float64 `json:"ack_p50_ms"`
	AckP99Ms float64 `json:"ack_p99_ms"`
	// InFlight is the producer's produce requests in flight per broker
	// when above 1 (a non-idempotent producer); 0 for the idempotent one.
	InFlight int `json:"in_flight,omitempty"`
}

// Report is everything a run measured.
type Report struct {
	Throughput []Throughput `json:"throughput"`
	Latency    []Latency    `json:"latency"`
	Share      *ShareReport `json:"share,omitempty"`
}

// Run executes the configured workloads in order.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if cfg.Partitions <= 0 {
		cfg.Partitions = 4
	}
	for _, rate := range cfg.Rates {
		if rate <= 0 {
			return Report{}, fmt.Errorf("bench: latency rate %d: each --rates value must be at least 1 msg/s", rate)
		}
	}
	if cfg.LatencyInFlight < 0 || cfg.LatencyInFlight > 100 {
		return Report{}, fmt.Errorf("bench: latency in-flight %d: must be 0 (idempotent producer) to 100", cfg.LatencyInFlight)
	}
	var rep Report
	runID := time.Now().UnixNano()
	for _, w := range []struct {
		size, n int
	}{{100, cfg.Records100}, {1024, cfg.Records1K}} {
		if w.n == 0 {
			continue
		}
		for _, acks := range []struct {
			name string
			opt  kgo.Acks
		}{{"all", kgo.AllISRAcks()}, {"1", kgo.LeaderAck()}} {
			topic := fmt.Sprintf("bench-%d-%dB-acks%s", runID, w.size, acks.name)
			if err := createTopic(ctx, cfg, topic); err != nil {
				return rep, err
			}
			tp, err := produce(ctx, cfg, topic, w.size, w.n, acks.opt)
			if err != nil {
				return rep, err
			}
			tp.Name = fmt.Sprintf("produce %dB acks=%s", w.size, acks.name)
			rep.Throughput = append(rep.Throughput, tp)
			if acks.name == "all" {
				tc, err := consume(ctx, cfg, topic, w.n)
				if err != nil {
					return rep, err
				}
				tc.Name = fmt.Sprintf("consume %dB", w.size)
				rep.Throughput = append(rep.Throughput, tc)
			}
		}
	}
	if cfg.ShareRecords > 0 {
		if cfg.ShareConsumers <= 0 {
			cfg.ShareConsumers = 4
		}
		sr, err := runShare(ctx, cfg, runID)
		if err != nil {
			return rep, err
		}
		rep.Share = sr
	}
	for _, rate := range cfg.Rates {
		topic := fmt.Sprintf("bench-%d-latency-%d", runID, rate)
		if err := createTopic(ctx, cfg, topic); err != nil {
			return rep, err
		}
		l, err := latency(ctx, cfg, topic, rate)
		if err != nil {
			return rep, err
		}
		rep.Latency = append(rep.Latency, l)
	}
	return rep, nil
}

func createTopic(ctx context.Context, cfg Config, topic string) error {
	cl, err := cfg.newClient(kgo.SeedBrokers(cfg.Brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, cfg.Partitions, 1, nil, topic)
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	if resp.Err != nil {
		return fmt.Errorf("create topic %s: %w", topic, resp.Err)
	}
	return nil
}

// progress prints "label: n/total" once a second until stop is closed.
func progress(w io.Writer, label string, done *atomic.Int64, total int, stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	if w == nil {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			fmt.Fprintf(w, "\r%-32s %d/%d\n", label, done.Load(), total)
			return
		case <-t.C:
			fmt.Fprintf(w, "\r%-32s %d/%d", label, done.Load(), total)
		}
	}
}

func produce(ctx context.Context, cfg Config, topic string, size, n int, acks kgo.Acks) (Throughput, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(acks),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.MaxBufferedRecords(1 << 18),
		kgo.ProducerBatchMaxBytes(1 << 20),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
	}
	if acks != kgo.AllISRAcks() {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	cl, err := cfg.newClient(opts...)
	if err != nil {
		return Throughput{}, err
	}
	defer cl.Close()
	value := make([]byte, size)
	var done atomic.Int64
	var firstErr error
	var errOnce sync.Once
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go progress(cfg.Progress, fmt.Sprintf("produce %dB", size), &done, n, stop, &wg)
	start := time.Now()
	for range n {
		cl.Produce(ctx, &kgo.Record{Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				errOnce.Do(func() { firstErr = err })
			}
			done.Add(1)
		})
	}
	if err := cl.Flush(ctx); err != nil {
		firstErr = err
	}
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()
	if firstErr != nil {
		return Throughput{}, fmt.Errorf("produce to %s: %w", topic, firstErr)
	}
	return throughput(n, int64(n)*int64(size), elapsed), nil
}

func consume(ctx context.Context, cfg Config, topic string, n int) (Throughput, error) {
	cl, err := cfg.newClient(
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(64<<20),
		kgo.FetchMaxPartitionBytes(16<<20),
	)
	if err != nil {
		return Throughput{}, err
	}
	defer cl.Close()
	var done atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go progress(cfg.Progress, "consume", &done, n, stop, &wg)
	defer func() { close(stop); wg.Wait() }()
	var bytes int64
	start := time.Now()
	for done.Load() < int64(n) {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return Throughput{}, err
		}
		if errs := fs.Errors(); len(errs) > 0 {
			return Throughput{}, fmt.Errorf("consume %s: %w", topic, errs[0].Err)
		}
		fs.EachRecord(func(r *kgo.Record) { bytes += int64(len(r.Value)) })
		done.Add(int64(fs.NumRecords()))
	}
	return throughput(n, bytes, time.Since(start)), nil
}

func throughput(n int, bytes int64, d time.Duration) Throughput {
	s := d.Seconds()
	return Throughput{Records: n, Bytes: bytes, Seconds: s, MsgsPerS: float64(n) / s, MBPerS: float64(bytes) / s / 1e6}
}

// latency produces at a fixed rate with acks=all and measures, per record,
// the time from handing it to the producer to receiving it in a consumer.
func latency(ctx context.Context, cfg Config, topic string, rate int) (Latency, error) {
	cons, err := cfg.newClient(
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(500*time.Millisecond),
	)
	if err != nil {
		return Latency{}, err
	}
	defer cons.Close()
	prodOpts := []kgo.Opt{kgo.SeedBrokers(cfg.Brokers...), kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0)}
	inFlight := 0
	if cfg.LatencyInFlight > 1 {
		inFlight = cfg.LatencyInFlight
		prodOpts = append(prodOpts, kgo.DisableIdempotentWrite(), kgo.MaxProduceRequestsInflightPerBroker(inFlight))
	}
	prod, err := cfg.newClient(prodOpts...)
	if err != nil {
		return Latency{}, err
	}
	defer prod.Close()

	if err := warmUp(ctx, prod, cons); err != nil {
		return Latency{}, err
	}

	total := int(float64(rate) * cfg.LatencyDuration.Seconds())
	lat := make([]time.Duration, 0, total)
	received := make(chan struct{})
	var consErr error
	go func() {
		defer close(received)
		for len(lat) < total {
			fs := cons.PollFetches(ctx)
			if ctx.Err() != nil {
				consErr = ctx.Err()
				return
			}
			if errs := fs.Errors(); len(errs) > 0 {
				consErr = errs[0].Err
				return
			}
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) {
				sent := time.Unix(0, int64(binary.BigEndian.Uint64(r.Value)))
				lat = append(lat, now.Sub(sent))
			})
		}
	}()
	var prodErr atomic.Pointer[error]
	var ackMu sync.Mutex
	acks := make([]time.Duration, 0, total)
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i := range total {
		// Pace against the schedule, not the previous send, so a slow
		// moment is not hidden by sending later (coordinated omission).
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		v := make([]byte, 100)
		sent := time.Now()
		binary.BigEndian.PutUint64(v, uint64(sent.UnixNano()))
		prod.Produce(ctx, &kgo.Record{Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				prodErr.CompareAndSwap(nil, &err)
				return
			}
			took := time.Since(sent)
			ackMu.Lock()
			acks = append(acks, took)
			ackMu.Unlock()
		})
	}
	if err := prod.Flush(ctx); err != nil {
		return Latency{}, err
	}
	if p := prodErr.Load(); p != nil {
		return Latency{}, *p
	}
	select {
	case <-received:
	case <-ctx.Done():
		return Latency{}, ctx.Err()
	}
	if consErr != nil {
		return Latency{}, consErr
	}
	slices.Sort(lat)
	q := func(lat []time.Duration, p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / 1e6
	}
	ackMu.Lock()
	defer ackMu.Unlock()
	slices.Sort(acks)
	return Latency{RatePerS: rate, Records: len(lat), P50Ms: q(lat, 0.50), P99Ms: q(lat, 0.99), P999Ms: q(lat, 0.999), MaxMs: float64(lat[len(lat)-1]) / 1e6,
		AckP50Ms: q(acks, 0.50), AckP99Ms: q(acks, 0.99), InFlight: inFlight}, nil
}

// warmUp sends one record and waits until the consumer has it, so the
// measured records do not include the clients' start: the producer's
// InitProducerID and the consumer's first metadata for a topic created a
// moment ago (which franz-go retries after a backoff: one run at 1,000
// msg/s had p99 405 ms from the first records alone).
func warmUp(ctx context.Context, prod, cons *kgo.Client) error {
	if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte("warm-up")}).FirstErr(); err != nil {
		return fmt.Errorf("latency warm-up produce: %w", err)
	}
	for {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			return fmt.Errorf("latency warm-up consume: %w", ctx.Err())
		}
		if errs := fs.Errors(); len(errs) > 0 {
			return fmt.Errorf("latency warm-up consume: %w", errs[0].Err)
		}
		if fs.NumRecords() > 0 {
			return nil
		}
	}
}

// Format writes the report as a table.
func Format(w io.Writer, rep Report) {
	fmt.Fprintf(w, "%-24s %10s %12s %10s %8s\n", "run", "records", "msgs/s", "MB/s", "seconds")
	for _, t := range rep.Throughput {
		fmt.Fprintf(w, "%-24s %10d %12.0f %10.1f %8.2f\n", t.Name, t.Records, t.MsgsPerS, t.MBPerS, t.Seconds)
	}
	if s := rep.Share; s != nil {
		fmt.Fprintf(w, "\n%-32s %10s %12s %8s\n", "share groups (100 B)", "records", "msgs/s", "seconds")
		for _, t := range []Throughput{s.Share, s.Classic} {
			fmt.Fprintf(w, "%-32s %10d %12.0f %8.2f\n", t.Name, t.Records, t.MsgsPerS, t.Seconds)
		}
		fmt.Fprintf(w, "%-32s %10s %11.0f%%\n", "share / classic", "", s.Ratio*100)
		fmt.Fprintf(w, "%-32s %10s %12.0f ms (lock %d ms, +%.0f ms)\n", "redelivery after lock expiry", "", s.RedeliveryMs, s.LockMs, s.RedeliveryMs-float64(s.LockMs))
	}
	if len(rep.Latency) > 0 {
		fmt.Fprintf(w, "\n%-24s %10s %8s %8s %8s %8s %11s %11s\n", "end-to-end (acks=all)", "records", "p50 ms", "p99 ms", "p999 ms", "max ms", "ack p50 ms", "ack p99 ms")
		for _, l := range rep.Latency {
			name := fmt.Sprintf("%d msg/s", l.RatePerS)
			if l.InFlight > 1 {
				name += fmt.Sprintf(", %d in flight", l.InFlight)
			}
			fmt.Fprintf(w, "%-24s %10d %8.2f %8.2f %8.2f %8.2f %11.2f %11.2f\n", name, l.Records, l.P50Ms, l.P99Ms, l.P999Ms, l.MaxMs, l.AckP50Ms, l.AckP99Ms)
		}
	}
}
