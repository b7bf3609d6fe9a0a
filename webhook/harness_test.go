package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/testkit/pgkit"
	"github.com/idem-dev/idem/webhook"
	"github.com/idem-dev/idem/webhook/pgstore"
	"github.com/idem-dev/idem/webhook/sqlitestore"
)

// The dispatcher tests run against the real broker (brokertest), real
// HTTP servers over TCP, and both stores: a SQLite file and a PostgreSQL
// schema of their own.

func eachStore(t *testing.T, fn func(t *testing.T, kind string)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, "sqlite") })
	t.Run("postgres", func(t *testing.T) { fn(t, "postgres") })
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("IDEM_WEBHOOK_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// rig is a broker, a store and a dispatcher running on them.
type rig struct {
	t      testing.TB
	kind   string
	b      *brokertest.Broker
	topic  string
	store  webhook.Store
	dsn    string // the SQLite path or the PostgreSQL DSN
	clock  *testkit.Clock
	cfg    webhook.Config
	dp     *webhook.Dispatcher
	cancel context.CancelFunc
	done   chan error
	// noStart: newRig opens the store and builds the dispatcher, and the
	// test starts it.
	noStart bool
}

type rigOpt func(*rig)

// withFakeClock runs the dispatcher on a fake clock that the test moves.
func withFakeClock() rigOpt {
	return func(r *rig) { r.clock = testkit.NewClock(time.Now().Truncate(time.Second)) }
}

func withConfig(f func(*webhook.Config)) rigOpt { return func(r *rig) { f(&r.cfg) } }

// newRig starts a broker with a 4-partition topic, opens a store and
// starts a dispatcher.
func newRig(t testing.TB, kind string, opts ...rigOpt) *rig {
	t.Helper()
	r := &rig{t: t, kind: kind, topic: "events"}
	r.cfg = webhook.Config{Topic: r.topic, Group: "webhooks", Jitter: -1, PollInterval: 20 * time.Millisecond,
		RequestTimeout: 2 * time.Second, Logger: testLogger(t), InstanceID: "wh-" + kind + "-" + fmt.Sprint(time.Now().UnixNano())}
	for _, o := range opts {
		o(r)
	}
	if r.clock != nil {
		r.cfg.Now = r.clock.Now
	}
	r.cfg.Topic = r.topic
	r.b = brokertest.Run(t, broker.WithProperty("num.partitions", "4"), broker.WithTopics(r.topic))
	r.cfg.Brokers = []string{r.b.Addr()}
	r.open(t)
	if !r.noStart {
		r.start(t)
	}
	return r
}

// open opens the store and builds the dispatcher (not started).
func (r *rig) open(t testing.TB) {
	ctx := context.Background()
	switch r.kind {
	case "sqlite":
		if r.dsn == "" {
			r.dsn = filepath.Join(t.TempDir(), "webhooks.db")
		}
		s, err := sqlitestore.Open(ctx, r.dsn, sqlitestore.Config{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		r.store = s
		r.dp, err = webhook.New(s, r.cfg)
		if err != nil {
			t.Fatal(err)
		}
	case "postgres":
		p, dsn := pgkit.Schema(t, "webhook_test")
		r.dsn = dsn
		s, err := pgstore.New(ctx, p, pgstore.Config{})
		if err != nil {
			t.Fatal(err)
		}
		r.store = s
		r.dp, err = webhook.New(s, r.cfg)
		if err != nil {
			t.Fatal(err)
		}
	}
}

func (r *rig) start(t testing.TB) {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	dp := r.dp
	go func() { r.done <- dp.Run(ctx) }()
	t.Cleanup(r.stop)
}

// stop stops the dispatcher and waits for it (idempotent).
func (r *rig) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			r.t.Errorf("dispatcher: %v", err)
		}
	case <-time.After(30 * time.Second):
		r.t.Errorf("dispatcher did not stop within 30s")
	}
	r.cancel = nil
}

func (r *rig) now() time.Time {
	if r.clock != nil {
		return r.clock.Now()
	}
	return time.Now()
}

func (r *rig) addEndpoint(spec webhook.EndpointSpec) webhook.Endpoint {
	r.t.Helper()
	e, err := webhook.AddEndpoint(context.Background(), r.store, spec, r.now())
	if err != nil {
		r.t.Fatal(err)
	}
	return e
}

// event is one record to produce.
type event struct {
	typ     string
	key     string // the record key ("" none)
	idemKey string // the idempotency-key header ("" none)
	n       int    // a sequence number carried in the payload
}

func (e event) payload() []byte {
	b, _ := json.Marshal(map[string]any{"type": e.typ, "timestamp": "2026-12-02T10:00:00Z", "data": map[string]any{"key": e.key, "n": e.n}})
	return b
}

