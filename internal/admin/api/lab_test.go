package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/admin/api"
	"github.com/idem-dev/idem/internal/lab"
	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/testkit/brokerkit"
)

// labReport is the part of the lab's JSON report the tests read.
type labReport struct {
	Scenario string `json:"scenario"`
	Modes    []struct {
		Mode          string `json:"mode"`
		Sent          int    `json:"sent"`
		Acked         int    `json:"acknowledged"`
		Lost          int    `json:"lost"`
		DupDeliveries int    `json:"duplicate_deliveries"`
		DupEffects    int    `json:"duplicate_effects"`
		Kept          *bool  `json:"kept"`
		Verdict       string `json:"verdict"`
	} `json:"modes"`
}

// waitLabRun polls the run until it is over, returning it and whether a
// poll saw it running with progress.
func waitLabRun(t *testing.T, c *client, id string) (run api.LabRun, sawProgress bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		c.must(http.StatusOK, "GET", "/v1/lab/runs/"+id, nil, &run)
		if run.Status != api.LabRunning {
			return run, sawProgress
		}
		if run.Progress != nil && run.Progress.Modes > 0 {
			sawProgress = true
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("lab run %s still running after 3 minutes: %+v", id, run)
	return run, sawProgress
}

// A run against the broker serving the API: 201 at once, 409 for a second
// run meanwhile, progress while it runs, then the report (at-least-once
// duplicates under lost acks and crashes; the idempotent consumer does
// not), its chart, and the report still there after the broker restarts.
func TestALabRunIsStartedWatchedReportedAndKept(t *testing.T) {
	dir := t.TempDir()
	b := brokertest.Run(t, broker.WithDataDir(dir))
	c := newClient(t, b)
	seed := int64(1)
	spec := api.LabSpec{Scenario: "charge", Modes: "at-least-once,idempotent-consumer", Faults: "lost-ack,consumer-crash",
		Events: 150, Duration: "60s", Seed: &seed}

	var started api.LabRun
	c.must(http.StatusCreated, "POST", "/v1/lab/runs", spec, &started)
	if started.ID == "" || started.Status != api.LabRunning || started.Target != "the broker serving this API" {
		t.Fatalf("started: %+v", started)
	}
	if p := c.refused(http.StatusConflict, "POST", "/v1/lab/runs", spec); !strings.Contains(p.Detail, "already going on") {
		t.Errorf("second run: %+v", p)
	}

	run, sawProgress := waitLabRun(t, c, started.ID)
	if run.Status != api.LabDone || run.Report == nil || run.Finished == nil {
		t.Fatalf("run over as %s: %s", run.Status, run.Error)
	}
	if !sawProgress || run.Progress == nil || run.Progress.Modes != 2 || run.Progress.Events != 150 {
		t.Errorf("progress: seen while running %t, last %+v", sawProgress, run.Progress)
	}
	var rep labReport
	if err := json.Unmarshal(run.Report, &rep); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", run.Table)
	if len(rep.Modes) != 2 {
		t.Fatalf("modes: %+v", rep.Modes)
	}
	for _, m := range rep.Modes {
		if m.Kept == nil || !*m.Kept || m.Sent != 150 {
			t.Errorf("%s: sent %d, verdict %s", m.Mode, m.Sent, m.Verdict)
		}
	}
	if alo, idem := rep.Modes[0], rep.Modes[1]; alo.DupEffects == 0 || idem.DupEffects != 0 || idem.Lost != 0 {
		t.Errorf("at-least-once should duplicate under lost acks and crashes and the idempotent consumer not: %+v", rep.Modes)
	}
	if !strings.Contains(run.Table, "idempotent-consumer") || !strings.Contains(run.Table, "DUP DELIVERIES") {
		t.Errorf("table:\n%s", run.Table)
	}

	resp, err := http.Get(b.AdminURL() + "/v1/lab/runs/" + run.ID + "/chart.svg")
	if err != nil {
		t.Fatal(err)
	}
	svg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/svg+xml" ||
		!strings.HasPrefix(string(svg), "<svg") || !strings.Contains(string(svg), "idempotent-consumer") {
		t.Errorf("chart: %d %s: %.200s", resp.StatusCode, resp.Header.Get("Content-Type"), svg)
	}
	c.refused(http.StatusConflict, "DELETE", "/v1/lab/runs/"+run.ID, nil)

	if _, err := os.Stat(filepath.Join(dir, "lab", run.ID+".json")); err != nil {
		t.Fatalf("report not saved under the data directory: %v", err)
	}
	b.Restart(t)
	c = newClient(t, b)
	var runs []api.LabRun
	c.must(http.StatusOK, "GET", "/v1/lab/runs", nil, &runs)
	if len(runs) != 1 || runs[0].ID != run.ID || runs[0].Status != api.LabDone || compact(t, runs[0].Report) != compact(t, run.Report) {
		t.Fatalf("after a restart: %+v", runs)
	}
	c.must(http.StatusOK, "GET", "/v1/lab/runs/"+run.ID+"/chart.svg", nil, nil)
}

// DELETE stops a run going on: it answers once the run is over, the run
// is cancelled without a report, its files are gone (also when it is
// cancelled at once), and the next run may start.
func TestALabRunIsCancelled(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where the lab runner makes the run's directory
	b := brokertest.Run(t)
	c := newClient(t, b)
	spec := api.LabSpec{Modes: "at-least-once", Faults: "none", Events: 10_000, Duration: "5m"}
	var run api.LabRun
	c.must(http.StatusCreated, "POST", "/v1/lab/runs", spec, &run)
	for deadline := time.Now().Add(time.Minute); run.Progress == nil || run.Progress.Sent == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("no progress within a minute: %+v", run)
		}
		time.Sleep(100 * time.Millisecond)
		c.must(http.StatusOK, "GET", "/v1/lab/runs/"+run.ID, nil, &run)
	}
	start := time.Now()
	c.must(http.StatusOK, "DELETE", "/v1/lab/runs/"+run.ID, nil, &run)
	t.Logf("cancelled in %s at %+v", time.Since(start), run.Progress)
	if run.Status != api.LabCancelled || run.Report != nil || run.Finished == nil {
		t.Fatalf("after DELETE: %+v", run)
	}
	var next api.LabRun
	c.must(http.StatusCreated, "POST", "/v1/lab/runs", spec, &next)
	c.must(http.StatusOK, "DELETE", "/v1/lab/runs/"+next.ID, nil, &next)
	if next.Status != api.LabCancelled {
		t.Fatalf("second run after DELETE: %+v", next)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("cancelled runs left %v in %s", left, tmp)
	}
}

