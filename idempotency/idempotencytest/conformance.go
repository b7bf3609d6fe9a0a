// Package idempotencytest is a conformance suite for idempotency.Store
// implementations, in the manner of testing/fstest: a third-party store
// runs it from its own tests,
//
//	func TestConformance(t *testing.T) {
//		idempotencytest.Run(t, idempotencytest.Options{
//			New: func(t *testing.T) idempotency.Store { return newEmptyStore(t) },
//		})
//	}
//
// and passes when it keeps the contract the middleware relies on. The
// toolkit's own stores run it too.
package idempotencytest

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/idem-dev/idem/idempotency"
)

// Options configures Run.
type Options struct {
	// New returns an empty store. It is called once per subtest.
	New func(t *testing.T) idempotency.Store
	// NonTransactional declares that Complete takes effect at once rather
	// than when its transaction commits (as with redisstore). The case that
	// checks a rolled-back completion leaves the key in flight is then not
	// run: such a store does not offer atomic phases.
	NonTransactional bool
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

const (
	lease     = time.Minute
	retention = time.Hour
)

type suite struct {
	t   *testing.T
	s   idempotency.Store
	ctx context.Context
}

func (c suite) claim(k idempotency.Key, fp string, now time.Time) idempotency.Claim {
	c.t.Helper()
	cl, err := c.s.Claim(c.ctx, k, fp, now, lease, retention)
	if err != nil {
		c.t.Fatalf("Claim(%v, %s, %s): %v", k, fp, now, err)
	}
	return cl
}

func (c suite) wantClaim(k idempotency.Key, fp string, now time.Time, want idempotency.ClaimStatus) idempotency.Claim {
	c.t.Helper()
	cl := c.claim(k, fp, now)
	if cl.Status != want {
		c.t.Fatalf("Claim(%v, %s) at %s = %s, want %s", k, fp, now.Sub(t0), cl.Status, want)
	}
	if want == idempotency.Claimed && cl.Token == "" {
		c.t.Fatal("Claimed without a token")
	}
	return cl
}

func (c suite) complete(k idempotency.Key, token string, resp idempotency.Response) error {
	c.t.Helper()
	tx, err := c.s.Begin(c.ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.s.Complete(c.ctx, tx, k, token, resp); err != nil {
		tx.Rollback(c.ctx)
		return err
	}
	return tx.Commit(c.ctx)
}

func sameResponse(a, b idempotency.Response) bool {
	if a.Status != b.Status || string(a.Body) != string(b.Body) || a.BodyOmitted != b.BodyOmitted || len(a.Header) != len(b.Header) {
		return false
	}
	for k, v := range a.Header {
		if !slices.Equal(v, b.Header[k]) {
			return false
		}
	}
	return true
}

// Run runs the suite.
func Run(t *testing.T, o Options) {
	k := idempotency.Key{Scope: "tenant-a", Key: "key-1"}
	resp := idempotency.Response{Status: http.StatusCreated,
		Header: http.Header{"Content-Type": {"application/json"}, "Link": {"<a>", "<b>"}},
		Body:   []byte(`{"order":"o-1","bytes":"\u0000\u00ff"}`)}
	cases := []struct {
		name string
		skip bool
		run  func(c suite)
	}{
		{"a new key is claimed and held", false, func(c suite) {
			c.wantClaim(k, "fp", t0, idempotency.Claimed)
			e, err := c.s.Get(c.ctx, k, t0)
			if err != nil || e.Done || e.Fingerprint != "fp" || !e.LockedUntil.Equal(t0.Add(lease)) || !e.ExpiresAt.Equal(t0.Add(retention)) {
				c.t.Fatalf("Get = %+v, %v", e, err)
			}
			c.wantClaim(k, "fp", t0.Add(lease-time.Microsecond), idempotency.InProgress)
			c.wantClaim(k, "other", t0, idempotency.Mismatch)
		}},
		{"a completed key replays its response", false, func(c suite) {
			cl := c.wantClaim(k, "fp", t0, idempotency.Claimed)
			if err := c.complete(k, cl.Token, resp); err != nil {
				c.t.Fatal(err)
			}
			got := c.wantClaim(k, "fp", t0.Add(time.Second), idempotency.Completed)
			if !sameResponse(got.Response, resp) {
				c.t.Fatalf("replayed %+v, stored %+v", got.Response, resp)
			}
			c.wantClaim(k, "other", t0, idempotency.Mismatch)
			e, err := c.s.Get(c.ctx, k, t0)
			if err != nil || !e.Done || !sameResponse(e.Response, resp) {
				c.t.Fatalf("Get = %+v, %v", e, err)
			}
			if err := c.complete(k, cl.Token, resp); !errors.Is(err, idempotency.ErrLeaseLost) {
				c.t.Fatalf("completing twice: %v, want ErrLeaseLost", err)
			}
		}},
		{"empty and omitted bodies", false, func(c suite) {
			k2 := idempotency.Key{Scope: "s", Key: "omitted"}
			cl := c.wantClaim(k, "fp", t0, idempotency.Claimed)
			cl2 := c.wantClaim(k2, "fp", t0, idempotency.Claimed)
			if err := c.complete(k, cl.Token, idempotency.Response{Status: 204}); err != nil {
				c.t.Fatal(err)
			}
			if err := c.complete(k2, cl2.Token, idempotency.Response{Status: 201, Header: http.Header{"Location": {"/x"}}, BodyOmitted: true}); err != nil {
				c.t.Fatal(err)
			}
			if got := c.wantClaim(k, "fp", t0, idempotency.Completed).Response; got.Status != 204 || len(got.Body) != 0 || got.BodyOmitted {
				c.t.Fatalf("empty body replayed as %+v", got)
			}
			if got := c.wantClaim(k2, "fp", t0, idempotency.Completed).Response; got.Status != 201 || len(got.Body) != 0 || !got.BodyOmitted || got.Header.Get("Location") != "/x" {
				c.t.Fatalf("omitted body replayed as %+v", got)
			}
		}},
		{"release frees the key, only for its owner", false, func(c suite) {
			cl := c.wantClaim(k, "fp", t0, idempotency.Claimed)
			if err := c.s.Release(c.ctx, k, "not-the-token"); err != nil {
				c.t.Fatal(err)
			}
			c.wantClaim(k, "fp", t0, idempotency.InProgress)
			if err := c.s.Release(c.ctx, k, cl.Token); err != nil {
				c.t.Fatal(err)
			}
			if _, err := c.s.Get(c.ctx, k, t0); !errors.Is(err, idempotency.ErrNotFound) {
				c.t.Fatalf("Get after release: %v, want ErrNotFound", err)
			}
			c2 := c.wantClaim(k, "other", t0, idempotency.Claimed)
			if c2.Token == cl.Token {
				c.t.Fatal("a new claim reused the old token")
			}
			if err := c.complete(k, c2.Token, resp); err != nil {
				c.t.Fatal(err)
			}
			if err := c.s.Release(c.ctx, k, c2.Token); err != nil {
				c.t.Fatal(err)
			}
			c.wantClaim(k, "other", t0, idempotency.Completed) // releasing a completed key does nothing
		}},
		{"extend keeps the lease, only for its owner", false, func(c suite) {
			cl := c.wantClaim(k, "fp", t0, idempotency.Claimed)
			if err := c.s.Extend(c.ctx, k, cl.Token, t0.Add(2*lease)); err != nil {
				c.t.Fatal(err)
			}
			c.wantClaim(k, "fp", t0.Add(lease+time.Second), idempotency.InProgress)
			if err := c.s.Extend(c.ctx, k, "not-the-token", t0.Add(3*lease)); !errors.Is(err, idempotency.ErrLeaseLost) {
				c.t.Fatalf("Extend by a stranger: %v, want ErrLeaseLost", err)
			}
		}},
		{"an abandoned claim is taken over by the same request only", false, func(c suite) {
			cl := c.wantClaim(k, "fp", t0, idempotency.Claimed)
			c.wantClaim(k, "other", t0.Add(lease), idempotency.Mismatch)
			c2 := c.wantClaim(k, "fp", t0.Add(lease), idempotency.Claimed)
			if c2.Token == cl.Token {
				c.t.Fatal("the takeover kept the old token")
			}
			if err := c.complete(k, cl.Token, resp); !errors.Is(err, idempotency.ErrLeaseLost) {
				c.t.Fatalf("the superseded request completed: %v, want ErrLeaseLost", err)
			}
			if err := c.s.Extend(c.ctx, k, cl.Token, t0.Add(3*lease)); !errors.Is(err, idempotency.ErrLeaseLost) {
				c.t.Fatalf("the superseded request extended: %v, want ErrLeaseLost", err)
			}
			if err := c.complete(k, c2.Token, resp); err != nil {
				c.t.Fatal(err)
			}
		}},
		{"keys expire after their retention", false, func(c suite) {
			cl := c.wantClaim(k, "fp", t0, idempotency.Claimed)
			if err := c.complete(k, cl.Token, resp); err != nil {
				c.t.Fatal(err)
			}
			c.wantClaim(k, "fp", t0.Add(retention-time.Microsecond), idempotency.Completed)
			if _, err := c.s.Get(c.ctx, k, t0.Add(retention)); !errors.Is(err, idempotency.ErrNotFound) {
				c.t.Fatalf("Get at expiry: %v, want ErrNotFound", err)
			}
			c.wantClaim(k, "other", t0.Add(retention), idempotency.Claimed)
		}},
		{"scopes keep equal keys apart", false, func(c suite) {
			a, b := idempotency.Key{Scope: "a", Key: "k"}, idempotency.Key{Scope: "b", Key: "k"}
			cl := c.wantClaim(a, "fp", t0, idempotency.Claimed)
			c.wantClaim(b, "other", t0, idempotency.Claimed)
			if err := c.complete(a, cl.Token, resp); err != nil {
				c.t.Fatal(err)
			}
			c.wantClaim(b, "other", t0, idempotency.InProgress)
			// Scope and key are not simply concatenated.
			c.wantClaim(idempotency.Key{Scope: "a:", Key: "k"}, "x", t0, idempotency.Claimed)
			c.wantClaim(idempotency.Key{Scope: "a", Key: ":k"}, "y", t0, idempotency.Claimed)
		}},
		{"cleanup deletes exactly the expired keys", false, func(c suite) {
			for i := range 5 {
				c.wantClaim(idempotency.Key{Scope: "s", Key: string(rune('a' + i))}, "fp", t0, idempotency.Claimed)
			}
			live := idempotency.Key{Scope: "s", Key: "live"}
			c.wantClaim(live, "fp", t0.Add(retention/2), idempotency.Claimed)
			n, err := c.s.Cleanup(c.ctx, t0.Add(retention))
			if err != nil || n != 5 {
				c.t.Fatalf("Cleanup = %d, %v; want 5", n, err)
			}
			if _, err := c.s.Get(c.ctx, live, t0.Add(retention)); err != nil {
				c.t.Fatalf("the live key: %v", err)
			}
		}},
		{"a rolled-back completion leaves the key in flight", o.NonTransactional, func(c suite) {
			cl := c.wantClaim(k, "fp", t0, idempotency.Claimed)
			tx, err := c.s.Begin(c.ctx)
			if err != nil {
				c.t.Fatal(err)
			}
			if err := c.s.Complete(c.ctx, tx, k, cl.Token, resp); err != nil {
				c.t.Fatal(err)
			}
			if err := tx.Rollback(c.ctx); err != nil {
				c.t.Fatal(err)
			}
			c.wantClaim(k, "fp", t0, idempotency.InProgress)
			if err := c.complete(k, cl.Token, resp); err != nil {
				c.t.Fatalf("completing after the rollback: %v", err)
			}
		}},
		{"concurrent claims: exactly one wins", false, func(c suite) {
			var mu sync.Mutex
			won := 0
			var wg sync.WaitGroup
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					cl, err := c.s.Claim(c.ctx, k, "fp", t0, lease, retention)
					if err != nil {
						c.t.Error(err)
						return
					}
					mu.Lock()
					defer mu.Unlock()
					if cl.Status == idempotency.Claimed {
						won++
					} else if cl.Status != idempotency.InProgress {
						c.t.Errorf("concurrent claim: %s", cl.Status)
					}
				}()
			}
			wg.Wait()
			if won != 1 {
				c.t.Fatalf("%d concurrent claims won, want 1", won)
			}
		}},
	}
	for _, tc := range cases {
		if tc.skip {
			continue // documented by Options.NonTransactional, not reported as a pass
		}
		t.Run(tc.name, func(t *testing.T) {
			tc.run(suite{t: t, s: o.New(t), ctx: context.Background()})
		})
	}
}
