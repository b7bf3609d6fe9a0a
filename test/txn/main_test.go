// Package txn holds the end-to-end transaction tests of issue 4 against a
// real broker and real franz-go clients: the GroupTransactSession copier,
// C6 (Kafka's transactions_test.py copier with SIGKILLed copiers and
// broker), C7 (KAFKA-17754: requests delayed past the client's timeout by a
// hold-and-release proxy) and a power loss in the middle of commits.
//
// The test binary doubles as the broker process and as the copier process
// (selected by environment variables), so C6 can SIGKILL either without
// building anything.
package txn

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"

	"github.com/idem-dev/idem/broker"
)

const (
	brokerEnv = "IDEM_TXN_BROKER" // "addr,datadir": run a broker until SIGTERM/SIGKILL
	copierEnv = "IDEM_TXN_COPIER" // a JSON copierConfig: run a copier until killed
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(brokerEnv); spec != "" {
		os.Exit(runBrokerProcess(spec))
	}
	if spec := os.Getenv(copierEnv); spec != "" {
		os.Exit(runCopierProcess(spec))
	}
	os.Exit(m.Run())
}

// brokerOptions are the settings every broker of these tests runs with:
// no initial rebalance delay, so that a restarted copier starts at once.
func brokerOptions() []broker.Option {
	return []broker.Option{
		broker.WithProperty("group.initial.rebalance.delay.ms", "0"),
	}
}

func runBrokerProcess(spec string) int {
	addr, dir, ok := strings.Cut(spec, ",")
	if !ok {
		fmt.Fprintf(os.Stderr, "%s=%q: want addr,datadir\n", brokerEnv, spec)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	opts := append(brokerOptions(),
		broker.WithDataDir(dir),
		broker.WithKafkaAddr(addr),
		broker.WithAdminAddr(""),
		broker.WithLogger(logger),
	)
	b, err := broker.New(opts...)
	if err == nil {
		err = b.Start()
	}
	if err != nil {
		logger.Error("test broker failed to start", "err", err)
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	if err := b.Close(); err != nil {
		logger.Error("test broker close", "err", err)
		return 1
	}
	return 0
}
