package benchmark

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The memory scenario: the broker's resident memory must stay bounded
// whatever clients do. The bound is the broker's memory budget,
// queued.max.request.bytes (at least socket.request.max.bytes): request
// frames over 64 KiB take it from the moment their size is read until they
// are handled, and Fetch answers take it for the records they read until
// the records are written to the socket (internal/kafka/conn.go
// acquireRequestBudget and readFrame, internal/kafka/api/01_fetch.go
// fetchMemory). Outside it, each connection may hold one frame of up to
// 64 KiB it is reading (readFrame's firstChunk) and up to 128 queued
// responses (queueDepth). Go's collector lets the heap grow to about twice
// what is live (GOGC=100), so the bound checked here is
//
//	idle RSS + 2 × (budget + connections × 64 KiB)
//
// which is what "bounded" means today, not a promise of a tighter figure.

// MemoryPhase is one load and the peak RSS it caused.
type MemoryPhase struct {
	Name        string `json:"name"`
	Connections int    `json:"connections"` // client connections the load opens (kgoConnsPerClient a kgo client)
	// IdleRSSBytes is the freshly started broker's RSS before the load,
	// PeakRSSBytes its VmHWM after the load (its peak since it started), and
	// BoundBytes the bound above for its idle RSS and connections.
	IdleRSSBytes int64   `json:"idle_rss_bytes"`
	PeakRSSBytes int64   `json:"peak_rss_bytes"`
	BoundBytes   int64   `json:"bound_bytes"`
	Seconds      float64 `json:"seconds"`
	Detail       string  `json:"detail"`
}

// MemoryReport is the memory scenario's result.
type MemoryReport struct {
	BudgetBytes int64         `json:"budget_bytes"` // queued.max.request.bytes as the broker applies it
	HWMBytes    int64         `json:"hwm_bytes"`    // the highest RSS of any load
	Phases      []MemoryPhase `json:"phases"`
}

// kgoConnsPerClient is how many connections a kgo client holds to a
// one-broker cluster while it works: the seed connection, and the broker's
// own for metadata and for produce or fetch (the connections scenario sees
// the broker's open files grow by three per producer).
const kgoConnsPerClient = 3

// frameAllowance is what a connection may hold outside the budget: one
// frame of up to readFrame's firstChunk.
const frameAllowance = 64 << 10

// memoryBudget asks the broker for its budget: queued.max.request.bytes,
// raised to socket.request.max.bytes as the broker does (broker.go), or
// math.MaxInt64 when it is unlimited (-1).
func (c *childBroker) memoryBudget(ctx context.Context) (int64, error) {
	adm, closeAdm, err := c.admin()
	if err != nil {
		return 0, err
	}
	defer closeAdm()
	rcs, err := adm.DescribeBrokerConfigs(ctx)
	if err != nil {
		return 0, fmt.Errorf("describe broker configs: %w", err)
	}
	val := func(name string) (int64, error) {
		for _, rc := range rcs {
			for _, kv := range rc.Configs {
				if kv.Key == name && kv.Value != nil {
					return strconv.ParseInt(*kv.Value, 10, 64)
				}
			}
		}
		return 0, fmt.Errorf("the broker does not describe %s: update the memory scenario's bound", name)
	}
	q, err := val("queued.max.request.bytes")
	if err != nil {
		return 0, err
	}
	s, err := val("socket.request.max.bytes")
	if err != nil {
		return 0, err
	}
	if q <= 0 {
		return math.MaxInt64, nil // unlimited: nothing bounds it
	}
	return max(q, s), nil
}

const (
	slowConnections = 8  // raw connections that never read
	slowPipelined   = 16 // Fetch requests each sends without reading
)

