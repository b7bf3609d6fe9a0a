package txn

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/testkit"
)

// fakeClock is a settable Config.Now: the test kit's clock.
type fakeClock = testkit.Clock

func newFakeClock() *fakeClock { return testkit.NewClock(time.UnixMilli(1_700_000_000_000)) }

// idSource hands out producer ids 1000, 1001, …; shared across reopenings so
// ids are never reused, like the broker's durable allocator.
type idSource struct {
	mu   sync.Mutex
	next int64
}

func (s *idSource) Next() (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.next == 0 {
		s.next = 1000
	}
	s.next++
	return s.next - 1, nil
}

// marker is one call to the recording MarkerWriter or OffsetCommitter.
type marker struct {
	Target string // "topic/partition" or "group:<id>"
	PID    int64
	Epoch  int16
	Commit bool
}

func (m marker) String() string {
	kind := "ABORT"
	if m.Commit {
		kind = "COMMIT"
	}
	return fmt.Sprintf("%s %s pid=%d epoch=%d", kind, m.Target, m.PID, m.Epoch)
}

// recorder is a MarkerWriter and OffsetCommitter that records every call.
// hook, when set, runs first and may block or fail the call.
type recorder struct {
	mu    sync.Mutex
	calls []marker
	hook  func(ctx context.Context, m marker) error
}

func (r *recorder) WriteMarker(ctx context.Context, topic string, partition int32, pid int64, epoch int16, commit bool, _ int32) error {
	return r.record(ctx, marker{fmt.Sprintf("%s/%d", topic, partition), pid, epoch, commit})
}

func (r *recorder) CompleteTxnOffsets(ctx context.Context, group string, pid int64, epoch int16, commit bool) error {
	return r.record(ctx, marker{"group:" + group, pid, epoch, commit})
}

func (r *recorder) record(ctx context.Context, m marker) error {
	r.mu.Lock()
	hook := r.hook
	r.mu.Unlock()
	if hook != nil {
		if err := hook(ctx, m); err != nil {
			return err
		}
	}
	r.mu.Lock()
	r.calls = append(r.calls, m)
	r.mu.Unlock()
	return nil
}

func (r *recorder) setHook(h func(ctx context.Context, m marker) error) {
	r.mu.Lock()
	r.hook = h
	r.mu.Unlock()
}

// take returns the calls so far, sorted, and forgets them.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, m := range r.calls {
		out = append(out, m.String())
	}
	r.calls = nil
	slices.Sort(out)
	return out
}

// env is one coordinator under test with its fakes.
type env struct {
	t     *testing.T
	fs    *logstore.MemFS
	clock *fakeClock
	ids   *idSource
	rec   *recorder
	c     *Coordinator
	cfg   Config
}

const testDir = "data/__transaction_state"

func newEnv(t *testing.T, mod ...func(*Config)) *env {
	t.Helper()
	e := &env{t: t, fs: logstore.NewMemFS(), clock: newFakeClock(), ids: &idSource{}, rec: &recorder{}}
	e.cfg = DefaultConfig()
	e.cfg.Dir, e.cfg.ProducerIDs, e.cfg.Now = testDir, e.ids, e.clock.Now
	e.cfg.manualTick, e.cfg.retryBackoff = true, time.Millisecond
	for _, m := range mod {
		m(&e.cfg)
	}
	e.open(e.fs)
	t.Cleanup(func() { e.c.Close() })
	return e
}

// open starts a coordinator on fs (the original or a crash clone).
func (e *env) open(fs *logstore.MemFS) {
	e.t.Helper()
	cfg := e.cfg
	cfg.FS, cfg.Markers, cfg.Offsets = fs, e.rec, e.rec
	c, err := New(cfg)
	if err != nil {
		e.t.Fatalf("New: %v", err)
	}
	e.fs, e.c = fs, c
}

// crash simulates a power loss: only fsynced bytes survive. The old
// coordinator is closed (its goroutines joined) after the clone is taken.
func (e *env) crash() {
	e.t.Helper()
	clone := e.fs.CrashClone(logstore.CrashOptions{})
	e.c.Close()
	e.open(clone)
}

// waitIdle waits until no transaction is being completed.
func (e *env) waitIdle() {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		e.c.mu.RLock()
		busy := false
		for _, t := range e.c.txns {
			busy = busy || t.done != nil || t.busy
		}
		e.c.mu.RUnlock()
		if !busy {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatal("transactions still completing after 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func (e *env) init(id string) ProducerIDEpoch {
	e.t.Helper()
	p, err := e.c.InitProducerID(context.Background(), id, time.Minute, NoProducer)
	if err != nil {
		e.t.Fatalf("InitProducerID(%s): %v", id, err)
	}
	return p
}

func (e *env) state(id string) State {
	e.t.Helper()
	info, err := e.c.Describe(id)
	if err != nil {
		e.t.Fatalf("Describe(%s): %v", id, err)
	}
	return info.State
}

// durableState replays what an fsynced-only copy of the log says about id
// right now: the state a power loss at this instant would leave.
func durableState(t *testing.T, fs *logstore.MemFS, id string) (txnState, bool) {
	t.Helper()
	clone := fs.CrashClone(logstore.CrashOptions{})
	l, err := logstore.Open(clone, testDir, logstore.Config{RetentionTime: -1})
	if err != nil {
		t.Fatalf("open crash clone: %v", err)
	}
	defer l.Close()
	var last *txnState
	err = l.Scan(l.StartOffset(), func(_ logstore.BatchHeader, b []byte) error {
		return logstore.DecodeRecords(b, func(_ logstore.BatchHeader, _ int64, r logstore.Record) error {
			rid, s, err := decodeRecord(r)
			if err != nil || rid != id {
				return err
			}
			last = s
			return nil
		})
	})
	if err != nil {
		t.Fatalf("scan crash clone: %v", err)
	}
	if last == nil {
		return txnState{}, false
	}
	return *last, true
}

func wantErr(t *testing.T, what string, got, want error) {
	t.Helper()
	if want == nil && got != nil || want != nil && !errors.Is(got, want) {
		t.Fatalf("%s: got error %v, want %v", what, got, want)
	}
}

func equal(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s:\n got  %q\n want %q", what, got, want)
	}
}
