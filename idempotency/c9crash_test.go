package idempotency_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/idem-dev/idem/idempotency"
	"github.com/idem-dev/idem/idempotency/pgstore"
	"github.com/idem-dev/idem/idempotency/sqlitestore"
	"github.com/idem-dev/idem/internal/testkit"
	"github.com/jackc/pgx/v5/pgxpool"
)

// C9 with crashes: the workload runs in a child process (the test binary
// re-executed) that the parent SIGKILLs at random, several times, each time
// starting a new child on the same database. The child announces every
// operation on stdout before it starts ("C") and after it returns ("R");
// the announcements are serialized, so their order on the pipe respects
// real time. Operations in flight at the kill get an unknown output: they
// took effect before the kill or not at all, and the model allows both.

const (
	c9EnvStore = "IDEM_C9_CHILD_STORE"
	c9EnvDSN   = "IDEM_C9_CHILD_DSN"
	c9EnvSeed  = "IDEM_C9_CHILD_SEED"
	c9EnvStart = "IDEM_C9_CHILD_START" // the fake clock's start, unix microseconds
)

func TestMain(m *testing.M) {
	if os.Getenv(c9EnvStore) != "" {
		if err := c9Child(); err != nil {
			fmt.Fprintln(os.Stderr, "c9 child:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// c9Wire carries an operation between the processes.
type c9Wire struct {
	Worker int    `json:"w"`
	Op     c9Op   `json:"op"`
	Key    string `json:"key,omitempty"`
	FP     string `json:"fp,omitempty"`
	Token  string `json:"token,omitempty"`
	Body   string `json:"body,omitempty"`
	Now    int64  `json:"now"`
	// Output, on "R" lines.
	Status   idempotency.ClaimStatus `json:"status,omitempty"`
	OutToken string                  `json:"out_token,omitempty"`
	OK       bool                    `json:"ok,omitempty"`
	Done     bool                    `json:"done,omitempty"`
	OutFP    string                  `json:"out_fp,omitempty"`
	OutBody  string                  `json:"out_body,omitempty"`
	Err      string                  `json:"err,omitempty"`
}

func c9Child() error {
	ctx := context.Background()
	var store idempotency.Store
	switch os.Getenv(c9EnvStore) {
	case "sqlite":
		s, err := sqlitestore.Open(ctx, os.Getenv(c9EnvDSN), idempotency.StoreConfig{CleanupBatch: 3})
		if err != nil {
			return err
		}
		store = s
	case "postgres":
		pool, err := pgxpool.New(ctx, os.Getenv(c9EnvDSN))
		if err != nil {
			return err
		}
		s, err := pgstore.New(ctx, pool, idempotency.StoreConfig{CleanupBatch: 3})
		if err != nil {
			return err
		}
		store = s
	}
	seed, _ := strconv.ParseUint(os.Getenv(c9EnvSeed), 10, 64)
	start, _ := strconv.ParseInt(os.Getenv(c9EnvStart), 10, 64)
	clock := testkit.NewClock(time.UnixMicro(start).UTC())
	keys := []string{"k0", "k1", "k2"}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	announce := func(kind string, id int64, w c9Wire) {
		b, _ := json.Marshal(w)
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, "%s %d %s\n", kind, id, b)
		out.Flush()
	}
	var next int64
	var idMu sync.Mutex
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)+2))
			tokens := map[string]string{}
			for i := 0; ; i++ { // until killed
				in, now := nextC9Input(rng, clock, keys, tokens, w, i)
				idMu.Lock()
				next++
				id := next
				idMu.Unlock()
				wire := c9Wire{Worker: w, Op: in.op, Key: in.key, FP: in.fp, Token: in.token, Body: in.body, Now: in.now}
				announce("C", id, wire)
				o := execC9(ctx, store, in, now)
				if in.op == opClaim && o.status == idempotency.Claimed {
					tokens[in.key] = o.token
				}
				wire.Status, wire.OutToken, wire.OK, wire.Done, wire.OutFP, wire.OutBody = o.status, o.token, o.ok, o.done, o.fp, o.body
				if o.err != nil {
					wire.Err = o.err.Error()
				}
				announce("R", id, wire)
			}
		}()
	}
	wg.Wait()
	return nil
}

func TestC9WithKillNineIsLinearizable(t *testing.T) {
	eachStore(t, func(t *testing.T, s *storeUnderTest) {
		seed := uint64(time.Now().UnixNano())
		rng := rand.New(rand.NewPCG(seed, 0))
		t.Logf("seed %d", seed)
		var history []porcupine.Operation
		var seq int64
		start := newFakeClock().Now().UnixMicro()
		pending := map[string]porcupine.Operation{} // by run/id, until returned
		lost := 0
		for run := range 5 {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), c9EnvStore+"="+s.name, c9EnvDSN+"="+s.dsn,
				c9EnvSeed+"="+strconv.FormatUint(seed+uint64(run), 10), c9EnvStart+"="+strconv.FormatInt(start, 10))
			cmd.Stderr = os.Stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			killAfter := 150 + rng.IntN(200) // returned operations in this run
			returned := 0
			killed := false
			sc := bufio.NewScanner(stdout)
			// After the kill, the lines still in the pipe are read too: an
			// operation announced there did start, and may have taken effect.
			for sc.Scan() {
				kind, rest, _ := strings.Cut(sc.Text(), " ")
				idStr, payload, _ := strings.Cut(rest, " ")
				var w c9Wire
				if err := json.Unmarshal([]byte(payload), &w); err != nil {
					t.Fatalf("child said %q: %v", sc.Text(), err)
				}
				key := fmt.Sprintf("%d/%s", run, idStr)
				seq++
				in := c9Input{op: w.Op, key: w.Key, fp: w.FP, token: w.Token, body: w.Body, now: w.Now}
				switch kind {
				case "C":
					pending[key] = porcupine.Operation{ClientId: run*6 + w.Worker, Input: in, Call: seq}
				case "R":
					if w.Err != "" {
						t.Fatalf("%v failed in the child: %s", w.Op, w.Err)
					}
					op := pending[key]
					delete(pending, key)
					op.Output = c9Output{status: w.Status, token: w.OutToken, ok: w.OK, done: w.Done, fp: w.OutFP, body: w.OutBody}
					op.Return = seq
					history = append(history, op)
					returned++
				}
				if w.Now > start {
					start = w.Now // the next child's clock starts where this one got to
				}
				if !killed && returned >= killAfter {
					cmd.Process.Signal(syscall.SIGKILL)
					killed = true
				}
			}
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			// Whatever was in flight may or may not have happened, and may be
			// linearized anywhere after its call.
			for k, op := range pending {
				op.Output = c9Output{unknown: true}
				op.Return = math.MaxInt64
				history = append(history, op)
				delete(pending, k)
				lost++
			}
		}
		t.Logf("%d operations over 5 processes killed with SIGKILL, %d in flight at a kill", len(history), lost)
		if lost == 0 {
			t.Error("no operation was in flight at any kill; the test proves little")
		}
		checkC9(t, s.name+"-kill", seed, history)
	})
}
