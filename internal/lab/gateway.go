package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Charge is the body of a charge request: which event asked for it is in
// the body only so the lab can attribute charges; a real gateway would not
// know it, and would charge twice for two requests without a key.
type Charge struct {
	EventID  string `json:"event_id"`
	Customer string `json:"customer"`
	Cents    int64  `json:"cents"`
}

// IdempotencyKeyHeader is the header the gateway deduplicates on, as Stripe does.
const IdempotencyKeyHeader = "Idempotency-Key"

// Gateway is the payment provider of the charge scenario: an HTTP server on
// loopback that charges customers and counts every charge, so the lab can
// count double charges instead of inferring them. Like Stripe it honours an
// Idempotency-Key: a request with a key it has seen is answered with the
// first response and charges nothing.
type Gateway struct {
	srv *http.Server
	ln  net.Listener
	wg  sync.WaitGroup

	mu       sync.Mutex
	requests int
	replays  int
	charges  map[string][]time.Time // event id → the times it was charged
	cents    map[string]int64       // customer → total charged
	keys     map[string]string      // idempotency key → first response body
}

// StartGateway listens on a fresh 127.0.0.1 port.
func StartGateway() (*Gateway, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	g := &Gateway{ln: ln, charges: map[string][]time.Time{}, cents: map[string]int64{}, keys: map[string]string{}}
	g.srv = &http.Server{Handler: http.HandlerFunc(g.serve), ReadHeaderTimeout: 5 * time.Second}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		_ = g.srv.Serve(ln)
	}()
	return g, nil
}

// URL is the base URL of the gateway.
func (g *Gateway) URL() string { return "http://" + g.ln.Addr().String() }

// Close stops the server and joins it.
func (g *Gateway) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := g.srv.Shutdown(ctx)
	g.wg.Wait()
	return err
}

func (g *Gateway) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/charges" {
		http.Error(w, "POST /charges", http.StatusNotFound)
		return
	}
	var c Charge
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&c); err != nil || c.EventID == "" {
		http.Error(w, "bad charge", http.StatusBadRequest)
		return
	}
	key := r.Header.Get(IdempotencyKeyHeader)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.requests++
	if key != "" {
		if body, ok := g.keys[key]; ok {
			g.replays++
			w.Header().Set("Idempotent-Replayed", "true")
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, body)
			return
		}
	}
	g.charges[c.EventID] = append(g.charges[c.EventID], time.Now())
	g.cents[c.Customer] += c.Cents
	body := fmt.Sprintf(`{"id":"ch_%d"}`, g.requests)
	if key != "" {
		g.keys[key] = body
	}
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, body)
}

// GatewayStats is what the gateway saw.
type GatewayStats struct {
	Requests int
	Replays  int                    // requests answered from the idempotency keys
	Charges  map[string][]time.Time // event id → charge times
	Cents    map[string]int64       // customer → total charged
}

// Stats returns a copy of the counters.
func (g *Gateway) Stats() GatewayStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := GatewayStats{Requests: g.requests, Replays: g.replays, Charges: make(map[string][]time.Time, len(g.charges)), Cents: make(map[string]int64, len(g.cents))}
	for k, v := range g.cents {
		s.Cents[k] = v
	}
	for k, v := range g.charges {
		s.Charges[k] = append([]time.Time(nil), v...)
	}
	return s
}

var gatewayClient = &http.Client{Timeout: 10 * time.Second}

// PostCharge asks the gateway at base to charge c, sending key as the
// Idempotency-Key unless it is empty. Transport errors are retried a few
// times (the gateway is local); the retry is exactly what makes a request
// without a key dangerous.
func PostCharge(ctx context.Context, base string, c Charge, key string) error {
	body, _ := json.Marshal(c)
	var err error
	for attempt := range 5 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt) * 50 * time.Millisecond):
			}
		}
		var req *http.Request
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, base+"/charges", strings.NewReader(string(body)))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set(IdempotencyKeyHeader, key)
		}
		var resp *http.Response
		resp, err = gatewayClient.Do(req)
		if err != nil {
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusCreated {
			return nil
		}
		err = errors.New("gateway: " + resp.Status)
	}
	return err
}
