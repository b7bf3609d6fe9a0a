package idempotency_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/idem-dev/idem/idempotency"
	"github.com/idem-dev/idem/idempotency/idempotencytest"
)

// The conformance suite must be able to fail: each broken store below runs
// it in a child process (the test binary re-executed), which must fail on
// the case the breakage violates.

const brokenEnv = "IDEM_BROKEN_STORE"

// brokenStore breaks one rule of the Store contract.
type brokenStore struct {
	idempotency.Store
	how string
}

func (b brokenStore) Claim(ctx context.Context, k idempotency.Key, fp string, now time.Time, lease, retention time.Duration) (idempotency.Claim, error) {
	if b.how == "fingerprint" {
		fp = "same"
	}
	return b.Store.Claim(ctx, k, fp, now, lease, retention)
}

func (b brokenStore) Release(ctx context.Context, k idempotency.Key, token string) error {
	if b.how == "release" {
		e, err := b.Store.Get(ctx, k, time.Time{})
		if err == nil && !e.Done {
			_, err := b.Store.Cleanup(ctx, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)) // deletes whatever the token
			return err
		}
	}
	return b.Store.Release(ctx, k, token)
}

func (b brokenStore) Complete(ctx context.Context, tx idempotency.Tx, k idempotency.Key, token string, resp idempotency.Response) error {
	err := b.Store.Complete(ctx, tx, k, token, resp)
	if b.how == "leaselost" && err == idempotency.ErrLeaseLost {
		return nil
	}
	return err
}

func TestBrokenStoreConformanceChild(t *testing.T) {
	how := os.Getenv(brokenEnv)
	if how == "" {
		t.Skip("run by TestConformanceSuiteCatchesBrokenStores in a child process")
	}
	idempotencytest.Run(t, idempotencytest.Options{New: func(t *testing.T) idempotency.Store {
		return brokenStore{Store: newSQLiteUnderTest(t).store, how: how}
	}})
}

func TestConformanceSuiteCatchesBrokenStores(t *testing.T) {
	for how, failing := range map[string]string{
		"fingerprint": "a_new_key_is_claimed_and_held",
		"release":     "release_frees_the_key,_only_for_its_owner",
		"leaselost":   "an_abandoned_claim_is_taken_over_by_the_same_request_only",
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