// RunMemory loads one broker child in turn with: cfg.MemoryBytes of
// produce, a consumer asking for a 1 GiB fetch, slow consumers that
// pipeline huge fetches and never read the answers, and
// cfg.MemoryProducers producers writing at the same moment; the RSS of
// each load is the VmHWM of a broker started afresh for it.
func RunMemory(ctx context.Context, cfg ScaleConfig) (*MemoryReport, error) {
	if cfg.MemoryBytes <= 0 || cfg.MemoryProducers <= 0 {
		return nil, fmt.Errorf("%d bytes, %d producers: want both positive", cfg.MemoryBytes, cfg.MemoryProducers)
	}
	dir, remove, err := scaleDataDir(cfg, "memory")
	if err != nil {
		return nil, err
	}
	defer remove()
	sp, err := newSpawner(cfg)
	if err != nil {
		return nil, err
	}
	child, _, err := sp.start(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer func() { child.kill() }() // the child of the moment; a no-op once it has stopped
	budget, err := child.memoryBudget(ctx)
	if err != nil {
		return nil, err
	}
	rep := &MemoryReport{BudgetBytes: budget}
	const topic = "memory"
	if err := child.createTopics(ctx, 4, topic); err != nil {
		return nil, err
	}
	stopCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	// Each load starts on a freshly started broker (same data): Go keeps
	// freed memory mapped for a while, so a load run after another would
	// be charged for its predecessor's peak.
	phase := func(name string, conns int, run func() (string, error)) error {
		progressf(cfg.Progress, "memory: %s", name)
		if len(rep.Phases) > 0 {
			if err := child.stop(stopCtx); err != nil {
				return err
			}
			if child, _, err = restart(ctx, sp, dir, child); err != nil {
				return err
			}
		}
		st, err := child.stats()
		if err != nil {
			return err
		}
		idle := st.RSS
		bound := int64(math.MaxInt64) // unlimited budget: nothing bounds it
		if budget != math.MaxInt64 {
			bound = idle + 2*(budget+int64(conns)*frameAllowance)
		}
		start := time.Now()
		detail, err := run()
		took := time.Since(start)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		// The broker started fresh for this load, so its VmHWM is the
		// load's exact peak, however brief.
		end, err := child.stats()
		if err != nil {
			return err
		}
		peak := end.HWM
		rep.Phases = append(rep.Phases, MemoryPhase{Name: name, Connections: conns, IdleRSSBytes: idle, PeakRSSBytes: peak,
			BoundBytes: bound, Seconds: took.Seconds(), Detail: detail})
		rep.HWMBytes = max(rep.HWMBytes, peak)
		return nil
	}

	values := eventValues(1024, 1024)
	n := int(cfg.MemoryBytes / 1024)
	if err := phase("produce", kgoConnsPerClient, func() (string, error) {
		tp, err := child.produceSpread(ctx, []string{topic}, n, values, kgo.ProducerBatchCompression(kgo.NoCompression()))
		return fmt.Sprintf("%d MiB in 1-KiB records, %.0f MB/s", tp.Bytes>>20, tp.MBPerS), err
	}); err != nil {
		return nil, err
	}
	if err := phase("huge fetch", kgoConnsPerClient, func() (string, error) {
		return hugeFetch(ctx, child.addr, topic, n)
	}); err != nil {
		return nil, err
	}
	if err := phase("slow consumers", slowConnections, func() (string, error) {
		return slowConsumers(ctx, child.addr, topic)
	}); err != nil {
		return nil, err
	}
	if err := phase(fmt.Sprintf("%d producers at once", cfg.MemoryProducers), kgoConnsPerClient*cfg.MemoryProducers, func() (string, error) {
		return manyProducers(ctx, child.addr, topic, cfg.MemoryProducers)
	}); err != nil {
		return nil, err
	}
	st, err := child.stats()
	if err != nil {
		return nil, err
	}
	rep.HWMBytes = max(rep.HWMBytes, st.HWM)
	return rep, child.stop(stopCtx)
}

// hugeFetch consumes the topic with fetch.max.bytes and the partition
// maximum at 1 GiB (less 1 MiB, for the frame kgo's read limit must allow): the broker caps the answer at its own fetch.max.bytes.
func hugeFetch(ctx context.Context, addr, topic string, n int) (string, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(1<<30-1<<20), kgo.FetchMaxPartitionBytes(1<<30-1<<20), kgo.BrokerMaxReadBytes(1<<30))
	if err != nil {
		return "", err
	}
	defer cl.Close()
	got, polls := 0, 0
	for got < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return "", err
		}
		if errs := fs.Errors(); len(errs) > 0 {
			return "", errs[0].Err
		}
		got += fs.NumRecords()
		polls++
	}
	return fmt.Sprintf("fetch.max.bytes=1GiB; %d records in %d polls", got, polls), nil
}

