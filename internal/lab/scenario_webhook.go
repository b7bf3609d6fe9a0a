package lab

// Scenario "webhook" is the everyday at-least-once channel: the worker is a
// webhook dispatcher (package webhook, SQLite store) that delivers each
// event to one endpoint, a receiver the lab runs. The receiver misbehaves
// as real ones do: it fails (500), answers after the dispatcher's timeout,
// answers slowly, resets the connection after doing its work, and is
// killed and restarted. The dispatcher retries until it gets a 2xx, so the
// receiver sees duplicates; what it does with them is the mode: a naive
// receiver applies every request, a verifying and deduping one
// (webhook.Receiver) applies each webhook-id once, and with ordering on the
// endpoint each key's events are applied in order too.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/idem-dev/idem/dedupe"
	"github.com/idem-dev/idem/dedupe/sqlitestore"
	"github.com/idem-dev/idem/webhook"
)

// ScenarioWebhook is the webhook scenario.
const ScenarioWebhook = "webhook"

// labWebhookSecret signs the lab's webhooks: fixed, since the dispatcher
// (a child process) and the receiver (the lab) must share it, and it
// protects nothing outside the run.
var labWebhookSecret = func() string {
	sum := sha256.Sum256([]byte("idem lab webhook secret"))
	return "whsec_" + base64.StdEncoding.EncodeToString(sum[:])
}()

// webhookReceiver is what a webhook mode asks of the receiver.
type webhookReceiver struct {
	dedupe  bool // verify and apply each webhook-id once (webhook.Receiver)
	ordered bool // the endpoint is ordered per key
}

// webhookModes maps each webhook mode to its receiver; the mode files fill
// it in their init.
var webhookModes = map[Mode]webhookReceiver{}

// Receiver faults, by the share of requests they hit (seeded), and the
// dispatcher's timeout they are measured against.
const (
	webhookRequestTimeout = time.Second
	shareFail             = 0.06 // 500 before doing anything
	shareTimeout          = 0.03 // work done, answer after the timeout
	shareSlow             = 0.05 // answer after 100–300 ms
	shareReset            = 0.03 // work done, connection reset instead of an answer
	receiverDown          = 700 * time.Millisecond
)

func init() {
	registerScenario(&scenarioSpec{
		name:         ScenarioWebhook,
		effectColumn: "DUP EFFECTS",
		twice:        "webhook applied twice",
		atomic:       "deliveries and offsets",
		columns: []column{
			// Every sent event either had an effect or is counted lost.
			{"DELIVERED", func(m ModeResult) string { return strconv.Itoa(m.Sent - m.Lost - m.LostUnacked) }},
			{"OUT OF ORDER", func(m ModeResult) string { return strconv.Itoa(m.OutOfOrder) }},
		},
		openSink: openWebhookReceiver,
		// The dispatcher makes the effect happen, by delivering; no mode
		// applies an event itself. The registry requires the hook of every
		// scenario whose effects happen at a sink.
		apply: func(context.Context, *worker, Event, string) error {
			return errors.New("lab: the webhook scenario's effects are deliveries, made by the dispatcher")
		},
	})
}

// applied is one effect at the receiver.
type applied struct {
	id, key string
	at      time.Time
}

// receiverSink is the receiver: an HTTP server the lab runs, with the
// mode's application behind a layer of seeded faults.
type receiverSink struct {
	r    *run
	kind webhookReceiver
	app  http.Handler
	addr string
	db   *sqlitestore.Store // the deduping receiver's database

	mu       sync.Mutex
	srv      *http.Server
	rng      *rand.Rand
	n        int            // requests so far
	requests map[string]int // webhook-id → requests
	applied  []applied      // the naive receiver's effects
	killAt   map[int]bool   // request numbers at which the receiver is killed
	closed   bool
	wg       sync.WaitGroup
}

func openWebhookReceiver(r *run) (sink, error) {
	kind, ok := webhookModes[r.mode.mode]
	if !ok {
		return nil, fmt.Errorf("lab: mode %s has no webhook receiver", r.mode.mode)
	}
	s := &receiverSink{r: r, kind: kind, requests: map[string]int{},
		rng:    rand.New(rand.NewPCG(uint64(r.cfg.Seed), 0x77656268)),
		killAt: map[int]bool{r.cfg.N / 3: true, 2 * r.cfg.N / 3: true}}
	v, err := webhook.NewVerifier(labWebhookSecret)
	if err != nil {
		return nil, err
	}
	if kind.dedupe {
		if s.db, err = sqlitestore.Open(context.Background(), filepath.Join(r.dir, "receiver.db"), dedupe.Config{Table: "received", Retention: -1}); err != nil {
			return nil, err
		}
		if _, err := s.db.DB().Exec(`CREATE TABLE IF NOT EXISTS effects (webhook_id TEXT NOT NULL, customer TEXT NOT NULL, at_ns INTEGER NOT NULL)`); err != nil {
			s.db.Close()
			return nil, err
		}
		s.app, err = webhook.Receiver(webhook.ReceiverConfig[*sql.Tx]{Verifier: v, Store: s.db,
			Handle: func(ctx context.Context, tx *sql.Tx, m webhook.Message) error {
				var e Event
				json.Unmarshal(m.Payload, &e)
				_, err := tx.ExecContext(ctx, `INSERT INTO effects (webhook_id, customer, at_ns) VALUES (?, ?, ?)`, m.ID, e.Customer, time.Now().UnixNano())
				return err
			}})
		if err != nil {
			s.db.Close()
			return nil, err
		}
	} else {
		// Verifies the signature, and applies whatever it is sent.
		s.app = webhook.Verify(v, 0)(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			m, _ := webhook.MessageFrom(req.Context())
			var e Event
			json.Unmarshal(m.Payload, &e)
			s.mu.Lock()
			s.applied = append(s.applied, applied{id: m.ID, key: e.Customer, at: time.Now()})
			s.mu.Unlock()
			w.WriteHeader(http.StatusOK)
		}))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.close()
		return nil, err
	}
	s.addr = ln.Addr().String()
	s.serve(ln)
	return s, nil
}

