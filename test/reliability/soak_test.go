package reliability

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/testkit/brokerkit"
	"github.com/idem-dev/idem/internal/verify"
	"github.com/idem-dev/idem/internal/verify/verifytest"
)

// The soak of issue 9: C5's workload (c5_test.go) for hours under every
// fault the harness has, in two modes that share the workload, the
// recorder and the log checker, each judged on one history:
//
//   - process mode: `idem serve` as a child process under prlimit
//     --nofile=1024 (so it admits at most 512 connections, half its
//     descriptors), on a tmpfs of its own; kill -9, SIGSTOP, the proxy's
//     faults, disk-full episodes (the tmpfs filled until ENOSPC; one in two
//     with a kill -9 and a restart on the full disk) and connection floods
//     past the limit.
//   - power-loss mode: an in-process broker on a MemFS
//     (brokerkit.MemBroker); power losses that keep only what was fsynced
//     (with torn tails), process crashes that keep the page cache, the
//     proxy's faults, disk-full episodes (the MemFS capped at what it
//     holds, with a disk reserve of one 256 KiB chunk so that episodes use
//     it up; one in two with a crash and a restart on the full disk) and
//     floods past max.connections=128.
//
// Without IDEM_SOAK_DURATION (or IDEM_SOAK) each mode is a smoke run of a
// few seconds that ends once every fault kind fired and both resource
// faults were seen to bite; with it, each mode runs for that long and must
// reach soakCrashesEnv crashes of its kind (100 by default).

const (
	// soakDurationEnv sets the soak's fault window per mode (e.g. 75m);
	// IDEM_SOAK=1 alone means soakDefault.
	soakDurationEnv = "IDEM_SOAK_DURATION"
	// soakCrashesEnv overrides the number of kill -9s (process mode) and
	// power losses (power-loss mode) a soak must reach.
	soakCrashesEnv = "IDEM_SOAK_CRASHES"
	soakDefault    = 75 * time.Minute
)

// soakPlan is the size of one run: the smoke that go test runs, or the soak.
type soakPlan struct {
	long bool
	// window is the soak's fault window, or the smoke's upper bound (it
	// ends as soon as every fault fired).
	window time.Duration
	// crashes is how many crashes of the mode's kind the run must reach;
	// resource, how many disk-full episodes the broker reported and how
	// many floods it refused connections of.
	crashes, resource int
	// pace is each writer's pause between operations.
	pace                                   time.Duration
	minQuiet, maxQuiet, minFault, maxFault time.Duration
	drainTimeout                           time.Duration
}

func soakPlanFor(t *testing.T) soakPlan {
	t.Helper()
	d := os.Getenv(soakDurationEnv)
	if d == "" && testkit.Soak(false, true) {
		d = soakDefault.String()
	}
	if d == "" {
		return soakPlan{window: 90 * time.Second, crashes: 1, resource: 1,
			minQuiet: 200 * time.Millisecond, maxQuiet: 600 * time.Millisecond,
			minFault: 200 * time.Millisecond, maxFault: 800 * time.Millisecond,
			drainTimeout: 45 * time.Second}
	}
	w, err := time.ParseDuration(d)
	if err != nil || w <= 0 {
		t.Fatalf("%s=%q: want a duration such as 75m", soakDurationEnv, d)
	}
	crashes := 100
	if s := os.Getenv(soakCrashesEnv); s != "" {
		if crashes, err = strconv.Atoi(s); err != nil || crashes < 1 {
			t.Fatalf("%s=%q: want a positive count", soakCrashesEnv, s)
		}
	}
	return soakPlan{long: true, window: w, crashes: crashes, resource: 10,
		// Paced writers keep about 100 values a second: an hour's history
		// stays in the hundreds of thousands of values, which the checker
		// judges in seconds.
		pace:     50 * time.Millisecond,
		minQuiet: 500 * time.Millisecond, maxQuiet: 3 * time.Second,
		minFault: 300 * time.Millisecond, maxFault: 3 * time.Second,
		drainTimeout: 5 * time.Minute}
}

