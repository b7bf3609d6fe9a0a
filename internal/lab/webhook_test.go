package lab_test

import (
	"testing"
	"time"

	"github.com/idem-dev/idem/internal/lab"
)

// The webhook scenario: the dispatcher (killed at its crash points) and a
// receiver that fails, times out, answers slowly, resets connections and is
// killed. The naive receiver applies duplicates; the deduping receiver
// applies each webhook once; with ordering each key's events are applied in
// order too. Nothing acknowledged is lost in any mode.
func TestWebhookModesKeepTheirPromisesUnderReceiverAndDispatcherFaults(t *testing.T) {
	cfg := testConfig(t, lab.ScenarioWebhook, 60)
	cfg.Faults = []lab.Fault{lab.FaultConsumerCrash, lab.FaultLostAck, lab.FaultBrokerKill}
	cfg.Customers = 5
	cfg.Duration = 60 * time.Second
	rep := run(t, cfg)
	for _, m := range rep.Modes {
		if m.Kept == nil || !*m.Kept {
			t.Errorf("%s: %s", m.Mode, m.Verdict)
		}
		if m.Lost != 0 {
			t.Errorf("%s lost %d acknowledged events", m.Mode, m.Lost)
		}
		for _, f := range []string{"consumer-crash", "receiver-500", "receiver-killed"} {
			if m.Faults[f] == 0 {
				t.Errorf("%s: no %s injected: %v", m.Mode, f, m.Faults)
			}
		}
		if m.DupDeliveries == 0 {
			t.Errorf("%s: the receiver saw no duplicate delivery despite its faults", m.Mode)
		}
		t.Logf("%s: out of order %d, p50 %v, p99 %v", m.Mode, m.OutOfOrder, time.Duration(m.P50), time.Duration(m.P99))
	}
	if naive := mode(t, rep, lab.NaiveReceiver); naive.DupEffects == 0 {
		t.Errorf("the naive receiver applied nothing twice: %+v", naive)
	}
	for _, m := range []lab.Mode{lab.DedupingReceiver, lab.OrderedReceiver} {
		if r := mode(t, rep, m); r.DupEffects != 0 {
			t.Errorf("%s applied %d webhooks twice", m, r.DupEffects)
		}
	}
	if o := mode(t, rep, lab.OrderedReceiver); o.OutOfOrder != 0 {
		t.Errorf("ordered endpoint: %d events out of order", o.OutOfOrder)
	}
}
