package pgstore_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/idem-dev/idem/idempotency"
	"github.com/idem-dev/idem/idempotency/idempotencyprom"
	"github.com/idem-dev/idem/idempotency/pgstore"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// A POST /orders endpoint on PostgreSQL: the order row and the stored
// response commit in one transaction, keys are scoped per authenticated
// user, JSON bodies are compared as JSON, outcomes are counted in
// Prometheus, and expired keys are deleted hourly.
//
//	go get github.com/idem-dev/idem/idempotency github.com/idem-dev/idem/idempotency/pgstore
func ExampleTx() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	store, err := pgstore.New(ctx, pool, idempotency.StoreConfig{})
	if err != nil {
		log.Fatal(err)
	}
	registry := prometheus.NewRegistry() // served on your /metrics
	metrics, err := idempotencyprom.New(registry)
	if err != nil {
		log.Fatal(err)
	}
	createOrder := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tx, err := pgstore.Tx(r.Context()) // commits with the stored response
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		var id int64
		if err := tx.QueryRow(r.Context(), `INSERT INTO orders (item) VALUES ('book') RETURNING id`).Scan(&id); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError) // 5xx: rolled back, key released
			return
		}
		w.Header().Set("Location", fmt.Sprintf("/orders/%d", id))
		w.WriteHeader(http.StatusCreated)
	})
	mux := http.NewServeMux()
	mux.Handle("POST /orders", idempotency.Middleware(idempotency.Config{
		Store:       store,
		Scope:       func(r *http.Request) string { return r.Header.Get("X-User") }, // your authenticated user
		Fingerprint: idempotency.FingerprintJSON,
		OnOutcome:   metrics.Observe,
	})(createOrder))
	go idempotency.RunCleanup(ctx, store, time.Hour, func(err error) { log.Print(err) })
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", mux))
}