// Closing the broker cancels its run and waits for it: the runner has
// stopped and removed the run's files by the time Close returns.
func TestClosingTheBrokerStopsItsLabRun(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	b := brokertest.Run(t)
	c := newClient(t, b)
	var run api.LabRun
	c.must(http.StatusCreated, "POST", "/v1/lab/runs", api.LabSpec{Modes: "at-least-once", Faults: "none", Events: 10_000, Duration: "5m"}, &run)
	for deadline := time.Now().Add(time.Minute); run.Progress == nil; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no progress within a minute: %+v", run)
		}
		c.must(http.StatusOK, "GET", "/v1/lab/runs/"+run.ID, nil, &run)
	}
	if left, _ := os.ReadDir(tmp); len(left) == 0 {
		t.Fatalf("the run has no directory in %s: the check below would prove nothing", tmp)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("the run's files outlived the broker: %v", left)
	}
}

// With the idem binary as the lab's executable (as inside `idem serve`),
// broker-kill makes the lab start a broker of its own and kill it, and the
// report says so.
func TestALabRunWithBrokerFaultsStartsABrokerOfItsOwn(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the idem binary")
	}
	t.Setenv("IDEM_LAB_EXECUTABLE", testkit.BuildBinary(t, "./cmd/idem"))
	b := brokertest.Run(t)
	c := newClient(t, b)
	var run api.LabRun
	c.must(http.StatusCreated, "POST", "/v1/lab/runs", api.LabSpec{Modes: "at-least-once", Faults: "broker-kill,consumer-crash", Events: 20, Duration: "60s"}, &run)
	if run.Target != "a broker of the lab's own (child process)" {
		t.Fatalf("target: %q", run.Target)
	}
	run, _ = waitLabRun(t, c, run.ID)
	var rep struct {
		Target string `json:"target"`
		Modes  []struct {
			Kept   *bool          `json:"kept"`
			Faults map[string]int `json:"faults_injected"`
		} `json:"modes"`
	}
	if run.Status != api.LabDone || json.Unmarshal(run.Report, &rep) != nil || len(rep.Modes) != 1 {
		t.Fatalf("run: %s %s", run.Status, run.Error)
	}
	if m := rep.Modes[0]; m.Kept == nil || !*m.Kept || m.Faults["broker-kill"] == 0 || !strings.Contains(rep.Target, "child process") {
		t.Fatalf("report:\n%s", run.Table)
	}
}

