package webhook_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/dedupe"
	dedupesqlite "github.com/idem-dev/idem/dedupe/sqlitestore"
	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/testkit/pgkit"
	"github.com/idem-dev/idem/webhook"
	"github.com/idem-dev/idem/webhook/pgstore"
	"github.com/idem-dev/idem/webhook/sqlitestore"
)

// dispatcherRoleEnv makes the test binary a dispatcher process (TestMain):
// the kill -9 test starts it, SIGKILLs it and starts it again.
const dispatcherRoleEnv = "IDEM_WEBHOOK_DISPATCHER"

type dispatcherSpec struct {
	Kind, DSN, Broker, Topic, Group, Instance string
}

func crashConfig(spec dispatcherSpec) webhook.Config {
	return webhook.Config{Brokers: []string{spec.Broker}, Topic: spec.Topic, Group: spec.Group, InstanceID: spec.Instance,
		RequestTimeout: time.Second, Lease: 3 * time.Second, Jitter: -1, PollInterval: 20 * time.Millisecond,
		Retries: []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond,
			800 * time.Millisecond, time.Second, time.Second, time.Second, time.Second, time.Second, time.Second, time.Second}}
}

// runDispatcherRole runs a dispatcher until the process is killed.
func runDispatcherRole(specJSON string) int {
	var spec dispatcherSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx := context.Background()
	cfg := crashConfig(spec)
	var dp *webhook.Dispatcher
	var err error
	switch spec.Kind {
	case "sqlite":
		var s *sqlitestore.Store
		if s, err = sqlitestore.Open(ctx, spec.DSN, sqlitestore.Config{}); err == nil {
			dp, err = webhook.New(s, cfg)
		}
	case "postgres":
		var pool *pgxpool.Pool
		if pool, err = pgxpool.New(ctx, spec.DSN); err == nil {
			var s *pgstore.Store
			if s, err = pgstore.New(ctx, pool, pgstore.Config{}); err == nil {
				dp, err = webhook.New(s, cfg)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dispatcher:", err)
		return 2
	}
	if err := dp.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "dispatcher:", err)
		return 1
	}
	return 0
}

// crashReceiver is the receiving side of the kill -9 test: one Receiver
// per endpoint (its own secret and processed-ids table) on a SQLite file,
// which applies each webhook once, and a count of raw arrivals (duplicates
// included).
type crashReceiver struct {
	srv *httptest.Server
	db  *sql.DB
	mu  sync.Mutex
	raw map[string]int // endpoint/id → requests
}

func newCrashReceiver(t *testing.T, secrets map[string]string) *crashReceiver {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "receiver.db")
	mux := http.NewServeMux()
	rx := &crashReceiver{raw: map[string]int{}}
	for name, secret := range secrets {
		s, err := dedupesqlite.Open(ctx, path, dedupe.Config{Table: "rx_" + name})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		rx.db = s.DB()
		if _, err := rx.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS effects (endpoint TEXT, webhook_id TEXT)`); err != nil {
			t.Fatal(err)
		}
		v, _ := webhook.NewVerifier(secret)
		h, err := webhook.Receiver(webhook.ReceiverConfig[*sql.Tx]{Verifier: v, Store: s,
			Handle: func(ctx context.Context, tx *sql.Tx, m webhook.Message) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO effects (endpoint, webhook_id) VALUES (?, ?)`, name, m.ID)
				return err
			}})
		if err != nil {
			t.Fatal(err)
		}
		mux.Handle("/"+name, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rx.mu.Lock()
			rx.raw[name+"/"+r.Header.Get(webhook.HeaderID)]++
			rx.mu.Unlock()
			if rand.IntN(10) == 0 { // a flaky receiver: retries happen too
				http.Error(w, "flaky", http.StatusInternalServerError)
				return
			}
			h.ServeHTTP(w, r)
		}))
	}
	rx.srv = httptest.NewServer(mux)
	t.Cleanup(rx.srv.Close)
	return rx
}

