package dedupe_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/idem-dev/idem/dedupe"
	"github.com/idem-dev/idem/dedupe/sqlitestore"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Defect 4 of issue 16: after a crash, a restarted consumer waited for the
// dead member's session to time out (45 s, franz-go's default) before it
// processed again. The child below runs a Consumer configured as the docs
// show, with no group tuning at all (no session timeout, no instance id).

const recoveryEnvBroker = "IDEM_DEDUPE_RECOVERY_BROKER"

func recoveryChild() error {
	ctx := context.Background()
	s, err := sqlitestore.Open(ctx, os.Getenv(crashEnvDSN), dedupe.Config{})
	if err != nil {
		return err
	}
	// FetchMaxWait is not group tuning: it keeps the first fetch's long
	// poll (5 s by default, on partitions without data yet) out of the
	// measure.
	opts := []kgo.Opt{kgo.SeedBrokers(os.Getenv(recoveryEnvBroker)), kgo.FetchMaxWait(200 * time.Millisecond)}
	if os.Getenv("IDEM_DEDUPE_DEBUG") != "" {
		opts = append(opts, kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelDebug, nil)))
	}
	c, err := dedupe.NewConsumer(dedupe.ConsumerConfig[*sql.Tx]{
		Store: s, Group: "recovery", Topics: []string{os.Getenv(consumerEnvTopic)},
		ClientOpts: opts,
		Handler:    func(context.Context, *sql.Tx, *kgo.Record) error { return nil },
		OnResult: func(r *kgo.Record, res dedupe.Result) {
			fmt.Printf("settled %s\n", dedupe.EventID(r, dedupe.DefaultKeyHeader))
		},
	})
	if err != nil {
		return err
	}
	return c.Run(ctx)
}

// startRecoveryChild starts a consumer process and returns its settled
// event ids as they are announced.
func startRecoveryChild(t *testing.T, addr, topic, db string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), recoveryEnvBroker+"="+addr, consumerEnvTopic+"="+topic, crashEnvDSN+"="+db)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	})
	settled := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), "settled "); ok {
				settled <- id
			}
		}
	}()
	return cmd, settled
}

func waitSettledID(t *testing.T, settled <-chan string, id string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.After(limit)
	for {
		select {
		case got := <-settled:
			if got == id {
				return time.Since(start)
			}
		case <-deadline:
			t.Fatalf("%s not settled within %s", id, limit)
		}
	}
}

func TestConsumerRestartedAfterKillNineResumesWithinSeconds(t *testing.T) {
	b := startBroker(t, "recovery")
	cl := b.Client(t)
	db := filepath.Join(t.TempDir(), "recovery.db")
	producePayments(t, cl, "recovery", "r-0")
	first, settled := startRecoveryChild(t, b.Addr(), "recovery", db)
	waitSettledID(t, settled, "r-0", 30*time.Second)
	first.Process.Signal(syscall.SIGKILL)
	first.Wait()

	producePayments(t, cl, "recovery", "r-1")
	_, settled = startRecoveryChild(t, b.Addr(), "recovery", db)
	took := waitSettledID(t, settled, "r-1", 90*time.Second)
	t.Logf("the restarted consumer settled its first record %s after it started", took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Fatalf("the restarted consumer waited %s for the dead member's session to expire; want fast recovery", took.Round(time.Millisecond))
	}
}

// A static member does not leave the group when franz-go closes; the
// Consumer leaves on a clean stop, so its partitions move at once rather
// than after its session timeout.
func TestConsumerCleanStopLeavesTheGroup(t *testing.T) {
	b := startBroker(t, "leave")
	s := newSQLiteUnderTest(t, dedupe.Config{})
	producePayments(t, b.Client(t), "leave", "l-0")
	c := startConsumer(t, s, b.Addr(), "leaver", "leave")
	c.waitSettled(t, 1)
	adm := kadm.NewClient(b.Client(t))
	members := func() int {
		groups, err := adm.DescribeGroups(context.Background(), "leaver")
		if err != nil {
			t.Fatal(err)
		}
		return len(groups["leaver"].Members)
	}
	if n := members(); n != 1 {
		t.Fatalf("%d members while running, want 1", n)
	}
	c.stop()
	stopped := time.Now()
	if n := members(); n != 0 {
		t.Fatalf("%d members %s after a clean stop, want 0 (the session timeout is 2 s)", n, time.Since(stopped).Round(time.Millisecond))
	}
}
