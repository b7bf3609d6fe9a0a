package lab_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/lab"
)

func mode(t *testing.T, rep *lab.Report, m lab.Mode) lab.ModeResult {
	t.Helper()
	for _, r := range rep.Modes {
		if r.Mode == m {
			return r
		}
	}
	t.Fatalf("no row for %s", m)
	return lab.ModeResult{}
}

func run(t *testing.T, cfg lab.Config) *lab.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := lab.Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range rep.Modes {
		t.Logf("%-20s sent=%d acked=%d lost=%d dupdeliveries=%d dupeffects=%d drift=%d faults=%v verdict=%s; input: %s",
			m.Mode, m.Sent, m.Acked, m.Lost, m.DupDeliveries, m.DupEffects, m.Drift, m.Faults, m.Verdict, m.Log)
	}
	return rep
}

// The charge scenario, every mode, every fault: each mode keeps its own
// promise, and the comparison shows what the weaker ones cost.
func TestChargeEveryModeKeepsItsPromiseUnderEveryFault(t *testing.T) {
	cfg := testConfig(t, lab.ScenarioCharge, 30)
	cfg.Duration = 45 * time.Second
	rep := run(t, cfg)
	for _, m := range rep.Modes {
		if !m.Available {
			if m.Mode != lab.ExactlyOnceTxn || m.Kept != nil {
				t.Errorf("%s unavailable (%s) with verdict %v", m.Mode, m.Unavailable, m.Kept)
			}
			continue
		}
		if m.Kept == nil || !*m.Kept {
			t.Errorf("%s: %s", m.Mode, m.Verdict)
		}
		if !m.LogOK {
			t.Errorf("%s: the broker lost acknowledged input: %s", m.Mode, m.Log)
		}
		for _, f := range []lab.Fault{lab.FaultLostAck, lab.FaultAckTimeout, lab.FaultBrokerKill, lab.FaultPause, lab.FaultConsumerCrash} {
			if m.Faults[string(f)] == 0 {
				t.Errorf("%s: no %s injected: %v", m.Mode, f, m.Faults)
			}
		}
	}
	if alo := mode(t, rep, lab.AtLeastOnce); alo.DupEffects == 0 || alo.Overcharged == 0 {
		t.Errorf("at-least-once charged nobody twice despite lost acks and a crash after charging: %+v", alo)
	}
	for _, m := range []lab.Mode{lab.IdempotentConsumer, lab.OffsetsInDB} {
		if r := mode(t, rep, m); r.Overcharged != 0 {
			t.Errorf("%s overcharged %d customers", m, r.Overcharged)
		}
	}
	if amo := mode(t, rep, lab.AtMostOnce); amo.Lost+amo.LostUnacked == 0 {
		t.Errorf("at-most-once lost nothing despite a crash between commit and charge: %+v", amo)
	}
	if rep.Broken() || rep.Incomplete() {
		t.Errorf("report: broken=%t incomplete=%t", rep.Broken(), rep.Incomplete())
	}
}

// A deliberately broken consumer (dedupe skipped, no idempotency key) must
// turn the idempotent mode's verdict red: the verdict can fail.
func TestChargeBrokenIdempotentConsumerBreaksItsPromise(t *testing.T) {
	cfg := testConfig(t, lab.ScenarioCharge, 30, lab.IdempotentConsumer)
	cfg.Faults = []lab.Fault{lab.FaultLostAck, lab.FaultConsumerCrash}
	cfg.Break = lab.BreakSkipDedupe
	cfg.Duration = 45 * time.Second
	rep := run(t, cfg)
	m := mode(t, rep, lab.IdempotentConsumer)
	if m.Kept == nil || *m.Kept || m.DupEffects == 0 || m.Overcharged == 0 || !rep.Broken() {
		t.Fatalf("broken consumer not caught: %+v", m)
	}
	if rep.Artifacts == "" {
		t.Fatal("a broken run must keep its evidence")
	}
	faults, err := os.ReadFile(filepath.Join(rep.Artifacts, string(lab.IdempotentConsumer), "faults.log"))
	if err != nil || !strings.Contains(string(faults), "--seed 1 --faults lost-ack,consumer-crash") || !strings.Contains(string(faults), "consumer-crash") {
		t.Fatalf("faults.log = %q, %v", faults, err)
	}
	if _, err := os.Stat(filepath.Join(rep.Artifacts, string(lab.IdempotentConsumer), "history.jsonl")); err != nil {
		t.Fatal(err)
	}
}

