package brokerkit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/verify"
)

// MemDataDir is where a MemBroker keeps its data on its MemFS.
const MemDataDir = "/data"

// MemBroker is an in-process broker on a logstore.MemFS that a verify.Mix
// can crash, for soaks that need more power losses than a machine can
// afford: PowerLoss keeps only what the broker had fsynced (MemFS.CrashClone
// with a seeded random part of the un-synced tail, possibly torn, and of
// the un-synced directory entries), Kill keeps the page cache as kill -9
// does (MemFS.KillClone); both restart the broker on what survived, at the
// same address. As a verify.Disk, FillDisk caps the MemFS at what it holds,
// so the next write that needs a byte more fails with ENOSPC, and FreeDisk
// lifts the cap; a broker restarted while the disk is full restarts on a
// full disk.
//
// Unlike brokertest.Broker it reports failures as errors rather than
// through testing.TB, since a Mix calls it from its own goroutine.
type MemBroker struct {
	opts []broker.Option
	rng  *rand.Rand // guarded by mu

	mu            sync.Mutex
	b             *broker.Broker // nil while down
	mem           *logstore.MemFS
	addr          string
	full          bool
	gen           int // starts
	losses, kills int
	closeErrs     int
	lastCloseErr  error
}

// StartMemBroker starts a broker on a fresh MemFS at MemDataDir, listening
// on 127.0.0.1 (a free port, kept across restarts) with an admin server on
// another. seed draws what each power loss keeps. opts come after these
// defaults (warnings and errors logged to stderr), so they may override
// them, and apply to every restart.
func StartMemBroker(seed int64, opts ...broker.Option) (*MemBroker, error) {
	m := &MemBroker{
		opts: append([]broker.Option{broker.WithDataDir(MemDataDir), broker.WithAdminAddr("127.0.0.1:0"),
			broker.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))}, opts...),
		rng:  rand.New(rand.NewPCG(uint64(seed), 0x4d454d42)),
		mem:  logstore.NewMemFS(),
		addr: "127.0.0.1:0",
	}
	if err := m.start(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *MemBroker) start() error {
	if m.full {
		m.mem.SetCapacity(m.mem.UsedBytes())
	}
	b, err := broker.New(append(append([]broker.Option{}, m.opts...), WithFS(m.mem), broker.WithKafkaAddr(m.addr))...)
	if err == nil {
		err = b.Start()
	}
	if err != nil {
		return fmt.Errorf("brokerkit: start the in-process broker on its MemFS (start %d): %w", m.gen+1, err)
	}
	m.b, m.addr = b, b.Addr()
	m.gen++
	return nil
}

// Addr is the broker's Kafka address, the same across restarts.
func (m *MemBroker) Addr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.addr
}

// AdminAddr is the running broker's admin address (/healthz, /metrics);
// it changes on every restart, and is "" while the broker is down.
func (m *MemBroker) AdminAddr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.b == nil {
		return ""
	}
	return m.b.AdminAddr()
}

// FS is the file system the broker runs on now (a crash replaces it).
func (m *MemBroker) FS() *logstore.MemFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mem
}

// crash stops the broker as a crash would and replaces the MemFS with what
// clone keeps of it.
func (m *MemBroker) crash(clone func(*logstore.MemFS) *logstore.MemFS) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.b == nil {
		return errors.New("brokerkit: crash of a broker that is down")
	}
	b := m.b
	m.b = nil
	if err := b.Crash(func() { m.mem = clone(m.mem) }); err != nil {
		// Crash closes the old instance's storage after the clone, only
		// to end its goroutines: a real crash closes nothing. Its errors
		// (a full disk refusing the checkpoints of a close) concern a file
		// system nobody will read again, so they are counted, not
		// returned.
		m.closeErrs++
		m.lastCloseErr = err
	}
	return nil
}

// CloseErrors counts the crashes whose abandoned storage failed to close
// (see crash), with the last such error.
func (m *MemBroker) CloseErrors() (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closeErrs, m.lastCloseErr
}

// PowerLoss implements verify.PowerLosser.
func (m *MemBroker) PowerLoss() error {
	err := m.crash(func(mem *logstore.MemFS) *logstore.MemFS {
		return mem.CrashClone(logstore.CrashOptions{Rand: m.rng, TornTail: 0.3})
	})
	if err == nil {
		m.mu.Lock()
		m.losses++
		m.mu.Unlock()
	}
	return err
}

// Kill implements verify.Target: a process crash, the page cache kept.
func (m *MemBroker) Kill() error {
	err := m.crash((*logstore.MemFS).KillClone)
	if err == nil {
		m.mu.Lock()
		m.kills++
		m.mu.Unlock()
	}
	return err
}

// Restart implements verify.Target.
func (m *MemBroker) Restart(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.b != nil {
		return errors.New("brokerkit: restart of a running broker")
	}
	return m.start()
}

// Running implements verify.Target.
func (m *MemBroker) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.b != nil
}

// String implements verify.Target.
func (m *MemBroker) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return fmt.Sprintf("in-process broker #%d at %s", m.gen, m.addr)
}

// Crashes returns how many power losses and kills the broker went through.
func (m *MemBroker) Crashes() (powerLosses, kills int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.losses, m.kills
}

// FillDisk implements verify.Disk: the MemFS may hold no more than it holds.
func (m *MemBroker) FillDisk() (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.full = true
	used := m.mem.UsedBytes()
	m.mem.SetCapacity(used)
	return fmt.Sprintf("MemFS capped at the %.1f MiB it holds", float64(used)/(1<<20)), nil
}

// FreeDisk implements verify.Disk.
func (m *MemBroker) FreeDisk() (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.full = false
	m.mem.SetCapacity(0)
	return fmt.Sprintf("MemFS uncapped at %.1f MiB", float64(m.mem.UsedBytes())/(1<<20)), nil
}

// Disk is m as a verify.Disk.
func (m *MemBroker) Disk() verify.Disk { return memDisk{m} }

type memDisk struct{ m *MemBroker }

func (d memDisk) Fill() (string, error) { return d.m.FillDisk() }
func (d memDisk) Free() (string, error) { return d.m.FreeDisk() }

// Close closes the broker gracefully, if it is up.
func (m *MemBroker) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.b == nil {
		return nil
	}
	b := m.b
	m.b = nil
	return b.Close()
}

// Dump copies the broker's files as they are now (live contents, synced or
// not) into dir on the OS file system, as evidence of a failed run.
func (m *MemBroker) Dump(dir string) error {
	mem := m.FS()
	var walk func(from, to string) error
	walk = func(from, to string) error {
		names, err := mem.ReadDir(from)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(to, 0o755); err != nil {
			return err
		}
		for _, n := range names {
			src := filepath.Join(from, n)
			if _, err := mem.ReadDir(src); err == nil {
				if err := walk(src, filepath.Join(to, n)); err != nil {
					return err
				}
				continue
			}
			data, err := mem.ReadFile(src)
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(to, n), data, 0o644); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(MemDataDir, dir)
}

var (
	_ verify.Target      = (*MemBroker)(nil)
	_ verify.PowerLosser = (*MemBroker)(nil)
)
