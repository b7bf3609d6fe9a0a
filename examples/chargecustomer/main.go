// Command chargecustomer is the textbook "ChargeCustomer" consumer, written
// the naive way and the idem way, run against a broker (idem serve) and a
// fake payment gateway that counts the charges it makes.
//
// Both consumers see the same trouble: the producer resends two events (its
// acknowledgement was lost), and the consumer crashes once right after
// calling the gateway, before it could record that the event was handled.
//
//	idem serve --data-dir /tmp/idem-demo &
//	go run ./examples/chargecustomer -brokers 127.0.0.1:9092
//
// See README.md for the output and what it shows.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/dedupe"
	dedupesqlite "github.com/idem-dev/idem/dedupe/sqlitestore"
	"github.com/idem-dev/idem/idempotency"
	idemsqlite "github.com/idem-dev/idem/idempotency/sqlitestore"
)

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "Kafka bootstrap address (idem serve)")
	mode := flag.String("mode", "both", "naive, idem or both")
	events := flag.Int("events", 10, "ChargeCustomer events to produce")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	modes := []string{*mode}
	if *mode == "both" {
		modes = []string{"naive", "idem"}
	}
	for _, m := range modes {
		rep, err := Run(ctx, Scenario{Brokers: *brokers, Mode: m, Events: *events, Resends: 2, CrashAt: 4})
		if err != nil {
			fmt.Fprintln(os.Stderr, "chargecustomer:", err)
			os.Exit(1)
		}
		fmt.Println(rep)
	}
}

// ChargeCustomer is the event.
type ChargeCustomer struct {
	EventID  string `json:"event_id"`
	Customer string `json:"customer"`
	Cents    int    `json:"cents"`
}

// Scenario describes one run.
type Scenario struct {
	Brokers string
	Mode    string // "naive" or "idem"
	Events  int    // distinct events produced
	Resends int    // of those, how many the producer sends twice
	CrashAt int    // the consumer crashes after calling the gateway for this many records (0: never)
	Dir     string // for the idem way's SQLite file (default: a temporary directory)
}

// Report is what a run observed.
type Report struct {
	Mode       string
	Events     int
	Deliveries int // records handed to the handler, over both consumer runs
	Charges    int // charges the gateway actually made
	Requests   int // charge requests the gateway received
	Suppressed int64
}

func (r Report) DoubleCharges() int { return r.Charges - r.Events }

func (r Report) String() string {
	s := fmt.Sprintf("%-5s: %d events, %d deliveries to the handler, gateway received %d charge requests and charged %d times",
		r.Mode, r.Events, r.Deliveries, r.Requests, r.Charges)
	if r.DoubleCharges() > 0 {
		return s + fmt.Sprintf(" -> %d customers charged twice", r.DoubleCharges())
	}
	return s + fmt.Sprintf(" -> every customer charged once (%d duplicate deliveries suppressed by dedupe, the gateway replayed %d retried request(s))",
		r.Suppressed, r.Requests-r.Charges)
}

