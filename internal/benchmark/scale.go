package benchmark

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ScaleConfig sizes the scale scenarios (issue 17): how idem's throughput,
// memory, open files and startup grow with partitions, connections, log
// size and codecs. Each scenario starts its own broker as a child process
// (`idem serve`), so the figures are the broker's alone.
type ScaleConfig struct {
	// Child is the command line starting a broker child, before the
	// `idem serve` flags the bench adds (see childArgs; default: this
	// executable's serve command). ChildEnv is added to its environment.
	Child    []string
	ChildEnv []string
	// DataDir is where the children's data directories are made (default:
	// the system's temporary directory); each is removed after its run.
	DataDir string
	// Progress, when set, receives a line as each step starts.
	Progress io.Writer

	// PartitionCounts are the partition totals of the partitions
	// scenario; PartitionRecords how many 100-byte records each produces.
	PartitionCounts  []int
	PartitionRecords int

	// Connections are the producer counts of the connections scenario,
	// each producing ConnectionRate records/s for ConnectionDuration.
	Connections        []int
	ConnectionRate     int
	ConnectionDuration time.Duration

	// RecoverySizes are the log sizes (bytes, ascending) at which the
	// recovery scenario restarts the broker after kill -9 and SIGTERM.
	RecoverySizes []int64

	// CompressionRecords is how many 1-KiB records each codec produces.
	CompressionRecords int

	// MemoryBytes is how much the memory scenario writes before its
	// fetch phases; MemoryProducers how many producers write at once.
	MemoryBytes     int64
	MemoryProducers int
}

// DefaultScaleConfig is the full-size run the README's figures come from.
func DefaultScaleConfig() ScaleConfig {
	return ScaleConfig{
		PartitionCounts:    []int{1, 4, 100, 1000, 10000},
		PartitionRecords:   500_000,
		Connections:        []int{10, 100, 1000},
		ConnectionRate:     5,
		ConnectionDuration: 10 * time.Second,
		RecoverySizes:      []int64{256 << 20, 1 << 30},
		CompressionRecords: 200_000,
		MemoryBytes:        256 << 20,
		MemoryProducers:    1000,
	}
}

// ScaleReport is what one scale scenario measured: a table for people,
// charts for the README, and (being a struct) JSON for machines.
type ScaleReport interface {
	Format(w io.Writer)
	Charts() []Chart
}

// Scenarios are the names `idem bench --scenario` accepts, in the order
// the help lists them; "throughput" is Run, the others are scale runs.
var Scenarios = []string{"throughput", "partitions", "connections", "recovery", "compression", "memory"}

// RunScale runs the scale scenario called name.
func RunScale(ctx context.Context, name string, cfg ScaleConfig) (ScaleReport, error) {
	switch name {
	case "partitions":
		return asReport(RunPartitions(ctx, cfg))
	case "connections":
		return asReport(RunConnections(ctx, cfg))
	case "recovery":
		return asReport(RunRecovery(ctx, cfg))
	case "compression":
		return asReport(RunCompression(ctx, cfg))
	case "memory":
		return asReport(RunMemory(ctx, cfg))
	}
	return nil, fmt.Errorf("unknown scale scenario %q (want one of %v)", name, Scenarios[1:])
}

// asReport returns a failed run as a nil interface, not an interface
// holding a nil report.
func asReport[R ScaleReport](r R, err error) (ScaleReport, error) {
	if err != nil {
		return nil, err
	}
	return r, nil
}

// restart starts a new child on dir in place of old, which has stopped
// or been killed; on failure it returns old so that deferred clean-ups
// still have a child to kill.
func restart(ctx context.Context, sp *spawner, dir string, old *childBroker) (*childBroker, time.Duration, error) {
	c, took, err := sp.start(ctx, dir)
	if err != nil {
		return old, 0, err
	}
	return c, took, nil
}

// Charter is a report that draws itself: every scale report, and Run's.
type Charter interface{ Charts() []Chart }

// WriteCharts writes each chart of rep as an SVG file in dir and returns
// the paths written.
func WriteCharts(dir string, rep Charter) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("chart directory: %w", err)
	}
	var paths []string
	for _, c := range rep.Charts() {
		p := filepath.Join(dir, c.File)
		f, err := os.Create(p)
		if err != nil {
			return paths, err
		}
		err = c.WriteSVG(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return paths, fmt.Errorf("write %s: %w", p, err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// admin returns a client for the child and a function closing it.
func (c *childBroker) admin(opts ...kgo.Opt) (*kadm.Client, func(), error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.addr)}, opts...)...)
	if err != nil {
		return nil, nil, err
	}
	return kadm.NewClient(cl), cl.Close, nil
}

