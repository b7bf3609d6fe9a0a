package api_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/testkit/brokerkit"
)

// Incremental fetch sessions (KIP-227), driven by hand-built Fetch requests
// over a real connection, so each rule of the protocol is checked on the
// wire rather than through a client that hides it.

// at names a partition and the offset to fetch it from.
type at struct {
	topic     string
	partition int32
	offset    int64
}

// sessionFetch builds a Fetch for session id at epoch naming parts,
// waiting up to maxWait for one byte.
func sessionFetch(id, epoch int32, maxWait time.Duration, parts ...at) *kmsg.FetchRequest {
	req := kmsg.NewPtrFetchRequest()
	req.SessionID, req.SessionEpoch = id, epoch
	req.MaxWaitMillis = int32(maxWait / time.Millisecond)
	req.MinBytes = 1
	for _, p := range parts {
		if len(req.Topics) == 0 || req.Topics[len(req.Topics)-1].Topic != p.topic {
			t := kmsg.NewFetchRequestTopic()
			t.Topic = p.topic
			req.Topics = append(req.Topics, t)
		}
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = p.partition, p.offset, 1<<20
		t := &req.Topics[len(req.Topics)-1]
		t.Partitions = append(t.Partitions, rp)
	}
	return req
}

// forget adds topic/partition to the request's ForgottenTopics.
func forget(req *kmsg.FetchRequest, topic string, partition int32) *kmsg.FetchRequest {
	ft := kmsg.NewFetchRequestForgottenTopic()
	ft.Topic, ft.Partitions = topic, []int32{partition}
	req.ForgottenTopics = append(req.ForgottenTopics, ft)
	return req
}

// fetcher sends Fetch requests on one client's connection to the broker.
type fetcher struct {
	t  *testing.T
	br *kgo.Broker
}

func newFetcher(t *testing.T, cl *kgo.Client) fetcher {
	return fetcher{t, cl.SeedBrokers()[0]}
}

func (f fetcher) do(req *kmsg.FetchRequest) *kmsg.FetchResponse {
	f.t.Helper()
	resp, err := req.RequestWith(testkit.Context(f.t, 30*time.Second), f.br)
	if err != nil {
		f.t.Fatalf("fetch: %v", err)
	}
	return resp
}

// answered lists the partitions of an answer as "topic/partition" with
// their error (if any) and record count, in the answer's order.
func answered(resp *kmsg.FetchResponse) []string {
	var out []string
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			s := fmt.Sprintf("%s/%d", t.Topic, p.Partition)
			if p.ErrorCode != 0 {
				s += " " + kerr.ErrorForCode(p.ErrorCode).(*kerr.Error).Message
			}
			if n := records(p.RecordBatches); n > 0 {
				s += fmt.Sprintf(" %d records", n)
			}
			out = append(out, s)
		}
	}
	return out
}

// records counts the records of the batches in data.
func records(data []byte) int {
	n := 0
	for len(data) > 0 {
		var b kmsg.RecordBatch
		if err := b.ReadFrom(data); err != nil {
			break
		}
		n += int(b.NumRecords)
		data = data[12+b.Length:]
	}
	return n
}

func want(t *testing.T, what string, resp *kmsg.FetchResponse, code int16, parts ...string) {
	t.Helper()
	got := answered(resp)
	if resp.ErrorCode != code || !slices.Equal(got, parts) {
		t.Fatalf("%s: answered error %d %v, want error %d %v", what, resp.ErrorCode, got, code, parts)
	}
}

func produceTo(t *testing.T, cl *kgo.Client, topic string, partition int32, values ...string) {
	t.Helper()
	var rs []*kgo.Record
	for _, v := range values {
		rs = append(rs, &kgo.Record{Topic: topic, Partition: partition, Value: []byte(v)})
	}
	if err := cl.ProduceSync(testkit.Context(t, 30*time.Second), rs...).FirstErr(); err != nil {
		t.Fatalf("produce to %s/%d: %v", topic, partition, err)
	}
}

