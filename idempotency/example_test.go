package idempotency_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/idem-dev/idem/idempotency"
	"github.com/idem-dev/idem/idempotency/sqlitestore"
)

// The handler writes through the request's transaction, so its order row
// and the stored response commit together.
func ExampleMiddleware() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "idempotency-example")
	defer os.RemoveAll(dir)
	store, err := sqlitestore.Open(ctx, filepath.Join(dir, "api.db"), idempotency.StoreConfig{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	store.DB().ExecContext(ctx, `CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)`)

	createOrder := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tx, err := sqlitestore.Tx(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		res, err := tx.ExecContext(r.Context(), `INSERT INTO orders (item) VALUES ('book')`)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		id, _ := res.LastInsertId()
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "order %d", id)
	})
	h := idempotency.Middleware(idempotency.Config{
		Store: store,
		Scope: func(r *http.Request) string { return r.Header.Get("X-User") }, // your authenticated user
	})(createOrder)

	for range 2 { // the client timed out and retried
		r := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(`{"item":"book"}`))
		r.Header.Set("Idempotency-Key", `"8e03978e-40d5-43e8-bc93-6894a57f9324"`)
		r.Header.Set("X-User", "alice")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Printf("%d %s (replayed: %q)\n", w.Code, w.Body.String(), w.Header().Get("Idempotent-Replayed"))
	}
	// Output:
	// 201 order 1 (replayed: "")
	// 201 order 1 (replayed: "true")
}
