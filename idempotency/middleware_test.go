package idempotency_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idem-dev/idem/idempotency"
	"github.com/idem-dev/idem/idempotency/pgstore"
	"github.com/idem-dev/idem/idempotency/sqlitestore"
)

// api is an order-creation endpoint behind the middleware. Every run of the
// handler gets a new sequence number, so a replay is recognisable by its body.
type api struct {
	t     *testing.T
	s     *storeUnderTest
	clock *fakeClock
	runs  atomic.Int64
	h     http.Handler
	// behave, if set, replaces the default "201 Created" handler body.
	behave func(w http.ResponseWriter, r *http.Request, run int64)
}

func newAPI(t *testing.T, s *storeUnderTest, tweak func(*idempotency.Config)) *api {
	a := &api{t: t, s: s, clock: newFakeClock()}
	// These tests send anonymous requests: one shared scope, knowingly.
	cfg := idempotency.Config{Store: s.store, Now: a.clock.Now, Scope: idempotency.ScopeByAuthorization, AllowEmptyScope: true}
	if tweak != nil {
		tweak(&cfg)
	}
	a.h = idempotency.Middleware(cfg)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		run := a.runs.Add(1)
		if a.behave != nil {
			a.behave(w, r, run)
			return
		}
		a.createOrder(w, r, run)
	}))
	return a
}

func (a *api) createOrder(w http.ResponseWriter, r *http.Request, run int64) {
	body, _ := io.ReadAll(r.Body)
	if err := a.s.insertOrder(r.Context(), string(body)); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Location", "/orders/"+string(body))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"order":%q,"run":%d}`, body, run)
}

// do sends a request; headers are name, value pairs.
func (a *api) do(method, path, key, body string, headers ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if key != "" {
		r.Header.Set(idempotency.HeaderKey, key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Add(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	a.h.ServeHTTP(w, r)
	return w
}

func (a *api) post(key, body string, headers ...string) *httptest.ResponseRecorder {
	return a.do(http.MethodPost, "/orders", key, body, headers...)
}

func wantStatus(t *testing.T, w *httptest.ResponseRecorder, status int) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status = %d, want %d; body %s", w.Code, status, w.Body)
	}
}

func TestFirstRequestRunsAndRetryReplaysTheStoredResponse(t *testing.T) {
	eachStore(t, func(t *testing.T, s *storeUnderTest) {
		a := newAPI(t, s, nil)
		first := a.post("key-1", "o-1")
		wantStatus(t, first, http.StatusCreated)
		if first.Header().Get(idempotency.HeaderReplayed) != "" {
			t.Fatal("the original response is marked as replayed")
		}
		retry := a.post("key-1", "o-1")
		wantStatus(t, retry, http.StatusCreated)
		if retry.Body.String() != first.Body.String() {
			t.Fatalf("replayed body %s, original %s", retry.Body, first.Body)
		}
		for _, h := range []string{"Location", "Content-Type"} {
			if retry.Header().Get(h) != first.Header().Get(h) {
				t.Fatalf("replayed %s = %q, original %q", h, retry.Header().Get(h), first.Header().Get(h))
			}
		}
		if retry.Header().Get(idempotency.HeaderReplayed) != "true" {
			t.Fatalf("replay lacks %s: true", idempotency.HeaderReplayed)
		}
		if a.runs.Load() != 1 || s.orders(t, "o-1") != 1 {
			t.Fatalf("handler ran %d times, %d orders; want 1 and 1", a.runs.Load(), s.orders(t, "o-1"))
		}
	})
}

func TestSameKeyWithDifferentPayloadIs422(t *testing.T) {
	eachStore(t, func(t *testing.T, s *storeUnderTest) {
		a := newAPI(t, s, nil)
		wantStatus(t, a.post("key-1", "o-1"), http.StatusCreated)
		w := a.post("key-1", "o-2")
		wantStatus(t, w, http.StatusUnprocessableEntity)
		if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
			t.Fatalf("422 content type %q, want problem+json", ct)
		}
		wantStatus(t, a.do(http.MethodPost, "/refunds", "key-1", "o-1"), http.StatusUnprocessableEntity)
		wantStatus(t, a.do(http.MethodPatch, "/orders", "key-1", "o-1"), http.StatusUnprocessableEntity)
		if a.runs.Load() != 1 {
			t.Fatalf("handler ran %d times, want 1", a.runs.Load())
		}
	})
}

