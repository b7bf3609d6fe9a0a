package idempotency_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idem-dev/idem/idempotency"
)

// Regression tests for the defects of issue 16. Each was written first and
// seen failing against the code before its fix.

// Defect 1: a replay carried every stored header, Set-Cookie included.
func TestReplayNeverCarriesCredentialsOrHopByHopHeaders(t *testing.T) {
	eachStore(t, func(t *testing.T, s *storeUnderTest) {
		a := newAPI(t, s, func(c *idempotency.Config) {
			c.Scope = func(*http.Request) string { return "alice" }
		})
		a.behave = func(w http.ResponseWriter, r *http.Request, run int64) {
			http.SetCookie(w, &http.Cookie{Name: "session", Value: fmt.Sprintf("secret-%d", run)})
			h := w.Header()
			h.Set("Authorization", "Bearer server-side-token")
			h.Set("WWW-Authenticate", `Bearer realm="api"`)
			h.Set("Proxy-Authenticate", `Basic realm="proxy"`)
			h.Set("Connection", "close")
			h.Set("Keep-Alive", "timeout=5")
			h.Set("Upgrade", "h2c")
			h.Set("Trailer", "X-Checksum")
			h.Set("X-Internal-Debug", "db=primary")
			h.Set("Location", "/orders/o-1")
			h.Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"run":%d}`, run)
		}
		first := a.post("key-1", "o-1")
		wantStatus(t, first, http.StatusCreated)
		if first.Header().Get("Set-Cookie") == "" {
			t.Fatal("the original response lost its own Set-Cookie")
		}
		retry := a.post("key-1", "o-1")
		wantStatus(t, retry, http.StatusCreated)
		if retry.Header().Get(idempotency.HeaderReplayed) != "true" {
			t.Fatal("retry was not a replay")
		}
		for _, h := range []string{"Set-Cookie", "Authorization", "WWW-Authenticate", "Proxy-Authenticate",
			"Connection", "Keep-Alive", "Upgrade", "Trailer", "X-Internal-Debug"} {
			if v := retry.Header().Values(h); len(v) > 0 {
				t.Errorf("replay carries %s: %q", h, v)
			}
		}
		for _, h := range []string{"Location", "Content-Type"} {
			if retry.Header().Get(h) != first.Header().Get(h) {
				t.Errorf("replayed %s = %q, want %q", h, retry.Header().Get(h), first.Header().Get(h))
			}
		}
		// Not only not replayed: not kept in the database either.
		e, err := s.store.Get(context.Background(), idempotency.Key{Scope: "alice", Key: "key-1"}, a.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		if v := e.Response.Header.Values("Set-Cookie"); len(v) > 0 {
			t.Errorf("the store keeps the session cookie: %q", v)
		}
	})
}

// Defect 1, second half: by default every client without an Authorization
// header shared one scope, so an anonymous client replayed another's
// response, cookie and all. An empty scope must be a configuration error or
// an explicit opt-in.
func TestAnonymousClientsDoNotShareOneScopeByDefault(t *testing.T) {
	eachStore(t, func(t *testing.T, s *storeUnderTest) {
		handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.SetCookie(w, &http.Cookie{Name: "session", Value: "for-" + r.Header.Get("X-Client")})
			w.WriteHeader(http.StatusCreated)
			fmt.Fprint(w, "hello "+r.Header.Get("X-Client"))
		})
		send := func(h http.Handler, client string) *httptest.ResponseRecorder {
			r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader("{}"))
			r.Header.Set(idempotency.HeaderKey, "key-1")
			r.Header.Set("X-Client", client)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			return w
		}
		leak := func(name string, h http.Handler) {
			first := send(h, "anna")
			second := send(h, "bob")
			if strings.Contains(second.Header().Get("Set-Cookie"), "for-anna") || strings.Contains(second.Body.String(), "anna") {
				t.Errorf("%s: a second anonymous client received the first one's response: %d %q, Set-Cookie %q",
					name, second.Code, second.Body, second.Header().Get("Set-Cookie"))
			}
			t.Logf("%s: first %d, second %d %q", name, first.Code, second.Code, second.Body)
		}
		// The setup: the default configuration.
		var defaulted http.Handler
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Logf("the default configuration is refused: %v", p)
				}
			}()
			defaulted = idempotency.Middleware(idempotency.Config{Store: s.store})(handler)
		}()
		if defaulted != nil {
			leak("default config", defaulted)
		}
		// Scoping by Authorization chosen explicitly: anonymous requests
		// have no scope and must not be served from a shared one.
		leak("ScopeByAuthorization", idempotency.Middleware(idempotency.Config{Store: s.store,
			Scope: idempotency.ScopeByAuthorization})(handler))
	})
}

// Defect 2: a response of any size was stored and replayed. Over the cap
// (default 1 MiB) it is sent, the key is completed without a body, and a
// retry gets a clear answer instead of the body.
func TestOversizedResponseIsSentButNotStored(t *testing.T) {
	eachStore(t, func(t *testing.T, s *storeUnderTest) {
		a := newAPI(t, s, nil)
		big := bytes.Repeat([]byte("x"), 3<<20)
		a.behave = func(w http.ResponseWriter, r *http.Request, run int64) {
			w.Header().Set("Location", "/reports/1")
			w.WriteHeader(http.StatusCreated)
			w.Write(big)
		}
		first := a.post("key-1", "report")
		wantStatus(t, first, http.StatusCreated)
		if first.Body.Len() != len(big) {
			t.Fatalf("original response has %d bytes, want %d", first.Body.Len(), len(big))
		}
		retry := a.post("key-1", "report")
		if a.runs.Load() != 1 {
			t.Fatalf("handler ran %d times, want 1", a.runs.Load())
		}
		if retry.Code != http.StatusGone || retry.Body.Len() >= 4096 {
			t.Fatalf("retry: status %d with %d bytes, want 410 and a short problem", retry.Code, retry.Body.Len())
		}
		if retry.Header().Get(idempotency.HeaderReplayed) != "true" {
			t.Error("the 410 does not say it answers for a completed request")
		}
		if !strings.Contains(retry.Body.String(), "201") {
			t.Errorf("the 410 does not tell the original status: %s", retry.Body)
		}
		e, err := s.store.Get(context.Background(), idempotency.Key{Key: "key-1"}, a.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		if len(e.Response.Body) != 0 {
			t.Fatalf("the store kept a %d-byte body", len(e.Response.Body))
		}
	})
}

// flakyStore loses its database connection on demand: while down, every
// operation fails as a dropped connection would.
type flakyStore struct {
	idempotency.Store
	down atomic.Bool
}

var errConnLost = errors.New("connection lost")

func (f *flakyStore) Claim(ctx context.Context, key idempotency.Key, fp string, now time.Time, lease, retention time.Duration) (idempotency.Claim, error) {
	if f.down.Load() {
		return idempotency.Claim{}, errConnLost
	}
	return f.Store.Claim(ctx, key, fp, now, lease, retention)
}

func (f *flakyStore) Complete(ctx context.Context, tx idempotency.Tx, key idempotency.Key, token string, resp idempotency.Response) error {
	if f.down.Load() {
		return errConnLost
	}
	return f.Store.Complete(ctx, tx, key, token, resp)
}

func (f *flakyStore) Release(ctx context.Context, key idempotency.Key, token string) error {
	if f.down.Load() {
		return errConnLost
	}
	return f.Store.Release(ctx, key, token)
}

func (f *flakyStore) Extend(ctx context.Context, key idempotency.Key, token string, until time.Time) error {
	if f.down.Load() {
		return errConnLost
	}
	return f.Store.Extend(ctx, key, token, until)
}

// Defect 5: after a lost database connection the middleware answered 500
// "retry with the same key", but the key stayed claimed and retries got 409
// for the whole 90 s lease.
func TestLostConnectionReleasesTheKeyForTheRetry(t *testing.T) {
	eachStore(t, func(t *testing.T, s *storeUnderTest) {
		flaky := &flakyStore{Store: s.store}
		s2 := *s
		s2.store = flaky
		a := newAPI(t, &s2, nil)
		a.behave = func(w http.ResponseWriter, r *http.Request, run int64) {
			if run == 1 {
				if err := s.insertOrder(r.Context(), "o-1"); err != nil {
					t.Error(err)
				}
				flaky.down.Store(true) // the connection drops before the response is stored
				w.WriteHeader(http.StatusCreated)
				return
			}
			a.createOrder(w, r, run)
		}
		failed := a.post("key-1", "o-1")
		if failed.Code < 500 {
			t.Fatalf("status %d, want a 5xx", failed.Code)
		}
		if !strings.Contains(strings.ToLower(failed.Body.String()), "retry") {
			t.Fatalf("the failure does not tell the client what to do: %s", failed.Body)
		}
		t.Logf("while down: %d %s", failed.Code, failed.Body)
		flaky.down.Store(false) // the database is back a moment later
		retry := a.post("key-1", "o-1")
		wantStatus(t, retry, http.StatusCreated)
		if n := s.orders(t, "o-1"); n != 1 {
			t.Fatalf("orders = %d, want 1 (the failed attempt's write rolled back)", n)
		}
	})
}

// Defect 5 across servers: a retry that reaches another server (another
// middleware on the same database) must not wait out the lease either.
func TestLostConnectionKeyIsFreedForOtherServersToo(t *testing.T) {
	eachStore(t, func(t *testing.T, s *storeUnderTest) {
		flaky := &flakyStore{Store: s.store}
		s2 := *s
		s2.store = flaky
		a := newAPI(t, &s2, nil)
		b := newAPI(t, s, nil) // the other server, same clock as a would have
		b.clock = a.clock
		a.behave = func(w http.ResponseWriter, r *http.Request, run int64) {
			flaky.down.Store(true)
			go func() { time.Sleep(50 * time.Millisecond); flaky.down.Store(false) }()
			w.WriteHeader(http.StatusCreated)
		}
		if w := a.post("key-1", "o-1"); w.Code < 500 {
			t.Fatalf("status %d, want a 5xx", w.Code)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			w := b.post("key-1", "o-1")
			if w.Code == http.StatusCreated {
				break
			}
			if w.Code != http.StatusConflict || time.Now().After(deadline) {
				t.Fatalf("the other server answers %d %s, still after 5 s; want the key released", w.Code, w.Body)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// The replay allowlist is configurable, but never lets credentials through.
func TestReplayHeadersAllowlistIsConfigurable(t *testing.T) {
	eachStore(t, func(t *testing.T, s *storeUnderTest) {
		a := newAPI(t, s, func(c *idempotency.Config) {
			c.ReplayHeaders = append(idempotency.DefaultReplayHeaders(), "x-order-id", "Set-Cookie")
		})
		a.behave = func(w http.ResponseWriter, r *http.Request, run int64) {
			w.Header().Set("X-Order-Id", "o-1")
			w.Header().Set("X-Other", "dropped")
			w.Header().Set("Connection", "X-Order-Id") // names X-Order-Id hop-by-hop on this response
			http.SetCookie(w, &http.Cookie{Name: "s", Value: "v"})
			w.WriteHeader(http.StatusCreated)
		}
		wantStatus(t, a.post("key-1", "o-1"), http.StatusCreated)
		retry := a.post("key-1", "o-1")
		if retry.Header().Get("X-Order-Id") != "" || retry.Header().Get("X-Other") != "" || retry.Header().Get("Set-Cookie") != "" {
			t.Fatalf("replayed headers %v", retry.Header())
		}
		a.behave = func(w http.ResponseWriter, r *http.Request, run int64) {
			w.Header().Set("X-Order-Id", "o-2")
			w.WriteHeader(http.StatusCreated)
		}
		wantStatus(t, a.post("key-2", "o-2"), http.StatusCreated)
		if got := a.post("key-2", "o-2").Header().Get("X-Order-Id"); got != "o-2" {
			t.Fatalf("allowlisted X-Order-Id replayed as %q", got)
		}
	})
}
