package dedupe_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/idem-dev/idem/dedupe"
	"github.com/idem-dev/idem/dedupe/pgstore"
	"github.com/idem-dev/idem/dedupe/sqlitestore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The consumer crash test runs the dedupe.Consumer in a child process and
// SIGKILLs it at one of two moments, chosen by the parent:
//
//   - "effect": the handler has called the payment gateway and written its
//     row, but the transaction (claim + row + offset) has not committed;
//   - "settled": the transaction has committed, but the Kafka group commit
//     (made after the batch) has not happened.
//
// The child announces each moment on stdout and waits for a go-ahead on
// stdin. Whatever the kills, the database must show each event applied once,
// and the audit trail must count exactly the producer's resends as
// duplicates: a kill at "settled" must not cause a redelivery, because the
// consumer resumes from the database's offsets, not Kafka's.

const (
	consumerEnvBroker = "IDEM_DEDUPE_CONSUMER_BROKER"
	consumerEnvTopic  = "IDEM_DEDUPE_CONSUMER_TOPIC"
	// With a dead-letter topic, the events named in consumerEnvPoison
	// always fail, and are dead-lettered after two attempts.
	consumerEnvDLQ    = "IDEM_DEDUPE_CONSUMER_DLQ"
	consumerEnvPoison = "IDEM_DEDUPE_CONSUMER_POISON"
)

func consumerChild() error {
	ctx := context.Background()
	side, err := os.OpenFile(os.Getenv(crashEnvSide), os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	stdin := bufio.NewReader(os.Stdin)
	var mu sync.Mutex // partitions run in parallel; one announcement at a time
	announce := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf(format+"\n", args...)
		if _, err := stdin.ReadString('\n'); err != nil {
			os.Exit(3) // the parent went away
		}
	}
	poison := map[string]bool{}
	for _, id := range strings.Split(os.Getenv(consumerEnvPoison), ",") {
		poison[id] = id != ""
	}
	gateway := func(r *kgo.Record) error {
		id := dedupe.EventID(r, dedupe.DefaultKeyHeader)
		if poison[id] {
			return errors.New("poison " + id)
		}
		if _, err := fmt.Fprintln(side, id); err != nil {
			return err
		}
		announce("effect %s %d %d", id, r.Partition, r.Offset)
		return nil
	}
	onResult := func(r *kgo.Record, res dedupe.Result) {
		announce("settled %d %d %s", r.Partition, r.Offset, res.Status)
	}
	dlq := os.Getenv(consumerEnvDLQ)
	var retry dedupe.RetryPolicy
	if dlq != "" {
		retry = dedupe.RetryPolicy{MaxAttempts: 2, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	}
	onEvent := func(e dedupe.Event) {
		if e.Outcome == dedupe.OutcomeDeadLetterProduced {
			announce("produced %s", e.EventID) // produced, not yet deleted from the outbox
		}
	}
	opts := append(groupOpts(os.Getenv(consumerEnvBroker)), kgo.InstanceID("billing-0"))
	if os.Getenv("IDEM_DEDUPE_DEBUG") != "" {
		opts = append(opts, kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelInfo, nil)))
	}
	topic := os.Getenv(consumerEnvTopic)
	var run func(context.Context) error
	switch os.Getenv(crashEnvStore) {
	case "sqlite":
		s, err := sqlitestore.Open(ctx, os.Getenv(crashEnvDSN), dedupe.Config{})
		if err != nil {
			return err
		}
		c, err := dedupe.NewConsumer(dedupe.ConsumerConfig[*sql.Tx]{
			Store: s, Group: "billing-" + os.Getenv(crashEnvStore), Topics: []string{topic}, ClientOpts: opts, OnResult: onResult,
			DeadLetterTopic: dlq, Retry: retry, OnEvent: onEvent, Logger: quietLogger,
			Handler: func(ctx context.Context, tx *sql.Tx, r *kgo.Record) error {
				if _, err := tx.ExecContext(ctx, `INSERT INTO effects (event_id, n) VALUES (?, 1)`, dedupe.EventID(r, dedupe.DefaultKeyHeader)); err != nil {
					return err
				}
				return gateway(r)
			},
		})
		if err != nil {
			return err
		}
		run = c.Run
	case "postgres":
		pool, err := pgxpool.New(ctx, os.Getenv(crashEnvDSN))
		if err != nil {
			return err
		}
		s, err := pgstore.New(ctx, pool, dedupe.Config{})
		if err != nil {
			return err
		}
		c, err := dedupe.NewConsumer(dedupe.ConsumerConfig[pgx.Tx]{
			Store: s, Group: "billing-" + os.Getenv(crashEnvStore), Topics: []string{topic}, ClientOpts: opts, OnResult: onResult,
			DeadLetterTopic: dlq, Retry: retry, OnEvent: onEvent, Logger: quietLogger,
			Handler: func(ctx context.Context, tx pgx.Tx, r *kgo.Record) error {
				if _, err := tx.Exec(ctx, `INSERT INTO effects (event_id, n) VALUES ($1, 1)`, dedupe.EventID(r, dedupe.DefaultKeyHeader)); err != nil {
					return err
				}
				return gateway(r)
			},
		})
		if err != nil {
			return err
		}
		run = c.Run
	}
	return run(ctx)
}

