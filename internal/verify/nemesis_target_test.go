package verify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeTarget is a broker that is only a flag: it counts crashes by kind and
// restarts, and can be told to fail its next restart.
type fakeTarget struct {
	mu              sync.Mutex
	up              bool
	gen             int
	kills, losses   int
	restarts        int
	failRestart     bool
	disk            *fakeDisk
	restartedOnFull int
}

func (f *fakeTarget) crash(loss bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.up {
		return errors.New("crash while down")
	}
	f.up = false
	if loss {
		f.losses++
	} else {
		f.kills++
	}
	return nil
}
func (f *fakeTarget) Kill() error      { return f.crash(false) }
func (f *fakeTarget) PowerLoss() error { return f.crash(true) }
func (f *fakeTarget) Restart(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.up {
		return errors.New("restart while up")
	}
	if f.failRestart {
		return errors.New("recovery failed")
	}
	f.up, f.restarts = true, f.restarts+1
	f.gen++
	if f.disk != nil && f.disk.isFull() {
		f.restartedOnFull++
	}
	return nil
}
func (f *fakeTarget) Running() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.up
}
func (f *fakeTarget) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmt.Sprintf("fake #%d", f.gen)
}

// fakeDisk is a Disk that is only a flag.
type fakeDisk struct {
	mu           sync.Mutex
	full         bool
	fills, frees int
}

func (d *fakeDisk) Fill() (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.full, d.fills = true, d.fills+1
	return "fake disk full", nil
}
func (d *fakeDisk) Free() (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.full, d.frees = false, d.frees+1
	return "fake disk freed", nil
}
func (d *fakeDisk) isFull() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.full
}

// A Target that is not a process gets the crash faults it supports: kill
// and power loss, not pause; a Disk gets disk-full episodes, some of them
// with a restart on the full disk; the heal leaves the disk free and the
// broker up.
func TestMixCrashesAnyTargetAndFillsItsDisk(t *testing.T) {
	disk := &fakeDisk{}
	tg := &fakeTarget{up: true, disk: disk}
	m := NewMix(MixConfig{Seed: 7, Target: tg, Disk: disk, RestartOnFullDisk: true, Rounds: true,
		MinQuiet: time.Millisecond, MaxQuiet: 2 * time.Millisecond, MinFault: time.Millisecond, MaxFault: 4 * time.Millisecond})
	if want := []MixFault{MixKill, MixPowerLoss, MixDiskFull}; !slices.Equal(m.Faults(), want) {
		t.Fatalf("faults drawn from %v, want %v", m.Faults(), want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	c, e := m.Counts(), m.Effects()
	t.Logf("counts %v effects %v; target: %d kills, %d power losses, %d restarts (%d on a full disk)", c, e, tg.kills, tg.losses, tg.restarts, tg.restartedOnFull)
	if c[MixKill] < 10 || c[MixPowerLoss] < 10 || c[MixDiskFull] < 10 || c[MixPause] != 0 {
		t.Fatalf("counts %v", c)
	}
	if tg.kills+tg.losses != c[MixKill]+c[MixPowerLoss]+e[EffectRestartOnFullDisk] || tg.restarts != tg.kills+tg.losses {
		t.Fatalf("target saw %d kills, %d power losses, %d restarts for counts %v effects %v", tg.kills, tg.losses, tg.restarts, c, e)
	}
	if e[EffectRestartOnFullDisk] == 0 || e[EffectRestartOnFullDisk] == c[MixDiskFull] || tg.restartedOnFull != e[EffectRestartOnFullDisk] {
		t.Fatalf("restarts on a full disk: effect %d, target saw %d, of %d episodes (want about half)", e[EffectRestartOnFullDisk], tg.restartedOnFull, c[MixDiskFull])
	}
	if disk.fills != c[MixDiskFull] || disk.frees != disk.fills || disk.isFull() || !tg.Running() {
		t.Fatalf("after the heal: %d fills, %d frees, full %t, running %t", disk.fills, disk.frees, disk.isFull(), tg.Running())
	}
}

// A restart that fails ends Run with the error, and the disk is freed
// even when the restart failed on a full disk.
func TestMixReportsAFailedRestartAndFreesTheDisk(t *testing.T) {
	disk := &fakeDisk{}
	tg := &fakeTarget{up: true, failRestart: true}
	m := NewMix(MixConfig{Seed: 1, Target: tg, Disk: disk, RestartOnFullDisk: true, Faults: []MixFault{MixDiskFull},
		MinQuiet: time.Millisecond, MaxQuiet: time.Millisecond, MinFault: time.Millisecond, MaxFault: time.Millisecond})
	err := m.Run(context.Background()) // never healthy: ends by the error
	if err == nil || !strings.Contains(err.Error(), "recovery failed") {
		t.Fatalf("Run = %v, want the failed restart", err)
	}
	if disk.isFull() {
		t.Fatal("disk left full after a failed restart")
	}
}

// A flood sorts its connections into those the broker kept and those it
// refused at accept, and Close gives the kept ones back.
func TestFloodSortsHeldFromRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const limit = 5
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		kept   []net.Conn
		closed = make(chan struct{}, 64)
	)
	wg.Add(1)
	go func() { // a broker with max.connections=5
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if len(kept) >= limit {
				mu.Unlock()
				c.Close()
				continue
			}
			kept = append(kept, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				var b [1]byte
				_, _ = c.Read(b[:]) // until the client closes
				closed <- struct{}{}
			}()
		}
	}()
	defer func() {
		ln.Close()
		mu.Lock()
		for _, c := range kept {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	f := OpenFlood(ln.Addr().String(), 12)
	t.Logf("%v", f)
	if f.Held != limit || f.Refused != 12-limit || f.DialErrors != 0 {
		t.Fatalf("flood: %v, want %d held and %d refused", f, limit, 12-limit)
	}
	f.Close()
	for range limit {
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatal("a held connection was not closed")
		}
	}
}
