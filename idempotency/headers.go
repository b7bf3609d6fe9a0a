package idempotency

import (
	"net/http"
	"strings"
)

// DefaultReplayHeaders returns the response headers the middleware stores
// and replays by default: those that describe the representation or point
// at the created resource, and nothing that carries credentials or state of
// one client (a fresh slice: append your own to it).
func DefaultReplayHeaders() []string {
	return []string{
		"Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language",
		"Content-Location", "Content-Type", "ETag", "Expires", "Last-Modified", "Link",
		"Location", "Retry-After", "Vary",
	}
}

// neverReplayed are dropped whatever Config.ReplayHeaders says: credentials
// and session state (a replay can reach another client in a shared scope,
// and the store is not a place for secrets), hop-by-hop headers (RFC 9110
// §7.6.1) and the framing, which is recomputed.
var neverReplayed = map[string]bool{
	"Set-Cookie": true, "Set-Cookie2": true, "Authorization": true, "Proxy-Authorization": true,
	"Www-Authenticate": true, "Proxy-Authenticate": true, "Cookie": true,
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Te": true, "Trailer": true,
	"Transfer-Encoding": true, "Upgrade": true, "Content-Length": true, HeaderReplayed: true,
}

// headerFilter keeps the allowed headers of a response.
type headerFilter map[string]bool

func newHeaderFilter(allow []string) headerFilter {
	f := headerFilter{}
	for _, h := range allow {
		h = http.CanonicalHeaderKey(strings.TrimSpace(h))
		if !neverReplayed[h] {
			f[h] = true
		}
	}
	return f
}

// filter returns the allowed headers of h, minus any that h's Connection
// header names as hop-by-hop. h is not changed; the result may be h itself
// (when it keeps every header) and shares its value slices.
func (f headerFilter) filter(h http.Header) http.Header {
	if f == nil { // only in the benchmark's baseline (export_test.go)
		return h
	}
	n := 0
	for k := range h {
		if f[k] {
			n++
		}
	}
	_, conn := h["Connection"]
	if n == len(h) && !conn {
		return h
	}
	out := make(http.Header, n)
	for k, v := range h {
		if f[k] {
			out[k] = v
		}
	}
	for _, c := range h["Connection"] {
		for _, name := range strings.Split(c, ",") {
			delete(out, http.CanonicalHeaderKey(strings.TrimSpace(name)))
		}
	}
	return out
}