// soakBroker is what a mode puts under the workload.
type soakBroker struct {
	mode  string
	addr  string
	admin func() string // the running broker's admin address
	// target and disk take the crashes and the disk-full episodes.
	target verify.Target
	disk   verify.Disk
	// floodConns is more connections than the broker admits.
	floodConns int
	faults     []verify.MixFault
	// crash is the fault the run must reach plan.crashes of.
	crash        verify.MixFault
	topicConfigs map[string]*string
	// evidence are directories a failed run saves; onFailure, if set,
	// fills them first.
	evidence  []string
	onFailure func()
	// figures describes the broker at the end (descriptors, disk use).
	figures func() string
}

// soakFaults are the kinds every mode injects beside its crashes.
var soakFaults = []verify.MixFault{verify.MixLatency, verify.MixLostAck, verify.MixAckTimeout, verify.MixReset, verify.MixHold, verify.MixDiskFull, verify.MixConnFlood}

func TestSoakC5AgainstABrokerProcessUnderKillPauseDiskFullAndFloods(t *testing.T) {
	if testing.Short() {
		t.Skip("the soak starts a broker process")
	}
	plan := soakPlanFor(t)
	if plan.long {
		t.Parallel() // beside the power-loss mode
	}
	prlimit := testkit.RequireTool(t, "prlimit", "install util-linux")
	mnt := testkit.Tmpfs(t, 1<<30) // unmounted last: registered first
	bin := testkit.BuildBinary(t, "./cmd/idem")
	seed := verifytest.Seed(t)
	run := newSoakRun(t, plan, "process", seed)
	dataDir := filepath.Join(mnt, "data")
	addr, err := verify.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	admin, err := verify.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	const nofile = 1024 // connections get at most half: 512
	proc := &verify.Process{
		Path: prlimit,
		Args: []string{fmt.Sprintf("--nofile=%d:%d", nofile, nofile), bin, "serve",
			"--data-dir", dataDir, "--kafka-addr", addr, "--admin-addr", admin, "--log-level", "info",
			"-X", "group.initial.rebalance.delay.ms=0"},
		Addr: addr, Output: run.brokerLog, StartTimeout: time.Minute,
	}
	if err := proc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proc.Stop(20 * time.Second) })
	run.soak(soakBroker{
		mode: "process", addr: addr, admin: func() string { return admin },
		target: proc, disk: &verify.Filler{Dir: mnt}, floodConns: nofile/2 + 128,
		faults: append([]verify.MixFault{verify.MixKill, verify.MixPause}, soakFaults...), crash: verify.MixKill,
		// Segments roll every MiB, floods or not: a roll needs descriptors.
		topicConfigs: map[string]*string{"segment.bytes": kadm.StringPtr("1048576")},
		evidence:     []string{dataDir},
		figures: func() string {
			var st syscall.Statfs_t
			_ = syscall.Statfs(mnt, &st)
			used := float64((st.Blocks-st.Bfree)*uint64(st.Bsize)) / (1 << 20)
			return fmt.Sprintf("broker %v holds %d descriptors (limit %d); %d starts; tmpfs %.1f MiB used", proc, openFDs(proc.Pid()), nofile, proc.Starts(), used)
		},
	})
}

