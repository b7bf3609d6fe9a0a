// Package admin is the broker's operator HTTP endpoint: /healthz for liveness
// probes, /metrics for Prometheus (served from the broker's own registry),
// pprof, and whatever Config.Handler serves: the broker mounts the /v1
// admin API (package api) and the web console (package console) there.
//
// When the broker's security is configured the server speaks TLS and asks
// for HTTP Basic authentication with the broker's own users (their SCRAM
// credentials); /healthz stays open so that probes need no secret.
package admin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Health is what /healthz reports: "ok" (status 200), or "starting" or
// "degraded" (status 503) followed by one line per problem.
type Health struct {
	Status   string
	Problems []string
}

// Health statuses.
const (
	StatusOK       = "ok"
	StatusStarting = "starting"
	// StatusDegraded: the broker serves, but not everything: a partition is
	// offline, a log is poisoned, the disk is full, or data is kept unserved.
	StatusDegraded = "degraded"
)

// Server is a running admin HTTP server.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// Config configures Start.
type Config struct {
	Addr     string
	Registry *prometheus.Registry
	// Health reports the broker's state for /healthz.
	Health func() Health
	Logger *slog.Logger
	// TLS, if set, makes the server speak HTTPS only.
	TLS *tls.Config
	// Authenticate, if set, is required of every request but /healthz:
	// HTTP Basic credentials, answered by whether they are a user's and
	// that user may read the broker's state.
	Authenticate func(user, password string) bool
	// Handler, if set, serves every other path (behind the same
	// authentication): the admin API under /v1 and the console at /.
	Handler http.Handler
}

// Start listens on cfg.Addr and serves until Close.
func Start(cfg Config) (*Server, error) {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		h := Health{Status: StatusOK}
		if cfg.Health != nil {
			h = cfg.Health()
		}
		if h.Status != StatusOK {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, h.Status)
		for _, p := range h.Problems {
			fmt.Fprintln(w, p)
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{Registry: cfg.Registry}))
	// Go's profiler, for finding where a broker spends its time
	// (go tool pprof http://ADMIN/debug/pprof/profile). The admin address
	// is loopback by default.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	if cfg.Handler != nil {
		mux.Handle("/", cfg.Handler)
	}
	// Browsers send Basic credentials with any request to the address, so
	// a state-changing request from another site's page (a form posted
	// cross-site) is refused: Sec-Fetch-Site and Origin must say same origin.
	// Clients that are not browsers (curl, scripts) send neither and pass.
	var handler http.Handler = http.NewCrossOriginProtection().Handler(mux)
	if cfg.Authenticate != nil {
		handler = requireAuth(handler, cfg.Authenticate)
	}
	if cfg.TLS != nil {
		ln = tls.NewListener(ln, cfg.TLS)
	}
	s := &Server{
		srv: &http.Server{
			Handler:           handler,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
		},
		ln:   ln,
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cfg.Logger.Error("admin server stopped", "err", err)
		}
	}()
	return s, nil
}

// requireAuth asks every request but /healthz for Basic credentials.
func requireAuth(next http.Handler, check func(user, password string) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			next.ServeHTTP(w, r)
			return
		}
		user, pass, ok := r.BasicAuth()
		if !ok || !check(user, pass) {
			w.Header().Set("WWW-Authenticate", `Basic realm="idem", charset="UTF-8"`)
			const msg = "authentication required: use a broker user's name and password"
			if strings.HasPrefix(r.URL.Path, "/v1/") {
				// The API answers every error as an RFC 9457 problem.
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprintf(w, `{"type": "about:blank", "title": "Unauthorized", "status": 401, "detail": %q}`+"\n", msg)
				return
			}
			http.Error(w, msg, http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Addr is the bound host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close shuts the server down, waiting briefly for in-flight requests.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}