// The aggregate scenario: at-least-once double counts under lost acks and
// crashes between the state update and the offset commit; keeping state,
// outputs and offsets in one transaction does not drift.
func TestAggregateAtLeastOnceDriftsAndOneTransactionDoesNot(t *testing.T) {
	cfg := testConfig(t, lab.ScenarioAggregate, 30, lab.AtLeastOnce, lab.OffsetsInDB, lab.ExactlyOnceTxn)
	cfg.Faults = []lab.Fault{lab.FaultLostAck, lab.FaultConsumerCrash, lab.FaultBrokerKill}
	cfg.Duration = 45 * time.Second
	rep := run(t, cfg)
	alo, db := mode(t, rep, lab.AtLeastOnce), mode(t, rep, lab.OffsetsInDB)
	if alo.Kept == nil || !*alo.Kept || alo.Drift <= 0 || alo.DupEffects == 0 {
		t.Errorf("at-least-once: want promise kept and a positive drift (double counts), got %+v", alo)
	}
	if db.Kept == nil || !*db.Kept || db.Drift != 0 || db.TrueTotal == 0 || db.ComputedTotal != db.TrueTotal {
		t.Errorf("offsets-in-db: want kept with no drift, got %+v", db)
	}
	if txn := mode(t, rep, lab.ExactlyOnceTxn); txn.Available {
		if txn.Kept == nil || !*txn.Kept || txn.Drift != 0 || txn.ComputedTotal != txn.TrueTotal || txn.Faults[string(lab.FaultConsumerCrash)] == 0 {
			t.Errorf("exactly-once-txn: want kept with no drift after a consumer crash, got %+v", txn)
		}
	} else if txn.Kept != nil {
		t.Errorf("unavailable mode with a verdict: %+v", txn)
	}
}

// The exactly-once path with its output written outside the transaction:
// a crash before the commit leaves the output of events that are consumed
// again, and the verdict must say so.
func TestChargeExactlyOnceWithoutAtomicOutputBreaksItsPromise(t *testing.T) {
	cfg := testConfig(t, lab.ScenarioCharge, 30, lab.ExactlyOnceTxn)
	cfg.Faults = []lab.Fault{lab.FaultConsumerCrash}
	cfg.Break = lab.BreakOutputOutsideTxn
	cfg.Duration = 45 * time.Second
	rep := run(t, cfg)
	m := mode(t, rep, lab.ExactlyOnceTxn)
	if !m.Available {
		t.Skipf("needs transactions: %s", m.Unavailable)
	}
	if m.Kept == nil || *m.Kept || m.DupEffects == 0 {
		t.Fatalf("non-atomic output not caught: %+v", m)
	}
}

// A broker that forgets producer sequences duplicates even the idempotent
// producer's events; the exactly-once mode relies on the broker for that,
// so its verdict and the input check must both turn red.
func TestChargeExactlyOnceCatchesABrokerThatDuplicatesAcknowledgedProduces(t *testing.T) {
	cfg := testConfig(t, lab.ScenarioCharge, 30, lab.ExactlyOnceTxn, lab.IdempotentConsumer)
	cfg.Faults = []lab.Fault{lab.FaultLostAck}
	cfg.Break = lab.BreakBrokerDuplicates
	cfg.Duration = 45 * time.Second
	rep := run(t, cfg)
	m := mode(t, rep, lab.ExactlyOnceTxn)
	if !m.Available {
		t.Skipf("needs transactions: %s", m.Unavailable)
	}
	if m.Kept == nil || *m.Kept || m.DupEffects == 0 || m.LogOK {
		t.Fatalf("duplicating broker not caught: %+v", m)
	}
	// Deduplicating by event id absorbs what the broker duplicated.
	if ic := mode(t, rep, lab.IdempotentConsumer); ic.Kept == nil || !*ic.Kept {
		t.Fatalf("idempotent consumer: %+v", ic)
	}
}

