// Package kafka is the broker's wire server: it accepts TCP connections, reads
// size-prefixed request frames, decodes them with kmsg, dispatches them to the
// handlers registered in internal/kafka/api, and writes responses strictly in
// request order on each connection.
//
// Each connection has two goroutines. The reader decodes requests and runs their
// handlers in arrival order (so Produce appends to a partition in the order the
// client pipelined them, which idempotent sequence checks rely on). A handler may
// return an api.Deferred; the writer waits for it in order (an fsync for
// acks=all, data for a Fetch long-poll) while the reader goes on, which is what
// lets five in-flight produce requests share one fsync.
package kafka

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idem-dev/idem/internal/kafka/api"
	"github.com/idem-dev/idem/internal/security"
)

// Config configures a Server.
type Config struct {
	// Env is handed to every handler.
	Env *api.Env
	// MaxRequestBytes caps a request frame (socket.request.max.bytes).
	MaxRequestBytes int32
	// IdleTimeout closes a connection that sends nothing for this long
	// (connections.max.idle.ms); 0 means 10 minutes.
	IdleTimeout time.Duration
	// Metrics, if non-nil, records per-API request counts and latencies.
	Metrics *Metrics
	Logger  *slog.Logger
	// DrainTimeout bounds how long Close waits for in-flight responses before
	// cancelling them; 0 means 10 seconds.
	DrainTimeout time.Duration
	// OnPanic, if set, is called with the value of a recovered handler panic
	// (the connection is closed either way). Fuzz tests use it to fail.
	OnPanic func(v any)

	// MaxConnections and MaxConnectionsPerIP bound accepted connections
	// (max.connections, max.connections.per.ip); a connection beyond either
	// is closed at once. 0 means no limit.
	MaxConnections      int
	MaxConnectionsPerIP int
	// Budget is the broker-wide memory budget (queued.max.request.bytes):
	// request frames larger than 64 KiB take it from the moment their size
	// is read until they are handled, so a reader that cannot get it waits
	// instead of allocating; Fetch answers take it for the records they
	// read (see api.Env.Memory). nil means no limit.
	Budget *Budget
	// Throttler enforces client quotas (nil: none).
	Throttler *security.Throttler
}

// Server serves the Kafka protocol on listeners given to Serve.
type Server struct {
	cfg    Config
	log    *slog.Logger
	nextID atomic.Uint64

	ctx    context.Context // cancelled by Close after the drain timeout: aborts Deferred waits
	cancel context.CancelFunc

	mu        sync.Mutex
	closing   bool                       // mu guards closing, listeners, conns
	listeners map[net.Listener]*Listener // mu guards
	conns     map[*conn]bool             // mu guards
	wg        sync.WaitGroup             // accept loops and connection goroutines
	closed    chan struct{}              // closed when Close starts; long-polls return early
	large     chan struct{}              // slots for decoding large non-produce frames

	faultMu sync.Mutex                 // serialises SetFault
	faults  atomic.Pointer[faultTable] // copy-on-write; read per request without locking

	admitted map[string]int // mu guards: open connections per client IP
	total    int            // mu guards: open accepted connections
	rejected throttle       // connections refused by a limit
	closedBy throttle       // connections closed for a protocol error
}

// NewServer returns a server; call Serve to accept connections.
func NewServer(cfg Config) *Server {
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = 100 << 20
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 10 * time.Minute
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel,
		listeners: map[net.Listener]*Listener{},
		conns:     map[*conn]bool{},
		closed:    make(chan struct{}),
		large:     make(chan struct{}, maxLargeFrames),
		admitted:  map[string]int{},
	}
	return s
}

// admit counts a new connection against the limits, or says which it breaks.
func (s *Server) admit(nc net.Conn) (ip string, reason string) {
	ip = remoteIP(nc)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.cfg.MaxConnections > 0 && s.total >= s.cfg.MaxConnections:
		return ip, "max.connections"
	case s.cfg.MaxConnectionsPerIP > 0 && s.admitted[ip] >= s.cfg.MaxConnectionsPerIP:
		return ip, "max.connections.per.ip"
	}
	s.total++
	s.admitted[ip]++
	return ip, ""
}

