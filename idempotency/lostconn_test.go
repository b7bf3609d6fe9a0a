package idempotency_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idem-dev/idem/idempotency"
	"github.com/idem-dev/idem/idempotency/pgstore"
	"github.com/jackc/pgx/v5/pgxpool"
)

// cutProxy forwards TCP connections to a server until cut: then it closes
// every connection and refuses new ones, as a lost network would, until
// restored.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			down := p.down
			p.mu.Unlock()
			if down {
				c.Close()
				continue
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
	return p
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *cutProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// Defect 5 with a real lost connection: PostgreSQL behind a proxy that is
// cut while the handler runs, so storing the response and releasing the
// key both fail; then the network comes back. The retry must not get 409
// for the lease (the fake clock never lets it run out).
func TestLostPostgresConnectionDoesNotHoldTheKey(t *testing.T) {
	ctx := context.Background()
	direct, dsn := pgSchema(t)
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	px := newCutProxy(t, net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port))))
	host, port, _ := net.SplitHostPort(px.ln.Addr().String())
	p, _ := strconv.Atoi(port)
	cfg.ConnConfig.Host, cfg.ConnConfig.Port = host, uint16(p)
	cfg.ConnConfig.ConnectTimeout = time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	store, err := pgstore.New(ctx, pool, idempotency.StoreConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := direct.Exec(ctx, ordersDDL); err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	runs := 0
	h := idempotency.Middleware(idempotency.Config{Store: store, Now: clock.Now, Logger: quiet,
		Scope: func(*http.Request) string { return "alice" }})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs++
		tx, err := pgstore.Tx(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if _, err := tx.Exec(r.Context(), `INSERT INTO orders (id) VALUES ('o-1')`); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if runs == 1 {
			px.cut() // the network drops before the response is stored
		}
		w.WriteHeader(http.StatusCreated)
	}))
	a := &api{t: t, clock: clock, h: h}
	failed := a.post("key-1", "o-1")
	if failed.Code != http.StatusServiceUnavailable || !strings.Contains(failed.Body.String(), "unreachable") {
		t.Fatalf("while cut: %d %s; want 503 saying the store is unreachable", failed.Code, failed.Body)
	}
	px.restore()
	deadline := time.Now().Add(10 * time.Second)
	var statuses []int
	for {
		w := a.post("key-1", "o-1")
		statuses = append(statuses, w.Code)
		if w.Code == http.StatusCreated {
			break
		}
		if w.Code == http.StatusConflict && len(statuses) > 1 && statuses[len(statuses)-2] == http.StatusConflict && time.Now().After(deadline) {
			t.Fatalf("the retry still gets 409 after the connection came back: %v", statuses)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no 201 within 10 s of the connection coming back: %v", statuses)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("statuses after the connection came back: %v", statuses)
	var n int
	if err := direct.QueryRow(ctx, `SELECT count(*) FROM orders`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("orders = %d (%v), want 1: the cut attempt's row must have rolled back", n, err)
	}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))