func TestRetryWhileTheFirstIsRunningIs409AndLaterReplays(t *testing.T) {
	eachStore(t, func(t *testing.T, s *storeUnderTest) {
		a := newAPI(t, s, nil)
		entered, release := make(chan struct{}), make(chan struct{})
		a.behave = func(w http.ResponseWriter, r *http.Request, run int64) {
			close(entered)
			<-release
			a.createOrder(w, r, run)
		}
		done := make(chan *httptest.ResponseRecorder)
		go func() { done <- a.post("key-1", "o-1") }()
		<-entered
		w := a.post("key-1", "o-1")
		wantStatus(t, w, http.StatusConflict)
		if w.Header().Get("Retry-After") == "" {
			t.Fatal("409 without Retry-After")
		}
		// A different payload is a client bug even while the first runs.
		wantStatus(t, a.post("key-1", "o-2"), http.StatusUnprocessableEntity)
		close(release)
		wantStatus(t, <-done, http.StatusCreated)
		wantStatus(t, a.post("key-1", "o-1"), http.StatusCreated)
		if a.runs.Load() != 1 {
			t.Fatalf("handler ran %d times, want 1", a.runs.Load())
		}
	})
}

func TestMissingKeyIs400UnlessOptional(t *testing.T) {
	eachStore(t, func(t *testing.T, s *storeUnderTest) {
		a := newAPI(t, s, func(c *idempotency.Config) { c.DocsURL = "https://example.com/docs/idempotency" })
		w := a.post("", "o-1")
		wantStatus(t, w, http.StatusBadRequest)
		if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
			t.Fatalf("content type %q, want problem+json", ct)
		}
		if !strings.Contains(w.Header().Get("Link"), "https://example.com/docs/idempotency") {
			t.Fatalf("Link = %q, want the docs URL", w.Header().Get("Link"))
		}
		if a.runs.Load() != 0 {
			t.Fatal("handler ran without a key")
		}

		opt := newAPI(t, s, func(c *idempotency.Config) { c.Optional = true })
		wantStatus(t, opt.post("", "o-2"), http.StatusCreated)
		wantStatus(t, opt.post("", "o-2"), http.StatusCreated)
		if opt.runs.Load() != 2 {
			t.Fatalf("optional route without key ran %d times, want 2 (unprotected)", opt.runs.Load())
		}
	})
}

func TestSafeMethodsPassThrough(t *testing.T) {
	eachStore(t, func(t *testing.T, s *storeUnderTest) {
		a := newAPI(t, s, nil)
		a.behave = func(w http.ResponseWriter, r *http.Request, run int64) { w.WriteHeader(http.StatusNoContent) }
		wantStatus(t, a.do(http.MethodGet, "/orders", "", ""), http.StatusNoContent)
		wantStatus(t, a.do(http.MethodGet, "/orders", "key-1", ""), http.StatusNoContent)
		wantStatus(t, a.do(http.MethodGet, "/orders", "key-1", ""), http.StatusNoContent)
		if a.runs.Load() != 3 {
			t.Fatalf("GET ran %d times, want 3", a.runs.Load())
		}
	})
}

func TestMalformedKeysAre400(t *testing.T) {
	eachStore(t, func(t *testing.T, s *storeUnderTest) {
		a := newAPI(t, s, nil)
		for name, send := range map[string]func() *httptest.ResponseRecorder{
			"too long":     func() *httptest.ResponseRecorder { return a.post(strings.Repeat("k", 256), "o") },
			"empty string": func() *httptest.ResponseRecorder { return a.post(`""`, "o") },
			"control char": func() *httptest.ResponseRecorder { return a.post("a\tb", "o") },
			"non-ASCII":    func() *httptest.ResponseRecorder { return a.post("clé", "o") },
			"two headers": func() *httptest.ResponseRecorder {
				return a.post("k1", "o", idempotency.HeaderKey, "k2")
			},
			"bad escape": func() *httptest.ResponseRecorder { return a.post(`"a\b"`, "o") },
		} {
			if w := send(); w.Code != http.StatusBadRequest {
				t.Errorf("%s: status %d, want 400", name, w.Code)
			}
		}
		wantStatus(t, a.post(strings.Repeat("k", 255), "o"), http.StatusCreated)
		if a.runs.Load() != 1 {
			t.Fatalf("handler ran %d times for malformed keys", a.runs.Load()-1)
		}
	})
}

