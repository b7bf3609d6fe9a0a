package dedupe_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/idem-dev/idem/dedupe"
	"github.com/idem-dev/idem/dedupe/pgstore"
	"github.com/idem-dev/idem/dedupe/sqlitestore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The crash test re-executes the test binary as a consumer process (the
// "child") and SIGKILLs it at the worst moment: after its handler performed
// an external side effect and wrote its database rows, before the
// transaction committed. The parent decides the moment: the child reports
// each side effect on stdout and then waits for a go-ahead on stdin that,
// for the chosen event, never comes.

const (
	crashEnvStore  = "IDEM_DEDUPE_CRASH_STORE"
	crashEnvDSN    = "IDEM_DEDUPE_CRASH_DSN"
	crashEnvSide   = "IDEM_DEDUPE_CRASH_SIDE"
	crashEnvEvents = "IDEM_DEDUPE_CRASH_EVENTS"
)

func TestMain(m *testing.M) {
	if os.Getenv(recoveryEnvBroker) != "" {
		if err := recoveryChild(); err != nil {
			fmt.Fprintln(os.Stderr, "recovery child:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	if os.Getenv(consumerEnvBroker) != "" {
		if err := consumerChild(); err != nil {
			fmt.Fprintln(os.Stderr, "consumer child:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	if os.Getenv(crashEnvStore) != "" {
		if err := crashChild(); err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashChild delivers evt-0 … evt-N-1 in order, as a consumer restarted
// from the beginning of its partition would.
func crashChild() error {
	ctx := context.Background()
	n, err := strconv.Atoi(os.Getenv(crashEnvEvents))
	if err != nil {
		return err
	}
	side, err := os.OpenFile(os.Getenv(crashEnvSide), os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	stdin := bufio.NewReader(os.Stdin)
	// sideEffect is the payment gateway: it is outside the transaction, so a
	// crash before commit leaves it done. The parent is told, then decides.
	sideEffect := func(id string) error {
		if _, err := fmt.Fprintln(side, id); err != nil {
			return err
		}
		fmt.Printf("effect %s\n", id)
		_, err := stdin.ReadString('\n')
		return err
	}
	cfg := dedupe.Config{Consumer: "child-" + strconv.Itoa(os.Getpid())}
	var process func(id string) error
	switch os.Getenv(crashEnvStore) {
	case "sqlite":
		s, err := sqlitestore.Open(ctx, os.Getenv(crashEnvDSN), cfg)
		if err != nil {
			return err
		}
		defer s.Close()
		process = func(id string) error {
			_, err := s.Process(ctx, id, func(ctx context.Context, tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, `INSERT INTO effects (event_id, n) VALUES (?, 1)`, id); err != nil {
					return err
				}
				return sideEffect(id)
			})
			return err
		}
	case "postgres":
		pool, err := pgxpool.New(ctx, os.Getenv(crashEnvDSN))
		if err != nil {
			return err
		}
		defer pool.Close()
		s, err := pgstore.New(ctx, pool, cfg)
		if err != nil {
			return err
		}
		process = func(id string) error {
			_, err := s.Process(ctx, id, func(ctx context.Context, tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `INSERT INTO effects (event_id, n) VALUES ($1, 1)`, id); err != nil {
					return err
				}
				return sideEffect(id)
			})
			return err
		}
	}
	for i := range n {
		if err := process(fmt.Sprintf("evt-%d", i)); err != nil {
			return err
		}
	}
	fmt.Println("done")
	return nil
}

func TestKillNineBetweenSideEffectAndCommitAppliesEachEventOnce(t *testing.T) {
	const events = 12
	eachStore(t, dedupe.Config{}, func(t *testing.T, s *storeUnderTest) {
		seed := uint64(time.Now().UnixNano())
		rng := rand.New(rand.NewPCG(seed, 0))
		t.Logf("seed %d", seed)
		side := filepath.Join(t.TempDir(), "gateway.log")

		committed, kills, wantDuplicates := 0, 0, 0
		for run := 0; ; run++ {
			if run > 3*events {
				t.Fatalf("no progress after %d runs", run)
			}
			wantDuplicates += committed // the child redelivers every committed event first
			killAt := 0                 // 0: let this run finish
			if committed < events-1 {
				killAt = 1 + rng.IntN(3)
			}
			effects, finished := runCrashChild(t, s, side, events, killAt)
			if finished {
				if committed+effects != events {
					t.Fatalf("final run applied %d events after %d were committed; want %d in all", effects, committed, events)
				}
				break
			}
			kills++
			committed += effects - 1 // the last reported side effect never committed
		}

		for i := range events {
			id := fmt.Sprintf("evt-%d", i)
			if n := s.effects(t, id); n != 1 {
				t.Errorf("%s applied %d times in the database", id, n)
			}
		}
		raw, err := os.ReadFile(side)
		if err != nil {
			t.Fatal(err)
		}
		gateway := strings.Count(string(raw), "\n")
		if gateway != events+kills {
			t.Errorf("gateway saw %d calls; want %d events + %d replays after kills", gateway, events, kills)
		}
		var dups int64
		for i := range events {
			rec, err := s.lookup(context.Background(), fmt.Sprintf("evt-%d", i))
			if err != nil {
				t.Fatal(err)
			}
			dups += rec.Duplicates
		}
		if dups != int64(wantDuplicates) {
			t.Errorf("audit trail counts %d suppressed duplicates, want %d", dups, wantDuplicates)
		}
		t.Logf("%d kills -9, %d gateway calls, %d duplicates suppressed, %d events applied once", kills, gateway, dups, events)
	})
}

// runCrashChild runs one consumer process. With killAt > 0 it SIGKILLs the
// child while it waits after its killAt-th side effect of this run. It
// returns how many side effects the child reported and whether it finished.
func runCrashChild(t *testing.T, s *storeUnderTest, side string, events, killAt int) (int, bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		crashEnvStore+"="+s.name, crashEnvDSN+"="+s.dsn, crashEnvSide+"="+side, crashEnvEvents+"="+strconv.Itoa(events))
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
	effects := 0
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "effect "):
			effects++
			if effects == killAt {
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, stdout)
				cmd.Wait()
				return effects, false
			}
			if _, err := io.WriteString(stdin, "go\n"); err != nil {
				t.Fatal(err)
			}
		case line == "done":
			if err := cmd.Wait(); err != nil {
				t.Fatalf("child: %v", err)
			}
			return effects, true
		}
	}
	err = cmd.Wait()
	t.Fatalf("child exited without finishing: %v", err)
	return 0, false
}
