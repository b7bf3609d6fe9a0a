package verify

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
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
	// MixPowerLoss cuts the broker's power: it stops at once and keeps only
	// what it had fsynced (and perhaps a torn part of the rest), then
	// restarts on that. It needs a Target that is a PowerLosser.
	MixPowerLoss MixFault = "power-loss"
	// MixDiskFull fills the file system under the broker's data (Disk)
	// until writes fail, holds it full, then frees it. With
	// RestartOnFullDisk, one episode in two also crashes the broker half-way
	// and restarts it on the full disk.
	MixDiskFull MixFault = "disk-full"
	// MixConnFlood opens FloodConns connections to FloodAddr, more than the
	// broker admits (max.connections, or half its file descriptors), holds
	// them for the fault's length, then closes them.
	MixConnFlood MixFault = "conn-flood"
)

// AllMixFaults lists every fault kind, in a fixed order.
var AllMixFaults = []MixFault{MixKill, MixPause, MixLatency, MixLostAck, MixAckTimeout, MixReset, MixHold, MixPowerLoss, MixDiskFull, MixConnFlood}

// Effects a Mix counts beside its faults (Mix.Effects): what the faults were
// seen to do, when that can differ from what was asked.
const (
	// EffectFloodOverLimit counts floods of which the broker refused at
	// least one connection: the flood reached its connection limit.
	EffectFloodOverLimit = "flood-over-limit"
	// EffectRestartOnFullDisk counts crashes and restarts on a full disk.
	EffectRestartOnFullDisk = "restart-on-full-disk"
)

// Target is the broker a Mix crashes, pauses and restarts: a *Process
// (kill -9, SIGSTOP), or any broker that can be stopped abruptly and
// started again on what the stop left, such as an in-process broker on a
// simulated file system whose crashes are power losses
// (brokerkit.MemBroker).
type Target interface {
	// Kill stops the broker as kill -9 does: nothing is flushed or
	// closed, but what it wrote survives (the page cache does).
	Kill() error
	// Restart starts the broker again on the same data and address and
	// returns once it accepts connections.
	Restart(ctx context.Context) error
	// Running reports whether the broker is up.
	Running() bool
	// String names the running instance for the fault log ("pid 4242").
	String() string
}

// Pauser is a Target that can be frozen and thawed (MixPause), as SIGSTOP
// and SIGCONT do to a process.
type Pauser interface {
	Pause() error
	// Resume thaws a paused broker; resuming one that is not paused does
	// nothing.
	Resume() error
}

// PowerLosser is a Target whose power can be cut (MixPowerLoss): it stops
// as Kill does, but keeps only what it had fsynced.
type PowerLosser interface {
	PowerLoss() error
}

// Disk is the file system under the broker's data, for MixDiskFull.
type Disk interface {
	// Fill takes the free space until writes fail (ENOSPC) and says how
	// much it took.
	Fill() (string, error)
	// Free gives the space back; freeing a disk that Fill did not fill
	// does nothing.
	Free() (string, error)
}