func sessionBroker(t *testing.T, opts ...broker.Option) (*brokertest.Broker, *kgo.Client) {
	t.Helper()
	b := brokertest.Run(t, opts...)
	cl := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	return b, cl
}

// sessionEvents reads idem_fetch_session_events_total{event}.
func sessionEvents(t *testing.T, b *brokertest.Broker, event string) float64 {
	t.Helper()
	v, _, ok := b.Metric(t, "idem_fetch_session_events_total", "event", event)
	if !ok {
		t.Fatalf("no idem_fetch_session_events_total{event=%q}", event)
	}
	return v
}

func TestFetchSessionOpensAnswersOnlyNewsForgetsAndCloses(t *testing.T) {
	_, cl := sessionBroker(t)
	adm := kadm.NewClient(cl)
	createTopic(t, adm, "a", 3, nil)
	createTopic(t, adm, "b", 1, nil)
	produceTo(t, cl, "a", 0, "a0-first")
	f := newFetcher(t, cl)

	// A full fetch at epoch 0 opens a session and answers every partition.
	resp := f.do(sessionFetch(0, 0, 0, at{"a", 0, 0}, at{"a", 1, 0}, at{"a", 2, 0}, at{"b", 0, 0}))
	id := resp.SessionID
	if id == 0 {
		t.Fatal("a full fetch at epoch 0 got SessionID 0: no session opened")
	}
	want(t, "initial full fetch", resp, 0, "a/0 1 records", "a/1", "a/2", "b/0")

	// Incremental, nothing new: the long poll waits its MaxWait, then
	// answers no partition at all (not four empty ones).
	start := time.Now()
	resp = f.do(sessionFetch(id, 1, 300*time.Millisecond, at{"a", 0, 1}))
	if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Errorf("an incremental fetch with nothing new answered after %v, before its MaxWait", waited)
	}
	want(t, "incremental, nothing new", resp, 0)
	if resp.SessionID != id {
		t.Fatalf("incremental answer names session %d, want %d", resp.SessionID, id)
	}

	// A record for a partition the request does not name (the session
	// carries it) wakes the long poll, and only that partition answers.
	done := make(chan *kmsg.FetchResponse, 1)
	go func() { done <- f.do(sessionFetch(id, 2, 20*time.Second)) }()
	produceTo(t, cl, "a", 2, "a2-first")
	select {
	case resp = <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("a record for a session partition did not wake the incremental long poll")
	}
	want(t, "incremental after a produce to a/2", resp, 0, "a/2 1 records")
	if p := resp.Topics[0].Partitions[0]; p.HighWatermark != 1 {
		t.Fatalf("a/2 high watermark %d, want 1", p.HighWatermark)
	}

	// b/0 is forgotten: a record there is neither answered nor waited for.
	resp = f.do(forget(sessionFetch(id, 3, 0, at{"a", 2, 1}), "b", 0))
	want(t, "forgetting b/0", resp, 0)
	produceTo(t, cl, "b", 0, "b0-first")
	resp = f.do(sessionFetch(id, 4, 200*time.Millisecond))
	want(t, "after a produce to the forgotten b/0", resp, 0)

	// The epoch each request must carry moves on by one per fetch; a
	// repeated one is refused with no partitions.
	want(t, "a repeated epoch", f.do(sessionFetch(id, 4, 0)), kerr.InvalidFetchSessionEpoch.Code)
	want(t, "an epoch ahead", f.do(sessionFetch(id, 9, 0)), kerr.InvalidFetchSessionEpoch.Code)
	want(t, "an unknown session", f.do(sessionFetch(id+1, 1, 0)), kerr.FetchSessionIDNotFound.Code)
	want(t, "the expected epoch still works", f.do(sessionFetch(id, 5, 0)), 0)

	// Epoch -1 closes the session and is served as a sessionless full
	// fetch of what it names.
	resp = f.do(sessionFetch(id, -1, 0, at{"b", 0, 0}))
	want(t, "closing fetch", resp, 0, "b/0 1 records")
	if resp.SessionID != 0 {
		t.Fatalf("closing fetch answered SessionID %d, want 0", resp.SessionID)
	}
	want(t, "the closed session", f.do(sessionFetch(id, 6, 0)), kerr.FetchSessionIDNotFound.Code)
}