// Against a cluster the lab did not start (--bootstrap), the faults that need
// the broker process are skipped and said to be; the rest still run.
func TestBootstrapSkipsTheFaultsThatNeedTheBrokerProcess(t *testing.T) {
	b := brokertest.Run(t)
	cfg := testConfig(t, lab.ScenarioCharge, 20, lab.AtLeastOnce)
	cfg.Bootstrap = []string{b.Addr()}
	cfg.Duration = 45 * time.Second
	rep := run(t, cfg)
	if !slices.Equal(rep.Skipped, []lab.Fault{lab.FaultBrokerKill, lab.FaultPause}) || slices.Contains(rep.Faults, lab.FaultBrokerKill) {
		t.Fatalf("faults %v, skipped %v", rep.Faults, rep.Skipped)
	}
	m := mode(t, rep, lab.AtLeastOnce)
	if m.Faults[string(lab.FaultBrokerKill)] != 0 || m.Faults[string(lab.FaultLostAck)] == 0 || m.Kept == nil || !*m.Kept {
		t.Fatalf("%+v", m)
	}
	var buf strings.Builder
	if err := lab.WriteTable(&buf, rep); err != nil || !strings.Contains(buf.String(), "skipped (the target is not a child process of the lab): broker-kill, pause") {
		t.Fatalf("table does not say what was skipped: %v\n%s", err, buf.String())
	}
}

// A broker that loses an acknowledged record on the read path (the proxy
// drops a batch from a fetch response to the consumer) makes at-least-once
// lose an event: the verdict turns red although the log itself is intact.
func TestChargeAtLeastOnceCatchesABrokerThatLosesAReadRecord(t *testing.T) {
	cfg := testConfig(t, lab.ScenarioCharge, 30, lab.AtLeastOnce)
	cfg.Faults = []lab.Fault{}
	cfg.Break = lab.BreakBrokerLosesRead
	cfg.Duration = 45 * time.Second
	rep := run(t, cfg)
	m := mode(t, rep, lab.AtLeastOnce)
	if m.Kept == nil || *m.Kept || m.Lost == 0 || !m.LogOK {
		t.Fatalf("lost read not caught (or blamed on the log): %+v", m)
	}
}

// A scenario and a mode registered only by the tests (tally_spec_test.go):
// the sink is a file and the consumer reads its partitions without a
// consumer group, keeping its positions in a file. The lab runs them like
// its own, crashes included, and the report names the scenario's effect.
func TestAScenarioAndANonGroupModeFromOneFileRunLikeTheLabsOwn(t *testing.T) {
	cfg := testConfig(t, "tally", 20)
	cfg.Faults = []lab.Fault{lab.FaultLostAck, lab.FaultConsumerCrash}
	cfg.Duration = 45 * time.Second
	rep := run(t, cfg)
	if len(rep.Modes) != 2 {
		t.Fatalf("modes: %+v", rep.Modes)
	}
	for _, m := range rep.Modes {
		if m.Kept == nil || !*m.Kept || m.DupEffects == 0 || m.Faults[string(lab.FaultConsumerCrash)] == 0 {
			t.Errorf("%s: want kept, with duplicates after a lost ack and a crash: %+v", m.Mode, m)
		}
	}
	var buf strings.Builder
	if err := lab.WriteTable(&buf, rep); err != nil || !strings.Contains(buf.String(), "DOUBLE TALLIES") || !strings.Contains(buf.String(), "assigned-partitions") {
		t.Fatalf("table: %v\n%s", err, buf.String())
	}
}

// Client properties are for a cluster of the user's (--bootstrap), and
// only the security ones: refused before anything starts otherwise.
func TestClientPropsAreRefusedWithoutBootstrapOrOutsideSecurity(t *testing.T) {
	for name, c := range map[string]struct {
		bootstrap []string
		props     map[string]string
		want      string
	}{
		"own broker":     {nil, map[string]string{"security.protocol": "SASL_SSL"}, "need --bootstrap"},
		"client.id":      {[]string{"127.0.0.1:1"}, map[string]string{"client.id": "x"}, "not a client security property"},
		"bad protocol":   {[]string{"127.0.0.1:1"}, map[string]string{"security.protocol": "TLS"}, "want PLAINTEXT, SSL"},
		"no such CA":     {[]string{"127.0.0.1:1"}, map[string]string{"security.protocol": "SSL", "ssl.ca.location": "/nonexistent/ca.pem"}, "ssl.ca.location"},
		"nobody listens": {[]string{"127.0.0.1:1"}, map[string]string{"security.protocol": "PLAINTEXT"}, "cannot talk to the cluster at 127.0.0.1:1"},
	} {
		cfg := testConfig(t, lab.ScenarioCharge, 5, lab.AtLeastOnce)
		cfg.Bootstrap, cfg.ClientProps = c.bootstrap, c.props
		start := time.Now()
		_, err := lab.Run(context.Background(), cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error with %q", name, err, c.want)
		}
		if took := time.Since(start); took > 20*time.Second {
			t.Errorf("%s: took %v", name, took)
		}
	}
}