// The draft sends the key as a Structured Field string; Stripe clients send
// it bare. Both spellings name the same key.
func TestQuotedAndBareKeysAreTheSameKey(t *testing.T) {
	eachStore(t, func(t *testing.T, s *storeUnderTest) {
		a := newAPI(t, s, nil)
		wantStatus(t, a.post(`"8e03978e-40d5-43e8-bc93-6894a57f9324"`, "o-1"), http.StatusCreated)
		w := a.post("8e03978e-40d5-43e8-bc93-6894a57f9324", "o-1")
		wantStatus(t, w, http.StatusCreated)
		if w.Header().Get(idempotency.HeaderReplayed) != "true" || a.runs.Load() != 1 {
			t.Fatal("bare spelling of a quoted key was not replayed")
		}
	})
}

func TestKeysAreScopedPerClient(t *testing.T) {
	eachStore(t, func(t *testing.T, s *storeUnderTest) {
		a := newAPI(t, s, nil)
		wantStatus(t, a.post("key-1", "o-1", "Authorization", "Bearer alice"), http.StatusCreated)
		w := a.post("key-1", "o-1", "Authorization", "Bearer mallory")
		wantStatus(t, w, http.StatusCreated)
		if w.Header().Get(idempotency.HeaderReplayed) != "" {
			t.Fatal("another client's response was replayed")
		}
		if a.runs.Load() != 2 {
			t.Fatalf("handler ran %d times, want once per client", a.runs.Load())
		}
		custom := newAPI(t, s, func(c *idempotency.Config) {
			c.Scope = func(r *http.Request) string { return r.Header.Get("X-Tenant") }
		})
		wantStatus(t, custom.post("key-2", "o-2", "X-Tenant", "a"), http.StatusCreated)
		wantStatus(t, custom.post("key-2", "o-2", "X-Tenant", "b"), http.StatusCreated)
		wantStatus(t, custom.post("key-2", "o-2", "X-Tenant", "a"), http.StatusCreated)
		if custom.runs.Load() != 2 {
			t.Fatalf("custom scope: handler ran %d times, want 2", custom.runs.Load())
		}
	})
}

func TestKeysExpireAfterRetention(t *testing.T) {
	eachStore(t, func(t *testing.T, s *storeUnderTest) {
		a := newAPI(t, s, nil) // default retention, 24 h
		wantStatus(t, a.post("key-1", "o-1"), http.StatusCreated)
		a.clock.Advance(24*time.Hour - time.Microsecond)
		if w := a.post("key-1", "o-1"); w.Header().Get(idempotency.HeaderReplayed) != "true" {
			t.Fatal("key forgotten before its retention")
		}
		a.clock.Advance(time.Microsecond)
		w := a.post("key-1", "o-2") // a reused key after expiry is a new request
		wantStatus(t, w, http.StatusCreated)
		if w.Header().Get(idempotency.HeaderReplayed) != "" || a.runs.Load() != 2 {
			t.Fatal("expired key was replayed")
		}
		n, err := s.store.Cleanup(context.Background(), a.clock.Now().Add(24*time.Hour))
		if err != nil || n != 1 {
			t.Fatalf("cleanup = %d, %v; want 1", n, err)
		}
	})
}

// 5xx is released instead of stored (see the package doc): the retry runs
// the handler again, and the failed attempt's writes were rolled back.
func TestServerErrorReleasesTheKeyAndRollsBackItsWrites(t *testing.T) {
	eachStore(t, func(t *testing.T, s *storeUnderTest) {
		a := newAPI(t, s, nil)
		a.behave = func(w http.ResponseWriter, r *http.Request, run int64) {
			if run == 1 {
				if err := s.insertOrder(r.Context(), "o-1"); err != nil {
					t.Error(err)
				}
				http.Error(w, "card network down", http.StatusBadGateway)
				return
			}
			a.createOrder(w, r, run)
		}
		wantStatus(t, a.post("key-1", "o-1"), http.StatusBadGateway)
		if n := s.orders(t, ""); n != 0 {
			t.Fatalf("failed attempt left %d orders", n)
		}
		wantStatus(t, a.post("key-1", "o-1"), http.StatusCreated)
		w := a.post("key-1", "o-1")
		if w.Header().Get(idempotency.HeaderReplayed) != "true" || s.orders(t, "o-1") != 1 {
			t.Fatalf("after recovery: replayed=%q orders=%d", w.Header().Get(idempotency.HeaderReplayed), s.orders(t, "o-1"))
		}
	})
}

