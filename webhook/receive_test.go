package webhook_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idem-dev/idem/dedupe"
	dedupepg "github.com/idem-dev/idem/dedupe/pgstore"
	dedupesqlite "github.com/idem-dev/idem/dedupe/sqlitestore"
	"github.com/idem-dev/idem/internal/testkit/pgkit"
	"github.com/idem-dev/idem/webhook"
	"github.com/jackc/pgx/v5"
)

// receiverUnderTest is a Receiver on a real database whose handler writes
// one effect row per webhook it applies.
type receiverUnderTest struct {
	name    string
	handler http.Handler
	// effects counts the effect rows of id ("" = all).
	effects func(t testing.TB, id string) int
	// fail makes the handler fail (error) or reject (permanent) an id.
	fail sync.Map // id → error
}

const receiverEffectsDDL = `CREATE TABLE IF NOT EXISTS received (webhook_id TEXT NOT NULL, type TEXT NOT NULL)`

// eachReceiverStore runs fn against a Receiver on SQLite and on PostgreSQL.
func eachReceiverStore(t *testing.T, secret string, fn func(t *testing.T, r *receiverUnderTest)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, newSQLiteReceiver(t, secret, filepath.Join(t.TempDir(), "receiver.db"))) })
	t.Run("postgres", func(t *testing.T) { fn(t, newPostgresReceiver(t, secret)) })
}

func (r *receiverUnderTest) failure(id string) error {
	if err, ok := r.fail.Load(id); ok {
		return err.(error)
	}
	return nil
}

