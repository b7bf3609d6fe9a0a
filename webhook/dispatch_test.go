package webhook_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/webhook"
)

func TestDeliversEachEventToEverySubscribedEndpoint(t *testing.T) {
	eachStore(t, func(t *testing.T, kind string) {
		r := newRig(t, kind)
		s := newSink(t)
		all := r.addEndpoint(webhook.EndpointSpec{ID: "all", URL: s.url("all", "", nil)})
		secretA := webhook.NewSecret()
		r.addEndpoint(webhook.EndpointSpec{ID: "only-a", URL: s.url("only-a", secretA, nil), Secret: secretA, EventTypes: []string{"a"}})
		onlyB := r.addEndpoint(webhook.EndpointSpec{ID: "only-b", URL: s.url("only-b", "", nil), EventTypes: []string{"b", "c"}})
		s.url("all", all.Secrets[0].Key, nil) // now that their secrets are known
		s.url("only-b", onlyB.Secrets[0].Key, nil)

		var events []event
		for i := range 20 {
			typ := "a"
			if i%2 == 1 {
				typ = "b"
			}
			events = append(events, event{typ: typ, n: i, idemKey: "evt-" + strconv.Itoa(i)})
		}
		r.produce(events...)
		r.produce(events[:5]...) // the same idempotency keys again: delivered once per endpoint
		testkit.Eventually(t, 30*time.Second, "every event at every subscribed endpoint", func() bool {
			return len(s.succeeded("all")) >= 20 && len(s.succeeded("only-a")) >= 10 && len(s.succeeded("only-b")) >= 10
		})
		// Quiet for a moment: nothing more may arrive.
		time.Sleep(300 * time.Millisecond)
		for name, want := range map[string]int{"all": 20, "only-a": 10, "only-b": 10} {
			got := s.receipts(name)
			if len(got) != want || len(distinct(s.succeeded(name))) != want {
				t.Errorf("%s received %d requests (%d distinct ids), want %d", name, len(got), len(distinct(s.succeeded(name))), want)
			}
			for _, g := range got {
				if !g.verified {
					t.Errorf("%s: request %s does not verify (signature %q)", name, g.id, g.sigHeader)
				}
				if name == "only-a" && g.typ != "a" || name == "only-b" && g.typ != "b" {
					t.Errorf("%s received an event of type %s", name, g.typ)
				}
				if g.id != "evt-"+strconv.Itoa(g.n) {
					t.Errorf("webhook-id %s, want the idempotency key evt-%d", g.id, g.n)
				}
			}
		}
		testkit.Eventually(t, 10*time.Second, "every delivery recorded as succeeded", func() bool {
			return len(r.deliveries(webhook.DeliveryFilter{Status: webhook.StatusSucceeded})) == 40
		})
		atts, err := r.store.Attempts(context.Background(), webhook.AttemptFilter{EndpointID: "only-a"})
		if err != nil || len(atts) != 10 || atts[0].StatusCode != 200 || atts[0].Outcome != webhook.OutcomeSucceeded || atts[0].Response != `{"answer":200}` {
			t.Fatalf("attempt log of only-a: %v %+v", err, atts)
		}
	})
}

func TestWebhookIDWithoutAnIdempotencyKeyIsStableAndValid(t *testing.T) {
	r := newRig(t, "sqlite", func(r *rig) { r.topic = "orders.v1" })
	s := newSink(t)
	e := r.addEndpoint(webhook.EndpointSpec{ID: "ep", URL: s.url("ep", "", nil)})
	s.url("ep", e.Secrets[0].Key, nil)
	s.respond = func(rc receipt, n int) (int, http.Header, time.Duration) {
		if n == 0 {
			return 500, nil, 0 // the retry must carry the same id
		}
		return 200, nil, 0
	}
	r.produce(event{typ: "x"}, event{typ: "y"})
	testkit.Eventually(t, 30*time.Second, "both events delivered after a retry", func() bool { return len(s.succeeded("ep")) == 2 })
	got := s.receipts("ep")
	ids := distinct(nil)
	for _, g := range got {
		ids = append(ids, g.id)
		if !g.verified {
			t.Errorf("request %s does not verify", g.id)
		}
	}
	if d := distinct(ids); len(got) != 4 || len(d) != 2 {
		t.Fatalf("%d requests with ids %v; want 4 requests of 2 ids (topic with '.', hashed)", len(got), ids)
	}
}