// release forgets a connection admitted for ip.
func (s *Server) release(ip string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	if s.admitted[ip]--; s.admitted[ip] <= 0 {
		delete(s.admitted, ip)
	}
}

func remoteIP(nc net.Conn) string {
	if tcp, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	return addrString(nc.RemoteAddr())
}

// Connections reports how many accepted connections are open.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// Closing returns a channel closed when the server starts shutting down; Fetch
// long-polls watch it to answer early.
func (s *Server) Closing() <-chan struct{} { return s.closed }

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("kafka: server closed")

// plaintext is the listener of Serve: no TLS, no SASL.
var plaintext = &Listener{Name: "PLAINTEXT"}

// Serve accepts plaintext connections on ln until Close; it owns ln and
// closes it. It runs the accept loop on a goroutine tracked by the server
// and returns immediately.
func (s *Server) Serve(ln net.Listener) error { return s.ServeListener(ln, plaintext) }

// ServeListener is Serve for a listener with its own security (TLS, SASL)
// and advertised address.
func (s *Server) ServeListener(ln net.Listener, l *Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = l
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		s.acceptLoop(ln, l)
	}()
	return nil
}

func (s *Server) acceptLoop(ln net.Listener, l *Listener) {
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing || errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary failures (EMFILE and the like): back off rather than spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-s.closed:
				return
			}
			continue
		}
		backoff = 0
		ip, refused := s.admit(nc)
		if refused != "" {
			nc.Close()
			s.cfg.Metrics.refused(refused)
			if ok, suppressed := s.rejected.allow(); ok {
				s.log.Warn("connection refused: limit reached", "limit", refused, "remote", addrString(nc.RemoteAddr()), "refused_since_last_report", suppressed)
			}
			continue
		}
		if tc, ok := nc.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
		}
		if !s.serveConn(nc, l, s.cfg.Throttler.ConnectionDelay(ip), func() { s.release(ip) }) {
			return
		}
	}
}

// ServeConn serves one already-accepted connection (tests pass one end of a
// net.Pipe). It returns false, closing nc, if the server is closing.
func (s *Server) ServeConn(nc net.Conn) bool { return s.serveConn(nc, plaintext, 0, func() {}) }

// serveConn serves nc on listener l and calls done when the connection has
// ended; delay > 0 holds it that long and closes it (over
// connection_creation_rate).
func (s *Server) serveConn(nc net.Conn, l *Listener, delay time.Duration, done func()) bool {
	c := newConn(s, nc, l)
	c.connDelay = delay
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		nc.Close()
		done()
		return false
	}
	s.conns[c] = true
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer done()
		c.serve()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	return true
}

// throttle lets a repeated log line through at most once a second and
// counts what it held back, so hostile traffic cannot flood the log.
type throttle struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (t *throttle) allow() (ok bool, suppressed int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now := time.Now(); now.Sub(t.last) >= time.Second {
		t.last, suppressed, t.suppressed = now, t.suppressed, 0
		return true, suppressed
	}
	t.suppressed++
	return false, 0
}

// Close stops accepting, stops reading new requests, lets the responses already
// in flight finish (up to the drain timeout), then closes every connection and
// waits for all goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closing = true
	close(s.closed)
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.stopReading()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.cfg.DrainTimeout):
		s.log.Warn("kafka server: drain timeout, cancelling in-flight responses")
		s.cancel()
		s.mu.Lock()
		for c := range s.conns {
			c.nc.Close()
		}
		s.mu.Unlock()
		<-done
	}
	s.cancel()
	return nil
}

// Abort stops serving at once, as a crash would: listeners and connections
// are closed without finishing the responses in flight, and every connection
// goroutine has exited when it returns. Crash tests use it so that no
// acknowledgement can leave after the moment they snapshot the file system.
func (s *Server) Abort() {
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		close(s.closed)
	}
	for ln := range s.listeners {
		ln.Close()
	}
	s.cancel()
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// addrString formats an address for logs (nil-safe).
func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// errFrame is wrapped by every framing error (bad size, short read, garbage
// header): the connection is closed and the error logged.
var errFrame = errors.New("kafka: bad frame")
