package idempotency_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idem-dev/idem/idempotency"
	"github.com/idem-dev/idem/idempotency/idempotencyprom"
	"github.com/prometheus/client_golang/prometheus"
)

// stubStore answers at once, so the benchmark sees the middleware's own
// cost: Claim says "claimed" (first) or replays a stored response (replay).
type stubStore struct {
	replay bool
	resp   idempotency.Response
}

type stubTx struct{}

func (stubTx) Commit(context.Context) error   { return nil }
func (stubTx) Rollback(context.Context) error { return nil }

func (s *stubStore) Claim(context.Context, idempotency.Key, string, time.Time, time.Duration, time.Duration) (idempotency.Claim, error) {
	if s.replay {
		return idempotency.Claim{Status: idempotency.Completed, Response: s.resp}, nil
	}
	return idempotency.Claim{Status: idempotency.Claimed, Token: "t"}, nil
}
func (s *stubStore) Begin(context.Context) (idempotency.Tx, error) { return stubTx{}, nil }
func (s *stubStore) Complete(context.Context, idempotency.Tx, idempotency.Key, string, idempotency.Response) error {
	return nil
}
func (s *stubStore) Release(context.Context, idempotency.Key, string) error { return nil }
func (s *stubStore) Extend(context.Context, idempotency.Key, string, time.Time) error {
	return nil
}
func (s *stubStore) Get(context.Context, idempotency.Key, time.Time) (idempotency.Entry, error) {
	return idempotency.Entry{}, idempotency.ErrNotFound
}
func (s *stubStore) Cleanup(context.Context, time.Time) (int64, error) { return 0, nil }

// A typical created-resource response, with a session cookie to filter out.
func respondCreated(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Location", "/orders/42")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Request-Id", "req-123")
	h.Add("Set-Cookie", "session=abc; HttpOnly")
	h.Set("Vary", "Authorization")
	w.WriteHeader(http.StatusCreated)
	w.Write([]byte(`{"order":42,"amount":100}`))
}

type overheadVariant struct {
	name         string
	filter, hook bool
}

var overheadVariants = []overheadVariant{{"base", false, false}, {"filter", true, false}, {"hook", false, true}, {"filter+hook", true, true}}

// overheadHandler builds the middleware of variant v on store ("stub" or
// "sqlite") for mode ("first" or "replay"), and a function sending one
// request through it.
func overheadHandler(b *testing.B, store, mode string, v overheadVariant) func() {
	stored := httptest.NewRecorder()
	respondCreated(stored)
	var s idempotency.Store
	if store == "stub" {
		s = &stubStore{replay: mode == "replay", resp: idempotency.Response{Status: 201, Header: stored.Header().Clone(), Body: stored.Body.Bytes()}}
	} else {
		s = newSQLiteUnderTest(b).store
	}
	cfg := idempotency.Config{Store: s, Scope: func(*http.Request) string { return "alice" }}
	if v.hook {
		m, err := idempotencyprom.New(prometheus.NewRegistry())
		if err != nil {
			b.Fatal(err)
		}
		cfg.OnOutcome = m.Observe
	}
	var h http.Handler = idempotency.Middleware(cfg)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { respondCreated(w) }))
	if !v.filter {
		h = idempotency.WithoutHeaderFilter(h)
	}
	send := func(key string) {
		r := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(`{"amount":100}`))
		r.Header.Set(idempotency.HeaderKey, key)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusCreated {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	send("warm")
	i := 0
	return func() {
		if mode == "first" {
			i++
			send(fmt.Sprintf("key-%d", i))
		} else {
			send("warm")
		}
	}
}

// BenchmarkMiddlewareOverheadInterleaved is the same comparison, robust to
// a machine whose load changes during the run: each iteration is a round
// that sends a burst of requests through every variant, in a rotating
// order, and the reported figure per variant is the median of its rounds
// (ns per request), with its ratio to the baseline's median.
//
//	go test -run '^$' -bench MiddlewareOverheadInterleaved -benchtime 100x -count 5 ./idempotency
func BenchmarkMiddlewareOverheadInterleaved(b *testing.B) {
	for _, store := range []string{"stub", "sqlite"} {
		for _, mode := range []string{"first", "replay"} {
			b.Run(store+"/"+mode, func(b *testing.B) {
				burst := 200
				if store == "sqlite" {
					burst = 20
				}
				sends := make([]func(), len(overheadVariants))
				for i, v := range overheadVariants {
					sends[i] = overheadHandler(b, store, mode, v)
				}
				samples := make([][]float64, len(overheadVariants))
				round := 0
				for b.Loop() {
					for j := range overheadVariants {
						i := (j + round) % len(overheadVariants)
						start := time.Now()
						for range burst {
							sends[i]()
						}
						samples[i] = append(samples[i], float64(time.Since(start).Nanoseconds())/float64(burst))
					}
					round++
				}
				base := median(samples[0])
				for i, v := range overheadVariants {
					m := median(samples[i])
					b.ReportMetric(m, v.name+"-ns/req")
					if i > 0 {
						b.ReportMetric(m/base, v.name+"/base")
					}
				}
			})
		}
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkMiddlewareOverhead compares, in one run, the middleware with and
// without the outcome hook (Prometheus counters) and the replay header
// filter: on a stub store (the middleware's own cost) and on SQLite (what a
// request costs in practice).
//
//	go test -run '^$' -bench MiddlewareOverhead -count 5 ./idempotency
func BenchmarkMiddlewareOverhead(b *testing.B) {
	for _, store := range []string{"stub", "sqlite"} {
		for _, mode := range []string{"first", "replay"} {
			for _, v := range overheadVariants {
				b.Run(store+"/"+mode+"/"+v.name, func(b *testing.B) {
					send := overheadHandler(b, store, mode, v)
					for b.Loop() {
						send()
					}
				})
			}
		}
	}
}