// MixConfig is the schedule of a Mix.
type MixConfig struct {
	Seed int64
	// Broker is the broker process to kill and pause: the same as Target,
	// which it fills in when Target is nil.
	Broker *Process
	// Target is the broker to crash (MixKill, MixPowerLoss if it is a
	// PowerLosser) and pause (MixPause if it is a Pauser); nil leaves
	// those faults out.
	Target Target
	// Proxies carry the network faults; none leaves those out.
	Proxies []*Proxy
	// Disk is the file system MixDiskFull fills; nil leaves it out.
	Disk Disk
	// RestartOnFullDisk makes one disk-full episode in two (drawn from the
	// seed) also crash the Target half-way through and restart it while
	// the disk is still full.
	RestartOnFullDisk bool
	// FloodAddr and FloodConns configure MixConnFlood: how many
	// connections to open to which address (the broker's own, not a
	// proxy's); either unset leaves it out.
	FloodAddr  string
	FloodConns int
	// Faults to draw from (default: every kind the targets allow). Kinds
	// the targets do not allow are dropped.
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
//
// The broker need not be a process: any Target can be crashed, and one
// that is a PowerLosser loses power (an in-process broker on a simulated
// file system). Beside them a Mix injects resource faults: a full disk
// (Disk) and a connection flood (FloodAddr).
type Mix struct {
	cfg   MixConfig
	rng   *rand.Rand
	start time.Time

	mu      sync.Mutex
	log     []FaultEvent
	counts  map[MixFault]int
	effects map[string]int
	full    bool // the Disk is filled
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
	if cfg.Target == nil && cfg.Broker != nil {
		cfg.Target = cfg.Broker
	}
	want := cfg.Faults
	if want == nil {
		want = AllMixFaults
	}
	var usable []MixFault
	for _, f := range want {
		if cfg.supports(f) {
			usable = append(usable, f)
		}
	}
	cfg.Faults = usable
	seed := uint64(cfg.Seed)
	m := &Mix{cfg: cfg, rng: rand.New(rand.NewPCG(seed, seed^0x6a09e667f3bcc909)), counts: map[MixFault]int{}, effects: map[string]int{}, start: time.Now()}
	for _, p := range cfg.Proxies {
		p.OnFault = func(desc string) { m.note("proxy", desc) }
	}
	return m
}

// supports reports whether the configured targets allow fault f.
func (cfg *MixConfig) supports(f MixFault) bool {
	switch f {
	case MixKill:
		return cfg.Target != nil
	case MixPause:
		_, ok := cfg.Target.(Pauser)
		return ok
	case MixPowerLoss:
		_, ok := cfg.Target.(PowerLosser)
		return ok
	case MixDiskFull:
		return cfg.Disk != nil
	case MixConnFlood:
		return cfg.FloodAddr != "" && cfg.FloodConns > 0
	case MixLatency, MixLostAck, MixAckTimeout, MixReset, MixHold:
		return len(cfg.Proxies) > 0
	}
	return false
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

// Effects returns what the faults were seen to do (Effect* keys).
func (m *Mix) Effects() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]int, len(m.effects))
	for k, v := range m.effects {
		out[k] = v
	}
	return out
}

func (m *Mix) effect(name string) {
	m.mu.Lock()
	m.effects[name]++
	m.mu.Unlock()
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
// important failure this harness can find (or that a fault could not be
// injected); Run stops at the first and heals as far as it can.
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
			// Heal all the same, so that the workload is not left
			// against a dead, paused or full broker while the caller
			// reports the error.
			return errors.Join(err, m.Heal())
		}
	}
	return m.Heal()
}

// Heal undoes every fault: proxies clear their rules and latency, a filled
// disk is freed, a paused broker resumes, a dead one restarts.
func (m *Mix) Heal() error {
	for _, p := range m.cfg.Proxies {
		p.Clear()
	}
	if err := m.freeDisk(); err != nil {
		return err
	}
	if b := m.cfg.Target; b != nil {
		if p, ok := b.(Pauser); ok {
			_ = p.Resume()
		}
		if !b.Running() {
			if err := b.Restart(context.Background()); err != nil {
				m.note(MixKill, "heal: restart failed: "+err.Error())
				return fmt.Errorf("verify: heal: restart: %w", err)
			}
			m.note(MixKill, "heal: restarted as "+b.String())
		}
	}
	m.note("heal", "all faults healed")
	return nil
}

// crash stops the Target as fault f (MixKill or MixPowerLoss) would, keeps
// it down for d, and restarts it.
func (m *Mix) crash(f MixFault, d time.Duration, why string) error {
	b := m.cfg.Target
	var err error
	if f == MixPowerLoss {
		m.note(f, fmt.Sprintf("%spower loss of %s; down for %v", why, b, d.Round(time.Millisecond)))
		err = b.(PowerLosser).PowerLoss()
	} else {
		m.note(f, fmt.Sprintf("%sSIGKILL %s; down for %v", why, b, d.Round(time.Millisecond)))
		err = b.Kill()
	}
	if err != nil {
		m.note(f, "crash failed: "+err.Error())
		return fmt.Errorf("verify: %s: %w", f, err)
	}
	time.Sleep(d)
	if err := b.Restart(context.Background()); err != nil {
		m.note(f, "restart failed: "+err.Error())
		return fmt.Errorf("verify: restart after %s: %w", f, err)
	}
	m.note(f, "restarted as "+b.String())
	return nil
}

