package idempotency_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/idem-dev/idem/idempotency"
)

// C9 (docs/reliability.md): concurrent claim / complete / release / extend
// / get / cleanup against a real store, with a fake clock jumping forward so leases
// and retention run out mid-run, checked for linearizability against a
// sequential model of one key with TTLs. Each operation passes its own "now"
// to the store (the Store API takes the time as an argument), so the model
// evaluates expiry at exactly the time the store did, whatever order the
// operations linearize in.

const (
	c9Lease     = 5 * time.Second
	c9Retention = 20 * time.Second
)

type c9Op int

const (
	opClaim c9Op = iota
	opComplete
	opRelease
	opGet
	opCleanup
	opExtend
)

type c9Input struct {
	op    c9Op
	key   string // "" for cleanup, which touches every key
	fp    string // claim
	token string // complete, release, extend
	body  string // complete
	now   int64  // claim, get, cleanup, extend: unix microseconds
}

type c9Output struct {
	status idempotency.ClaimStatus // claim
	token  string                  // claim
	ok     bool                    // complete: stored; extend: renewed; get: found
	done   bool                    // get
	fp     string                  // get
	body   string                  // claim (completed), get
	err    error
	// unknown: the process was killed before the operation returned; it
	// took effect before the kill or not at all.
	unknown bool
}

// c9State is one key in the model. Comparable, so porcupine's == works.
type c9State struct {
	exists      bool
	fp, token   string
	done        bool
	body        string
	lockedUntil int64
	expiresAt   int64
}

// c9Step is the sequential specification of one key.
func c9Step(s c9State, in c9Input, out c9Output) (bool, c9State) {
	if out.err != nil {
		return false, s
	}
	expired := !s.exists || s.expiresAt <= in.now
	switch in.op {
	case opClaim:
		abandoned := s.exists && !s.done && s.lockedUntil <= in.now && s.fp == in.fp
		if expired || abandoned {
			if out.status != idempotency.Claimed {
				return false, s
			}
			return true, c9State{exists: true, fp: in.fp, token: out.token,
				lockedUntil: in.now + c9Lease.Microseconds(), expiresAt: in.now + c9Retention.Microseconds()}
		}
		switch {
		case s.fp != in.fp:
			return out.status == idempotency.Mismatch, s
		case !s.done:
			return out.status == idempotency.InProgress, s
		}
		return out.status == idempotency.Completed && out.body == s.body, s
	case opComplete:
		owns := s.exists && !s.done && s.token == in.token
		if !owns {
			return !out.ok, s
		}
		if !out.ok {
			return false, s
		}
		s.done, s.body, s.token, s.lockedUntil = true, in.body, "", 0
		return true, s
	case opRelease:
		if s.exists && !s.done && s.token == in.token {
			return true, c9State{}
		}
		return true, s
	case opExtend:
		if !(s.exists && !s.done && s.token == in.token) {
			return !out.ok, s
		}
		if !out.ok {
			return false, s
		}
		s.lockedUntil = in.now + c9Lease.Microseconds()
		return true, s
	case opGet:
		if expired {
			return !out.ok, s
		}
		return out.ok && out.done == s.done && out.fp == s.fp && (!s.done || out.body == s.body), s
	case opCleanup:
		if s.exists && s.expiresAt <= in.now {
			return true, c9State{}
		}
		return true, s
	}
	return false, s
}

// c9Effect is the state after in succeeded, for an operation whose output
// was lost: a claim with a token nobody will ever present, a complete or
// release or extend by its owner, a cleanup.
func c9Effect(s c9State, in c9Input) c9State {
	out := c9Output{status: idempotency.Claimed, token: "?lost", ok: true}
	if ok, next := c9Step(s, in, out); ok {
		return next
	}
	return s
}

