package idempotency_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/idem-dev/idem/idempotency"
	"github.com/idem-dev/idem/idempotency/idempotencytest"
	"github.com/idem-dev/idem/idempotency/redisstore"
	"github.com/redis/go-redis/v9"
)

func TestConformance(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		idempotencytest.Run(t, idempotencytest.Options{New: func(t *testing.T) idempotency.Store { return newSQLiteUnderTest(t).store }})
	})
	t.Run("postgres", func(t *testing.T) {
		idempotencytest.Run(t, idempotencytest.Options{New: func(t *testing.T) idempotency.Store { return newPostgresUnderTest(t).store }})
	})
	t.Run("redis", func(t *testing.T) {
		idempotencytest.Run(t, idempotencytest.Options{NonTransactional: true, New: func(t *testing.T) idempotency.Store { return newRedisStore(t) }})
	})
}

func redisAddr() string {
	if v := os.Getenv("IDEM_TEST_REDIS"); v != "" {
		return v
	}
	return "127.0.0.1:6379"
}

// newRedisStore returns a store on the local Redis under a prefix of its
// own, deleted afterwards. Without a server it skips locally and fails
// under CI.
func newRedisStore(t *testing.T) *redisstore.Store {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr(), DialTimeout: time.Second, MaxRetries: -1})
	ctx := context.Background()
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		if os.Getenv("CI") != "" {
			t.Fatalf("Redis is required under CI: %v", err)
		}
		t.Skipf("Redis not reachable at %s (start redis-server, or set IDEM_TEST_REDIS): %v", redisAddr(), err)
	}
	var b [6]byte
	rand.Read(b[:])
	prefix := "idem-test:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		defer rdb.Close()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
	})
	return redisstore.New(rdb, redisstore.Config{Prefix: prefix, CleanupBatch: 3})
}

// The middleware on Redis: replay, 409 and 422 as with the SQL stores.
func TestRedisStoreBehindTheMiddleware(t *testing.T) {
	store := newRedisStore(t)
	clock := newFakeClock()
	runs := 0
	h := idempotency.Middleware(idempotency.Config{Store: store, Now: clock.Now,
		Scope: func(r *http.Request) string { return r.Header.Get("X-User") }})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			runs++
			if _, err := idempotency.RequestTx(r.Context()); err != nil {
				t.Errorf("RequestTx on Redis: %v", err)
			}
			w.Header().Set("Location", "/orders/1")
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte("created"))
		}))
	a := &api{t: t, clock: clock, h: h}
	first := a.post("k", "o-1", "X-User", "alice")
	wantStatus(t, first, http.StatusCreated)
	retry := a.post("k", "o-1", "X-User", "alice")
	wantStatus(t, retry, http.StatusCreated)
	if retry.Header().Get(idempotency.HeaderReplayed) != "true" || retry.Body.String() != "created" || retry.Header().Get("Location") != "/orders/1" {
		t.Fatalf("replay: %v %q", retry.Header(), retry.Body)
	}
	wantStatus(t, a.post("k", "o-2", "X-User", "alice"), http.StatusUnprocessableEntity)
	wantStatus(t, a.post("k", "o-1", "X-User", "bob"), http.StatusCreated)
	clock.Advance(25 * time.Hour)
	wantStatus(t, a.post("k", "o-2", "X-User", "alice"), http.StatusCreated)
	if runs != 3 {
		t.Fatalf("handler ran %d times, want 3", runs)
	}
}
