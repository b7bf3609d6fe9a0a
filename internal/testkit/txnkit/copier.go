// Package txnkit is the part of idem's test kit for transactions: a
// consume-transform-produce copier (in process or as a child process to
// SIGKILL), a transactional producer that records what it learnt of each
// transaction's outcome, and the read_committed readers and checkers that
// judge what they left in the log. The end-to-end transaction tests
// (test/txn) and the reliability suites C6 and C7 (test/reliability) share
// them.
package txnkit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/verify"
)

// CopierConfig describes one consume-transform-produce copier, the shape of
// Kafka's TransactionalMessageCopier: read_committed from In, copy each
// record to the same partition of Out inside a transaction together with the
// consumed offsets, and abort a random share of the transactions (the
// session then rewinds to the last committed offsets).
type CopierConfig struct {
	Seeds      []string
	In, Out    string
	Group      string
	TxnID      string
	InstanceID string  // static membership: a restarted copier takes its old place at once
	Batch      int     // records per transaction at most
	AbortRate  float64 // share of transactions aborted on purpose
	Seed       uint64
}

// RunCopier copies until ctx ends. Errors of single transactions are logged
// and the loop goes on, as an application would; only a fatal client error
// (such as being fenced by a newer instance) ends it.
func RunCopier(ctx context.Context, cfg CopierConfig, logf func(string, ...any)) error {
	sess, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(cfg.Seeds...),
		kgo.TransactionalID(cfg.TxnID),
		kgo.TransactionTimeout(20*time.Second),
		kgo.ConsumerGroup(cfg.Group),
		kgo.InstanceID(cfg.InstanceID),
		kgo.SessionTimeout(6*time.Second),
		kgo.ConsumeTopics(cfg.In),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DefaultProduceTopic(cfg.Out),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RetryTimeout(60*time.Second),
	)
	if err != nil {
		return err
	}
	defer sess.Close()
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x5eed))
	for ctx.Err() == nil {
		fs := sess.PollRecords(ctx, cfg.Batch)
		if fs.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) { logf("copier %s: fetch %s/%d: %v", cfg.TxnID, t, p, err) })
		recs := fs.Records()
		if len(recs) == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		for _, r := range recs {
			sess.Produce(ctx, &kgo.Record{Key: r.Key, Value: r.Value, Partition: r.Partition}, nil)
		}
		abort := rng.Float64() < cfg.AbortRate
		committed, err := sess.End(ctx, kgo.TransactionEndTry(!abort))
		switch {
		case err != nil && (errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.TransactionalIDAuthorizationFailed)):
			return fmt.Errorf("end: %w", err)
		case err != nil:
			logf("copier %s: end (commit=%v): %v", cfg.TxnID, !abort, err)
		case !abort && !committed:
			logf("copier %s: commit turned into an abort", cfg.TxnID)
		}
	}
	return nil
}

// copierEnv selects the copier role (see CopierRole); its value is a
// CopierConfig as JSON.
const copierEnv = "IDEM_TXNKIT_COPIER"

// CopierRole lets a test binary double as a copier process, so that a test
// can SIGKILL a copier in the middle of a transaction: list it in the
// package's TestMain, testkit.Main(m, txnkit.CopierRole), and start copiers
// with CopierConfig.Process.
var CopierRole = testkit.Role{Env: copierEnv, Run: runCopierProcess}

// Process returns a process that runs the copier until it is killed or
// gets SIGTERM; output, if not nil, receives its log. A copier listens on
// nothing, so it is ready once started.
func (cfg CopierConfig) Process(output io.Writer) *verify.Process {
	spec, err := json.Marshal(cfg)
	if err != nil {
		panic(err) // plain fields only: cannot fail
	}
	return &verify.Process{
		Path: os.Args[0], Args: []string{"-test.run=^$"},
		Env:    []string{copierEnv + "=" + string(spec)},
		Ready:  func(context.Context) error { return nil },
		Output: output,
	}
}

// runCopierProcess is the copier as a child process (CopierRole).
func runCopierProcess(spec string) int {
	var cfg CopierConfig
	if err := json.Unmarshal([]byte(spec), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", copierEnv, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	err := RunCopier(ctx, cfg, func(f string, a ...any) { logger.Info(fmt.Sprintf(f, a...)) })
	if err != nil {
		logger.Error("copier stopped", "err", err)
		return 1
	}
	return 0
}