// TestFollowsTheDefaultScheduleOnAFakeClock walks the whole default
// schedule (27.6 hours) on a fake clock: each retry comes only when its
// pause has passed, never before, and after the eighth attempt the
// delivery is dead-lettered, listable and replayable.
func TestFollowsTheDefaultScheduleOnAFakeClock(t *testing.T) {
	eachStore(t, func(t *testing.T, kind string) {
		r := newRig(t, kind, withFakeClock())
		s := newSink(t)
		e := r.addEndpoint(webhook.EndpointSpec{ID: "down", URL: s.url("down", "", nil)})
		s.url("down", e.Secrets[0].Key, r.clock.Now)
		s.respond = func(receipt, int) (int, http.Header, time.Duration) { return 503, nil, 0 }
		r.produce(event{typ: "a", idemKey: "evt-1"})
		testkit.Eventually(t, 20*time.Second, "the immediate first attempt", func() bool { return len(s.receipts("down")) == 1 })
		for i, pause := range webhook.DefaultRetries {
			waitRecorded(t, r, i+1)
			r.clock.Advance(pause - time.Second)
			time.Sleep(100 * time.Millisecond) // several polls
			if n := len(s.receipts("down")); n != i+1 {
				t.Fatalf("attempt %d came %v early", n, time.Second)
			}
			r.clock.Advance(time.Second)
			testkit.Eventually(t, 10*time.Second, fmt.Sprintf("attempt %d after %v", i+2, pause), func() bool { return len(s.receipts("down")) == i+2 })
		}
		for _, g := range s.receipts("down") {
			if !g.verified {
				t.Errorf("attempt signed at %s does not verify", g.signedAt)
			}
		}
		testkit.Eventually(t, 10*time.Second, "the delivery dead-lettered", func() bool {
			return len(r.deliveries(webhook.DeliveryFilter{Status: webhook.StatusDead, EndpointID: "down"})) == 1
		})
		r.clock.Advance(48 * time.Hour)
		time.Sleep(100 * time.Millisecond)
		if n := len(s.receipts("down")); n != 8 {
			t.Fatalf("%d attempts, want 8 (1 + 7 retries) and none after", n)
		}
		atts, _ := r.store.Attempts(context.Background(), webhook.AttemptFilter{EndpointID: "down", Limit: 100})
		if len(atts) != 8 || atts[0].Outcome != webhook.OutcomeDead || atts[0].StatusCode != 503 || atts[1].Outcome != webhook.OutcomeFailed {
			t.Fatalf("attempt log: %+v", atts)
		}
		// Replay all dead-lettered deliveries of the endpoint: from the
		// first attempt again, same webhook-id.
		s.respond = nil
		n, err := r.store.Replay(context.Background(), webhook.Replay{EndpointID: "down", DeadOnly: true}, r.clock.Now())
		if err != nil || n != 1 {
			t.Fatalf("replay: %d, %v", n, err)
		}
		testkit.Eventually(t, 10*time.Second, "the replayed delivery", func() bool { return len(s.succeeded("down")) == 1 })
		if got := s.succeeded("down"); got[0] != "evt-1" {
			t.Fatalf("replayed with id %s", got[0])
		}
	})
}

// waitRecorded waits until the delivery's attempts are stored (the next
// one is scheduled from the stored result).
func waitRecorded(t *testing.T, r *rig, attempts int) {
	t.Helper()
	testkit.Eventually(t, 10*time.Second, fmt.Sprintf("attempt %d recorded", attempts), func() bool {
		ds := r.deliveries(webhook.DeliveryFilter{})
		return len(ds) == 1 && ds[0].Attempts == attempts
	})
}

