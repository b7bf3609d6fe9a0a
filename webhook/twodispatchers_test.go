package webhook_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/testkit/pgkit"
	"github.com/idem-dev/idem/webhook"
	"github.com/idem-dev/idem/webhook/pgstore"
)

// TestTwoDispatchersOnOnePostgreSQLNeverSendTheSameAttemptAtOnce runs two
// dispatchers (one consumer group, one PostgreSQL schema) whose claim loops
// race for the same due retries: a third of the first attempts fail, the
// receiver answers slowly, and both poll every few milliseconds. The
// receiver checks that no delivery is ever in flight twice at once, and the
// attempt log shows each delivery's attempts one after another, each
// number once. Then one dispatcher stops and the other finishes its work.
func TestTwoDispatchersOnOnePostgreSQLNeverSendTheSameAttemptAtOnce(t *testing.T) {
	ctx := context.Background()
	b := brokertest.Run(t, broker.WithProperty("num.partitions", "4"), broker.WithTopics("events"))
	pool, _ := pgkit.Schema(t, "webhook_two")
	s := newSink(t)
	var mu sync.Mutex
	s.respond = func(rc receipt, n int) (int, http.Header, time.Duration) {
		mu.Lock()
		fail := n == 0 && rand.IntN(3) == 0
		mu.Unlock()
		delay := time.Duration(5+rand.IntN(30)) * time.Millisecond
		if fail {
			return 503, nil, delay
		}
		return 200, nil, delay
	}
	var dps []*rig
	for i := range 2 {
		store, err := pgstore.New(ctx, pool, pgstore.Config{})
		if err != nil {
			t.Fatal(err)
		}
		r := &rig{t: t, kind: "postgres", b: b, topic: "events", store: store}
		r.cfg = webhook.Config{Brokers: []string{b.Addr()}, Topic: "events", Group: "webhooks", Jitter: -1,
			PollInterval: 3 * time.Millisecond, ClaimBatch: 7, RequestTimeout: time.Second, Lease: 3 * time.Second,
			Retries: []time.Duration{20 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond},
			Logger:  testLogger(t), InstanceID: fmt.Sprintf("two-%d", i), Name: fmt.Sprintf("dispatcher-%d", i)}
		if r.dp, err = webhook.New(store, r.cfg); err != nil {
			t.Fatal(err)
		}
		dps = append(dps, r)
	}
	for name := range 3 {
		e := dps[0].addEndpoint(webhook.EndpointSpec{ID: fmt.Sprintf("ep%d", name), URL: s.url(fmt.Sprintf("ep%d", name), "", nil)})
		s.url(e.ID, e.Secrets[0].Key, nil)
	}
	for _, r := range dps {
		r.start(t)
	}
	n := testkit.Soak(150, 1500)
	var events []event
	for i := range n {
		events = append(events, event{typ: "a", n: i, idemKey: fmt.Sprintf("evt-%04d", i)})
	}
	dps[0].produce(events[:n/2]...)
	testkit.Eventually(t, 60*time.Second, "the first half delivered by both dispatchers", func() bool {
		return len(distinct(s.succeeded(""))) >= n/2
	})
	dps[1].stop() // the other takes over its partitions
	dps[0].produce(events[n/2:]...)
	testkit.Eventually(t, 60*time.Second, "every event at every endpoint", func() bool {
		return len(dps[0].deliveries(webhook.DeliveryFilter{Status: webhook.StatusSucceeded})) == 3*n
	})
	s.mu.Lock()
	overlaps := s.overlaps
	s.mu.Unlock()
	if len(overlaps) > 0 {
		t.Fatalf("deliveries in flight twice at once: %v", overlaps)
	}
	atts, err := dps[0].store.Attempts(ctx, webhook.AttemptFilter{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	byDelivery := map[int64][]webhook.Attempt{}
	senders := map[string]int{}
	for _, a := range atts {
		byDelivery[a.DeliveryID] = append(byDelivery[a.DeliveryID], a)
		senders[a.Dispatcher]++
	}
	retried := 0
	for id, as := range byDelivery {
		sort.Slice(as, func(i, j int) bool { return as[i].Started.Before(as[j].Started) })
		for i, a := range as {
			if a.Attempt != i+1 {
				t.Errorf("delivery %d: attempt numbers %v", id, attemptNumbers(as))
				break
			}
			if i > 0 && as[i-1].Started.Add(as[i-1].Latency).After(a.Started) {
				t.Errorf("delivery %d: attempt %d started before attempt %d ended", id, a.Attempt, as[i-1].Attempt)
			}
		}
		if len(as) > 1 {
			retried++
		}
	}
	if senders["dispatcher-0"] == 0 || senders["dispatcher-1"] == 0 {
		t.Errorf("attempts by dispatcher: %v; both should have sent", senders)
	}
	t.Logf("%d deliveries, %d retried; attempts by dispatcher %v; no delivery in flight twice", len(byDelivery), retried, senders)
}

func attemptNumbers(as []webhook.Attempt) []int {
	var out []int
	for _, a := range as {
		out = append(out, a.Attempt)
	}
	return out
}