func TestKillNineConsumerAppliesEachEventOnceAndResumesFromDatabaseOffsets(t *testing.T) {
	b := startBroker(t, "charges-sqlite", "charges-postgres")
	eachStore(t, dedupe.Config{}, func(t *testing.T, s *storeUnderTest) {
		topic := "charges-" + s.name
		events := ids("charge", 15)
		const resends = 4
		cl := b.Client(t)
		producePayments(t, cl, topic, events...)
		producePayments(t, cl, topic, events[:resends]...)
		total := len(events) + resends

		seed := uint64(time.Now().UnixNano())
		rng := rand.New(rand.NewPCG(seed, 0))
		t.Logf("seed %d", seed)
		side := filepath.Join(t.TempDir(), "gateway.log")
		group := "billing-" + s.name
		kills := map[string]int{}
		// Progress is read from the database, not from the child's lines: a
		// kill can land after a commit and before its announcement.
		for run := 0; s.committedRecords(t, group) < int64(total); run++ {
			if run > 30 {
				t.Fatalf("no progress after %d runs: %d of %d settled", run, s.committedRecords(t, group), total)
			}
			runConsumerChild(t, s, b.Addr(), topic, side, func(line string) (kill bool) {
				if os.Getenv("IDEM_DEDUPE_DEBUG") != "" {
					t.Logf("run %d: %s", run, line)
				}
				if s.committedRecords(t, group) == int64(total) {
					return true // done; the last child is stopped the hard way too
				}
				if kills["effect"]+kills["settled"] < 10 && rng.IntN(4) == 0 {
					kills[strings.Fields(line)[0]]++
					return true
				}
				return false
			})
		}

		for _, id := range events {
			if n := s.effects(t, id); n != 1 {
				t.Errorf("%s applied %d times in the database", id, n)
			}
		}
		raw, err := os.ReadFile(side)
		if err != nil {
			t.Fatal(err)
		}
		calls := strings.Count(string(raw), "\n")
		// Partitions run in parallel, so besides the announced handler a kill
		// can catch one uncommitted handler per other partition: the gateway
		// is called at least once more per kill at "effect", and at most
		// once more per partition per kill.
		lo, hi := len(events)+kills["effect"], len(events)+3*(kills["effect"]+kills["settled"])
		if calls < lo || calls > hi {
			t.Errorf("gateway saw %d calls; want between %d and %d", calls, lo, hi)
		}
		if d := auditDuplicates(t, s, events); d != resends {
			t.Errorf("audit trail counts %d suppressed duplicates, want the %d producer resends", d, resends)
		}
		t.Logf("kills before commit: %d, after commit before the Kafka commit: %d; %d gateway calls; %d events applied once",
			kills["effect"], kills["settled"], calls, len(events))
	})
}

// runConsumerChild starts a consumer process and feeds each announced line
// to decide; when decide says kill, the child is SIGKILLed at once.
func runConsumerChild(t *testing.T, s *storeUnderTest, addr, topic, side string, decide func(line string) bool, env ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), consumerEnvBroker+"="+addr, consumerEnvTopic+"="+topic,
		crashEnvStore+"="+s.name, crashEnvDSN+"="+s.dsn, crashEnvSide+"="+side)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGKILL)
		io.Copy(io.Discard, stdout)
		cmd.Wait()
	}()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("consumer child exited: %v", cmd.Wait())
			}
			if decide(line) {
				cmd.Process.Signal(syscall.SIGKILL)
				return
			}
			if _, err := io.WriteString(stdin, "go\n"); err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("consumer child silent for 30s")
		}
	}
}