func TestClientErrorIsStoredAndReplayed(t *testing.T) {
	eachStore(t, func(t *testing.T, s *storeUnderTest) {
		a := newAPI(t, s, nil)
		a.behave = func(w http.ResponseWriter, r *http.Request, run int64) {
			http.Error(w, fmt.Sprintf("insufficient funds (run %d)", run), http.StatusPaymentRequired)
		}
		first := a.post("key-1", "o-1")
		wantStatus(t, first, http.StatusPaymentRequired)
		retry := a.post("key-1", "o-1")
		wantStatus(t, retry, http.StatusPaymentRequired)
		if retry.Body.String() != first.Body.String() || retry.Header().Get(idempotency.HeaderReplayed) != "true" {
			t.Fatalf("4xx not replayed: %q vs %q", retry.Body, first.Body)
		}
	})
}

func TestHandlerPanicReleasesTheKeyAndRollsBack(t *testing.T) {
	eachStore(t, func(t *testing.T, s *storeUnderTest) {
		a := newAPI(t, s, nil)
		a.behave = func(w http.ResponseWriter, r *http.Request, run int64) {
			if run == 1 {
				s.insertOrder(r.Context(), "o-1")
				panic("bug")
			}
			a.createOrder(w, r, run)
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Fatal("panic swallowed")
				}
			}()
			a.post("key-1", "o-1")
		}()
		wantStatus(t, a.post("key-1", "o-1"), http.StatusCreated)
		if n := s.orders(t, "o-1"); n != 1 {
			t.Fatalf("orders = %d, want 1", n)
		}
	})
}

// Atomic phases: the handler's row and the stored response commit together.
// If a retry took over the key after the lease ran out, the slow original
// cannot store its response, and its order row rolls back with it.
func TestLeaseTakeoverRollsBackTheSupersededRequest(t *testing.T) {
	eachStore(t, func(t *testing.T, s *storeUnderTest) {
		a := newAPI(t, s, func(c *idempotency.Config) { c.Lease = time.Minute })
		entered, release := make(chan struct{}), make(chan struct{})
		a.behave = func(w http.ResponseWriter, r *http.Request, run int64) {
			if run == 1 {
				close(entered)
				<-release // the slow first attempt writes only after being superseded
			}
			a.createOrder(w, r, run)
		}
		done := make(chan *httptest.ResponseRecorder)
		go func() { done <- a.post("key-1", "o-1") }()
		<-entered
		wantStatus(t, a.post("key-1", "o-1"), http.StatusConflict) // lease still held
		a.clock.Advance(time.Minute)
		takeover := a.post("key-1", "o-1")
		wantStatus(t, takeover, http.StatusCreated)
		close(release)
		wantStatus(t, <-done, http.StatusConflict)
		if n := s.orders(t, "o-1"); n != 1 {
			t.Fatalf("orders = %d, want 1: the superseded request's write must roll back", n)
		}
		replay := a.post("key-1", "o-1")
		if replay.Body.String() != takeover.Body.String() {
			t.Fatalf("replay %s, want the takeover's response %s", replay.Body, takeover.Body)
		}
	})
}

func TestOversizedBodyIs413(t *testing.T) {
	eachStore(t, func(t *testing.T, s *storeUnderTest) {
		a := newAPI(t, s, func(c *idempotency.Config) { c.MaxBodyBytes = 8 })
		wantStatus(t, a.post("key-1", "123456789"), http.StatusRequestEntityTooLarge)
		wantStatus(t, a.post("key-1", "12345678"), http.StatusCreated)
	})
}

