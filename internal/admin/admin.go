// Package admin is the broker's operator HTTP endpoint: /healthz for liveness
// probes and /metrics for Prometheus, served from the broker's own registry.
// The /v1 admin API and the console come later.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
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
	s := &Server{
		srv: &http.Server{
			Handler:           mux,
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
