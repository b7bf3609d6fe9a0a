// Package brokertest starts an idem broker inside a Go test with one call:
//
//	b := brokertest.Run(t, broker.WithTopics("orders"))
//	cl := b.Client(t)
//
// The broker listens on a random loopback port, keeps its data in t.TempDir(),
// and is closed by t.Cleanup. Consumer groups start rebalancing at once
// (group.initial.rebalance.delay.ms=0) unless an option says otherwise.
package brokertest

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/internal/logstore"
)

// Broker is a broker started by Run.
type Broker struct {
	*broker.Broker
	opts []broker.Option
	mu   sync.Mutex
}

// Run starts a broker for the test and registers its Close with t.Cleanup.
// Options are applied after the test defaults (127.0.0.1:0, a temporary data
// directory, admin on 127.0.0.1:0, no initial rebalance delay, a 256 KiB
// disk reserve, warnings logged through t.Log), so they override them.
func Run(t testing.TB, opts ...broker.Option) *Broker {
	t.Helper()
	lw := &tlog{t: t}
	t.Cleanup(func() { lw.mu.Lock(); lw.done = true; lw.mu.Unlock() }) // runs after the broker's Close
	defaults := []broker.Option{
		broker.WithDataDir(t.TempDir()),
		broker.WithKafkaAddr("127.0.0.1:0"),
		broker.WithAdminAddr("127.0.0.1:0"),
		broker.WithProperty("group.initial.rebalance.delay.ms", "0"),
		broker.WithProperty("idem.disk.reserve.bytes", "262144"), // enough for a test's metadata, cheap to create
		broker.WithLogger(slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelWarn}))),
	}
	b := &Broker{opts: append(defaults, opts...)}
	b.start(t, b.opts)
	t.Cleanup(func() { b.Close() })
	return b
}

func (b *Broker) start(t testing.TB, opts []broker.Option) {
	t.Helper()
	inner, err := broker.New(opts...)
	if err != nil {
		t.Fatalf("brokertest: %v", err)
	}
	if err := inner.Start(); err != nil {
		t.Fatalf("brokertest: start: %v", err)
	}
	b.mu.Lock()
	b.Broker = inner
	b.mu.Unlock()
}

// Close closes the current broker instance.
func (b *Broker) Close() error {
	b.mu.Lock()
	inner := b.Broker
	b.mu.Unlock()
	return inner.Close()
}

// AdminURL is the base URL of the admin HTTP server (/healthz, /metrics).
func (b *Broker) AdminURL() string { return "http://" + b.AdminAddr() }

// Client returns a franz-go client seeded with the broker, closed at cleanup.
func (b *Broker) Client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(b.Addr())}, opts...)...)
	if err != nil {
		t.Fatalf("brokertest: client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Restart closes the broker gracefully and starts it again on the same data
// directory and the same Kafka address (so existing clients reconnect).
// Extra options are applied last; a power-loss test passes
// broker.WithFS(mem.CrashClone(…)) to restart on what a crash left.
func (b *Broker) Restart(t testing.TB, extra ...broker.Option) {
	t.Helper()
	addr := b.Addr()
	if err := b.Close(); err != nil {
		t.Logf("brokertest: close before restart: %v", err)
	}
	opts := append(append([]broker.Option{}, b.opts...), broker.WithKafkaAddr(addr))
	b.start(t, append(opts, extra...))
}

// CrashRestart simulates a crash of a broker running on mem (started with
// broker.WithFS(mem)): connections drop at once, the file system is cut at
// that instant (a power loss keeps only fsynced data; a kill -9 keeps the
// page cache too), and the broker restarts on what survived, at the same
// address. It returns the new file system, for the next crash.
func (b *Broker) CrashRestart(t testing.TB, mem *logstore.MemFS, powerLoss bool) *logstore.MemFS {
	t.Helper()
	addr := b.Addr()
	var after *logstore.MemFS
	b.mu.Lock()
	inner := b.Broker
	b.mu.Unlock()
	err := inner.Crash(func() {
		if powerLoss {
			after = mem.CrashClone(logstore.CrashOptions{})
		} else {
			after = mem.KillClone()
		}
	})
	if err != nil {
		t.Logf("brokertest: closing after crash: %v", err)
	}
	opts := append(append([]broker.Option{}, b.opts...), broker.WithKafkaAddr(addr), broker.WithFS(after))
	b.opts = opts
	b.start(t, opts)
	return after
}

// Ctx returns a context cancelled at test cleanup.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}

// tlog forwards log lines to t.Log until the test ends.
type tlog struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *tlog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return len(p), nil
	}
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var _ io.Writer = (*tlog)(nil)
