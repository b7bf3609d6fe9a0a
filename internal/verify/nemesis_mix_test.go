package verify

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func mixKinds(m *Mix) []MixFault {
	var ks []MixFault
	for _, e := range m.Log() {
		if slices.Contains(AllMixFaults, e.Fault) && !strings.HasPrefix(e.What, "restarted") && !strings.HasPrefix(e.What, "SIGCONT") {
			ks = append(ks, e.Fault)
		}
	}
	return ks
}

func runMix(t *testing.T, seed int64, window time.Duration) (*Mix, *Process, *Proxy) {
	t.Helper()
	p, _ := fakeProcess(t, "serve")
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	e := newEchoBroker(t)
	px := newTestProxy(t, e.ln.Addr().String())
	m := NewMix(MixConfig{
		Seed: seed, Broker: p, Proxies: []*Proxy{px},
		MinQuiet: 10 * time.Millisecond, MaxQuiet: 30 * time.Millisecond,
		MinFault: 10 * time.Millisecond, MaxFault: 40 * time.Millisecond,
	})
	ctx, cancel := context.WithTimeout(context.Background(), window)
	defer cancel()
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	return m, p, px
}

func TestMixInjectsEveryKindAndEndsHealed(t *testing.T) {
	m, p, px := runMix(t, 3, 2*time.Second)
	counts := m.Counts()
	// A process and a proxy allow every kind but the resource faults and
	// power losses, which need a Disk, a flood address, a PowerLosser.
	want := []MixFault{MixKill, MixPause, MixLatency, MixLostAck, MixAckTimeout, MixReset, MixHold}
	if !slices.Equal(m.Faults(), want) {
		t.Fatalf("faults drawn from %v, want %v", m.Faults(), want)
	}
	for _, f := range want {
		if counts[f] == 0 {
			t.Errorf("no %s in 2s of faults every ≤70ms: %v", f, counts)
		}
	}
	if !p.Running() {
		t.Fatal("broker not running after the heal")
	}
	st, err := os.ReadFile("/proc/" + strconv.Itoa(p.Pid()) + "/stat")
	if err == nil && strings.Contains(string(st), ") T ") {
		t.Fatal("broker left stopped after the heal")
	}
	if px.Armed() != 0 {
		t.Fatalf("%d proxy rules still armed after the heal", px.Armed())
	}
	log := m.Log()
	if last := log[len(log)-1]; last.Fault != "heal" {
		t.Fatalf("last fault log entry %v, want the heal", last)
	}
}

func TestMixScheduleIsDeterminedBySeed(t *testing.T) {
	a, _, _ := runMix(t, 11, 600*time.Millisecond)
	b, _, _ := runMix(t, 11, 600*time.Millisecond)
	c, _, _ := runMix(t, 12, 600*time.Millisecond)
	ka, kb, kc := mixKinds(a), mixKinds(b), mixKinds(c)
	n := min(len(ka), len(kb), len(kc), 5)
	if n < 3 {
		t.Fatalf("too few faults to compare: %v %v %v", ka, kb, kc)
	}
	if !slices.Equal(ka[:n], kb[:n]) {
		t.Fatalf("same seed, different schedules: %v vs %v", ka, kb)
	}
	if slices.Equal(ka[:n], kc[:n]) {
		t.Fatalf("different seeds, same schedule %v", ka[:n])
	}
}

func TestMixSaveWritesTheFaultLogBesideHistoryAndSeed(t *testing.T) {
	t.Setenv(ArtifactsEnv, t.TempDir())
	m, _, _ := runMix(t, 5, 200*time.Millisecond)
	rec := NewRecorder()
	rec.Invoke(1, FSend, Record{Value: "1-0", Partition: -1, Offset: -1})
	dir, err := m.Save("TestMix", rec.History())
	if err != nil {
		t.Fatal(err)
	}
	faults, err := os.ReadFile(filepath.Join(dir, "faults.log"))
	if err != nil || !strings.HasPrefix(string(faults), "seed 5;") || !strings.Contains(string(faults), "heal") {
		t.Fatalf("faults.log = %q, %v", faults, err)
	}
	for _, f := range []string{"history.jsonl", "meta.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMixRoundsInjectEveryKindOncePerRound(t *testing.T) {
	p, _ := fakeProcess(t, "serve")
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	e := newEchoBroker(t)
	px := newTestProxy(t, e.ln.Addr().String())
	kinds := []MixFault{MixPause, MixLatency, MixLostAck, MixReset}
	m := NewMix(MixConfig{Seed: 4, Broker: p, Proxies: []*Proxy{px}, Faults: kinds, Rounds: true,
		MinQuiet: 5 * time.Millisecond, MaxQuiet: 5 * time.Millisecond, MinFault: 5 * time.Millisecond, MaxFault: 5 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	var drawn []MixFault
	for _, e := range m.Log() {
		if slices.Contains(kinds, e.Fault) && !strings.HasPrefix(e.What, "SIGCONT") {
			drawn = append(drawn, e.Fault)
		}
	}
	if len(drawn) < 2*len(kinds) {
		t.Fatalf("only %d faults drawn: %v", len(drawn), drawn)
	}
	for r := 0; r+len(kinds) <= len(drawn); r += len(kinds) {
		round := slices.Clone(drawn[r : r+len(kinds)])
		slices.Sort(round)
		want := slices.Clone(kinds)
		slices.Sort(want)
		if !slices.Equal(round, want) {
			t.Fatalf("round %d drew %v, want each of %v once", r/len(kinds), drawn[r:r+len(kinds)], kinds)
		}
	}
}