var c9Model = porcupine.NondeterministicModel{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var cleanups []porcupine.Operation
		for _, op := range history {
			in := op.Input.(c9Input)
			if in.op == opCleanup {
				cleanups = append(cleanups, op)
				continue
			}
			byKey[in.key] = append(byKey[in.key], op)
		}
		var parts [][]porcupine.Operation
		for _, ops := range byKey {
			// A cleanup deletes each expired key atomically, so its projection
			// onto every key is one atomic step of that key's history.
			parts = append(parts, append(ops, cleanups...))
		}
		return parts
	},
	Init: func() []any { return []any{c9State{}} },
	Step: func(st, input, output any) []any {
		s, in, out := st.(c9State), input.(c9Input), output.(c9Output)
		if out.unknown {
			if next := c9Effect(s, in); next != s {
				return []any{s, next}
			}
			return []any{s}
		}
		if ok, next := c9Step(s, in, out); ok {
			return []any{next}
		}
		return nil
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(c9Input), output.(c9Output)
		if out.unknown {
			return fmt.Sprintf("op %d on %s (fp %s, token %s, body %s, t=%d): killed before it returned", in.op, in.key, in.fp, in.token, in.body, in.now)
		}
		switch in.op {
		case opClaim:
			return fmt.Sprintf("claim(%s,%s,t=%d) -> %v %s %s", in.key, in.fp, in.now, out.status, out.token, out.body)
		case opComplete:
			return fmt.Sprintf("complete(%s,%s,%s) -> %v", in.key, in.token, in.body, out.ok)
		case opRelease:
			return fmt.Sprintf("release(%s,%s)", in.key, in.token)
		case opExtend:
			return fmt.Sprintf("extend(%s,%s,t=%d) -> %v", in.key, in.token, in.now, out.ok)
		case opGet:
			return fmt.Sprintf("get(%s,t=%d) -> found=%v done=%v %s %s", in.key, in.now, out.ok, out.done, out.fp, out.body)
		}
		return fmt.Sprintf("cleanup(t=%d)", in.now)
	},
}

func TestC9ClaimCompleteGetWithTTLIsLinearizable(t *testing.T) {
	eachStore(t, func(t *testing.T, s *storeUnderTest) {
		seed := uint64(time.Now().UnixNano())
		t.Logf("seed %d", seed)
		history := runC9(t, s, seed, 6, 300)
		checkC9(t, s.name, seed, history)
		counts := map[idempotency.ClaimStatus]int{}
		for _, op := range history {
			if op.Input.(c9Input).op == opClaim {
				counts[op.Output.(c9Output).status]++
			}
		}
		t.Logf("%d operations linearizable; claims: %v", len(history), counts)
		// The run must have exercised every outcome, or it proves little.
		for _, st := range []idempotency.ClaimStatus{idempotency.Claimed, idempotency.InProgress, idempotency.Completed, idempotency.Mismatch} {
			if counts[st] == 0 {
				t.Errorf("no claim returned %v; the workload is too narrow", st)
			}
		}
	})
}

// checkC9 fails t unless history is linearizable, leaving a visualization.
func checkC9(t *testing.T, name string, seed uint64, history []porcupine.Operation) {
	t.Helper()
	model := c9Model.ToModel()
	res, info := porcupine.CheckOperationsVerbose(model, history, 60*time.Second)
	if res != porcupine.Ok {
		// Kept after the test ends, unlike t.TempDir, so it can be inspected.
		path := filepath.Join(os.TempDir(), fmt.Sprintf("idem-c9-%s-%d.html", name, seed))
		if f, err := os.Create(path); err == nil {
			porcupine.Visualize(model, info, f)
			f.Close()
		}
		t.Fatalf("history of %d operations is %s (visualization: %s, seed %d)", len(history), res, path, seed)
	}
}

// runC9 runs the workload in three phases and reopens the store between
// them (a restart of the server process: new connections, state only from
// the database), so the history also checks that a restart loses nothing.
func runC9(t *testing.T, s *storeUnderTest, seed uint64, workers, opsPerWorker int) []porcupine.Operation {
	ctx := context.Background()
	clock := newFakeClock()
	var seq atomic.Int64 // porcupine only needs the order of call and return events
	keys := []string{"k0", "k1", "k2"}
	const phases = 3

	var mu sync.Mutex
	var history []porcupine.Operation
	rngs := make([]*rand.Rand, workers)
	tokens := make([]map[string]string, workers) // the last token each worker claimed, per key
	for w := range workers {
		rngs[w] = rand.New(rand.NewPCG(seed, uint64(w)+2))
		tokens[w] = map[string]string{}
	}
	store := s.store
	for phase := range phases {
		if phase > 0 {
			store = s.reopen(t)
		}
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				runC9Worker(ctx, t, store, clock, &seq, keys, rngs[w], tokens[w], w, phase*opsPerWorker/phases, (phase+1)*opsPerWorker/phases, func(op porcupine.Operation) {
					mu.Lock()
					history = append(history, op)
					mu.Unlock()
				})
			}()
		}
		wg.Wait()
	}
	return history
}

