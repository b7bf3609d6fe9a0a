package dedupe_test

import (
	"context"
	"errors"
	"maps"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idem-dev/idem/dedupe"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Defect 3 of issue 16: a record whose handler kept failing was retried
// every second, forever, holding up its partition. With a retry policy and
// a dead-letter topic it is retried a bounded number of times with backoff,
// then dead-lettered, and the partition moves on.
func TestConsumerDeadLettersARecordThatKeepsFailing(t *testing.T) {
	b := startBroker(t, "poison-sqlite", "poison-postgres", "poison-sqlite-dlq", "poison-postgres-dlq")
	eachStore(t, dedupe.Config{}, func(t *testing.T, s *storeUnderTest) {
		topic, group, dlq := "poison-"+s.name, "billing-"+s.name, "poison-"+s.name+"-dlq"
		events := ids("pay", 10)
		producePayments(t, b.Client(t), topic, events...)
		var mu sync.Mutex
		attempts := map[string][]time.Time{}
		hook := func(r *kgo.Record) error {
			id := dedupe.EventID(r, dedupe.DefaultKeyHeader)
			mu.Lock()
			defer mu.Unlock()
			attempts[id] = append(attempts[id], time.Now())
			switch id {
			case "pay-3":
				return errors.New("gateway down")
			case "pay-6":
				return dedupe.Permanent(errors.New("card declined"))
			}
			return nil
		}
		outcomes := map[string]int{}
		onEvent := func(e dedupe.Event) {
			mu.Lock()
			defer mu.Unlock()
			outcomes[e.Outcome.String()]++
			if e.Group != group || (e.Outcome != dedupe.OutcomeDeadLetterProduced && e.Topic != topic) {
				t.Errorf("event %+v", e)
			}
		}
		c := startConsumerOpts(t, s, b.Addr(), group, topic, consumerOpts{hook: hook, onEvent: onEvent,
			retry:           dedupe.RetryPolicy{MaxAttempts: 4, InitialBackoff: 40 * time.Millisecond, MaxBackoff: time.Second},
			deadLetterTopic: dlq})
		c.waitSettled(t, 10)
		c.stop()

		for _, id := range events {
			want := 1
			if id == "pay-3" || id == "pay-6" {
				want = 0
			}
			if n := s.effects(t, id); n != want {
				t.Errorf("%s applied %d times, want %d", id, n, want)
			}
		}
		mu.Lock()
		if n := len(attempts["pay-3"]); n != 4 {
			t.Errorf("pay-3 attempted %d times, want MaxAttempts 4", n)
		}
		if n := len(attempts["pay-6"]); n != 1 {
			t.Errorf("permanently failing pay-6 attempted %d times, want 1", n)
		}
		// Backoff: each pause at least half the nominal one (jitter), growing.
		at := attempts["pay-3"]
		for i := 1; i < len(at); i++ {
			nominal := 40 * time.Millisecond << (i - 1)
			if gap := at[i].Sub(at[i-1]); gap < nominal/2 {
				t.Errorf("retry %d came %s after the previous attempt, want at least %s", i, gap, nominal/2)
			}
		}
		mu.Unlock()
		for id, outcome := range map[string]string{"pay-3": "dead-lettered: gateway down", "pay-6": "dead-lettered: card declined"} {
			rec, err := s.lookup(context.Background(), id)
			if err != nil || rec.Outcome != outcome {
				t.Errorf("%s audit %+v %v; want outcome %q", id, rec, err, outcome)
			}
		}
		if got := s.committedRecords(t, group); got != 10 {
			t.Errorf("database offsets cover %d records, want 10", got)
		}

		mu.Lock()
		want := map[string]int{"processed": 8, "retried": 3, "dead_lettered": 2, "dead_letter_produced": 2}
		if !maps.Equal(outcomes, want) {
			t.Errorf("OnEvent outcomes %v, want %v", outcomes, want)
		}
		mu.Unlock()
		dead := consumeAll(t, b.Client(t), dlq, 2)
		wantDL := map[string][2]string{"pay-3": {"4", "gateway down"}, "pay-6": {"1", "card declined"}}
		for _, r := range dead {
			h := headers(r)
			id := h[dedupe.DefaultKeyHeader]
			w, ok := wantDL[id]
			if !ok {
				t.Errorf("unexpected dead letter %q %v", id, h)
				continue
			}
			delete(wantDL, id)
			if string(r.Value) != "charge "+id || string(r.Key) != id {
				t.Errorf("%s: dead letter key %q value %q, want the original record", id, r.Key, r.Value)
			}
			if h[dedupe.HeaderDLQTopic] != topic || h[dedupe.HeaderDLQGroup] != group || h[dedupe.HeaderDLQAttempts] != w[0] || h[dedupe.HeaderDLQError] != w[1] {
				t.Errorf("%s: dead-letter headers %v", id, h)
			}
			if _, err := strconv.ParseInt(h[dedupe.HeaderDLQOffset], 10, 64); err != nil || h[dedupe.HeaderDLQPartition] == "" {
				t.Errorf("%s: dead letter names no source offset: %v", id, h)
			}
		}
		if len(wantDL) > 0 {
			t.Errorf("missing dead letters: %v", wantDL)
		}
	})
}

func headers(r *kgo.Record) map[string]string {
	h := map[string]string{}
	for _, kv := range r.Headers {
		h[kv.Key] = string(kv.Value)
	}
	return h
}

// consumeAll reads topic from the start until it has at least n records,
// then a moment more to catch any extra copies.
func consumeAll(t *testing.T, cl *kgo.Client, topic string, n int) []*kgo.Record {
	t.Helper()
	c, err := kgo.NewClient(kgo.SeedBrokers(seedOf(cl)...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var extra <-chan time.Time
	for {
		pctx, pcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		fs := c.PollFetches(pctx)
		pcancel()
		out = append(out, fs.Records()...)
		if len(out) >= n && extra == nil {
			extra = time.After(time.Second)
		}
		select {
		case <-extra:
			return out
		default:
		}
		if ctx.Err() != nil {
			t.Fatalf("%s: %d records within 30s, want %d", topic, len(out), n)
		}
	}
}

func seedOf(cl *kgo.Client) []string {
	var seeds []string
	for _, v := range cl.OptValue(kgo.SeedBrokers).([]string) {
		seeds = append(seeds, strings.TrimSpace(v))
	}
	return seeds
}