// A spec the lab cannot run is a 400 that names the field, checked by the
// lab's own flag parsers; nothing starts.
func TestBadLabSpecsAreRefusedNamingTheField(t *testing.T) {
	b := brokertest.Run(t)
	c := newClient(t, b)
	for _, tc := range []struct {
		body  string
		field string
	}{
		{`{"scenario":"teleport"}`, "scenario"},
		{`{"modes":"sideways"}`, "modes"},
		{`{"faults":"meteor"}`, "faults"},
		{`{"faults":"none","events":-1}`, "events"},
		{`{"faults":"none","events":1000000}`, "events"},
		{`{"faults":"none","duration":"forever"}`, "duration"},
		{`{"faults":"none","duration":"1h"}`, "duration"},
		// This server's lab executable is a test binary: it cannot be the
		// lab's own broker.
		{`{"faults":"pause"}`, "faults"},
		{`{"colour":"red"}`, "colour"},
		{`{"events":"many"}`, "events"},
	} {
		p := c.refused(http.StatusBadRequest, "POST", "/v1/lab/runs", tc.body)
		if !strings.Contains(p.Detail, tc.field) {
			t.Errorf("%s: %q does not name %s", tc.body, p.Detail, tc.field)
		}
	}
	var runs []api.LabRun
	c.must(http.StatusOK, "GET", "/v1/lab/runs", nil, &runs)
	if len(runs) != 0 {
		t.Fatalf("refused specs left runs: %+v", runs)
	}
	c.refused(http.StatusNotFound, "GET", "/v1/lab/runs/20260101T000000-abcdef", nil)
	c.refused(http.StatusNotFound, "GET", "/v1/lab/runs/nope/chart.svg", nil)
	c.refused(http.StatusNotFound, "DELETE", "/v1/lab/runs/nope", nil)
}

// With security on, a run needs ALTER on the cluster, and runs as the
// API's user over SASL: alice, who may only describe the cluster, is
// refused; the super user's run connects with her SCRAM credentials and
// completes.
func TestALabRunNeedsAlterClusterAndRunsAsTheUser(t *testing.T) {
	b := brokertest.Run(t, secureBroker(t, "admin", "alice")...)
	adm := kadm.NewClient(b.Client(t, kgo.SASL(scram.Auth{User: "admin", Pass: "admin-pw"}.AsSha256Mechanism())))
	if res, err := adm.CreateACLs(ctx(t), kadm.NewACLs().Allow("User:alice").Clusters().Operations(kadm.OpDescribe)); err != nil || res[0].Err != nil {
		t.Fatalf("create ACL: %v %v", err, res)
	}
	spec := api.LabSpec{Modes: "at-least-once", Faults: "lost-ack", Events: 10, Duration: "60s"}
	alice := newClient(t, b)
	alice.user, alice.pass = "alice", "alice-pw"
	if p := alice.refused(http.StatusForbidden, "POST", "/v1/lab/runs", spec); !strings.Contains(p.Detail, "ALTER") {
		t.Errorf("alice: %+v", p)
	}
	admin := newClient(t, b)
	admin.user, admin.pass = "admin", "admin-pw"
	var run api.LabRun
	admin.must(http.StatusCreated, "POST", "/v1/lab/runs", spec, &run)
	run, _ = waitLabRun(t, admin, run.ID)
	var rep labReport
	if run.Status != api.LabDone || json.Unmarshal(run.Report, &rep) != nil || len(rep.Modes) != 1 || rep.Modes[0].Kept == nil {
		t.Fatalf("admin's run: %s %s %s", run.Status, run.Error, run.Report)
	}
	if !strings.Contains(run.Table, "SASL_PLAINTEXT") {
		t.Errorf("the run did not go over SASL:\n%s", run.Table)
	}
}

// The runner's variable is the one the API sets for it.
func TestTheLabRunnerVariableIsTheLabs(t *testing.T) {
	if lab.RunnerEnv != "IDEM_LAB_RUNNER" {
		t.Fatalf("lab.RunnerEnv = %s: change labRunnerEnv in labruns.go with it", lab.RunnerEnv)
	}
}

// secureBroker is the options of a broker with one SASL_PLAINTEXT
// listener, the authorizer, admin as its super user and each of users
// with the password "<user>-pw".
func secureBroker(t *testing.T, users ...string) []broker.Option {
	return brokerkit.LockedDownBroker(t, users...)
}

func compact(t *testing.T, js []byte) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, js); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