func TestFetchSessionAnswersAHighWatermarkChangeWithoutRecordsAndAnErrorEachTime(t *testing.T) {
	_, cl := sessionBroker(t)
	adm := kadm.NewClient(cl)
	createTopic(t, adm, "hw", 2, nil)
	f := newFetcher(t, cl)
	id := f.do(sessionFetch(0, 0, 0, at{"hw", 0, 0}, at{"hw", 1, 5})).SessionID
	// hw/1 asks from offset 5, past the log end: OFFSET_OUT_OF_RANGE,
	// answered in every fetch while the session has it (Kafka's rule:
	// errors are always included).
	for epoch := int32(1); epoch <= 2; epoch++ {
		want(t, fmt.Sprintf("epoch %d", epoch), f.do(sessionFetch(id, epoch, 0)), 0, "hw/1 "+kerr.OffsetOutOfRange.Message)
	}
	// Fixed: answered once more (its remembered high watermark was reset
	// by the error), then no more.
	want(t, "offset fixed", f.do(sessionFetch(id, 3, 0, at{"hw", 1, 0})), 0, "hw/1")
	want(t, "nothing new", f.do(sessionFetch(id, 4, 0)), 0)
	// hw/0's high watermark moves on: answered even to a consumer that
	// has no records to get (it asks from the new end already).
	produceTo(t, cl, "hw", 0, "x")
	want(t, "high watermark advanced", f.do(sessionFetch(id, 5, 0, at{"hw", 0, 1})), 0, "hw/0")
	want(t, "and then not again", f.do(sessionFetch(id, 6, 0)), 0)
}

func TestFetchSessionCacheSlotsAndEviction(t *testing.T) {
	t.Run("full cache, nothing evictable: sessionless", func(t *testing.T) {
		b, cl := sessionBroker(t, broker.WithProperty("max.incremental.fetch.session.cache.slots", "2"))
		createTopic(t, kadm.NewClient(cl), "s", 1, nil)
		produceTo(t, cl, "s", 0, "v")
		f := newFetcher(t, cl)
		first := f.do(sessionFetch(0, 0, 0, at{"s", 0, 0})).SessionID
		second := f.do(sessionFetch(0, 0, 0, at{"s", 0, 0})).SessionID
		if first == 0 || second == 0 || first == second {
			t.Fatalf("two sessions got ids %d and %d", first, second)
		}
		// Both were used just now and created less than
		// min.incremental.fetch.session.eviction.ms ago: a third is
		// still served, without a session.
		resp := f.do(sessionFetch(0, 0, 0, at{"s", 0, 0}))
		want(t, "third full fetch", resp, 0, "s/0 1 records")
		if resp.SessionID != 0 {
			t.Fatalf("a third session %d in a cache of 2 slots", resp.SessionID)
		}
		// (It still asks from offset 0: the record comes again.)
		want(t, "first session still there", f.do(sessionFetch(first, 1, 0)), 0, "s/0 1 records")
		// A full fetch naming its session replaces it (kgo's reset):
		// the slot it frees is reused.
		if id := f.do(sessionFetch(second, 0, 0, at{"s", 0, 1})).SessionID; id == 0 || id == second {
			t.Fatalf("reopening session %d got %d, want a new id", second, id)
		}
		want(t, "the replaced session", f.do(sessionFetch(second, 1, 0)), kerr.FetchSessionIDNotFound.Code)
		if n := sessionEvents(t, b, "evicted"); n != 0 {
			t.Fatalf("%v evictions, want none", n)
		}
	})
	t.Run("stale sessions evicted least recently used first", func(t *testing.T) {
		// With an eviction time of 0 every session not used in this
		// very instant is stale.
		b, cl := sessionBroker(t, broker.WithProperty("max.incremental.fetch.session.cache.slots", "2"),
			broker.WithProperty("min.incremental.fetch.session.eviction.ms", "0"))
		createTopic(t, kadm.NewClient(cl), "s", 1, nil)
		f := newFetcher(t, cl)
		first := f.do(sessionFetch(0, 0, 0, at{"s", 0, 0})).SessionID
		second := f.do(sessionFetch(0, 0, 0, at{"s", 0, 0})).SessionID
		want(t, "first session used again", f.do(sessionFetch(first, 1, 0)), 0)
		third := f.do(sessionFetch(0, 0, 0, at{"s", 0, 0})).SessionID
		if third == 0 {
			t.Fatal("no session opened though a stale one could be evicted")
		}
		want(t, "the least recently used session", f.do(sessionFetch(second, 1, 0)), kerr.FetchSessionIDNotFound.Code)
		want(t, "the more recently used one", f.do(sessionFetch(first, 2, 0)), 0)
		if n := sessionEvents(t, b, "evicted"); n != 1 {
			t.Fatalf("%v evictions, want 1", n)
		}
	})
}