func TestSoakC5AgainstAnInProcessBrokerUnderPowerLossDiskFullAndFloods(t *testing.T) {
	if testing.Short() {
		t.Skip("the soak runs a broker through power losses for seconds at least")
	}
	plan := soakPlanFor(t)
	if plan.long {
		t.Parallel() // beside the process mode
	}
	seed := verifytest.Seed(t)
	run := newSoakRun(t, plan, "power-loss", seed)
	const maxConns = 128
	mb, err := brokerkit.StartMemBroker(seed,
		broker.WithProperty("group.initial.rebalance.delay.ms", "0"),
		broker.WithProperty("max.connections", strconv.Itoa(maxConns)),
		// One chunk of reserve (brokertest's default), where the process
		// mode keeps the default 8 MiB: a disk-full episode can use it up,
		// and the metadata writes after it meet ENOSPC too.
		broker.WithProperty("idem.disk.reserve.bytes", "262144"),
		broker.WithLogger(slog.New(slog.NewTextHandler(run.brokerLog, &slog.HandlerOptions{Level: slog.LevelInfo}))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mb.Close() })
	dump := filepath.Join(t.TempDir(), "memfs")
	run.soak(soakBroker{
		mode: "power-loss", addr: mb.Addr(), admin: mb.AdminAddr,
		target: mb, disk: mb.Disk(), floodConns: maxConns + 64,
		faults: append([]verify.MixFault{verify.MixPowerLoss, verify.MixKill}, soakFaults...), crash: verify.MixPowerLoss,
		// Small segments: a MemFS fsync copies the whole file.
		topicConfigs: map[string]*string{"segment.bytes": kadm.StringPtr("262144")},
		evidence:     []string{dump},
		onFailure: func() {
			if err := mb.Dump(dump); err != nil {
				t.Logf("dump the MemFS: %v", err)
			}
		},
		figures: func() string {
			losses, kills := mb.Crashes()
			n, err := mb.CloseErrors()
			last := "none"
			if err != nil {
				last = strings.ReplaceAll(err.Error(), "\n", "; ")
			}
			return fmt.Sprintf("%s went through %d power losses and %d kills (%d crashed instances could not close their abandoned storage, last: %s); MemFS %.1f MiB",
				mb, losses, kills, n, last, float64(mb.FS().UsedBytes())/(1<<20))
		},
	})
}

// soakRun is one mode's run: its plan, where its output goes, its history.
type soakRun struct {
	t    *testing.T
	plan soakPlan
	mode string
	seed int64
	// dir keeps the output of a soak (history, fault log, broker log,
	// summary) under IDEM_ARTIFACTS whatever the verdict; a smoke run's
	// goes to a temporary directory.
	dir       string
	brokerLog io.Writer
	rec       *verify.Recorder
	faultLog  io.Writer
}

