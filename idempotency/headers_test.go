package idempotency

import (
	"net/http"
	"testing"
)

// BenchmarkReplayHeaderFilter is the filter's own cost on a typical
// response: "store" filters the handler's response (with a cookie) before
// storing it, "replay" filters the stored headers again (nothing to drop).
func BenchmarkReplayHeaderFilter(b *testing.B) {
	f := newHeaderFilter(DefaultReplayHeaders())
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Location", "/orders/42")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Request-Id", "req-123")
	h.Add("Set-Cookie", "session=abc; HttpOnly")
	h.Set("Vary", "Authorization")
	stored := f.filter(h)
	for name, in := range map[string]http.Header{"store": h, "replay": stored} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if len(f.filter(in)) != 4 {
					b.Fatal("wrong filter result")
				}
			}
		})
	}
}