func TestShortScheduleInRealTime(t *testing.T) {
	r := newRig(t, "sqlite", withConfig(func(c *webhook.Config) {
		c.Retries = []time.Duration{300 * time.Millisecond, 600 * time.Millisecond}
		c.Jitter = 0.1
	}))
	s := newSink(t)
	e := r.addEndpoint(webhook.EndpointSpec{ID: "ep", URL: s.url("ep", "", nil)})
	s.url("ep", e.Secrets[0].Key, nil)
	s.respond = func(receipt, int) (int, http.Header, time.Duration) { return 500, nil, 0 }
	r.produce(event{typ: "a"})
	testkit.Eventually(t, 20*time.Second, "three attempts", func() bool { return len(s.receipts("ep")) == 3 })
	got := s.receipts("ep")
	for i, pause := range []time.Duration{300 * time.Millisecond, 600 * time.Millisecond} {
		gap := got[i+1].at.Sub(got[i].at)
		if gap < pause || gap > pause+pause/10+time.Second {
			t.Errorf("pause before retry %d: %v, want %v + up to 10%% jitter (+ polling)", i+1, gap, pause)
		}
	}
	testkit.Eventually(t, 10*time.Second, "dead-lettered", func() bool {
		return len(r.deliveries(webhook.DeliveryFilter{Status: webhook.StatusDead})) == 1
	})
}

func TestRetryAfterIsHonoured(t *testing.T) {
	eachStore(t, func(t *testing.T, kind string) {
		r := newRig(t, kind, withFakeClock(), withConfig(func(c *webhook.Config) { c.Retries = []time.Duration{time.Second, time.Second} }))
		s := newSink(t)
		e := r.addEndpoint(webhook.EndpointSpec{ID: "busy", URL: s.url("busy", "", nil)})
		s.url("busy", e.Secrets[0].Key, r.clock.Now)
		s.respond = func(_ receipt, n int) (int, http.Header, time.Duration) {
			switch n {
			case 0:
				return 429, http.Header{"Retry-After": {"120"}}, 0
			case 1:
				return 503, http.Header{"Retry-After": {r.clock.Now().Add(time.Hour).UTC().Format(http.TimeFormat)}}, 0
			}
			return 200, nil, 0
		}
		r.produce(event{typ: "a"})
		testkit.Eventually(t, 20*time.Second, "first attempt", func() bool { return len(s.receipts("busy")) == 1 })
		waitRecorded(t, r, 1)
		r.clock.Advance(119 * time.Second)
		time.Sleep(100 * time.Millisecond)
		if len(s.receipts("busy")) != 1 {
			t.Fatal("retried before Retry-After: 120")
		}
		r.clock.Advance(time.Second)
		testkit.Eventually(t, 10*time.Second, "retry after 120s", func() bool { return len(s.receipts("busy")) == 2 })
		waitRecorded(t, r, 2)
		r.clock.Advance(59 * time.Minute)
		time.Sleep(100 * time.Millisecond)
		if len(s.receipts("busy")) != 2 {
			t.Fatal("retried before the Retry-After date")
		}
		r.clock.Advance(time.Minute + time.Second)
		testkit.Eventually(t, 10*time.Second, "retry after the date", func() bool { return len(s.succeeded("busy")) == 1 })
	})
}

func TestGoneDisablesTheEndpointAndItsEventsWaitForIt(t *testing.T) {
	eachStore(t, func(t *testing.T, kind string) {
		r := newRig(t, kind)
		s := newSink(t)
		e := r.addEndpoint(webhook.EndpointSpec{ID: "gone", URL: s.url("gone", "", nil)})
		s.url("gone", e.Secrets[0].Key, nil)
		var mu sync.Mutex
		status := 410
		s.respond = func(receipt, int) (int, http.Header, time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			return status, nil, 0
		}
		r.produce(event{typ: "a", n: 0})
		testkit.Eventually(t, 20*time.Second, "the endpoint disabled by its 410", func() bool {
			ep, err := r.store.Endpoint(context.Background(), "gone")
			return err == nil && !ep.Enabled && ep.DisabledReason == "410 Gone"
		})
		var more []event
		for i := 1; i <= 5; i++ {
			more = append(more, event{typ: "a", n: i})
		}
		r.produce(more...)
		testkit.Eventually(t, 20*time.Second, "the new events accumulated for the disabled endpoint", func() bool {
			return len(r.deliveries(webhook.DeliveryFilter{EndpointID: "gone", Status: webhook.StatusPending})) == 6
		})
		time.Sleep(200 * time.Millisecond)
		if n := len(s.receipts("gone")); n != 1 {
			t.Fatalf("a disabled endpoint received %d requests", n)
		}
		mu.Lock()
		status = 200
		mu.Unlock()
		if err := r.store.SetEnabled(context.Background(), "gone", true, ""); err != nil {
			t.Fatal(err)
		}
		// The first event waits for its scheduled retry (5 s by default);
		// replaying it makes it due now.
		if _, err := r.store.Replay(context.Background(), webhook.Replay{EndpointID: "gone", Since: time.Time{}.Add(1)}, time.Now()); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 20*time.Second, "all six delivered once enabled", func() bool { return len(distinct(s.succeeded("gone"))) == 6 })
	})
}

