package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/dlq/dlqtest"
)

// The redrive's guarantees (idempotence across a crash, filters, limit,
// overlap) are tested in internal/dlq; these tests check the commands
// that put them on the command line.

// TestShareAndDLQCommands runs `idem share list|describe` and `idem dlq
// list|redrive` against a broker whose share group billing dead-lettered
// six of ten records of orders.
func TestShareAndDLQCommands(t *testing.T) {
	b := brokertest.Run(t, broker.WithProperty("errors.deadletterqueue.auto.create.topics.enable", "true"))
	dlqtest.Fill(t, b, "orders", "billing", "dlq.orders", 10, 6)
	run := func(args ...string) (string, error) {
		t.Helper()
		cmd := newRootCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append(args, "--brokers", b.Addr()))
		err := cmd.ExecuteContext(context.Background())
		return out.String(), err
	}
	ok := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return out
	}
	if out := ok("share", "list"); !strings.Contains(out, "billing") || !strings.Contains(out, "Empty") {
		t.Errorf("share list:\n%s", out)
	}
	out := ok("share", "describe", "billing", "--admin-url", b.AdminURL())
	for _, want := range []string{"GROUP      billing", "orders  0", "orders  1"} {
		if !strings.Contains(out, want) {
			t.Errorf("share describe lacks %q:\n%s", want, out)
		}
	}
	if out := ok("dlq", "list"); !strings.Contains(out, "dlq.orders  1           6        billing") {
		t.Errorf("dlq list:\n%s", out)
	}
	out = ok("dlq", "list", "dlq.orders")
	if n := strings.Count(out, "rejected by the consumer"); n != 6 || !strings.Contains(out, "billing") {
		t.Errorf("dlq list dlq.orders (%d rejected):\n%s", n, out)
	}
	if out := ok("dlq", "list", "dlq.orders", "--limit", "2"); strings.Count(out, "rejected by the consumer") != 2 || !strings.Contains(out, "raise --limit") {
		t.Errorf("dlq list --limit 2:\n%s", out)
	}
	if out := ok("dlq", "redrive", "dlq.orders", "--limit", "4"); !strings.Contains(out, "redriven 4;") || !strings.Contains(out, "left past --limit 2;") {
		t.Errorf("dlq redrive --limit 4:\n%s", out)
	}
	if out := ok("dlq", "redrive", "dlq.orders"); !strings.Contains(out, "redriven 2; already redriven 4") {
		t.Errorf("dlq redrive:\n%s", out)
	}
	if out := ok("dlq", "list", "dlq.orders"); strings.Count(out, "true") != 6 {
		t.Errorf("dlq list after redrive:\n%s", out)
	}
	for _, bad := range [][]string{
		{"dlq", "list", "dlq.nothing"},
		{"dlq", "list", "dlq.orders", "--limit", "0"},
		{"dlq", "redrive", "dlq.orders", "--header", "novalue"},
		{"dlq", "redrive", "dlq.orders", "--since", "yesterday"},
	} {
		if out, err := run(bad...); err == nil {
			t.Errorf("%v succeeded:\n%s", bad, out)
		}
	}
}
