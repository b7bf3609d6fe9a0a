package verify

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// NemesisConfig is the schedule of a Nemesis. Durations are drawn uniformly
// from their ranges by a generator seeded with Seed, so a schedule can be
// replayed (the broker's own timing of course varies).
type NemesisConfig struct {
	Seed int64
	// The broker runs for a quiet period in [MinUp, MaxUp] after each
	// (re)start before the next kill: clients must make progress between
	// faults, or the test only measures how well they wait.
	MinUp, MaxUp time.Duration
	// After a kill the broker stays down for [0, MaxDown].
	MaxDown time.Duration
	// Recorder, if set, receives each kill and start as an info op of
	// NemesisProcess, so the history shows faults beside the client ops.
	Recorder *Recorder
	// Logf, if set, logs each fault (e.g. t.Logf).
	Logf func(format string, args ...any)
}

// Nemesis kills a broker Process with SIGKILL and restarts it on the same
// data directory, on a seeded schedule.
type Nemesis struct {
	proc  *Process
	cfg   NemesisConfig
	rng   *rand.Rand
	kills int
}

// NewNemesis returns a nemesis for p; p must already be running when Run is
// called.
func NewNemesis(p *Process, cfg NemesisConfig) *Nemesis {
	if cfg.MaxUp < cfg.MinUp {
		cfg.MaxUp = cfg.MinUp
	}
	seed := uint64(cfg.Seed)
	return &Nemesis{proc: p, cfg: cfg, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Kills is the number of kills so far; call it after Run returns.
func (n *Nemesis) Kills() int { return n.kills }

// Run kills and restarts the broker until ctx is done. It always returns with
// the broker running (the heal phase), unless a restart fails, which is
// returned as an error: a broker that cannot recover its own data directory
// after kill -9 is the most important failure this harness can find.
func (n *Nemesis) Run(ctx context.Context) error {
	for {
		up := n.between(n.cfg.MinUp, n.cfg.MaxUp)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(up):
		}
		if err := ctx.Err(); err != nil {
			return nil
		}
		pid := n.proc.Pid()
		n.note(FKill, fmt.Sprintf("SIGKILL pid %d after %v up", pid, up.Round(time.Millisecond)))
		if err := n.proc.Kill(); err != nil {
			return err
		}
		n.kills++
		// The downtime is not cut short by ctx: the heal must follow a
		// complete fault, and it is short.
		time.Sleep(n.between(0, n.cfg.MaxDown))
		// A restart gets its own deadline, not ctx's: Run must leave the
		// broker running even when the test's fault window just closed.
		if err := n.proc.Start(context.Background()); err != nil {
			n.note(FStart, "restart failed: "+err.Error())
			return fmt.Errorf("verify: restart after kill %d: %w", n.kills, err)
		}
		n.note(FStart, fmt.Sprintf("restarted as pid %d", n.proc.Pid()))
	}
}

func (n *Nemesis) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(n.rng.Int64N(int64(hi-lo)+1))
}

func (n *Nemesis) note(f, msg string) {
	if n.cfg.Recorder != nil {
		n.cfg.Recorder.Add(Op{Process: NemesisProcess, Type: Info, F: f, Value: msg})
	}
	if n.cfg.Logf != nil {
		n.cfg.Logf("nemesis: %s: %s", f, msg)
	}
}
