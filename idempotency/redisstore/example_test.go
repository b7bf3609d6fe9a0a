package redisstore_test

import (
	"log"
	"net/http"

	"github.com/idem-dev/idem/idempotency"
	"github.com/idem-dev/idem/idempotency/redisstore"
	"github.com/redis/go-redis/v9"
)

// Keys in Redis: no transaction with the handler's database (see the
// package documentation for what that costs), so the handler's own effect
// must be idempotent too.
func ExampleNew() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	store := redisstore.New(rdb, redisstore.Config{Prefix: "shop:idem:"})
	h := idempotency.Middleware(idempotency.Config{
		Store: store,
		Scope: func(r *http.Request) string { return r.Header.Get("X-User") }, // your authenticated user
	})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
	}))
	_ = h // mux.Handle("POST /jobs", h)
	log.Print("ready")
}