func newSoakRun(t *testing.T, plan soakPlan, mode string, seed int64) *soakRun {
	t.Helper()
	r := &soakRun{t: t, plan: plan, mode: mode, seed: seed, dir: t.TempDir()}
	if plan.long {
		root := os.Getenv(verify.ArtifactsEnv)
		if root == "" {
			root = filepath.Join(os.TempDir(), "idem-artifacts")
		}
		r.dir = filepath.Join(root, fmt.Sprintf("soak-%s-%d", mode, seed))
		if err := os.MkdirAll(r.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Logf("soak %s: output in %s", mode, r.dir)
	}
	create := func(name string) *os.File {
		f, err := os.Create(filepath.Join(r.dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	r.brokerLog = &lockedWriter{w: create("broker.log")}
	r.faultLog = &lockedWriter{w: create("faults.log")}
	if plan.long {
		r.rec = verify.NewStreamingRecorder(create("history.jsonl")) // survives a run that dies
	} else {
		r.rec = verify.NewRecorder()
	}
	return r
}

// soak runs the workload against b under the mix of faults and judges it.
func (r *soakRun) soak(b soakBroker) {
	t, plan := r.t, r.plan
	c := newC5(t, r.seed, b.addr, r.rec, b.topicConfigs)
	c.pace, c.drainTimeout = plan.pace, plan.drainTimeout
	disk := &reportedDisk{Disk: b.disk, admin: b.admin}
	logf := t.Logf
	if plan.long {
		logf = func(format string, args ...any) { fmt.Fprintf(r.faultLog, format+"\n", args...) }
	}
	mix := verify.NewMix(verify.MixConfig{
		Seed: r.seed, Target: b.target, Proxies: []*verify.Proxy{c.px}, Disk: disk, RestartOnFullDisk: true,
		FloodAddr: b.addr, FloodConns: b.floodConns, Faults: b.faults, Rounds: true,
		MinQuiet: plan.minQuiet, MaxQuiet: plan.maxQuiet, MinFault: plan.minFault, MaxFault: plan.maxFault,
		// Past every client deadline (request timeout overhead 3 s,
		// produce timeout 1 s), as in C5.
		HoldFor: 5 * time.Second, AckTimeout: 5 * time.Second,
		Recorder: r.rec, Logf: logf,
	})
	if got := mix.Faults(); !slices.Equal(got, b.faults) {
		t.Fatalf("the %s mode's targets allow only %v of %v", b.mode, got, b.faults)
	}
	verifytest.SaveMixOnFailure(t, mix, r.rec, b.evidence...)
	if b.onFailure != nil {
		t.Cleanup(func() { // runs before the save registered above
			if t.Failed() {
				b.onFailure()
			}
		})
	}
	enough := func() bool {
		counts, effects := mix.Counts(), mix.Effects()
		for _, f := range b.faults {
			if counts[f] == 0 {
				return false
			}
		}
		return counts[b.crash] >= plan.crashes && effects[verify.EffectFloodOverLimit] >= plan.resource &&
			int(disk.reported.Load()) >= plan.resource
	}

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), plan.window)
	defer cancel()
	var mixErr error
	var faultsEnd time.Time // when the nemesis healed
	res := c.run(ctx, func(ctx context.Context) {
		defer func() { faultsEnd = time.Now() }()
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			if mixErr = mix.Run(ctx); mixErr != nil {
				cancel() // the run has failed: end the workload now, not at the window's end
			}
		}()
		defer wg.Wait()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		lastReport := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if !plan.long && enough() {
				cancel() // the smoke has seen every fault bite
			}
			if plan.long && time.Since(lastReport) >= 5*time.Minute {
				lastReport = time.Now()
				r.progress(time.Since(start), mix, disk)
			}
		}
	})
	elapsed := faultsEnd.Sub(start)
	if mixErr != nil {
		t.Fatalf("%s mode: %v", b.mode, mixErr)
	}
	if err := r.rec.Err(); err != nil {
		t.Fatalf("streaming the history: %v", err)
	}

	counts, effects := mix.Counts(), mix.Effects()
	txns := c.committedTxns()
	var sum strings.Builder
	fmt.Fprintf(&sum, "soak %s mode, seed %d (replay the schedule with %s=%d)\n", b.mode, r.seed, verify.SeedEnv, r.seed)
	fmt.Fprintf(&sum, "faults for %v (window %v); the final drain and the check took %v more\n", elapsed.Round(time.Second), plan.window, time.Since(faultsEnd).Round(time.Second))
	fmt.Fprintf(&sum, "faults: %s\n", sortedCounts(counts))
	fmt.Fprintf(&sum, "effects: %s; disk-full episodes that bit (the broker counted ENOSPC errors or reported the full disk): %d of %d, %d ENOSPC errors in all\n",
		sortedCounts(effects), disk.reported.Load(), counts[verify.MixDiskFull], disk.enospc.Load())
	fmt.Fprintf(&sum, "broker: %s\n", b.figures())
	fmt.Fprintf(&sum, "transactions committed: %d\n", txns)
	fmt.Fprintf(&sum, "verdict: %v\n", res)
	t.Log(sum.String())
	if plan.long {
		if err := os.WriteFile(filepath.Join(r.dir, "summary.txt"), []byte(sum.String()), 0o644); err != nil {
			t.Error(err)
		}
	}

	if !res.Valid {
		t.Fatalf("%s mode: the log checker found anomalies: %v", b.mode, res)
	}
	for _, f := range b.faults {
		if counts[f] == 0 {
			t.Errorf("no %s in %v: %v", f, elapsed, counts)
		}
	}
	if counts[b.crash] < plan.crashes {
		t.Errorf("%d %s faults in %v, want at least %d (lengthen %s)", counts[b.crash], b.crash, elapsed, plan.crashes, soakDurationEnv)
	}
	if n := int(disk.reported.Load()); n < plan.resource {
		t.Errorf("%d of %d disk-full episodes bit (the broker counted ENOSPC errors or reported the full disk), want at least %d", n, counts[verify.MixDiskFull], plan.resource)
	}
	if n := effects[verify.EffectFloodOverLimit]; n < plan.resource {
		t.Errorf("%d of %d floods reached the connection limit, want at least %d", n, counts[verify.MixConnFlood], plan.resource)
	}
	if plan.long && effects[verify.EffectRestartOnFullDisk] == 0 {
		t.Errorf("no restart on a full disk in %d disk-full episodes", counts[verify.MixDiskFull])
	}
	if res.Acknowledged < 100 || res.Read < res.Acknowledged || txns == 0 {
		t.Errorf("too little traffic to mean anything (%d transactions committed): %v", txns, res)
	}
}