// createTopics creates topics of partitions partitions each, ten topics a
// request. Creating thousands of partitions takes the broker a while on a
// busy machine, so the client waits as long as it must instead of timing
// out and retrying a request the broker is still carrying out (which then
// fails with TOPIC_ALREADY_EXISTS).
func (c *childBroker) createTopics(ctx context.Context, partitions int32, topics ...string) error {
	adm, closeAdm, err := c.admin(kgo.RequestTimeoutOverhead(5 * time.Minute))
	if err != nil {
		return err
	}
	defer closeAdm()
	adm.SetTimeoutMillis(int32((5 * time.Minute).Milliseconds()))
	for chunk := range slices.Chunk(topics, 10) {
		resps, err := adm.CreateTopics(ctx, partitions, 1, nil, chunk...)
		if err != nil {
			return fmt.Errorf("create topics: %w", err)
		}
		if err := resps.Error(); err != nil {
			return fmt.Errorf("create topics: %w", err)
		}
	}
	return nil
}

// endOffsets sums the high watermarks of topics: the records they hold.
func (c *childBroker) endOffsets(ctx context.Context, topics ...string) (int64, error) {
	adm, closeAdm, err := c.admin()
	if err != nil {
		return 0, err
	}
	defer closeAdm()
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return 0, err
	}
	if err := ends.Error(); err != nil {
		return 0, err
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n, nil
}

// awaitPartitions returns the time from the child's exec until every one
// of want partitions of topics answers ListOffsets without error. The
// broker answers Metadata before its partitions have loaded (they load in
// the background after a start), so this, not the first Metadata answer,
// is when all the data is served again.
func (c *childBroker) awaitPartitions(ctx context.Context, want int, topics ...string) (time.Duration, error) {
	adm, closeAdm, err := c.admin()
	if err != nil {
		return 0, err
	}
	defer closeAdm()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	for {
		ends, err := adm.ListEndOffsets(ctx, topics...)
		if err == nil && ends.Error() == nil {
			n := 0
			ends.Each(func(kadm.ListedOffset) { n++ })
			if n == want {
				return time.Since(c.began), nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("partitions not all served after %v: last %v", time.Since(c.began), errors.Join(err, ends.Error()))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// produceSpread produces n records from values (taken in turn) to topics
// round-robin over every partition with an idempotent acks=all producer,
// and returns the throughput. opts add to the producer's options.
func (c *childBroker) produceSpread(ctx context.Context, topics []string, n int, values [][]byte, opts ...kgo.Opt) (Throughput, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(c.addr),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.MaxBufferedRecords(1 << 18),
		kgo.ProducerBatchMaxBytes(1 << 20),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
	}, opts...)...)
	if err != nil {
		return Throughput{}, err
	}
	defer cl.Close()
	var firstErr atomic.Pointer[error]
	var bytes int64
	start := time.Now()
	for i := range n {
		v := values[i%len(values)]
		bytes += int64(len(v))
		cl.Produce(ctx, &kgo.Record{Topic: topics[i%len(topics)], Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				firstErr.CompareAndSwap(nil, &err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return Throughput{}, err
	}
	elapsed := time.Since(start)
	if p := firstErr.Load(); p != nil {
		return Throughput{}, fmt.Errorf("produce: %w", *p)
	}
	return throughput(n, bytes, elapsed), nil
}

// latencyRecorder collects produce latencies from many goroutines.
type latencyRecorder struct {
	mu  sync.Mutex
	lat []time.Duration
}

func (l *latencyRecorder) add(d time.Duration) {
	l.mu.Lock()
	l.lat = append(l.lat, d)
	l.mu.Unlock()
}

// quantiles returns the p50, p99 and max in milliseconds.
func (l *latencyRecorder) quantiles() (p50, p99, maxMs float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lat) == 0 {
		return 0, 0, 0
	}
	slices.Sort(l.lat)
	q := func(p float64) float64 {
		return float64(l.lat[min(len(l.lat)-1, int(p*float64(len(l.lat))))]) / 1e6
	}
	return q(0.50), q(0.99), float64(l.lat[len(l.lat)-1]) / 1e6
}

// mib is bytes in MiB, for tables.
func mib(b int64) float64 { return float64(b) / (1 << 20) }

// metGoal words a goal check for a table's footer.
func metGoal(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}