// Run produces the events to a fresh topic and consumes them the chosen way:
// a first consumer process that crashes, then a second that finishes.
func Run(ctx context.Context, sc Scenario) (Report, error) {
	gw, err := startGateway()
	if err != nil {
		return Report{}, err
	}
	defer gw.close()
	topic := fmt.Sprintf("charges-%s-%d", sc.Mode, time.Now().UnixNano())
	if err := produce(ctx, sc, topic); err != nil {
		return Report{}, err
	}
	rep := Report{Mode: sc.Mode, Events: sc.Events}
	switch sc.Mode {
	case "naive":
		for _, crashAt := range []int{sc.CrashAt, 0} {
			n, err := consumeNaive(ctx, sc, topic, gw.url, crashAt)
			rep.Deliveries += n
			if err != nil {
				return rep, err
			}
		}
	case "idem":
		dir := sc.Dir
		if dir == "" {
			if dir, err = os.MkdirTemp("", "chargecustomer-"); err != nil {
				return rep, err
			}
			defer os.RemoveAll(dir)
		}
		store, err := dedupesqlite.Open(ctx, filepath.Join(dir, "billing.db"), dedupe.Config{Consumer: "billing"})
		if err != nil {
			return rep, err
		}
		defer store.Close()
		if _, err := store.DB().ExecContext(ctx, `CREATE TABLE IF NOT EXISTS charges (event_id TEXT PRIMARY KEY, customer TEXT, cents INTEGER)`); err != nil {
			return rep, err
		}
		for _, crashAt := range []int{sc.CrashAt, 0} {
			n, err := consumeIdem(ctx, sc, store, topic, gw.url, crashAt)
			rep.Deliveries += n
			if err != nil {
				return rep, err
			}
		}
		rows, err := store.DB().QueryContext(ctx, `SELECT event_id FROM charges`)
		if err != nil {
			return rep, err
		}
		var ids []string
		for rows.Next() {
			var id string
			rows.Scan(&id)
			ids = append(ids, id)
		}
		rows.Close()
		for _, id := range ids {
			rec, err := store.Lookup(ctx, id)
			if err != nil {
				return rep, err
			}
			rep.Suppressed += rec.Duplicates
		}
	default:
		return rep, fmt.Errorf("unknown mode %q", sc.Mode)
	}
	rep.Charges, rep.Requests = gw.counts()
	return rep, nil
}

func produce(ctx context.Context, sc Scenario, topic string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(sc.Brokers))
	if err != nil {
		return err
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		return fmt.Errorf("create topic: %w", err)
	}
	send := func(e ChargeCustomer) error {
		v, _ := json.Marshal(e)
		return cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(e.Customer), Value: v,
			Headers: []kgo.RecordHeader{{Key: dedupe.DefaultKeyHeader, Value: []byte(e.EventID)}}}).FirstErr()
	}
	for i := range sc.Events {
		e := ChargeCustomer{EventID: fmt.Sprintf("evt-%d", i), Customer: fmt.Sprintf("cus_%d", i), Cents: 1000 + i}
		if err := send(e); err != nil {
			return err
		}
		if i < sc.Resends { // the producer's ack was lost and it sent again
			if err := send(e); err != nil {
				return err
			}
		}
	}
	return nil
}

var errCrash = errors.New("simulated crash after the gateway call")

// consumeNaive is the textbook's buggy consumer: charge, then commit the
// offset. A crash between the two, or a resent event, charges twice.
func consumeNaive(ctx context.Context, sc Scenario, topic, gateway string, crashAt int) (int, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(sc.Brokers), kgo.ConsumerGroup("naive-"+topic),
		kgo.ConsumeTopics(topic), kgo.DisableAutoCommit(), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	delivered := 0
	for !committedAll(ctx, cl, topic, "naive-"+topic) {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return delivered, err
		}
		for _, r := range fs.Records() {
			var e ChargeCustomer
			json.Unmarshal(r.Value, &e)
			delivered++
			if err := charge(ctx, gateway, e, ""); err != nil {
				return delivered, err
			}
			if delivered == crashAt {
				return delivered, nil // crashed: the offset commit below never happens
			}
			if err := cl.CommitRecords(ctx, r); err != nil {
				return delivered, err
			}
		}
	}
	return delivered, nil
}

