package verify

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// MixFault names one kind of fault a Mix can inject.
type MixFault string

const (
	// MixKill sends SIGKILL to the broker process, waits, restarts it on the
	// same data directory.
	MixKill MixFault = "kill"
	// MixPause stops the broker with SIGSTOP and resumes it with SIGCONT:
	// every client times out while the broker keeps its state and sockets,
	// so requests land late (Jepsen reproduced KAFKA-17754 this way).
	MixPause MixFault = "pause"
	// MixLatency adds latency to every request through the proxies.
	MixLatency MixFault = "latency"
	// MixLostAck drops the responses of a few produce requests after the
	// broker applied them.
	MixLostAck MixFault = "lost-ack"
	// MixAckTimeout delays a produce response past the client's timeout.
	MixAckTimeout MixFault = "ack-timeout"
	// MixReset resets every client connection through the proxies.
	MixReset MixFault = "reset"
	// MixHold holds one request of any kind and delivers it late.
	MixHold MixFault = "hold"
)

// AllMixFaults lists every fault kind, in a fixed order.
var AllMixFaults = []MixFault{MixKill, MixPause, MixLatency, MixLostAck, MixAckTimeout, MixReset, MixHold}

// ProcessFaults are the kinds that need the broker process (not possible
// against a cluster the harness did not start).
func (f MixFault) NeedsProcess() bool { return f == MixKill || f == MixPause }

// MixConfig is the schedule of a Mix.
type MixConfig struct {
	Seed int64
	// Broker is the broker process to kill and pause; nil leaves out the
	// process faults.
	Broker *Process
	// Proxies carry the network faults; none leaves those out.
	Proxies []*Proxy
	// Faults to draw from (default: every kind the targets allow).
	Faults []MixFault
	// Quiet periods between faults are drawn from [MinQuiet, MaxQuiet]:
	// clients must make progress between faults, or the run only measures
	// how well they wait (the Bufstream pattern).
	MinQuiet, MaxQuiet time.Duration
	// Faults last [MinFault, MaxFault]: the pause, the latency window, the
	// down time after a kill, the delay of a held request or response.
	MinFault, MaxFault time.Duration
	// AckTimeout is how long MixAckTimeout delays a response; it should
	// exceed the clients' request timeout (default MaxFault).
	AckTimeout time.Duration
	// HoldFor is how long MixHold holds a request (default: a fault length
	// drawn from [MinFault, MaxFault]); past the clients' request timeout it
	// makes the late delivery of a request its client gave up on.
	HoldFor time.Duration
	// Rounds draws faults in rounds: each round is a seeded shuffle of all
	// the kinds, so every kind is injected once per round. Without it each
	// fault is drawn independently, and a short run may miss a kind.
	Rounds bool
	// Recorder, if set, receives every fault as an info op of NemesisProcess.
	Recorder *Recorder
	// Logf, if set, logs every fault.
	Logf func(format string, args ...any)
}

// FaultEvent is one line of a Mix's fault log.
type FaultEvent struct {
	At    time.Duration // since Run started
	Fault MixFault
	What  string
}

func (e FaultEvent) String() string {
	return fmt.Sprintf("%9.3fs %-12s %s", e.At.Seconds(), e.Fault, e.What)
}

// Mix is the seeded nemesis of docs/reliability.md: it alternates
// quiet periods with one fault at a time drawn from a mix of process faults
// (kill -9, SIGSTOP pauses) and proxy faults (latency, lost acks, ack
// timeouts, resets, held requests), and ends with a heal. The same seed
// draws the same schedule; the broker's own timing of course varies, which
// is why the fault log is kept beside the history.
type Mix struct {
	cfg   MixConfig
	rng   *rand.Rand
	start time.Time

	mu     sync.Mutex
	log    []FaultEvent
	counts map[MixFault]int
}