func runC9Worker(ctx context.Context, t *testing.T, store idempotency.Store, clock *fakeClock, seq *atomic.Int64, keys []string,
	rng *rand.Rand, tokens map[string]string, w, from, to int, record func(porcupine.Operation)) {
	for i := from; i < to; i++ {
		in, now := nextC9Input(rng, clock, keys, tokens, w, i)
		call := seq.Add(1)
		out := execC9(ctx, store, in, now)
		ret := seq.Add(1)
		if out.err != nil {
			t.Errorf("%v: %v", in.op, out.err)
		}
		if in.op == opClaim && out.status == idempotency.Claimed {
			tokens[in.key] = out.token
		}
		record(porcupine.Operation{ClientId: w, Input: in, Call: call, Output: out, Return: ret})
	}
}

// nextC9Input draws worker w's i-th operation, sometimes jumping the clock.
func nextC9Input(rng *rand.Rand, clock *fakeClock, keys []string, tokens map[string]string, w, i int) (c9Input, time.Time) {
	if rng.IntN(8) == 0 { // time jumps forward while other operations run
		clock.Advance(time.Duration(rng.IntN(3000)) * time.Millisecond)
	}
	key := keys[rng.IntN(len(keys))]
	now := clock.Now()
	in := c9Input{key: key, now: now.UnixMicro()}
	switch r := rng.IntN(100); {
	case r < 40:
		in.op, in.fp = opClaim, []string{"A", "B"}[rng.IntN(4)/3] // mostly A
	case r < 65:
		in.op, in.token, in.body = opComplete, tokens[key], fmt.Sprintf("w%d-%d", w, i)
	case r < 72:
		in.op, in.token = opRelease, tokens[key]
	case r < 80:
		in.op, in.token = opExtend, tokens[key]
	case r < 97:
		in.op = opGet
	default:
		in.op, in.key = opCleanup, ""
	}
	return in, now
}

// execC9 runs one operation against the store.
func execC9(ctx context.Context, store idempotency.Store, in c9Input, now time.Time) c9Output {
	var out c9Output
	k := idempotency.Key{Scope: "s", Key: in.key}
	switch in.op {
	case opClaim:
		c, err := store.Claim(ctx, k, in.fp, now, c9Lease, c9Retention)
		out = c9Output{status: c.Status, token: c.Token, body: string(c.Response.Body), err: err}
	case opComplete:
		out.err = c9Complete(ctx, store, k, in.token, in.body)
		if out.err == nil {
			out.ok = true
		} else if errors.Is(out.err, idempotency.ErrLeaseLost) {
			out.err = nil
		}
	case opRelease:
		out.err = store.Release(ctx, k, in.token)
	case opExtend:
		out.err = store.Extend(ctx, k, in.token, now.Add(c9Lease))
		if out.err == nil {
			out.ok = true
		} else if errors.Is(out.err, idempotency.ErrLeaseLost) {
			out.err = nil
		}
	case opGet:
		e, err := store.Get(ctx, k, now)
		if errors.Is(err, idempotency.ErrNotFound) {
			err = nil
		} else if err == nil {
			out = c9Output{ok: true, done: e.Done, fp: e.Fingerprint, body: string(e.Response.Body)}
		}
		out.err = err
	case opCleanup:
		_, out.err = store.Cleanup(ctx, now)
	}
	return out
}

func c9Complete(ctx context.Context, store idempotency.Store, k idempotency.Key, token, body string) error {
	tx, err := store.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if err := store.Complete(ctx, tx, k, token, idempotency.Response{Status: 201, Body: []byte(body)}); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
