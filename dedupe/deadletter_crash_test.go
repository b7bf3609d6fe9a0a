package dedupe_test

import (
	"bufio"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/idem-dev/idem/dedupe"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The dead-letter path under kill -9. The child consumer gives up on two
// poison events and dead-letters them; the parent SIGKILLs it at random
// moments, and always once right after a dead-lettering committed (before
// the dead letter was produced) and once right after a dead letter was
// produced (before the outbox row was deleted). Whatever the kills:
//
//   - every other event is applied once, and every offset is stored;
//   - each poison event reaches the dead-letter topic at least once, never
//     zero times, and all its copies are identical (same key, value and
//     headers, the event id in idempotency-key), so they deduplicate;
//   - a further copy exists only for a kill between a produce and its
//     delete.
func TestKillNineDeadLetteringLosesNothingAndCopiesAreIdentical(t *testing.T) {
	b := startBroker(t, "dl-sqlite", "dl-postgres", "dl-sqlite-dlq", "dl-postgres-dlq")
	eachStore(t, dedupe.Config{}, func(t *testing.T, s *storeUnderTest) {
		topic, dlq, group := "dl-"+s.name, "dl-"+s.name+"-dlq", "billing-"+s.name
		events := ids("charge", 14)
		poison := []string{"charge-3", "charge-9"}
		cl := b.Client(t)
		producePayments(t, cl, topic, events...)
		total := len(events)
		env := []string{consumerEnvDLQ + "=" + dlq, consumerEnvPoison + "=" + strings.Join(poison, ",")}

		seed := uint64(time.Now().UnixNano())
		rng := rand.New(rand.NewPCG(seed, 0))
		t.Logf("seed %d", seed)
		side := filepath.Join(t.TempDir(), "gateway.log")
		kills := map[string]int{}
		// Until every record is settled, and a kill has landed between a
		// produce and its delete.
		unfinished := func() bool {
			return s.committedRecords(t, group) < int64(total) || (kills["produced"] == 0 && outboxLen(t, s) > 0)
		}
		for run := 0; unfinished(); run++ {
			if run > 30 {
				t.Fatalf("no progress after %d runs", run)
			}
			runConsumerChild(t, s, b.Addr(), topic, side, func(line string) (kill bool) {
				f := strings.Fields(line)
				switch {
				case f[0] == "settled" && f[3] == "dead-lettered" && kills["dead-lettered"] == 0,
					f[0] == "produced" && kills["produced"] == 0,
					kills["effect"]+kills["settled"] < 6 && rng.IntN(4) == 0:
				case !unfinished():
					return true // done; the last child is stopped the hard way too
				default:
					return false
				}
				k := f[0]
				if k == "settled" && f[3] == "dead-lettered" {
					k = "dead-lettered"
				}
				kills[k]++
				return true
			}, env...)
		}
		// A last run produces what is still in the outbox.
		drainDeadLetters(t, s, b.Addr(), topic, side, env)

		for _, id := range events {
			want := 1
			if slices.Contains(poison, id) {
				want = 0
			}
			if n := s.effects(t, id); n != want {
				t.Errorf("%s applied %d times, want %d", id, n, want)
			}
		}
		copies := map[string][]*kgo.Record{}
		for _, r := range consumeAll(t, cl, dlq, len(poison)) {
			id := headers(r)[dedupe.DefaultKeyHeader]
			copies[id] = append(copies[id], r)
		}
		for _, id := range poison {
			rs := copies[id]
			delete(copies, id)
			if len(rs) == 0 {
				t.Errorf("%s never reached the dead-letter topic", id)
				continue
			}
			for _, r := range rs[1:] {
				if string(r.Key) != string(rs[0].Key) || string(r.Value) != string(rs[0].Value) || !reflect.DeepEqual(headers(r), headers(rs[0])) {
					t.Errorf("%s: copies differ: %v vs %v", id, headers(r), headers(rs[0]))
				}
			}
			// Any kill can land between a produce and its delete (the
			// flusher runs beside the partitions); none else makes a copy.
			if n := kills["effect"] + kills["settled"] + kills["dead-lettered"] + kills["produced"]; len(rs) > 1+n {
				t.Errorf("%s: %d copies in the dead-letter topic after %d kills", id, len(rs), n)
			}
			h := headers(rs[0])
			if h[dedupe.HeaderDLQTopic] != topic || h[dedupe.HeaderDLQAttempts] != "2" || h[dedupe.HeaderDLQError] != "poison "+id {
				t.Errorf("%s: dead-letter headers %v", id, h)
			}
			t.Logf("%s: %d copies in the dead-letter topic", id, len(rs))
		}
		if len(copies) > 0 {
			t.Errorf("dead letters of events that did not fail: %v", copies)
		}
		t.Logf("kills: %v", kills)
		if kills["dead-lettered"] == 0 || kills["produced"] == 0 {
			t.Errorf("the kills missed a dead-letter moment: %v", kills)
		}
	})
}

// drainDeadLetters runs a consumer child, answering every announcement,
// until the store's outbox is empty.
func drainDeadLetters(t *testing.T, s *storeUnderTest, addr, topic, side string, env []string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), consumerEnvBroker+"="+addr, consumerEnvTopic+"="+topic,
		crashEnvStore+"="+s.name, crashEnvDSN+"="+s.dsn, crashEnvSide+"="+side)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGKILL)
		io.Copy(io.Discard, stdout)
		cmd.Wait()
	}()
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			io.WriteString(stdin, "go\n")
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for outboxLen(t, s) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d dead letters still in the outbox after 30 s", outboxLen(t, s))
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // let a produce already under way land
}

func outboxLen(t *testing.T, s *storeUnderTest) int {
	t.Helper()
	dls, err := s.raw.(interface {
		PendingDeadLetters(context.Context, string, int) ([]dedupe.DeadLetter, error)
	}).PendingDeadLetters(context.Background(), "billing-"+s.name, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return len(dls)
}
