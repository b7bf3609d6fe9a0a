package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/internal/benchmark"
	"github.com/idem-dev/idem/internal/clientprops"
)

func newBenchCmd() *cobra.Command {
	var (
		brokers  []string
		dataDir  string
		cfg      benchmark.Config
		asJSON   bool
		duration time.Duration
		props    []string
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
data directory (fsync on, as always).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
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
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			benchmark.Format(cmd.OutOrStdout(), rep)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&brokers, "brokers", nil, "bootstrap brokers to measure (default: start an embedded broker)")
	f.StringArrayVarP(&props, "set", "X", nil, "client security property name=value, as for the client commands (security.protocol, sasl.*, ssl.*); repeatable")
	f.StringVar(&dataDir, "data-dir", "", "data directory of the embedded broker (default: a temporary directory, removed afterwards)")
	f.IntVar(&cfg.Records100, "records-100", 1_000_000, "100-byte records per throughput run (0 skips)")
	f.IntVar(&cfg.Records1K, "records-1k", 200_000, "1-KiB records per throughput run (0 skips)")
	f.IntSliceVar(&cfg.Rates, "rates", []int{1000, 5000}, "fixed produce rates (msgs/s) for the latency runs")
	f.DurationVar(&duration, "latency-duration", 10*time.Second, "length of each latency run")
	f.Int32Var(&cfg.Partitions, "partitions", 4, "partitions per benchmark topic")
	f.IntVar(&cfg.ShareRecords, "share-records", 1_000_000, "100-byte records of the share-group run: share consumers acking each record versus a classic group committing after each poll, then a lock-expiry redelivery (0 skips)")
	f.IntVar(&cfg.ShareConsumers, "share-consumers", 4, "consumers of the share-group and classic-group runs")
	f.IntVar(&cfg.ShareMaxLocks, "share-max-record-locks", 0, "the share group's share.partition.max.record.locks (0: the broker's default, 2000)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
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