// Many clients retrying the same request at once, through a real server:
// the handler runs once; everyone else gets 409 or the replay.
func TestConcurrentIdenticalRequestsRunTheHandlerOnce(t *testing.T) {
	eachStore(t, func(t *testing.T, s *storeUnderTest) {
		a := newAPI(t, s, nil)
		a.behave = func(w http.ResponseWriter, r *http.Request, run int64) {
			time.Sleep(20 * time.Millisecond)
			a.createOrder(w, r, run)
		}
		srv := httptest.NewServer(a.h)
		defer srv.Close()
		const clients, keys = 12, 3
		var mu sync.Mutex
		bodies := map[string]map[string]bool{}
		var wg sync.WaitGroup
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				key := fmt.Sprintf("key-%d", c%keys)
				for {
					req, _ := http.NewRequest(http.MethodPost, srv.URL+"/orders", strings.NewReader("o-"+key))
					req.Header.Set(idempotency.HeaderKey, key)
					resp, err := srv.Client().Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					switch resp.StatusCode {
					case http.StatusConflict:
						time.Sleep(5 * time.Millisecond)
						continue
					case http.StatusCreated:
						mu.Lock()
						if bodies[key] == nil {
							bodies[key] = map[string]bool{}
						}
						bodies[key][string(body)] = true
						mu.Unlock()
					default:
						t.Errorf("status %d: %s", resp.StatusCode, body)
					}
					return
				}
			}()
		}
		wg.Wait()
		if a.runs.Load() != keys {
			t.Fatalf("handler ran %d times for %d keys", a.runs.Load(), keys)
		}
		for k, b := range bodies {
			if len(b) != 1 {
				t.Errorf("%s: clients saw %d different bodies, want 1", k, len(b))
			}
			if n := s.orders(t, "o-"+k); n != 1 {
				t.Errorf("%s: %d orders", k, n)
			}
		}
	})
}

func TestTransactionOutsideTheMiddlewareIsAnError(t *testing.T) {
	if _, err := sqlitestore.Tx(context.Background()); err != idempotency.ErrNoTransaction {
		t.Fatalf("sqlitestore.Tx = %v, want ErrNoTransaction", err)
	}
	if _, err := pgstore.Tx(context.Background()); err != idempotency.ErrNoTransaction {
		t.Fatalf("pgstore.Tx = %v, want ErrNoTransaction", err)
	}
}

func TestCleanupDeletesExpiredKeysInBoundedBatches(t *testing.T) {
	eachStore(t, func(t *testing.T, s *storeUnderTest) { // the harness sets CleanupBatch 3
		ctx := context.Background()
		a := newAPI(t, s, func(c *idempotency.Config) { c.Retention = time.Hour })
		for i := range 8 {
			wantStatus(t, a.post(fmt.Sprintf("old-%d", i), "o"), http.StatusCreated)
		}
		a.clock.Advance(30 * time.Minute)
		wantStatus(t, a.post("new", "o"), http.StatusCreated)
		a.clock.Advance(30 * time.Minute)
		n, err := s.store.Cleanup(ctx, a.clock.Now())
		if err != nil || n != 8 {
			t.Fatalf("cleanup = %d, %v; want the 8 expired keys over several batches", n, err)
		}
		if _, err := s.store.Get(ctx, idempotency.Key{Key: "new"}, a.clock.Now()); err != nil {
			t.Fatalf("live key: %v", err)
		}
		if w := a.post("new", "o"); w.Header().Get(idempotency.HeaderReplayed) != "true" {
			t.Fatal("cleanup removed a live key")
		}
	})
}

// A handler that runs longer than the lease keeps its key: the middleware
// renews the lease while it runs, so a retry gets 409, not a second run.
func TestLeaseIsRenewedWhileTheHandlerRuns(t *testing.T) {
	eachStore(t, func(t *testing.T, s *storeUnderTest) {
		a := newAPI(t, s, func(c *idempotency.Config) { c.Lease = 300 * time.Millisecond; c.Now = time.Now })
		entered := make(chan struct{})
		a.behave = func(w http.ResponseWriter, r *http.Request, run int64) {
			if run == 1 {
				close(entered)
				time.Sleep(time.Second) // more than three leases
			}
			a.createOrder(w, r, run)
		}
		done := make(chan *httptest.ResponseRecorder)
		go func() { done <- a.post("key-1", "o-1") }()
		<-entered
		time.Sleep(700 * time.Millisecond)
		wantStatus(t, a.post("key-1", "o-1"), http.StatusConflict)
		wantStatus(t, <-done, http.StatusCreated)
		if a.runs.Load() != 1 || s.orders(t, "o-1") != 1 {
			t.Fatalf("handler ran %d times, %d orders; want 1 and 1", a.runs.Load(), s.orders(t, "o-1"))
		}
	})
}