func TestFetchSessionTwoConnectionsOnOneSessionOneWins(t *testing.T) {
	b, cl := sessionBroker(t)
	createTopic(t, kadm.NewClient(cl), "c", 2, nil)
	other := newFetcher(t, b.Client(t))
	f := newFetcher(t, cl)
	id := f.do(sessionFetch(0, 0, 0, at{"c", 0, 0}, at{"c", 1, 0})).SessionID
	epoch := int32(1)
	for round := range 20 {
		var wg sync.WaitGroup
		codes := make([]int16, 2)
		for i, fe := range []fetcher{f, other} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes[i] = fe.do(sessionFetch(id, epoch, 0, at{"c", int32(i), 0})).ErrorCode
			}()
		}
		wg.Wait()
		slices.Sort(codes)
		if !slices.Equal(codes, []int16{0, kerr.InvalidFetchSessionEpoch.Code}) {
			t.Fatalf("round %d: two fetches at one epoch answered %v, want one success and one INVALID_FETCH_SESSION_EPOCH", round, codes)
		}
		epoch++
	}
}

func TestFetchSessionReportsADeletedTopic(t *testing.T) {
	_, cl := sessionBroker(t)
	adm := kadm.NewClient(cl)
	createTopic(t, adm, "stay", 1, nil)
	createTopic(t, adm, "gone", 1, nil)
	f := newFetcher(t, cl)
	id := f.do(sessionFetch(0, 0, 0, at{"stay", 0, 0}, at{"gone", 0, 0})).SessionID
	if _, err := adm.DeleteTopics(testkit.Context(t, 10*time.Second), "gone"); err != nil {
		t.Fatal(err)
	}
	want(t, "after the delete", f.do(sessionFetch(id, 1, 0)), 0, "gone/0 "+kerr.UnknownTopicOrPartition.Message)
	// Forgotten, as a client does once metadata shows the topic gone, it
	// is answered no more.
	want(t, "forgotten", f.do(forget(sessionFetch(id, 2, 100*time.Millisecond), "gone", 0)), 0)
}

