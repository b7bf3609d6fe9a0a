package verify

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The process tests re-execute this test binary as a stand-in broker: it
// listens on a fixed address, appends a line to a file in its "data dir" on
// each start (so a test can see restarts use the same directory), and exits 0
// on SIGTERM like a graceful broker.
const fakeBrokerEnv = "IDEM_VERIFY_FAKE_BROKER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeBrokerEnv); mode != "" {
		os.Exit(fakeBroker(mode, os.Args[len(os.Args)-2], os.Args[len(os.Args)-1]))
	}
	os.Exit(m.Run())
}

func fakeBroker(mode, addr, dir string) int {
	if mode == "exit" {
		fmt.Fprintln(os.Stderr, "fake broker: bad data dir")
		return 3
	}
	f, err := os.OpenFile(filepath.Join(dir, "starts"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return 4
	}
	fmt.Fprintln(f, os.Getpid())
	f.Close()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake broker:", err)
		return 5
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	l.Close()
	return 0
}

func fakeProcess(t *testing.T, mode string) (*Process, string) {
	t.Helper()
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := &Process{
		Path:         os.Args[0],
		Args:         []string{"-test.run=^$", addr, dir},
		Env:          []string{fakeBrokerEnv + "=" + mode},
		Addr:         addr,
		StartTimeout: 10 * time.Second,
	}
	t.Cleanup(func() { _ = p.Kill() })
	return p, dir
}

func starts(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "starts"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

func TestProcessKillAndRestartOnTheSameDataDirAndAddress(t *testing.T) {
	p, dir := fakeProcess(t, "serve")
	ctx := context.Background()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	first := p.Pid()
	if err := p.Start(ctx); err == nil {
		t.Fatal("a second Start while running succeeded")
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if p.Running() {
		t.Fatal("still running after Kill")
	}
	if c, err := net.DialTimeout("tcp", p.Addr, time.Second); err == nil {
		c.Close()
		t.Fatal("address still accepts connections after SIGKILL")
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if p.Pid() == first {
		t.Fatalf("restart kept pid %d", first)
	}
	if got := starts(t, dir); len(got) != 2 {
		t.Fatalf("want 2 starts recorded in the data dir, got %v", got)
	}
	if err := p.Stop(5 * time.Second); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
}

func TestProcessStartFailsWhenTheBrokerExitsBeforeReady(t *testing.T) {
	p, _ := fakeProcess(t, "exit")
	err := p.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") {
		t.Fatalf("want exit-before-ready error, got %v", err)
	}
	if p.Running() {
		t.Fatal("reported running")
	}
}

func TestNemesisKillsOnScheduleAndLeavesTheBrokerRunning(t *testing.T) {
	p, dir := fakeProcess(t, "serve")
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec := NewRecorder()
	n := NewNemesis(p, NemesisConfig{Seed: 1, MinUp: 50 * time.Millisecond, MaxUp: 100 * time.Millisecond, MaxDown: 20 * time.Millisecond, Recorder: rec, Logf: t.Logf})
	ctx, cancel := context.WithTimeout(context.Background(), 800*time.Millisecond)
	defer cancel()
	if err := n.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if n.Kills() < 2 {
		t.Fatalf("only %d kills in 800ms with at most 100ms up", n.Kills())
	}
	if !p.Running() {
		t.Fatal("broker not running after Run returned")
	}
	if got := starts(t, dir); len(got) != n.Kills()+1 {
		t.Fatalf("%d kills but %d starts", n.Kills(), len(got))
	}
	var fs []string
	for _, op := range rec.History() {
		if op.Process != NemesisProcess || op.Type != Info {
			t.Fatalf("nemesis op recorded as %+v", op)
		}
		fs = append(fs, op.F)
	}
	for i, f := range fs {
		if want := []string{FKill, FStart}[i%2]; f != want {
			t.Fatalf("ops %v: want kill/start alternating", fs)
		}
	}
}

func TestNemesisScheduleIsDeterminedBySeed(t *testing.T) {
	draw := func(seed int64) []time.Duration {
		n := NewNemesis(&Process{}, NemesisConfig{Seed: seed, MinUp: 3 * time.Second, MaxUp: 8 * time.Second})
		var ds []time.Duration
		for range 20 {
			d := n.between(n.cfg.MinUp, n.cfg.MaxUp)
			if d < 3*time.Second || d > 8*time.Second {
				t.Fatalf("drew %v outside [3s, 8s]", d)
			}
			ds = append(ds, d)
		}
		return ds
	}
	a, b, c := draw(7), draw(7), draw(8)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("same seed, different schedules:\n%v\n%v", a, b)
	}
	if fmt.Sprint(a) == fmt.Sprint(c) {
		t.Fatalf("different seeds, same schedule %v", a)
	}
}

func TestSaveArtifactsWritesHistorySeedAndDirs(t *testing.T) {
	t.Setenv(ArtifactsEnv, t.TempDir())
	data := t.TempDir()
	if err := os.WriteFile(filepath.Join(data, "00000000.log"), []byte("batch"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec := NewRecorder()
	rec.Invoke(1, FSend, Record{Value: "1-0", Partition: -1, Offset: -1})
	dir, err := SaveArtifacts("TestX/sub", 42, rec.History(), data)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := ReadJSONL(f)
	if err != nil || len(h) != 1 {
		t.Fatalf("history read back as %v, %v", h, err)
	}
	meta, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil || !strings.Contains(string(meta), `"seed": 42`) || !strings.Contains(string(meta), "IDEM_SEED=42") {
		t.Fatalf("meta.json = %s, %v", meta, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "dir0-"+filepath.Base(data), "00000000.log")); err != nil || string(b) != "batch" {
		t.Fatalf("data dir not copied: %q, %v", b, err)
	}
}
