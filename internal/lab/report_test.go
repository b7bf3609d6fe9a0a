package lab

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"strings"
	"testing"
	"time"
)

func sampleReport() *Report {
	yes, no := true, false
	return &Report{
		Scenario: ScenarioCharge, N: 100, Seed: 7, Faults: []Fault{FaultLostAck}, Target: "test",
		Modes: []ModeResult{
			{Mode: AtLeastOnce, Available: true, Complete: true, Sent: 100, Acked: 100, DupDeliveries: 3, DupEffects: 3,
				Throughput: 50, P99: Duration(120 * time.Millisecond), Promise: "no loss", Kept: &yes, Verdict: "kept"},
			{Mode: IdempotentConsumer, Available: true, Complete: true, Sent: 100, Acked: 100, DupEffects: 2,
				Promise: "once", Kept: &no, Verdict: "BROKEN"},
			{Mode: ExactlyOnceTxn, Unavailable: "no transactions", Promise: "exactly once", Verdict: "unavailable: no transactions"},
		},
	}
}

func TestTableShowsMeasuredNumbersAndDashesForUnavailableModes(t *testing.T) {
	var b bytes.Buffer
	if err := WriteTable(&b, sampleReport()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"DOUBLE CHARGES",
		"kept (3 duplicate effects: allowed, and what this mode costs)",
		"BROKEN: 2 duplicate effects",
		"unavailable: no transactions",
		"120.0ms",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, string(ExactlyOnceTxn)+" ") && strings.ContainsAny(line, "0123456789") {
			t.Errorf("unavailable mode shows numbers: %q", line)
		}
	}
}

func TestReportVerdictsDecideTheExitStatus(t *testing.T) {
	rep := sampleReport()
	if !rep.Broken() || rep.Incomplete() {
		t.Fatalf("broken=%t incomplete=%t", rep.Broken(), rep.Incomplete())
	}
	rep.Modes = rep.Modes[:1] // at-least-once duplicated: allowed
	if rep.Broken() {
		t.Fatal("at-least-once duplicating counted as a broken promise")
	}
	rep.Modes = append(rep.Modes, ModeResult{Mode: OffsetsInDB, Available: true, Verdict: "NOT MEASURED"})
	if rep.Broken() || !rep.Incomplete() {
		t.Fatalf("unmeasured mode: broken=%t incomplete=%t", rep.Broken(), rep.Incomplete())
	}
}

func TestJSONCarriesTheVerdictAndMilliseconds(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, sampleReport()); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Modes []struct {
			Mode  string  `json:"mode"`
			Kept  *bool   `json:"kept"`
			P99ms float64 `json:"p99_latency_ms"`
		} `json:"modes"`
	}
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Modes[0].P99ms != 120 || *back.Modes[0].Kept != true || *back.Modes[1].Kept || back.Modes[2].Kept != nil {
		t.Fatalf("%s", b.String())
	}
}

func TestSVGChartIsWellFormedAndNamesEveryMode(t *testing.T) {
	var b bytes.Buffer
	if err := WriteSVG(&b, sampleReport()); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(b.Bytes()))
	for {
		if _, err := dec.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, b.String())
		}
	}
	for _, want := range []string{"at-least-once", "idempotent-consumer", "exactly-once-txn", "PROMISE BROKEN", "promise kept", "unavailable"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("chart lacks %q", want)
		}
	}
}

func TestFaultPlanIsDeterminedBySeedAndStaysInsideTheRun(t *testing.T) {
	a, b, c := makePlan(9, 200, AllFaults), makePlan(9, 200, AllFaults), makePlan(10, 200, AllFaults)
	if !equalPlan(a, b) {
		t.Fatal("same seed, different plans")
	}
	if equalPlan(a, c) {
		t.Fatal("different seeds, same plan")
	}
	for i := range a.lostAck {
		if i < 20 || i >= 180 {
			t.Fatalf("lost ack at event %d, outside [20, 180)", i)
		}
	}
	if len(a.crashes) == 0 || len(a.kill) == 0 || len(a.pause) == 0 || len(a.ackTimeout) == 0 {
		t.Fatalf("plan lacks a fault: %+v", a)
	}
	if p := makePlan(9, 200, nil); len(p.lostAck)+len(p.crashes)+len(p.kill)+len(p.pause)+len(p.ackTimeout) != 0 {
		t.Fatalf("no faults asked, plan %+v", p)
	}
}

func equalPlan(a, b plan) bool {
	x, _ := json.Marshal([]any{a.lostAck, a.ackTimeout, a.kill, a.pause, a.crashes})
	y, _ := json.Marshal([]any{b.lostAck, b.ackTimeout, b.kill, b.pause, b.crashes})
	return bytes.Equal(x, y)
}

func TestParseFaultsAndModes(t *testing.T) {
	if fs, err := ParseFaults("none"); err != nil || len(fs) != 0 {
		t.Fatalf("none: %v %v", fs, err)
	}
	if fs, err := ParseFaults("lost-ack, pause"); err != nil || len(fs) != 2 {
		t.Fatalf("list: %v %v", fs, err)
	}
	if _, err := ParseFaults("meteor"); err == nil {
		t.Fatal("unknown fault accepted")
	}
	if _, err := ParseModes(ScenarioAggregate, "at-most-once"); err == nil {
		t.Fatal("aggregate accepted at-most-once")
	}
}
