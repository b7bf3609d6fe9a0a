package idempotency_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/idem-dev/idem/idempotency"
)

// BenchmarkMiddleware measures requests through the middleware on each
// store: "first" sends a new key every time (claim, handler's row, stored
// response: two transactions), "replay" repeats one key (one claim lookup).
//
//	go test -run '^$' -bench Middleware -benchtime 2000x ./idempotency
func BenchmarkMiddleware(b *testing.B) {
	for _, store := range []string{"sqlite", "postgres"} {
		for _, mode := range []string{"first", "replay"} {
			b.Run(store+"/"+mode, func(b *testing.B) {
				var s *storeUnderTest
				if store == "sqlite" {
					s = newSQLiteUnderTest(b)
				} else {
					s = newPostgresUnderTest(b)
				}
				var n atomic.Int64
				h := idempotency.Middleware(idempotency.Config{Store: s.store, AllowEmptyScope: true})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					id := fmt.Sprint(n.Add(1))
					if err := s.insertOrder(r.Context(), id); err != nil {
						http.Error(w, err.Error(), http.StatusInternalServerError)
						return
					}
					w.WriteHeader(http.StatusCreated)
					fmt.Fprintf(w, `{"order":%q}`, id)
				}))
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
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					if mode == "first" {
						send(fmt.Sprintf("key-%d", i))
					} else {
						send("warm")
					}
				}
			})
		}
	}
}