func (r *soakRun) progress(elapsed time.Duration, mix *verify.Mix, disk *reportedDisk) {
	line := fmt.Sprintf("%s soak %s: %v of %v; faults %s; effects %s; disk-full episodes that bit %d\n",
		time.Now().UTC().Format(time.TimeOnly), r.mode, elapsed.Round(time.Second), r.plan.window,
		sortedCounts(mix.Counts()), sortedCounts(mix.Effects()), disk.reported.Load())
	r.t.Log(strings.TrimSpace(line))
	f, err := os.OpenFile(filepath.Join(r.dir, "progress.log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err == nil {
		_, _ = f.WriteString(line)
		f.Close()
	}
}

// reportedDisk counts the disk-full episodes that bit: those in which the
// broker's own writes failed with ENOSPC (its idem_disk_no_space_errors_total
// counter moved) or, just before the space is given back, its health check
// says the disk is full. A full disk does not always bite: a broker with
// nothing to write, or writes that fit in pages it already holds or in
// space its disk reserve gave back, does not notice. While the disk is
// full the counter is polled, so that errors counted by a broker that a
// crash then restarts on the full disk (its counter starts again from 0)
// still count.
type reportedDisk struct {
	verify.Disk
	admin func() string

	stop     chan struct{}
	polled   chan int64 // the poller's count of ENOSPC errors this episode
	reported atomic.Int64
	enospc   atomic.Int64 // ENOSPC errors the broker counted in all episodes
}

func (d *reportedDisk) Fill() (string, error) {
	last, _ := noSpaceErrors(d.admin())
	d.stop, d.polled = make(chan struct{}), make(chan int64, 1)
	go func(stop <-chan struct{}, polled chan<- int64) {
		var errs int64
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			stopped := false
			select {
			case <-stop:
				stopped = true
			case <-tick.C:
			}
			if v, ok := noSpaceErrors(d.admin()); ok {
				if v < last { // a new broker process: its count starts from 0
					last = 0
				}
				errs, last = errs+v-last, v
			}
			if stopped {
				polled <- errs
				return
			}
		}
	}(d.stop, d.polled)
	return d.Disk.Fill()
}

func (d *reportedDisk) Free() (string, error) {
	var errs int64
	if d.stop != nil {
		close(d.stop)
		errs = <-d.polled // the poller reads once more after the stop
		d.stop = nil
	}
	unhealthy := reportsDiskFull(d.admin())
	if errs > 0 || unhealthy {
		d.reported.Add(1)
	}
	d.enospc.Add(errs)
	what, err := d.Disk.Free()
	return fmt.Sprintf("%s; the broker counted %d ENOSPC errors, its health check says full: %t", what, errs, unhealthy), err
}

// reportsDiskFull asks the broker's /healthz whether it found its disk full.
func reportsDiskFull(admin string) bool {
	status, body := adminGet(admin, "/healthz")
	return status == http.StatusServiceUnavailable && strings.Contains(body, "disk full")
}

// noSpaceErrors reads the broker's count of writes refused for a full disk.
func noSpaceErrors(admin string) (int64, bool) {
	_, body := adminGet(admin, "/metrics")
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(line, "idem_disk_no_space_errors_total "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int64(f), err == nil
		}
	}
	return 0, false
}

func adminGet(admin, path string) (int, string) {
	if admin == "" {
		return 0, ""
	}
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + admin + path)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body)
}

// openFDs counts the descriptors process pid holds (Linux), or -1.
func openFDs(pid int) int {
	if pid == 0 {
		return -1
	}
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(es)
}

func sortedCounts[K ~string](m map[K]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// lockedWriter serialises writes from the broker and the nemesis.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
