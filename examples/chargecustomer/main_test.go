package main

import (
	"context"
	"testing"
	"time"

	"github.com/idem-dev/idem/broker/brokertest"
)

// The example's claim, as a test: under a producer resend and a consumer
// crash between the gateway call and the commit, the naive consumer charges
// customers twice and the idem way charges each once.
func TestNaiveDoubleChargesAndIdemChargesOnce(t *testing.T) {
	b := brokertest.Run(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sc := Scenario{Brokers: b.Addr(), Events: 10, Resends: 2, CrashAt: 4, Dir: t.TempDir()}

	sc.Mode = "naive"
	naive, err := Run(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(naive)
	// Two resends and one redelivery after the crash: three double charges.
	if naive.Charges != 13 {
		t.Errorf("naive consumer charged %d times for 10 events, want 13", naive.Charges)
	}

	sc.Mode = "idem"
	idem, err := Run(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(idem)
	if idem.Charges != 10 {
		t.Errorf("idem consumer charged %d times for 10 events, want 10", idem.Charges)
	}
	if idem.Suppressed != 2 {
		t.Errorf("dedupe suppressed %d deliveries, want the 2 resends", idem.Suppressed)
	}
	if idem.Requests != 11 {
		t.Errorf("gateway received %d requests, want 11 (one retried after the crash, replayed)", idem.Requests)
	}
}