// freeDisk frees the Disk if a disk-full fault filled it.
func (m *Mix) freeDisk() error {
	m.mu.Lock()
	full := m.full
	m.mu.Unlock()
	if !full {
		return nil
	}
	what, err := m.cfg.Disk.Free()
	if err != nil {
		m.note(MixDiskFull, "free failed: "+err.Error())
		return fmt.Errorf("verify: free the disk: %w", err)
	}
	m.mu.Lock()
	m.full = false
	m.mu.Unlock()
	m.note(MixDiskFull, "freed: "+what)
	return nil
}

func (m *Mix) inject(f MixFault) error {
	d := m.between(m.cfg.MinFault, m.cfg.MaxFault)
	m.mu.Lock()
	m.counts[f]++
	m.mu.Unlock()
	switch f {
	case MixKill, MixPowerLoss:
		return m.crash(f, d, "")
	case MixPause:
		b := m.cfg.Target
		if !b.Running() {
			return nil
		}
		m.note(f, fmt.Sprintf("SIGSTOP %s for %v", b, d.Round(time.Millisecond)))
		if err := b.(Pauser).Pause(); err != nil {
			return fmt.Errorf("verify: pause: %w", err)
		}
		time.Sleep(d)
		if err := b.(Pauser).Resume(); err != nil {
			return fmt.Errorf("verify: resume: %w", err)
		}
		m.note(f, fmt.Sprintf("SIGCONT %s", b))
	case MixDiskFull:
		return m.diskFull(d)
	case MixConnFlood:
		fl := OpenFlood(m.cfg.FloodAddr, m.cfg.FloodConns)
		m.note(f, fmt.Sprintf("%v; held for %v", fl, d.Round(time.Millisecond)))
		if fl.Refused > 0 {
			m.effect(EffectFloodOverLimit)
		}
		time.Sleep(d)
		fl.Close()
		m.note(f, fmt.Sprintf("closed %d connections", fl.Held))
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

// diskFull fills the Disk, holds it full for d (crashing and restarting the
// Target half-way, one time in two, with RestartOnFullDisk), and frees it.
func (m *Mix) diskFull(d time.Duration) error {
	// Drawn first, so the schedule does not depend on how the fill went.
	var crashWith MixFault
	if m.cfg.RestartOnFullDisk && m.cfg.Target != nil && m.rng.IntN(2) == 0 {
		crashWith = MixKill
		if _, ok := m.cfg.Target.(PowerLosser); ok && m.rng.IntN(2) == 0 {
			crashWith = MixPowerLoss
		}
	}
	down := m.between(m.cfg.MinFault, m.cfg.MaxFault) / 2
	m.mu.Lock()
	m.full = true // before Fill: a fill that fails half-way is freed too
	m.mu.Unlock()
	what, err := m.cfg.Disk.Fill()
	if err != nil {
		m.note(MixDiskFull, "fill failed: "+err.Error())
		return errors.Join(fmt.Errorf("verify: fill the disk: %w", err), m.freeDisk())
	}
	m.note(MixDiskFull, fmt.Sprintf("full: %s; for %v", what, d.Round(time.Millisecond)))
	time.Sleep(d / 2)
	if crashWith != "" {
		if err := m.crash(crashWith, down, "on the full disk: "); err != nil {
			return errors.Join(err, m.freeDisk())
		}
		m.effect(EffectRestartOnFullDisk)
	}
	time.Sleep(d - d/2)
	return m.freeDisk()
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