func TestFingerprintJSONIgnoresKeyOrderAndWhitespace(t *testing.T) {
	eachStore(t, func(t *testing.T, s *storeUnderTest) {
		a := newAPI(t, s, func(c *idempotency.Config) { c.Fingerprint = idempotency.FingerprintJSON })
		a.behave = func(w http.ResponseWriter, r *http.Request, run int64) {
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, "run %d", run)
		}
		wantStatus(t, a.post("key-1", `{"amount":100,"items":["a","b"],"meta":{"x":1,"y":"\u0041"}}`), http.StatusCreated)
		w := a.post("key-1", "{ \"meta\": {\"y\": \"A\", \"x\": 1},\n  \"items\": [\"a\", \"b\"], \"amount\": 100 }")
		if w.Code != http.StatusCreated || w.Header().Get(idempotency.HeaderReplayed) != "true" {
			t.Fatalf("reordered JSON: %d %s, want the replay", w.Code, w.Body)
		}
		for _, other := range []string{`{"amount":101,"items":["a","b"],"meta":{"x":1,"y":"A"}}`, `{"amount":100,"items":["b","a"],"meta":{"x":1,"y":"A"}}`, `not json`} {
			wantStatus(t, a.post("key-1", other), http.StatusUnprocessableEntity)
		}
		// The byte-exact default tells the two spellings apart.
		d := newAPI(t, s, nil)
		wantStatus(t, d.post("key-2", `{"a":1,"b":2}`), http.StatusCreated)
		wantStatus(t, d.post("key-2", `{"b":2,"a":1}`), http.StatusUnprocessableEntity)
		if a.runs.Load() != 1 {
			t.Fatalf("handler ran %d times, want 1", a.runs.Load())
		}
	})
}

func TestOutcomeHookReportsEveryCase(t *testing.T) {
	eachStore(t, func(t *testing.T, s *storeUnderTest) {
		var mu sync.Mutex
		var got []string
		a := newAPI(t, s, func(c *idempotency.Config) {
			c.OnOutcome = func(e idempotency.Event) {
				mu.Lock()
				defer mu.Unlock()
				got = append(got, fmt.Sprintf("%s %d %s", e.Outcome, e.Status, e.Key.Key))
			}
		})
		a.behave = func(w http.ResponseWriter, r *http.Request, run int64) {
			switch r.Header.Get(idempotency.HeaderKey) {
			case "fail":
				w.WriteHeader(http.StatusBadGateway)
				return
			case "panic":
				panic("bug")
			}
			w.WriteHeader(http.StatusCreated)
		}
		a.post("k1", "a")                         // processed
		a.post("k1", "a")                         // replayed
		a.post("k1", "b")                         // mismatch
		a.post("", "a")                           // rejected (missing)
		a.post("fail", "a")                       // released
		a.do(http.MethodGet, "/orders", "k9", "") // not handled: no event
		func() {
			defer func() { recover() }()
			a.post("panic", "a") // released, and the panic goes on
		}()
		want := []string{"processed 201 k1", "replayed 201 k1", "mismatch 422 k1", "rejected 400 ", "released 502 fail", "released 500 panic"}
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(got, want) {
			t.Fatalf("events %q, want %q", got, want)
		}
	})
}

func TestCustomErrorWriter(t *testing.T) {
	eachStore(t, func(t *testing.T, s *storeUnderTest) {
		a := newAPI(t, s, func(c *idempotency.Config) {
			c.ErrorWriter = func(w http.ResponseWriter, r *http.Request, p idempotency.Problem) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(p.Status)
				fmt.Fprintf(w, `{"error":{"code":%d,"message":%q}}`, p.Status, p.Title)
			}
		})
		w := a.post("", "a")
		if w.Code != http.StatusBadRequest || w.Body.String() != `{"error":{"code":400,"message":"Idempotency-Key is missing"}}` {
			t.Fatalf("custom error: %d %s", w.Code, w.Body)
		}
	})
}