// NewMix returns a Mix; it does nothing until Run.
func NewMix(cfg MixConfig) *Mix {
	if cfg.MaxQuiet < cfg.MinQuiet {
		cfg.MaxQuiet = cfg.MinQuiet
	}
	if cfg.MaxFault < cfg.MinFault {
		cfg.MaxFault = cfg.MinFault
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = cfg.MaxFault
	}
	var usable []MixFault
	for _, f := range cfg.Faults {
		if f.NeedsProcess() && cfg.Broker == nil || !f.NeedsProcess() && len(cfg.Proxies) == 0 {
			continue
		}
		usable = append(usable, f)
	}
	if cfg.Faults == nil {
		for _, f := range AllMixFaults {
			if f.NeedsProcess() && cfg.Broker != nil || !f.NeedsProcess() && len(cfg.Proxies) > 0 {
				usable = append(usable, f)
			}
		}
	}
	cfg.Faults = usable
	seed := uint64(cfg.Seed)
	m := &Mix{cfg: cfg, rng: rand.New(rand.NewPCG(seed, seed^0x6a09e667f3bcc909)), counts: map[MixFault]int{}, start: time.Now()}
	for _, p := range cfg.Proxies {
		p.OnFault = func(desc string) { m.note("proxy", desc) }
	}
	return m
}

// Seed is the seed the Mix draws its schedule from; the same seed replays
// the same schedule.
func (m *Mix) Seed() int64 { return m.cfg.Seed }

// Faults are the kinds this Mix draws from.
func (m *Mix) Faults() []MixFault { return append([]MixFault(nil), m.cfg.Faults...) }

// Counts returns how many faults of each kind were injected.
func (m *Mix) Counts() map[MixFault]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[MixFault]int, len(m.counts))
	for k, v := range m.counts {
		out[k] = v
	}
	return out
}

// Log returns the fault log so far.
func (m *Mix) Log() []FaultEvent {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]FaultEvent(nil), m.log...)
}

// Run injects faults until ctx is done, then heals: the broker is resumed
// and running, the proxies forward cleanly. The fault in progress when ctx
// ends is completed first, so no fault is cut in half. An error means the
// broker could not be restarted on its own data directory, the most
// important failure this harness can find.
func (m *Mix) Run(ctx context.Context) error {
	m.start = time.Now()
	var round []MixFault
	for ctx.Err() == nil {
		if !sleepCtx(ctx, m.between(m.cfg.MinQuiet, m.cfg.MaxQuiet)) || len(m.cfg.Faults) == 0 {
			break
		}
		var f MixFault
		if m.cfg.Rounds {
			if len(round) == 0 {
				round = append(round, m.cfg.Faults...)
				m.rng.Shuffle(len(round), func(i, j int) { round[i], round[j] = round[j], round[i] })
			}
			f, round = round[0], round[1:]
		} else {
			f = m.cfg.Faults[m.rng.IntN(len(m.cfg.Faults))]
		}
		if err := m.inject(f); err != nil {
			return err
		}
	}
	return m.Heal()
}

