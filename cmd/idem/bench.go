package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/internal/benchmark"
	"github.com/idem-dev/idem/internal/clientprops"
)

func newBenchCmd() *cobra.Command {
	var (
		brokers     []string
		dataDir     string
		cfg         benchmark.Config
		asJSON      bool
		duration    time.Duration
		props       []string
		brokerProps []string
		scenario    string
		chartDir    string
		scale       = benchmark.DefaultScaleConfig()
		recovMiB    []int
		memMiB      int
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure produce/consume throughput and end-to-end latency with franz-go",
		Long: `bench drives a broker with franz-go: produce 100 B and 1 KiB records with
acks=all and acks=1, consume them back, then measure end-to-end latency
(acks=all, fsynced) at fixed rates, and share groups: share consumers
acknowledging each record against a classic group committing after each poll
(same records, same run), and how soon a record whose lock expires is
delivered again. Without --brokers it starts its own broker on a temporary
data directory (fsync on, as always). That is --scenario throughput.

The scale scenarios (issue 17) each start their own broker as a child
process, read its memory, open files and CPU time from /proc and time its
startup from exec, and print a table (--json: JSON; --chart DIR: SVG charts):

  partitions   produce throughput, RSS, open files and startup (to the first
               Metadata answer and to every partition served, after SIGTERM
               and after kill -9) at each --partition-counts total (one topic
               up to 1,000 partitions, 100 topics beyond), beside the goals
  connections  --connections producers, each its own client, producing
               --connection-rate records/s: p50/p99 latency and broker RSS
  recovery     grow a log to each --recovery-mib size and time the broker's
               start after kill -9 and after SIGTERM
  compression  produce and consume with none, gzip, snappy, lz4 and zstd:
               throughput both ways, broker CPU per MB, and whether the
               broker hands batches back in the producer's codec
  memory       peak RSS (VmHWM of a broker started afresh for each load)
               under a slow consumer, a 1 GiB fetch and --memory-producers
               producers at once, against the bound the broker's memory
               budget (queued.max.request.bytes) sets

docs/bench.md describes each and how to read it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			if !slices.Contains(benchmark.Scenarios, scenario) {
				return fmt.Errorf("--scenario %q: want one of %s", scenario, strings.Join(benchmark.Scenarios, ", "))
			}
			if scenario != "throughput" {
				if len(brokers) > 0 || len(props) > 0 {
					return fmt.Errorf("--scenario %s starts its own broker child to read its memory, files and CPU: --brokers and -X apply to --scenario throughput only", scenario)
				}
				scale.DataDir = dataDir
				scale.RecoverySizes = nil
				for _, m := range recovMiB {
					scale.RecoverySizes = append(scale.RecoverySizes, int64(m)<<20)
				}
				scale.MemoryBytes = int64(memMiB) << 20
				scale.Progress = cmd.ErrOrStderr()
				if len(brokerProps) > 0 {
					exe, err := os.Executable()
					if err != nil {
						return fmt.Errorf("find the idem executable for the broker child: %w", err)
					}
					scale.Child = []string{exe, "serve"}
					for _, p := range brokerProps {
						scale.Child = append(scale.Child, "-X", p)
					}
				}
				return runScale(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), scenario, scale, asJSON, chartDir)
			}
			cfg.LatencyDuration = duration
			if len(brokers) == 0 {
				b, cleanup, err := startBenchBroker(dataDir)
				if err != nil {
					return err
				}
				defer cleanup()
				brokers = []string{b.Addr()}
				fmt.Fprintf(cmd.ErrOrStderr(), "started a broker at %s\n", b.Addr())
			}
			cfg.Brokers = brokers
			sec, err := benchSecurity(props)
			if err != nil {
				return err
			}
			cfg.ClientOpts = sec
			if isTerminal(os.Stderr) {
				cfg.Progress = cmd.ErrOrStderr()
			}
			rep, err := benchmark.Run(ctx, cfg)
			if err != nil {
				return err
			}
			if chartDir != "" {
				if err := writeCharts(cmd.ErrOrStderr(), chartDir, rep); err != nil {
					return err
				}
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), rep)
			}
			benchmark.Format(cmd.OutOrStdout(), rep)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&brokers, "brokers", nil, "bootstrap brokers to measure (default: start an embedded broker)")
	f.StringArrayVar(&brokerProps, "broker-set", nil, "scale scenarios: broker property name=value given to every broker child (-X of idem serve), to measure a setting against the default; repeatable")
	f.StringArrayVarP(&props, "set", "X", nil, "client security property name=value, as for the client commands (security.protocol, sasl.*, ssl.*); repeatable")
	f.StringVar(&dataDir, "data-dir", "", "data directory of the embedded broker; for a scale scenario, where its brokers' data directories are made and removed (default: a temporary directory, removed afterwards)")
	f.IntVar(&cfg.Records100, "records-100", 1_000_000, "100-byte records per throughput run (0 skips)")
	f.IntVar(&cfg.Records1K, "records-1k", 200_000, "1-KiB records per throughput run (0 skips)")
	f.IntSliceVar(&cfg.Rates, "rates", []int{1000, 5000}, "fixed produce rates (msgs/s) for the latency runs")
	f.DurationVar(&duration, "latency-duration", 10*time.Second, "length of each latency run")
	f.IntVar(&cfg.LatencyInFlight, "latency-in-flight", 0, "latency runs: produce requests in flight with a non-idempotent acks=all producer (0: the idempotent producer, one request in flight), to separate the client's wait from the broker's latency")
	f.Int32Var(&cfg.Partitions, "partitions", 4, "partitions per benchmark topic")
	f.IntVar(&cfg.ShareRecords, "share-records", 1_000_000, "100-byte records of the share-group run: share consumers acking each record versus a classic group committing after each poll, then a lock-expiry redelivery (0 skips)")
	f.IntVar(&cfg.ShareConsumers, "share-consumers", 4, "consumers of the share-group and classic-group runs")
	f.IntVar(&cfg.ShareMaxLocks, "share-max-record-locks", 0, "the share group's share.partition.max.record.locks (0: the broker's default, 2000)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	f.StringVar(&scenario, "scenario", "throughput", "what to measure: "+strings.Join(benchmark.Scenarios, ", ")+" (see above)")
	f.StringVar(&chartDir, "chart", "", "also write the report's charts as SVG files into this directory")
	f.IntSliceVar(&scale.PartitionCounts, "partition-counts", scale.PartitionCounts, "partitions: the partition totals to measure")
	f.IntVar(&scale.PartitionRecords, "partition-records", scale.PartitionRecords, "partitions: 100-byte records produced at each total")
	f.IntSliceVar(&scale.Connections, "connections", scale.Connections, "connections: the producer counts to measure (each producer its own client)")
	f.IntVar(&scale.ConnectionRate, "connection-rate", scale.ConnectionRate, "connections: records/s each producer sends")
	f.DurationVar(&scale.ConnectionDuration, "connection-duration", scale.ConnectionDuration, "connections: how long the producers send")
	for _, b := range scale.RecoverySizes {
		recovMiB = append(recovMiB, int(b>>20))
	}
	f.IntSliceVar(&recovMiB, "recovery-mib", recovMiB, "recovery: log sizes in MiB, ascending, at which the broker is restarted (10240 for 10 GiB)")
	f.IntVar(&scale.CompressionRecords, "compression-records", scale.CompressionRecords, "compression: 1-KiB records produced and consumed per codec")
	f.IntVar(&memMiB, "memory-mib", int(scale.MemoryBytes>>20), "memory: MiB written before the fetch loads")
	f.IntVar(&scale.MemoryProducers, "memory-producers", scale.MemoryProducers, "memory: producers writing at the same moment")
	return cmd
}

// runScale runs one scale scenario and prints its table or JSON.
func runScale(ctx context.Context, out, errOut io.Writer, name string, cfg benchmark.ScaleConfig, asJSON bool, chartDir string) error {
	rep, err := benchmark.RunScale(ctx, name, cfg)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if chartDir != "" {
		if err := writeCharts(errOut, chartDir, rep); err != nil {
			return err
		}
	}
	if asJSON {
		return writeJSON(out, rep)
	}
	rep.Format(out)
	return nil
}

func writeCharts(errOut io.Writer, dir string, rep benchmark.Charter) error {
	paths, err := benchmark.WriteCharts(dir, rep)
	if err != nil {
		return fmt.Errorf("--chart: %w", err)
	}
	for _, p := range paths {
		fmt.Fprintf(errOut, "wrote %s\n", p)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// startBenchBroker starts an embedded broker for bench on a loopback port.
func startBenchBroker(dataDir string) (*broker.Broker, func(), error) {
	remove := func() {}
	if dataDir == "" {
		dir, err := os.MkdirTemp("", "idem-bench-")
		if err != nil {
			return nil, nil, fmt.Errorf("temporary data directory: %w", err)
		}
		dataDir, remove = dir, func() { os.RemoveAll(dir) }
	}
	b, err := broker.New(
		broker.WithDataDir(dataDir),
		broker.WithKafkaAddr("127.0.0.1:0"),
		broker.WithAdminAddr(""),
		broker.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		// The redelivery run uses a 1 s acquisition lock.
		broker.WithProperty("group.share.min.record.lock.duration.ms", "1000"),
	)
	if err == nil {
		err = b.Start()
	}
	if err != nil {
		remove()
		return nil, nil, fmt.Errorf("start broker: %w", err)
	}
	return b, func() { b.Close(); remove() }, nil
}

// isTerminal reports whether f is a character device (a terminal), where a
// progress line helps; in a pipe or CI log it would be noise.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// benchSecurity reads -X security properties (brokers and client.id have
// their own flags here).
func benchSecurity(props []string) ([]kgo.Opt, error) {
	p, err := clientprops.ParseSecurity(props)
	if err != nil {
		return nil, err
	}
	sec, err := clientprops.SecurityOf(p)
	if err != nil {
		return nil, err
	}
	return sec.Opts(), nil
}