func newSQLiteReceiver(t testing.TB, secret, path string) *receiverUnderTest {
	ctx := context.Background()
	s, err := dedupesqlite.Open(ctx, path, dedupe.Config{Table: "webhooks_received"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.DB().ExecContext(ctx, receiverEffectsDDL); err != nil {
		t.Fatal(err)
	}
	v, err := webhook.NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	r := &receiverUnderTest{name: "sqlite"}
	r.handler, err = webhook.Receiver(webhook.ReceiverConfig[*sql.Tx]{Verifier: v, Store: s,
		Handle: func(ctx context.Context, tx *sql.Tx, m webhook.Message) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO received (webhook_id, type) VALUES (?, ?)`, m.ID, m.Type); err != nil {
				return err
			}
			return r.failure(m.ID)
		}})
	if err != nil {
		t.Fatal(err)
	}
	r.effects = func(t testing.TB, id string) int {
		var n int
		if err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM received WHERE ? = '' OR webhook_id = ?`, id, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	return r
}

func newPostgresReceiver(t testing.TB, secret string) *receiverUnderTest {
	ctx := context.Background()
	pool, _ := pgkit.Schema(t, "webhook_rx")
	s, err := dedupepg.New(ctx, pool, dedupe.Config{Table: "webhooks_received"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, receiverEffectsDDL); err != nil {
		t.Fatal(err)
	}
	v, err := webhook.NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	r := &receiverUnderTest{name: "postgres"}
	r.handler, err = webhook.Receiver(webhook.ReceiverConfig[pgx.Tx]{Verifier: v, Store: s,
		Handle: func(ctx context.Context, tx pgx.Tx, m webhook.Message) error {
			if _, err := tx.Exec(ctx, `INSERT INTO received (webhook_id, type) VALUES ($1, $2)`, m.ID, m.Type); err != nil {
				return err
			}
			return r.failure(m.ID)
		}})
	if err != nil {
		t.Fatal(err)
	}
	r.effects = func(t testing.TB, id string) int {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM received WHERE $1 = '' OR webhook_id = $1`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	return r
}

// post sends a webhook signed now with secret over a real connection.
func post(t testing.TB, url, secret, id, payload string, mutate ...func(h http.Header)) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	if err := webhook.SetHeaders(req.Header, id, time.Now(), []byte(payload), mustKey(t, secret)); err != nil {
		t.Fatal(err)
	}
	for _, m := range mutate {
		m(req.Header)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestReceiverAppliesARedeliveredWebhookOnce(t *testing.T) {
	secret := webhook.NewSecret()
	eachReceiverStore(t, secret, func(t *testing.T, r *receiverUnderTest) {
		srv := httptest.NewServer(r.handler)
		defer srv.Close()
		payload := `{"type":"invoice.paid","timestamp":"2026-12-02T10:00:00Z","data":{"id":"in_1"}}`
		resp, body := post(t, srv.URL, secret, "msg_1", payload)
		if resp.StatusCode != 200 || !strings.Contains(body, `"processed"`) {
			t.Fatalf("first delivery: %d %s", resp.StatusCode, body)
		}
		for range 3 { // retries are signed again, with a new timestamp
			resp, body = post(t, srv.URL, secret, "msg_1", payload)
			if resp.StatusCode != 200 || resp.Header.Get(webhook.HeaderDuplicate) != "true" || !strings.Contains(body, `"duplicate"`) {
				t.Fatalf("redelivery: %d %v %s", resp.StatusCode, resp.Header, body)
			}
		}
		if n := r.effects(t, "msg_1"); n != 1 {
			t.Fatalf("msg_1 applied %d times", n)
		}

		// Concurrent deliveries of one id: exactly one applies it.
		var wg sync.WaitGroup
		var processed atomic.Int32
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, body := post(t, srv.URL, secret, "msg_2", payload)
				if resp.StatusCode != 200 {
					t.Errorf("concurrent delivery: %d %s", resp.StatusCode, body)
				}
				if strings.Contains(body, `"processed"`) {
					processed.Add(1)
				}
			}()
		}
		wg.Wait()
		if n := r.effects(t, "msg_2"); n != 1 || processed.Load() != 1 {
			t.Fatalf("msg_2 applied %d times, %d answers said processed", n, processed.Load())
		}
	})
}

func TestReceiverRefusesWithProblemDetails(t *testing.T) {
	secret := webhook.NewSecret()
	eachReceiverStore(t, secret, func(t *testing.T, r *receiverUnderTest) {
		srv := httptest.NewServer(r.handler)
		defer srv.Close()
		const payload = `{"type":"a"}`
		for _, c := range []struct {
			name   string
			secret string
			body   string
			mutate func(h http.Header)
			status int
			title  string
		}{
			{"no headers", secret, payload, func(h http.Header) { h.Del(webhook.HeaderSignature) }, 400, "Not a Standard Webhooks request"},
			{"bad timestamp", secret, payload, func(h http.Header) { h.Set(webhook.HeaderTimestamp, "soon") }, 400, "Not a Standard Webhooks request"},
			{"wrong secret", webhook.NewSecret(), payload, nil, 401, "Invalid webhook signature"},
			{"stale", secret, payload, func(h http.Header) {
				old := time.Now().Add(-time.Hour)
				webhook.SetHeaders(h, h.Get(webhook.HeaderID), old, []byte(payload), mustKey(t, secret))
			}, 401, "Invalid webhook signature"},
			{"too large", secret, `{"type":"a","pad":"` + strings.Repeat("x", webhook.DefaultMaxBodyBytes) + `"}`, nil, 413, "Webhook payload too large"},
		} {
			t.Run(c.name, func(t *testing.T) {
				var mutate []func(http.Header)
				if c.mutate != nil {
					mutate = append(mutate, c.mutate)
				}
				resp, body := post(t, srv.URL, c.secret, "msg_"+strings.ReplaceAll(c.name, " ", "_"), c.body, mutate...)
				var p struct {
					Title  string
					Status int
					Detail string
				}
				if resp.StatusCode != c.status || resp.Header.Get("Content-Type") != "application/problem+json" ||
					json.Unmarshal([]byte(body), &p) != nil || p.Title != c.title || p.Status != c.status || p.Detail == "" {
					t.Fatalf("got %d %s %s, want %d problem %q", resp.StatusCode, resp.Header.Get("Content-Type"), body, c.status, c.title)
				}
			})
		}
		// A tampered body: signed for one payload, sent with another.
		req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader([]byte(`{"type":"b"}`)))
		webhook.SetHeaders(req.Header, "msg_tampered", time.Now(), []byte(payload), mustKey(t, secret))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("tampered body: %d", resp.StatusCode)
		}
		if n := r.effects(t, ""); n != 0 {
			t.Fatalf("%d effects from refused requests", n)
		}
	})
}

func TestReceiverRollsBackAFailedHandlerAndRecordsARejection(t *testing.T) {
	secret := webhook.NewSecret()
	eachReceiverStore(t, secret, func(t *testing.T, r *receiverUnderTest) {
		srv := httptest.NewServer(r.handler)
		defer srv.Close()
		r.fail.Store("msg_flaky", errors.New("downstream unavailable"))
		resp, body := post(t, srv.URL, secret, "msg_flaky", `{"type":"a"}`)
		if resp.StatusCode != 500 || !strings.Contains(body, "rolled back") {
			t.Fatalf("failing handler: %d %s", resp.StatusCode, body)
		}
		if n := r.effects(t, "msg_flaky"); n != 0 {
			t.Fatalf("a failed handler left %d effects", n)
		}
		r.fail.Delete("msg_flaky")
		if resp, body := post(t, srv.URL, secret, "msg_flaky", `{"type":"a"}`); resp.StatusCode != 200 || !strings.Contains(body, "processed") {
			t.Fatalf("retry: %d %s", resp.StatusCode, body)
		}
		if n := r.effects(t, "msg_flaky"); n != 1 {
			t.Fatalf("retry applied %d times", n)
		}

		r.fail.Store("msg_poison", dedupe.Permanent(fmt.Errorf("unknown customer")))
		resp, body = post(t, srv.URL, secret, "msg_poison", `{"type":"a"}`)
		if resp.StatusCode != 200 || !strings.Contains(body, `"rejected"`) || !strings.Contains(body, "unknown customer") {
			t.Fatalf("permanent failure: %d %s", resp.StatusCode, body)
		}
		resp, body = post(t, srv.URL, secret, "msg_poison", `{"type":"a"}`)
		if resp.StatusCode != 200 || !strings.Contains(body, `"duplicate"`) {
			t.Fatalf("redelivered rejection: %d %s", resp.StatusCode, body)
		}
		if n := r.effects(t, "msg_poison"); n != 0 {
			t.Fatalf("a rejected webhook left %d effects", n)
		}
	})
}

func TestVerifyMiddlewarePassesTheMessage(t *testing.T) {
	secret := webhook.NewSecret()
	v, _ := webhook.NewVerifier(secret)
	var got webhook.Message
	srv := httptest.NewServer(webhook.Verify(v, 0)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = webhook.MessageFrom(r.Context())
	})))
	defer srv.Close()
	resp, _ := post(t, srv.URL, secret, "msg_v", `{"type":"user.created","data":{}}`)
	if resp.StatusCode != 200 || got.ID != "msg_v" || got.Type != "user.created" || string(got.Payload) != `{"type":"user.created","data":{}}` {
		t.Fatalf("%d %+v", resp.StatusCode, got)
	}
	if _, err := webhook.Receiver(webhook.ReceiverConfig[*sql.Tx]{}); err == nil {
		t.Fatal("Receiver without a config")
	}
}