// Heal undoes every fault: proxies clear their rules and latency, a paused
// broker resumes, a dead one restarts.
func (m *Mix) Heal() error {
	for _, p := range m.cfg.Proxies {
		p.Clear()
	}
	if b := m.cfg.Broker; b != nil {
		if pid := b.Pid(); pid != 0 {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
		if !b.Running() {
			if err := b.Start(context.Background()); err != nil {
				m.note(MixKill, "heal: restart failed: "+err.Error())
				return fmt.Errorf("verify: heal: restart: %w", err)
			}
			m.note(MixKill, fmt.Sprintf("heal: restarted as pid %d", b.Pid()))
		}
	}
	m.note("heal", "all faults healed")
	return nil
}

func (m *Mix) inject(f MixFault) error {
	d := m.between(m.cfg.MinFault, m.cfg.MaxFault)
	m.mu.Lock()
	m.counts[f]++
	m.mu.Unlock()
	switch f {
	case MixKill:
		b := m.cfg.Broker
		m.note(f, fmt.Sprintf("SIGKILL pid %d; down for %v", b.Pid(), d.Round(time.Millisecond)))
		if err := b.Kill(); err != nil {
			return err
		}
		time.Sleep(d)
		if err := b.Start(context.Background()); err != nil {
			m.note(f, "restart failed: "+err.Error())
			return fmt.Errorf("verify: restart after kill: %w", err)
		}
		m.note(f, fmt.Sprintf("restarted as pid %d", b.Pid()))
	case MixPause:
		pid := m.cfg.Broker.Pid()
		if pid == 0 {
			return nil
		}
		m.note(f, fmt.Sprintf("SIGSTOP pid %d for %v", pid, d.Round(time.Millisecond)))
		_ = syscall.Kill(pid, syscall.SIGSTOP)
		time.Sleep(d)
		_ = syscall.Kill(pid, syscall.SIGCONT)
		m.note(f, fmt.Sprintf("SIGCONT pid %d", pid))
	case MixLatency:
		lat := time.Duration(1+m.rng.IntN(50)) * time.Millisecond
		m.note(f, fmt.Sprintf("%v per request for %v", lat, d.Round(time.Millisecond)))
		for _, p := range m.cfg.Proxies {
			p.SetLatency(lat)
		}
		time.Sleep(d)
		for _, p := range m.cfg.Proxies {
			p.SetLatency(0)
		}
	case MixLostAck:
		n := 1 + m.rng.IntN(3)
		m.note(f, fmt.Sprintf("next %d produce responses dropped", n))
		for _, p := range m.cfg.Proxies {
			p.Add(Rule{Kind: FaultDropResponse, APIKey: APIProduce, Count: n})
		}
	case MixAckTimeout:
		m.note(f, fmt.Sprintf("next produce response delayed %v", m.cfg.AckTimeout))
		for _, p := range m.cfg.Proxies {
			p.Add(Rule{Kind: FaultDelayResponse, APIKey: APIProduce, Delay: m.cfg.AckTimeout, Count: 1})
		}
	case MixReset:
		m.note(f, "reset every client connection")
		for _, p := range m.cfg.Proxies {
			p.ResetAll()
		}
	case MixHold:
		if m.cfg.HoldFor > 0 {
			d = m.cfg.HoldFor
		}
		m.note(f, fmt.Sprintf("next request held %v", d.Round(time.Millisecond)))
		for _, p := range m.cfg.Proxies {
			p.Add(Rule{Kind: FaultHold, APIKey: APIAnyKey, Delay: d, Count: 1})
		}
	}
	return nil
}

func (m *Mix) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(m.rng.Int64N(int64(hi-lo)+1))
}

func (m *Mix) note(f MixFault, what string) {
	e := FaultEvent{At: time.Since(m.start), Fault: f, What: what}
	m.mu.Lock()
	m.log = append(m.log, e)
	m.mu.Unlock()
	if m.cfg.Recorder != nil {
		m.cfg.Recorder.Add(Op{Process: NemesisProcess, Type: Info, F: "nemesis", Value: string(f) + ": " + what})
	}
	if m.cfg.Logf != nil {
		m.cfg.Logf("nemesis: %s", e)
	}
}

// Save writes the run's evidence for replay: the history and seed (through
// SaveArtifacts, with copies of dirs such as the broker's data directory)
// and the fault log as faults.log. It returns the directory.
func (m *Mix) Save(name string, h History, dirs ...string) (string, error) {
	dir, err := SaveArtifacts(name, m.cfg.Seed, h, dirs...)
	if dir == "" {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d; faults drawn from %v\n", m.cfg.Seed, m.cfg.Faults)
	for _, e := range m.Log() {
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	if werr := os.WriteFile(filepath.Join(dir, "faults.log"), []byte(b.String()), 0o644); err == nil {
		err = werr
	}
	return dir, err
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