// TestKillNineDispatcherLosesNothingAndTheReceiverAppliesEachOnce kills the
// dispatcher process (SIGKILL) again and again while events are produced
// and delivered to two endpoints: every event must reach every endpoint
// (nothing lost), the dispatcher's store must hold exactly one message per
// event and one delivery per endpoint (nothing re-created), and the
// deduping receiver must apply each exactly once though it saw duplicates.
func TestKillNineDispatcherLosesNothingAndTheReceiverAppliesEachOnce(t *testing.T) {
	eachStore(t, func(t *testing.T, kind string) {
		ctx := context.Background()
		b := brokertest.Run(t, broker.WithProperty("num.partitions", "4"), broker.WithTopics("events"))
		var store webhook.Store
		var dsn string
		switch kind {
		case "sqlite":
			dsn = filepath.Join(t.TempDir(), "webhooks.db")
			s, err := sqlitestore.Open(ctx, dsn, sqlitestore.Config{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			store = s
		case "postgres":
			var pool *pgxpool.Pool
			pool, dsn = pgkit.Schema(t, "webhook_crash")
			s, err := pgstore.New(ctx, pool, pgstore.Config{})
			if err != nil {
				t.Fatal(err)
			}
			store = s
		}
		secrets := map[string]string{"a": webhook.NewSecret(), "b": webhook.NewSecret()}
		rx := newCrashReceiver(t, secrets)
		for name, secret := range secrets {
			if _, err := webhook.AddEndpoint(ctx, store, webhook.EndpointSpec{ID: name, URL: rx.srv.URL + "/" + name, Secret: secret}, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		spec, _ := json.Marshal(dispatcherSpec{Kind: kind, DSN: dsn, Broker: b.Addr(), Topic: "events", Group: "webhooks", Instance: "crash-" + kind})

		n := testkit.Soak(200, 2000)
		kills := testkit.Soak(8, 40)
		produced := make(chan struct{})
		cl := b.Client(t)
		go func() { // produce while the dispatcher is being killed
			defer close(produced)
			for i := range n {
				e := event{typ: "a", n: i, idemKey: fmt.Sprintf("evt-%04d", i)}
				rec := kgoRecord("events", e)
				if err := cl.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
					t.Errorf("produce: %v", err)
					return
				}
				if i == n/3 {
					// An event produced twice with the same idempotency key
					// is delivered once per endpoint.
					cl.ProduceSync(context.Background(), kgoRecord("events", e))
				}
				time.Sleep(time.Duration(rand.IntN(8)) * time.Millisecond)
			}
		}()
		seed := rand.Uint64()
		rng := rand.New(rand.NewPCG(seed, 1))
		t.Logf("seed %d", seed)
		var stderr syncBuffer
		for k := 0; k < kills; k++ {
			child := startDispatcherChild(t, string(spec), &stderr)
			time.Sleep(time.Duration(150+rng.IntN(600)) * time.Millisecond)
			child.Process.Signal(syscall.SIGKILL)
			child.Wait()
		}
		<-produced
		child := startDispatcherChild(t, string(spec), &stderr)
		defer func() {
			child.Process.Signal(syscall.SIGKILL)
			child.Wait()
		}()
		succeeded := func() int {
			ds, err := store.Deliveries(ctx, webhook.DeliveryFilter{Status: webhook.StatusSucceeded, Limit: 100000})
			if err != nil {
				t.Fatal(err)
			}
			return len(ds)
		}
		deadline := time.Now().Add(60 * time.Second)
		for succeeded() < 2*n {
			if time.Now().After(deadline) {
				t.Fatalf("after the kills only %d of %d deliveries succeeded\ndispatcher stderr:\n%s", succeeded(), 2*n, stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		all, err := store.Deliveries(ctx, webhook.DeliveryFilter{Limit: 100000})
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 2*n {
			t.Errorf("%d deliveries in the store for %d events × 2 endpoints: deliveries were re-created", len(all), n)
		}
		messages := map[string]bool{}
		for _, d := range all {
			messages[d.MessageID] = true
		}
		if len(messages) != n {
			t.Errorf("%d messages for %d events", len(messages), n)
		}
		rx.mu.Lock()
		defer rx.mu.Unlock()
		duplicates := 0
		for name := range secrets {
			for i := range n {
				id := fmt.Sprintf("evt-%04d", i)
				var effects int
				if err := rx.db.QueryRowContext(ctx, `SELECT count(*) FROM effects WHERE endpoint = ? AND webhook_id = ?`, name, id).Scan(&effects); err != nil {
					t.Fatal(err)
				}
				if effects != 1 {
					t.Errorf("%s at endpoint %s: applied %d times", id, name, effects)
				}
				if rx.raw[name+"/"+id] == 0 {
					t.Errorf("%s never reached endpoint %s", id, name)
				}
				duplicates += max(0, rx.raw[name+"/"+id]-1)
			}
		}
		t.Logf("%d events to 2 endpoints through %d kill -9s: every one applied once; the receiver absorbed %d redeliveries (flaky answers and kills)",
			n, kills, duplicates)
	})
}

func startDispatcherChild(t *testing.T, spec string, stderr *syncBuffer) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), dispatcherRoleEnv+"="+spec)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}
