package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/internal/config"
)

type serveFlags struct {
	dataDir        string
	kafkaAddr      string
	advertisedAddr string
	adminAddr      string
	sets           []string
	configFile     string
	logLevel       string
	logFormat      string
	helpProps      bool
}

func newServeCmd() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the broker",
		Long: `Run the durable Kafka-compatible broker until SIGINT or SIGTERM.

Properties use Kafka's names (num.partitions, log.retention.ms, …). They come
from defaults, then --config (a server.properties file), then -X flags, the
last one winning. acks=all is answered only after the data is fsynced.

On SIGINT or SIGTERM the broker stops accepting connections, finishes what is
in flight, fsyncs and closes its logs; a second signal exits at once.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.helpProps {
				return printProperties(cmd.OutOrStdout())
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runServe(ctx, stop, cmd, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dataDir, "data-dir", "./idem-data", "directory for topic logs, committed offsets and producer state")
	fl.StringVar(&f.kafkaAddr, "kafka-addr", "127.0.0.1:9092", "host:port of the Kafka listener (shorthand for listeners=; a list such as PLAINTEXT://127.0.0.1:9092,SASL_SSL://0.0.0.0:9093 works too)")
	fl.StringVar(&f.advertisedAddr, "advertised-addr", "", "host:port clients are told to connect to (default: the listener's address)")
	fl.StringVar(&f.adminAddr, "admin-addr", "127.0.0.1:9644", `host:port of the admin HTTP server (/healthz, /metrics, the /v1 admin API, the web console at /); "" turns it off`)
	fl.StringArrayVarP(&f.sets, "set", "X", nil, "broker property name=value, by its Kafka name; repeatable")
	fl.StringVar(&f.configFile, "config", "", "properties file (Kafka server.properties format)")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&f.logFormat, "log-format", "text", "text or json")
	fl.BoolVar(&f.helpProps, "help-properties", false, "list every broker property with its type, default and meaning, and exit")
	return cmd
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// checkDataDir creates dir and proves it is writable before the broker
// starts, so that the error names the directory instead of whichever file
// the storage layer happened to open first.
func checkDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("data dir %s cannot be created: %w", dir, errors.Unwrap(err))
	}
	probe := filepath.Join(dir, ".idem-write-check")
	f, err := os.OpenFile(probe, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("data dir %s is not writable: %w", dir, errors.Unwrap(err))
	}
	f.Close()
	return os.Remove(probe)
}

// explainStartError turns a failed start into one actionable line.
func explainStartError(err error, f serveFlags) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%w (another process holds the port; is a broker already running? choose another address with --kafka-addr / --admin-addr)", err)
	}
	if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("%w (check the permissions of --data-dir %s)", err, f.dataDir)
	}
	return err
}

func runServe(ctx context.Context, stopSignals func(), cmd *cobra.Command, f serveFlags) error {
	logger, err := newLogger(f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	var props []property
	if f.configFile != "" {
		if props, err = readPropertiesFile(f.configFile); err != nil {
			return err
		}
	}
	sets, err := parseSetFlags(f.sets)
	if err != nil {
		return err
	}
	props = append(props, sets...)
	if err := validateProperties(props); err != nil {
		return err
	}
	f = resolveAddrs(cmd, f, props)
	if err := checkDataDir(f.dataDir); err != nil {
		return err
	}

	opts := []broker.Option{
		broker.WithDataDir(f.dataDir),
		broker.WithKafkaAddr(f.kafkaAddr),
		broker.WithAdminAddr(f.adminAddr),
		broker.WithLogger(logger),
	}
	if f.advertisedAddr != "" {
		opts = append(opts, broker.WithAdvertisedAddr(f.advertisedAddr))
	}
	for _, p := range props {
		switch p.name {
		case "log.dirs", "listeners", "advertised.listeners":
			// Already resolved into the options above.
			continue
		}
		opts = append(opts, broker.WithProperty(p.name, p.value))
	}
	b, err := broker.New(opts...)
	if err != nil {
		return explainStartError(err, f)
	}
	if err := b.Start(); err != nil {
		b.Close()
		return explainStartError(err, f)
	}
	attrs := []any{"kafka", b.Addr(), "data_dir", f.dataDir}
	if f.adminAddr != "" {
		attrs = append(attrs, "admin", b.AdminAddr())
	}
	logger.Info("idem is serving", attrs...)

	<-ctx.Done()
	// Restore default signal handling: a second ^C kills a stuck shutdown.
	stopSignals()
	logger.Info("shutting down: finishing in-flight requests and syncing logs")
	if err := b.Close(); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("stopped cleanly")
	return nil
}

// validateProperties checks every property against the registry before the
// broker starts, so that the error names the file line or flag that set it.
func validateProperties(ps []property) error {
	for _, p := range ps {
		if err := config.ValidateProperty(p.name, p.value); err != nil {
			if errors.Is(err, config.ErrUnknown) {
				return fmt.Errorf("%s: %w (idem serve --help-properties lists them)", p.source, err)
			}
			return fmt.Errorf("%s: %w", p.source, err)
		}
	}
	return nil
}

// resolveAddrs lets log.dirs, listeners and advertised.listeners from a
// properties file or -X stand in for --data-dir, --kafka-addr and
// --advertised-addr when those flags are not given: a flag on the command
// line is the most specific setting and wins.
func resolveAddrs(cmd *cobra.Command, f serveFlags, ps []property) serveFlags {
	for _, p := range ps {
		v := p.value // NAME://host:port lists pass through whole
		switch {
		case p.name == "log.dirs" && !cmd.Flags().Changed("data-dir"):
			f.dataDir = p.value
		case p.name == "listeners" && !cmd.Flags().Changed("kafka-addr"):
			f.kafkaAddr = v
		case p.name == "advertised.listeners" && !cmd.Flags().Changed("advertised-addr"):
			f.advertisedAddr = v
		}
	}
	return f
}

// printProperties lists the broker properties for --help-properties.
func printProperties(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTYPE\tDEFAULT\tDESCRIPTION")
	for _, p := range config.Properties() {
		def := p.Default
		if p.Null {
			def = "null"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, p.Type, def, p.Doc)
	}
	return tw.Flush()
}