func TestFetchSessionChecksReadACLOnEveryPartitionItCarries(t *testing.T) {
	dir := t.TempDir()
	brokerkit.SeedUsers(t, dir, "admin", "alice", "bob")
	b := brokertest.Run(t,
		broker.WithDataDir(dir),
		broker.WithProperty("listeners", "SASL_PLAINTEXT://127.0.0.1:0"),
		broker.WithProperty("authorizer.class.name", "idem"),
		broker.WithProperty("super.users", "User:admin"))
	user := func(name string) *kgo.Client {
		return b.Client(t, kgo.SASL(scram.Auth{User: name, Pass: name + "-pw"}.AsSha256Mechanism()))
	}
	ctx := testkit.Context(t, 30*time.Second)
	adm := kadm.NewClient(user("admin"))
	createTopic(t, adm, "open", 1, nil)
	createTopic(t, adm, "secret", 1, nil)
	grant := kadm.NewACLs().Allow("User:alice").Topics("open", "secret").Operations(kadm.OpRead).ResourcePatternType(kadm.ACLPatternLiteral)
	if _, err := adm.CreateACLs(ctx, grant); err != nil {
		t.Fatal(err)
	}
	alice := newFetcher(t, user("alice"))
	resp := alice.do(sessionFetch(0, 0, 0, at{"open", 0, 0}, at{"secret", 0, 0}))
	id := resp.SessionID
	want(t, "alice's full fetch", resp, 0, "open/0", "secret/0")

	// The grant on secret is withdrawn: the session still carries the
	// partition, and the next fetch that does not name it is refused it.
	revoke := kadm.NewACLs().Allow("User:alice").AllowHosts().Topics("secret").Operations(kadm.OpRead).ResourcePatternType(kadm.ACLPatternLiteral)
	if _, err := adm.DeleteACLs(ctx, revoke); err != nil {
		t.Fatal(err)
	}
	want(t, "alice after the revoke", alice.do(sessionFetch(id, 1, 0)), 0, "secret/0 "+kerr.TopicAuthorizationFailed.Message)

	// A session id is no credential: bob, with no ACL, using alice's
	// session is refused every partition it carries.
	bob := newFetcher(t, user("bob"))
	want(t, "bob on alice's session", bob.do(sessionFetch(id, 2, 0)), 0,
		"open/0 "+kerr.TopicAuthorizationFailed.Message, "secret/0 "+kerr.TopicAuthorizationFailed.Message)
}

// A topic deleted and created again under its name while a session holds
// its partition: the session serves the new topic, never the old one's
// closed log.
func TestFetchSessionServesATopicRecreatedUnderItsName(t *testing.T) {
	_, cl := sessionBroker(t)
	adm := kadm.NewClient(cl)
	createTopic(t, adm, "re", 1, nil)
	produceTo(t, cl, "re", 0, "old")
	f := newFetcher(t, cl)
	id := f.do(sessionFetch(0, 0, 0, at{"re", 0, 0})).SessionID
	want(t, "old topic, incremental", f.do(sessionFetch(id, 1, 0)), 0, "re/0 1 records")
	if _, err := adm.DeleteTopics(testkit.Context(t, 10*time.Second), "re"); err != nil {
		t.Fatal(err)
	}
	want(t, "deleted", f.do(sessionFetch(id, 2, 0)), 0, "re/0 "+kerr.UnknownTopicOrPartition.Message)
	createTopic(t, adm, "re", 1, nil)
	produceTo(t, cl, "re", 0, "new", "newer")
	resp := f.do(sessionFetch(id, 3, 0))
	want(t, "recreated", resp, 0, "re/0 2 records")
}

// Records deleted below the consumer: the log start offset moved, which the
// session answers once, though the consumer has nothing to read.
func TestFetchSessionAnswersALogStartOffsetChange(t *testing.T) {
	_, cl := sessionBroker(t)
	adm := kadm.NewClient(cl)
	createTopic(t, adm, "ls", 1, nil)
	produceTo(t, cl, "ls", 0, "a", "b", "c")
	f := newFetcher(t, cl)
	id := f.do(sessionFetch(0, 0, 0, at{"ls", 0, 3})).SessionID
	want(t, "caught up", f.do(sessionFetch(id, 1, 0)), 0)
	offsets := kadm.Offsets{}
	offsets.Add(kadm.Offset{Topic: "ls", Partition: 0, At: 2})
	if _, err := adm.DeleteRecords(testkit.Context(t, 10*time.Second), offsets); err != nil {
		t.Fatal(err)
	}
	resp := f.do(sessionFetch(id, 2, 0))
	want(t, "after deleting records", resp, 0, "ls/0")
	if got := resp.Topics[0].Partitions[0].LogStartOffset; got != 2 {
		t.Fatalf("log start offset %d, want 2", got)
	}
	want(t, "and then not again", f.do(sessionFetch(id, 3, 0)), 0)
}