func TestAnEndpointFailingForTheDisablePeriodIsDisabled(t *testing.T) {
	r := newRig(t, "postgres", withFakeClock(), withConfig(func(c *webhook.Config) {
		c.DisableAfter = 2 * time.Hour
		c.Retries = []time.Duration{time.Hour, time.Hour, time.Hour, time.Hour}
	}))
	s := newSink(t)
	e := r.addEndpoint(webhook.EndpointSpec{ID: "flaky", URL: s.url("flaky", "", nil)})
	s.url("flaky", e.Secrets[0].Key, r.clock.Now)
	s.respond = func(receipt, int) (int, http.Header, time.Duration) { return 500, nil, 0 }
	r.produce(event{typ: "a"})
	for i := 1; i <= 2; i++ { // failures at 0 h and 1 h: not yet failing for 2 h
		waitRecorded(t, r, i)
		ep, _ := r.store.Endpoint(context.Background(), "flaky")
		if !ep.Enabled {
			t.Fatalf("disabled after %d hours of failures, before the 2 h period", i-1)
		}
		r.clock.Advance(time.Hour)
	}
	waitRecorded(t, r, 3)
	testkit.Eventually(t, 10*time.Second, "disabled after failing for 2 h", func() bool {
		ep, _ := r.store.Endpoint(context.Background(), "flaky")
		return !ep.Enabled && ep.DisabledReason != ""
	})
}

// TestOrderedEndpointDeliversEachKeyInOrderUnderFailures: with failures and
// slow answers, each key's events still arrive in order, one at a time,
// while different keys proceed in parallel.
func TestOrderedEndpointDeliversEachKeyInOrderUnderFailures(t *testing.T) {
	eachStore(t, func(t *testing.T, kind string) {
		r := newRig(t, kind, withConfig(func(c *webhook.Config) {
			c.Retries = []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond, 80 * time.Millisecond, 80 * time.Millisecond}
		}))
		s := newSink(t)
		e := r.addEndpoint(webhook.EndpointSpec{ID: "fifo", URL: s.url("fifo", "", nil), Ordered: true})
		s.url("fifo", e.Secrets[0].Key, nil)
		var mu sync.Mutex
		inFlight, maxInFlight := map[string]int{}, 0
		total := 0
		s.respond = func(rc receipt, n int) (int, http.Header, time.Duration) {
			mu.Lock()
			inFlight[rc.key]++
			total++
			if inFlight[rc.key] > 1 {
				t.Errorf("key %s: two requests in flight at once", rc.key)
			}
			busy := 0
			for _, v := range inFlight {
				busy += v
			}
			maxInFlight = max(maxInFlight, busy)
			fail := (rc.n*7+n*3)%4 == 0 && n < 3 // about a quarter fail, at most 3 times each
			mu.Unlock()
			time.Sleep(time.Duration(rc.n%3) * 5 * time.Millisecond)
			mu.Lock()
			inFlight[rc.key]--
			mu.Unlock()
			if fail {
				return 500, nil, 0
			}
			return 200, nil, 0
		}
		const keys, perKey = 6, 12
		var events []event
		for i := range perKey {
			for k := range keys {
				events = append(events, event{typ: "a", key: "k" + strconv.Itoa(k), n: i, idemKey: fmt.Sprintf("k%d-%02d", k, i)})
			}
		}
		r.produce(events...)
		testkit.Eventually(t, 60*time.Second, "every event delivered", func() bool { return len(distinct(s.succeeded("fifo"))) == keys*perKey })
		last := map[string]int{}
		for _, g := range s.receipts("fifo") {
			if g.status != 200 {
				continue
			}
			if prev, ok := last[g.key]; ok && g.n != prev+1 {
				t.Errorf("key %s: event %d succeeded after event %d", g.key, g.n, prev)
			} else if !ok && g.n != 0 {
				t.Errorf("key %s: event %d succeeded first", g.key, g.n)
			}
			last[g.key] = g.n
		}
		mu.Lock()
		defer mu.Unlock()
		if maxInFlight < 2 {
			t.Errorf("at most %d request in flight: keys did not proceed in parallel", maxInFlight)
		}
		t.Logf("%d requests for %d events, up to %d keys in flight at once", total, keys*perKey, maxInFlight)
	})
}