func (s *receiverSink) serve(ln net.Listener) {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		srv.Serve(ln)
	}()
}

// kill is the receiver killed: its listener and connections closed, down
// for a while, then up again on the same address.
func (s *receiverSink) kill() {
	defer s.wg.Done()
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	srv.Close()
	s.r.inject("receiver-killed", fmt.Sprintf("down for %v", receiverDown))
	time.Sleep(receiverDown)
	for range 50 {
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return
		}
		if ln, err := net.Listen("tcp", s.addr); err == nil {
			s.serve(ln)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *receiverSink) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	id := req.Header.Get(webhook.HeaderID)
	s.mu.Lock()
	n := s.n
	s.n++
	s.requests[id]++
	u := s.rng.Float64()
	slow := time.Duration(100+s.rng.IntN(200)) * time.Millisecond
	kill := s.killAt[n]
	if kill {
		s.wg.Add(1)
	}
	s.mu.Unlock()
	if kill {
		go s.kill()
	}
	switch {
	case u < shareFail:
		s.r.inject("receiver-500", id)
		http.Error(w, "receiver failing", http.StatusInternalServerError)
		return
	case u < shareFail+shareTimeout+shareSlow+shareReset && u >= shareFail+shareTimeout+shareReset:
		s.r.inject("receiver-slow", fmt.Sprintf("%s answered after %v", id, slow))
		time.Sleep(slow)
	}
	buf := &bufferedResponse{header: http.Header{}}
	s.app.ServeHTTP(buf, req)
	switch {
	case u >= shareFail && u < shareFail+shareTimeout:
		s.r.inject("receiver-timeout", id+" done, answered after the dispatcher's timeout")
		time.Sleep(webhookRequestTimeout + 300*time.Millisecond)
	case u >= shareFail+shareTimeout && u < shareFail+shareTimeout+shareReset:
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				s.r.inject("receiver-reset", id+" done, connection reset")
				if tc, ok := conn.(*net.TCPConn); ok {
					tc.SetLinger(0) // RST, not FIN
				}
				conn.Close()
				return
			}
		}
	}
	for k, v := range buf.header {
		w.Header()[k] = v
	}
	w.WriteHeader(buf.status)
	w.Write(buf.body.Bytes())
}

// bufferedResponse holds the application's answer until the fault layer
// decides whether it goes out.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }
func (b *bufferedResponse) WriteHeader(s int) {
	if b.status == 0 {
		b.status = s
	}
}
func (b *bufferedResponse) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	return b.body.Write(p)
}

func (s *receiverSink) address() string { return "http://" + s.addr + "/webhooks" }

func (s *receiverSink) effected() (int, bool) {
	if s.kind.dedupe {
		var n int
		if s.db.DB().QueryRow(`SELECT count(DISTINCT webhook_id) FROM effects`).Scan(&n) != nil {
			return 0, false
		}
		return n, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for _, a := range s.applied {
		seen[a.id] = true
	}
	return len(seen), true
}

func (s *receiverSink) close() {
	s.mu.Lock()
	s.closed = true
	srv := s.srv
	s.mu.Unlock()
	srv.Close()
	s.wg.Wait()
	s.mu.Lock()
	if s.srv != srv { // a restart raced with the close
		s.srv.Close()
	}
	s.mu.Unlock()
	if s.db != nil {
		s.db.Close()
	}
}

// effects returns the receiver's effects; it also counts the duplicate
// deliveries as the receiver saw them (every request for a webhook-id
// after its first) and the events applied out of order.
func (s *receiverSink) effects(ctx context.Context, r *run, res *ModeResult) (map[string][]time.Time, error) {
	var all []applied
	if s.kind.dedupe {
		rows, err := s.db.DB().QueryContext(ctx, `SELECT webhook_id, customer, at_ns FROM effects ORDER BY at_ns`)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		for rows.Next() {
			var a applied
			var ns int64
			if err := rows.Scan(&a.id, &a.key, &ns); err != nil {
				return nil, err
			}
			a.at = time.Unix(0, ns)
			all = append(all, a)
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	} else {
		s.mu.Lock()
		all = append(all, s.applied...)
		s.mu.Unlock()
	}
	s.mu.Lock()
	res.DupDeliveries = 0
	for _, n := range s.requests {
		res.DupDeliveries += max(0, n-1)
	}
	s.mu.Unlock()
	res.OutOfOrder = outOfOrder(all)
	out := map[string][]time.Time{}
	for _, a := range all {
		out[a.id] = append(out[a.id], a.at)
	}
	return out, nil
}

// outOfOrder counts the events first applied after a later event of the
// same key had been (events are numbered evt-N in the order they were
// sent).
func outOfOrder(all []applied) int {
	sort.SliceStable(all, func(i, j int) bool { return all[i].at.Before(all[j].at) })
	first := map[string]bool{}
	latest := map[string]int{}
	n := 0
	for _, a := range all {
		if first[a.id] {
			continue
		}
		first[a.id] = true
		idx, err := strconv.Atoi(strings.TrimPrefix(a.id, "evt-"))
		if err != nil {
			continue
		}
		if last, ok := latest[a.key]; ok && idx < last {
			n++
			continue
		}
		latest[a.key] = idx
	}
	return n
}