// consumeIdem is the idem way: the dedupe.Consumer records the event id, the
// charge row and the offset in one transaction, and passes the event id to
// the gateway as its Idempotency-Key. A crash after the gateway call rolls
// the transaction back; the redelivery calls the gateway again with the same
// key, and the gateway replays instead of charging.
func consumeIdem(ctx context.Context, sc Scenario, store *dedupesqlite.Store, topic, gateway string, crashAt int) (int, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var mu sync.Mutex
	delivered := 0
	c, err := dedupe.NewConsumer(dedupe.ConsumerConfig[*sql.Tx]{
		Store: store, Group: "billing", Topics: []string{topic},
		ClientOpts: []kgo.Opt{kgo.SeedBrokers(sc.Brokers), kgo.FetchMaxWait(200 * time.Millisecond)},
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Handler: func(ctx context.Context, tx *sql.Tx, r *kgo.Record) error {
			var e ChargeCustomer
			if err := json.Unmarshal(r.Value, &e); err != nil {
				return dedupe.Permanent(err)
			}
			mu.Lock()
			delivered++
			n := delivered
			mu.Unlock()
			if err := charge(ctx, gateway, e, e.EventID); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO charges VALUES (?, ?, ?)`, e.EventID, e.Customer, e.Cents); err != nil {
				return err
			}
			if n == crashAt {
				cancel(errCrash) // the process dies before COMMIT
				return errCrash
			}
			return nil
		},
	})
	if err != nil {
		return 0, err
	}
	// Stop when the database's offset reaches the end of the topic.
	go func() {
		for ctx.Err() == nil {
			if end, ok := topicEnd(ctx, sc.Brokers, topic); ok && storedOffset(ctx, store, topic) >= end {
				cancel(nil)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	err = c.Run(ctx)
	mu.Lock()
	defer mu.Unlock()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, errCrash) && !errors.Is(cause, context.Canceled) {
		return delivered, cause
	}
	return delivered, err
}

func storedOffset(ctx context.Context, store *dedupesqlite.Store, topic string) int64 {
	var n int64
	store.DB().QueryRowContext(ctx, `SELECT coalesce(max(next_offset), 0) FROM idem_processed_offsets WHERE consumer_group = 'billing' AND topic = ?`, topic).Scan(&n)
	return n
}

func topicEnd(ctx context.Context, brokers, topic string) (int64, bool) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		return 0, false
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, false
	}
	o, ok := ends.Lookup(topic, 0)
	return o.Offset, ok && o.Err == nil
}

func committedAll(ctx context.Context, cl *kgo.Client, topic, group string) bool {
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return false
	}
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return false
	}
	end, _ := ends.Lookup(topic, 0)
	got, ok := offs.Lookup(topic, 0)
	return ok && got.At >= end.Offset
}

// charge calls the gateway; key is sent as Idempotency-Key when not empty.
func charge(ctx context.Context, gateway string, e ChargeCustomer, key string) error {
	body, _ := json.Marshal(map[string]any{"customer": e.Customer, "cents": e.Cents})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, gateway+"/charges", strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	if key != "" {
		req.Header.Set(idempotency.HeaderKey, key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("gateway: %s", resp.Status)
	}
	return nil
}

// gateway is the fake payment provider. It honours Idempotency-Key the way
// Stripe does, using idem's own middleware, and counts the charges it makes.
type gateway struct {
	url      string
	srv      *http.Server
	store    *idemsqlite.Store
	dir      string
	mu       sync.Mutex
	charges  int
	requests int
}

func startGateway() (*gateway, error) {
	dir, err := os.MkdirTemp("", "gateway-")
	if err != nil {
		return nil, err
	}
	store, err := idemsqlite.Open(context.Background(), filepath.Join(dir, "gateway.db"), idempotency.StoreConfig{})
	if err != nil {
		return nil, err
	}
	g := &gateway{store: store, dir: dir}
	charge := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		g.charges++
		n := g.charges
		g.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":"ch_%d"}`, n)
	})
	// One trusted client (the billing consumer) sends every request, so all
	// keys share one scope, knowingly.
	mw := idempotency.Middleware(idempotency.Config{Store: store, Optional: true, AllowEmptyScope: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		g.requests++
		g.mu.Unlock()
		mw(charge).ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	g.url = "http://" + ln.Addr().String()
	g.srv = &http.Server{Handler: counted}
	go g.srv.Serve(ln)
	return g, nil
}

func (g *gateway) counts() (charges, requests int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.charges, g.requests
}

func (g *gateway) close() {
	g.srv.Close()
	g.store.Close()
	os.RemoveAll(g.dir)
}