// slowConsumers opens connections that each send slowPipelined Fetch
// requests for the whole topic (every size limit at its maximum) and read
// nothing back for three seconds: the answers can only pile up in the
// broker, as far as its budget lets them.
func slowConsumers(ctx context.Context, addr, topic string) (string, error) {
	req := kmsg.NewPtrFetchRequest()
	req.Version = 11 // topics by name
	req.MaxWaitMillis = 0
	req.MinBytes = 1
	req.MaxBytes = math.MaxInt32
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	for p := range int32(4) {
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = p
		rp.PartitionMaxBytes = math.MaxInt32
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("idem-bench-slow"))
	var frames []byte
	for corr := range int32(slowPipelined) {
		frames = f.AppendRequest(frames, req, corr)
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var d net.Dialer
	for range slowConnections {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return "", err
		}
		conns = append(conns, c)
		if _, err := c.Write(frames); err != nil {
			return "", err
		}
	}
	select {
	case <-time.After(3 * time.Second):
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return fmt.Sprintf("%d connections × %d pipelined unlimited fetches, unread for 3 s", slowConnections, slowPipelined), nil
}

// manyProducers starts n idempotent producers that each write 100 1-KiB
// records (in one ~100 KiB batch) at the same moment.
func manyProducers(ctx context.Context, addr, topic string, n int) (string, error) {
	clients := make([]*kgo.Client, 0, n)
	defer func() {
		for _, cl := range clients {
			cl.Close()
		}
	}()
	for range n {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic),
			kgo.ProducerLinger(50*time.Millisecond), kgo.RecordPartitioner(kgo.StickyPartitioner()))
		if err != nil {
			return "", err
		}
		clients = append(clients, cl)
	}
	if err := connectAll(ctx, clients); err != nil {
		return "", err
	}
	value := make([]byte, 1024)
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for _, cl := range clients {
		wg.Go(func() {
			for range 100 {
				cl.Produce(ctx, &kgo.Record{Value: value}, func(_ *kgo.Record, err error) {
					if err != nil {
						firstErr.CompareAndSwap(nil, &err)
					}
				})
			}
			if err := cl.Flush(ctx); err != nil {
				firstErr.CompareAndSwap(nil, &err)
			}
		})
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return "", *p
	}
	return fmt.Sprintf("%d producers × 100 KiB at once", n), nil
}

// Format prints one line per phase against its bound.
func (r *MemoryReport) Format(w io.Writer) {
	fmt.Fprintf(w, "memory: peak broker RSS (VmHWM) per load, each on a freshly started broker; budget queued.max.request.bytes = %.0f MiB\n", mib(r.BudgetBytes))
	fmt.Fprintln(w, "bound = idle RSS + 2 × (budget + connections × 64 KiB)   [2×: Go's GOGC=100 heap growth]")
	fmt.Fprintf(w, "%-24s %6s %9s %10s %10s %7s %8s  %s\n", "load", "conns", "idle MiB", "peak MiB", "bound MiB", "within", "seconds", "detail")
	for _, p := range r.Phases {
		fmt.Fprintf(w, "%-24s %6d %9.1f %10.1f %10.1f %7s %8.1f  %s\n", p.Name, p.Connections, mib(p.IdleRSSBytes), mib(p.PeakRSSBytes),
			mib(p.BoundBytes), yesNo(p.PeakRSSBytes <= p.BoundBytes), p.Seconds, p.Detail)
	}
	fmt.Fprintf(w, "highest RSS of the run: %.1f MiB\n", mib(r.HWMBytes))
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

// Charts is peak RSS against the bound, per load.
func (r *MemoryReport) Charts() []Chart {
	var cats []string
	var peak, bound []float64
	for _, p := range r.Phases {
		cats = append(cats, p.Name)
		peak = append(peak, mib(p.PeakRSSBytes))
		bound = append(bound, mib(p.BoundBytes))
	}
	return []Chart{{File: "memory-peak.svg", Title: "Broker peak RSS under load, against its memory bound",
		XLabel: "load", YLabel: "MiB", Categories: cats,
		Series: []Series{{"peak RSS", peak}, {"bound", bound}}}}
}
