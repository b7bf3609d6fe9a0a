package idempotency

import "net/http"

// WithoutHeaderFilter returns the middleware h with header filtering off:
// the pre-issue-16 behaviour, as the benchmark's baseline. Tests only.
func WithoutHeaderFilter(h http.Handler) http.Handler {
	m := *h.(*middleware)
	m.replay = nil
	return &m
}