func TestEndpointLimits(t *testing.T) {
	r := newRig(t, "sqlite")
	s := newSink(t)
	e := r.addEndpoint(webhook.EndpointSpec{ID: "narrow", URL: s.url("narrow", "", nil), MaxInFlight: 2})
	s.url("narrow", e.Secrets[0].Key, nil)
	e2 := r.addEndpoint(webhook.EndpointSpec{ID: "slow", URL: s.url("slow", "", nil), RateLimit: 20})
	s.url("slow", e2.Secrets[0].Key, nil)
	var mu sync.Mutex
	busy, maxBusy := 0, 0
	s.respond = func(rc receipt, _ int) (int, http.Header, time.Duration) {
		if rc.endpoint != "narrow" {
			return 200, nil, 0
		}
		mu.Lock()
		busy++
		maxBusy = max(maxBusy, busy)
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		busy--
		mu.Unlock()
		return 200, nil, 0
	}
	var events []event
	for i := range 40 {
		events = append(events, event{typ: "a", n: i})
	}
	start := time.Now()
	r.produce(events...)
	testkit.Eventually(t, 30*time.Second, "all delivered", func() bool {
		return len(s.succeeded("narrow")) == 40 && len(s.succeeded("slow")) == 40
	})
	got := s.receipts("slow")
	span := got[len(got)-1].at.Sub(got[0].at)
	mu.Lock()
	defer mu.Unlock()
	if maxBusy > 2 {
		t.Errorf("%d requests in flight at once, limit 2", maxBusy)
	}
	if span < 1500*time.Millisecond {
		t.Errorf("40 requests at 20/s took %v (want about 2s)", span)
	}
	t.Logf("narrow: at most %d in flight; slow: 40 requests in %v; total %v", maxBusy, span, time.Since(start))
}

// TestAFailingEndpointDoesNotSlowTheOthers: one endpoint times out on every
// request; the healthy endpoint's deliveries arrive as fast as without it.
func TestAFailingEndpointDoesNotSlowTheOthers(t *testing.T) {
	r := newRig(t, "sqlite", withConfig(func(c *webhook.Config) { c.RequestTimeout = time.Second; c.Retries = []time.Duration{time.Second} }))
	s := newSink(t)
	for _, name := range []string{"healthy", "hanging"} {
		e := r.addEndpoint(webhook.EndpointSpec{ID: name, URL: s.url(name, "", nil)})
		s.url(name, e.Secrets[0].Key, nil)
	}
	s.respond = func(rc receipt, _ int) (int, http.Header, time.Duration) {
		if rc.endpoint == "hanging" {
			return 200, nil, 10 * time.Second // longer than the timeout
		}
		return 200, nil, 0
	}
	var events []event
	for i := range 200 {
		events = append(events, event{typ: "a", n: i})
	}
	start := time.Now()
	r.produce(events...)
	testkit.Eventually(t, 20*time.Second, "healthy endpoint served", func() bool { return len(s.succeeded("healthy")) == 200 })
	took := time.Since(start)
	if took > 5*time.Second {
		t.Errorf("the healthy endpoint took %v for 200 events next to a hanging one", took)
	}
	t.Logf("healthy endpoint: 200 events in %v while the other timed out", took)
	atts, _ := r.store.Attempts(context.Background(), webhook.AttemptFilter{EndpointID: "hanging", Limit: 1})
	testkit.Eventually(t, 10*time.Second, "timeouts logged", func() bool {
		atts, _ = r.store.Attempts(context.Background(), webhook.AttemptFilter{EndpointID: "hanging", Limit: 1})
		return len(atts) == 1
	})
	if !slices.Contains([]string{"timeout: no answer within 1s"}, atts[0].Error) {
		t.Errorf("hanging endpoint's attempt: %+v", atts[0])
	}
}