func (r *rig) produce(events ...event) {
	r.t.Helper()
	cl := r.b.Client(r.t)
	var recs []*kgo.Record
	for _, e := range events {
		recs = append(recs, kgoRecord(r.topic, e))
	}
	if err := cl.ProduceSync(testkit.Context(r.t, 15*time.Second), recs...).FirstErr(); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) deliveries(f webhook.DeliveryFilter) []webhook.DeliveryInfo {
	r.t.Helper()
	if f.Limit == 0 {
		f.Limit = 100000
	}
	ds, err := r.store.Deliveries(context.Background(), f)
	if err != nil {
		r.t.Fatal(err)
	}
	return ds
}

// receipt is one request a sink received.
type receipt struct {
	endpoint  string
	id        string // webhook-id
	typ       string
	key       string
	n         int
	at        time.Time // when it arrived (real time)
	signedAt  string    // webhook-timestamp
	verified  bool
	status    int
	sigHeader string
}

// sink is a real HTTP server with one path per endpoint, which records
// every request and answers as the test's respond function says.
type sink struct {
	srv       *httptest.Server
	mu        sync.Mutex
	got       []receipt
	inFlight  map[string]int // endpoint/id → requests in progress
	overlaps  []string       // the same delivery in flight twice at once
	verifiers map[string]*webhook.Verifier
	// respond decides the answer; nil: 200.
	respond func(rc receipt, n int) (status int, header http.Header, delay time.Duration)
}

func newSink(t testing.TB) *sink {
	s := &sink{inFlight: map[string]int{}, verifiers: map[string]*webhook.Verifier{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

// url is the address of endpoint name; secret verifies its requests.
func (s *sink) url(name, secret string, now func() time.Time) string {
	if secret != "" {
		v, _ := webhook.NewVerifier(secret)
		v.Now = now
		s.mu.Lock()
		s.verifiers[name] = v
		s.mu.Unlock()
	}
	return s.srv.URL + "/" + name
}

func (s *sink) serve(w http.ResponseWriter, req *http.Request) {
	name := strings.TrimPrefix(req.URL.Path, "/")
	body, _ := io.ReadAll(req.Body)
	var p struct {
		Type string
		Data struct {
			Key string
			N   int
		}
	}
	json.Unmarshal(body, &p)
	rc := receipt{endpoint: name, id: req.Header.Get(webhook.HeaderID), typ: p.Type, key: p.Data.Key, n: p.Data.N, at: time.Now(),
		signedAt: req.Header.Get(webhook.HeaderTimestamp), sigHeader: req.Header.Get(webhook.HeaderSignature)}
	s.mu.Lock()
	if v := s.verifiers[name]; v != nil {
		_, err := v.Verify(req.Header, body)
		rc.verified = err == nil
	}
	flight := name + "/" + rc.id
	s.inFlight[flight]++
	if s.inFlight[flight] > 1 {
		s.overlaps = append(s.overlaps, flight)
	}
	n := 0
	for _, g := range s.got {
		if g.endpoint == name && g.id == rc.id {
			n++
		}
	}
	respond := s.respond
	s.mu.Unlock()
	status, header, delay := 200, http.Header(nil), time.Duration(0)
	if respond != nil {
		status, header, delay = respond(rc, n)
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-req.Context().Done():
		}
	}
	rc.status = status
	s.mu.Lock()
	s.inFlight[flight]--
	s.got = append(s.got, rc)
	s.mu.Unlock()
	for k, v := range header {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"answer":%d}`, status)
}

// receipts returns what endpoint received (all endpoints for "").
func (s *sink) receipts(endpoint string) []receipt {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []receipt
	for _, g := range s.got {
		if endpoint == "" || g.endpoint == endpoint {
			out = append(out, g)
		}
	}
	return out
}

// succeeded returns the ids endpoint answered 2xx, in arrival order.
func (s *sink) succeeded(endpoint string) []string {
	var ids []string
	for _, g := range s.receipts(endpoint) {
		if g.status >= 200 && g.status < 300 {
			ids = append(ids, g.id)
		}
	}
	return ids
}

func distinct(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}

// kgoRecord is the record of e: its payload, its key and its idempotency
// key header.
func kgoRecord(topic string, e event) *kgo.Record {
	rec := &kgo.Record{Topic: topic, Value: e.payload()}
	if e.key != "" {
		rec.Key = []byte(e.key)
	}
	if e.idemKey != "" {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: "idempotency-key", Value: []byte(e.idemKey)})
	}
	return rec
}

// syncBuffer is a bytes.Buffer safe for concurrent writers and readers
// (child processes' stderr).
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// ingested is how many records the dispatcher has taken from Kafka: the
// sum of the offsets it stored.
func (r *rig) ingested(t testing.TB) int {
	var offs map[string]map[int32]int64
	var err error
	switch s := r.store.(type) {
	case *sqlitestore.Store:
		offs, err = s.Offsets().LoadOffsets(context.Background(), r.cfg.Group)
	case *pgstore.Store:
		offs, err = s.Offsets().LoadOffsets(context.Background(), r.cfg.Group)
	}
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, next := range offs[r.topic] {
		n += int(next)
	}
	return n
}
