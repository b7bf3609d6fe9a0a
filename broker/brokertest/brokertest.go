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
// Extra options are applied last, to this start only.
func (b *Broker) Restart(t testing.TB, extra ...broker.Option) {
	t.Helper()
	addr := b.Addr()
	if err := b.Close(); err != nil {
		t.Logf("brokertest: close before restart: %v", err)
	}
	opts := append(append([]broker.Option{}, b.opts...), broker.WithKafkaAddr(addr))
	b.start(t, append(opts, extra...))
}

// CrashRestart stops the broker the way a crash would (see
// broker.Broker.Crash: every connection drops at once and responses in
// flight are lost), calls atCrash, if not nil, while the broker is down, and
// starts it again at the same address. The options atCrash returns are
// applied last, to this start and every later one. With the operating
// system's file system nothing written is lost, so this tests how clients
// recover, not durability; idem's own tests also cut an in-memory file
// system in atCrash, as a power loss would, and restart on what is left.
func (b *Broker) CrashRestart(t testing.TB, atCrash func() []broker.Option) {
	t.Helper()
	addr := b.Addr()
	b.mu.Lock()
	inner := b.Broker
	b.mu.Unlock()
	var extra []broker.Option
	err := inner.Crash(func() {
		if atCrash != nil {
			extra = atCrash()
		}
	})
	if err != nil {
		t.Logf("brokertest: closing after crash: %v", err)
	}
	b.opts = append(append(append([]broker.Option{}, b.opts...), broker.WithKafkaAddr(addr)), extra...)
	b.start(t, b.opts)
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