func TestCleanupDeletesSucceededDeliveriesPastRetentionOnly(t *testing.T) {
	eachStore(t, func(t *testing.T, kind string) {
		r := newRig(t, kind, withFakeClock(), withConfig(func(c *webhook.Config) { c.Retries = []time.Duration{} }))
		s := newSink(t)
		s.respond = func(rc receipt, _ int) (int, http.Header, time.Duration) {
			if rc.endpoint == "down" {
				return 500, nil, 0
			}
			return 200, nil, 0
		}
		r.addEndpoint(webhook.EndpointSpec{ID: "up", URL: s.url("up", "", nil)})
		r.addEndpoint(webhook.EndpointSpec{ID: "down", URL: s.url("down", "", nil)})
		r.produce(event{typ: "a", idemKey: "m1"}, event{typ: "a", idemKey: "m2"})
		testkit.Eventually(t, 20*time.Second, "two succeeded, two dead", func() bool {
			return len(r.deliveries(webhook.DeliveryFilter{Status: webhook.StatusSucceeded})) == 2 &&
				len(r.deliveries(webhook.DeliveryFilter{Status: webhook.StatusDead})) == 2
		})
		ctx := context.Background()
		if n, err := r.store.Cleanup(ctx, r.clock.Now().Add(-time.Hour), 1); err != nil || n != 0 {
			t.Fatalf("cleanup of what is younger than an hour: %d, %v", n, err)
		}
		if n, err := r.store.Cleanup(ctx, r.clock.Now().Add(time.Hour), 1); err != nil || n != 2 {
			t.Fatalf("cleanup: %d, %v; want the 2 succeeded deliveries, one per transaction", n, err)
		}
		if ds := r.deliveries(webhook.DeliveryFilter{}); len(ds) != 2 || ds[0].Status != webhook.StatusDead {
			t.Fatalf("left: %+v", ds)
		}
		if atts, _ := r.store.Attempts(ctx, webhook.AttemptFilter{}); len(atts) != 2 || atts[0].EndpointID != "down" {
			t.Fatalf("attempts left: %+v", atts)
		}
		// The dead letters' messages are still there: replay works.
		if n, err := r.store.Replay(ctx, webhook.Replay{MessageID: "m1"}, r.clock.Now()); err != nil || n != 1 {
			t.Fatalf("replay after cleanup: %d, %v", n, err)
		}
		testkit.Eventually(t, 20*time.Second, "replayed after cleanup", func() bool { return len(s.receipts("down")) == 3 })
	})
}

// TestAnEndpointWithAnEd25519KeyGetsV1aSignatures: an endpoint added with a
// whsk_ private key is signed v1a, which its receiver verifies with the
// whpk_ public key alone.
func TestAnEndpointWithAnEd25519KeyGetsV1aSignatures(t *testing.T) {
	r := newRig(t, "sqlite")
	s := newSink(t)
	priv, pub := webhook.NewSigningKey()
	r.addEndpoint(webhook.EndpointSpec{ID: "asym", URL: s.url("asym", pub, nil), Secret: priv})
	r.produce(event{typ: "a", idemKey: "evt-v1a"})
	testkit.Eventually(t, 20*time.Second, "the delivery", func() bool { return len(s.receipts("asym")) == 1 })
	rc := s.receipts("asym")[0]
	if !rc.verified || !strings.HasPrefix(rc.sigHeader, "v1a,") {
		t.Fatalf("verified %v with signature %q", rc.verified, rc.sigHeader)
	}
}
