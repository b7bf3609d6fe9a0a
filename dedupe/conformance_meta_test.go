package dedupe_test

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/idem-dev/idem/dedupe"
	"github.com/idem-dev/idem/dedupe/dedupetest"
)

// The conformance suite must be able to fail: each broken store below runs
// it in a child process (the test binary re-executed), which must fail on
// the case the breakage violates.

const brokenEnv = "IDEM_BROKEN_STORE"

type brokenStore struct {
	dedupe.OffsetStore[*sql.Tx]
	how string
}

func (b brokenStore) ProcessAt(ctx context.Context, id string, pos dedupe.Position, h dedupe.Handler[*sql.Tx]) (dedupe.Result, error) {
	if b.how == "offsets" {
		return b.Process(ctx, id, h) // forgets the offset
	}
	return b.OffsetStore.ProcessAt(ctx, id, pos, h)
}

func (b brokenStore) RejectAt(ctx context.Context, id string, pos dedupe.Position, outcome string, dl *dedupe.DeadLetter) (dedupe.Result, error) {
	if b.how == "deadletter" {
		dl = nil // drops the dead letter
	}
	return b.OffsetStore.RejectAt(ctx, id, pos, outcome, dl)
}

func TestBrokenStoreConformanceChild(t *testing.T) {
	how := os.Getenv(brokenEnv)
	if how == "" {
		t.Skip("run by TestConformanceSuiteCatchesBrokenStores in a child process")
	}
	var cur *storeUnderTest
	dedupetest.Run(t, dedupetest.Harness[*sql.Tx]{
		New: func(t *testing.T, cfg dedupe.Config) dedupe.OffsetStore[*sql.Tx] {
			cur = newSQLiteUnderTest(t, cfg)
			return brokenStore{OffsetStore: cur.raw.(dedupe.OffsetStore[*sql.Tx]), how: how}
		},
		Write: func(ctx context.Context, tx *sql.Tx, id string) error { return sqlEffects{tx}.addEffect(ctx, id) },
		Count: func(t *testing.T, id string) int { return cur.effects(t, id) },
	})
}

func TestConformanceSuiteCatchesBrokenStores(t *testing.T) {
	for how, failing := range map[string]string{
		"offsets":    "ProcessAt_stores_the_offset_with_every_outcome,_only_forward",
		"deadletter": "RejectAt_records,_moves_the_offset_and_queues_the_dead_letter_atomically",
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestBrokenStoreConformanceChild$", "-test.v")
		cmd.Env = append(os.Environ(), brokenEnv+"="+how)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("the suite passed a store whose %s is broken:\n%s", how, out)
			continue
		}
		if !strings.Contains(string(out), "--- FAIL: TestBrokenStoreConformanceChild/"+failing) {
			t.Errorf("broken %s: the suite did not fail %q:\n%s", how, failing, out)
		}
	}
}
