package interop

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/testkit/brokerkit"
)

var internalTopics = []string{"__consumer_offsets", "__transaction_state"}

// TestFranzGoSeesInternalTopicsAsKafkaShowsThem: __consumer_offsets and
// __transaction_state are in Metadata with IsInternal, so kadm leaves them out
// of ListTopics and a regex consumer never subscribes to them (franz-go's own
// TestConsumeRegex relies on this); clients cannot create, write, read or
// delete them, and their ids survive a restart.
func TestFranzGoSeesInternalTopicsAsKafkaShowsThem(t *testing.T) {
	b := startBroker(t)
	ctx := testkit.Context(t, 60*time.Second)
	brokerkit.CreateTopic(t, b, "rx-a", 1)
	brokerkit.CreateTopic(t, b, "rx-b", 1)
	adm := kadm.NewClient(b.Client(t))

	plain, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := plain.Names(); !slices.Equal(got, []string{"rx-a", "rx-b"}) {
		t.Errorf("ListTopics: %v, want the two user topics", got)
	}
	ids := map[string][16]byte{}
	withInternal, err := adm.ListTopicsWithInternal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range internalTopics {
		td, ok := withInternal[name]
		switch {
		case !ok:
			t.Fatalf("ListTopicsWithInternal lacks %s: %v", name, withInternal.Names())
		case td.Err != nil || !td.IsInternal || len(td.Partitions) != 1 || td.ID == [16]byte{}:
			t.Errorf("%s: err %v internal %v partitions %d id %x", name, td.Err, td.IsInternal, len(td.Partitions), td.ID)
		case td.Partitions[0].Leader != td.Partitions[0].Replicas[0]:
			t.Errorf("%s partition 0: leader %d, replicas %v", name, td.Partitions[0].Leader, td.Partitions[0].Replicas)
		}
		ids[name] = td.ID
	}

	// Named, with auto-creation allowed: listed as internal, not created.
	named := metadataFor(t, b.Client(t), internalTopics...)
	for i, mt := range named.Topics {
		if mt.ErrorCode != 0 || !mt.IsInternal || mt.TopicID != ids[internalTopics[i]] {
			t.Errorf("Metadata naming %s: code %v internal %v id %x", internalTopics[i], kerr.ErrorForCode(mt.ErrorCode), mt.IsInternal, mt.TopicID)
		}
	}

	// A regex subscription matching everything, and the internal topic by
	// name, subscribes to the user topics only.
	cl := b.Client(t, kgo.ConsumeTopics(".*", "__consumer_offsets"), kgo.ConsumeRegex(), kgo.MetadataMinAge(100*time.Millisecond))
	var subscribed []string
	testkit.Eventually(t, 15*time.Second, "the regex consumer subscribes to rx-a and rx-b", func() bool {
		cl.ForceMetadataRefresh()
		subscribed = sorted(cl.GetConsumeTopics())
		return len(subscribed) >= 2
	})
	if !slices.Equal(subscribed, []string{"rx-a", "rx-b"}) {
		t.Errorf("regex consumer subscribed to %v, want the user topics only", subscribed)
	}

	// Not creatable, writable, readable or deletable.
	created, err := adm.CreateTopics(ctx, 1, 1, nil, "__consumer_offsets", "__cluster_metadata", "__share_group_state", "__mine")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]error{
		"__consumer_offsets":  kerr.TopicAlreadyExists,
		"__cluster_metadata":  kerr.InvalidRequest,
		"__share_group_state": kerr.InvalidRequest,
		"__mine":              nil, // only Kafka's own names are reserved
	} {
		if got := created[name].Err; !errors.Is(got, want) && !(want == nil && got == nil) {
			t.Errorf("CreateTopics %s: %v, want %v", name, got, want)
		}
	}
	producer := b.Client(t, kgo.RecordRetries(1))
	if err := producer.ProduceSync(ctx, &kgo.Record{Topic: "__consumer_offsets", Value: []byte("x")}).FirstErr(); !errors.Is(err, kerr.InvalidTopicException) {
		t.Errorf("produce to __consumer_offsets: %v, want INVALID_TOPIC_EXCEPTION", err)
	}
	ends, err := adm.ListEndOffsets(ctx, internalTopics...)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range internalTopics {
		if o, ok := ends.Lookup(name, 0); !ok || !errors.Is(o.Err, kerr.InvalidTopicException) {
			t.Errorf("ListOffsets %s: %+v, want INVALID_TOPIC_EXCEPTION", name, o)
		}
	}
	deleted, err := adm.DeleteTopics(ctx, internalTopics...)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range internalTopics {
		if r := deleted[name]; !errors.Is(r.Err, kerr.InvalidTopicException) {
			t.Errorf("DeleteTopics %s: %v, want INVALID_TOPIC_EXCEPTION", name, r.Err)
		}
	}

	// The ids stay the same across a restart.
	b.Restart(t)
	again, err := kadm.NewClient(b.Client(t)).ListTopicsWithInternal(testkit.Context(t, 30*time.Second), internalTopics...)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range internalTopics {
		if again[name].ID != ids[name] {
			t.Errorf("%s id %x after a restart, was %x", name, again[name].ID, ids[name])
		}
	}
}

// TestKcatListsInternalTopics: librdkafka 2.0.2 has no IsInternal, but kcat
// -L lists both internal topics with their one partition led by this node.
func TestKcatListsInternalTopics(t *testing.T) {
	testkit.RequireTool(t, "kcat", "install the Debian package kcat")
	b := startBroker(t)
	brokerkit.CreateTopic(t, b, "plain", 2)
	var md struct {
		Brokers []struct {
			ID int32 `json:"id"`
		} `json:"brokers"`
		Topics []struct {
			Topic      string `json:"topic"`
			Partitions []struct {
				Leader int32 `json:"leader"`
			} `json:"partitions"`
		} `json:"topics"`
	}
	out := kcat(t, "", "-b", b.Addr(), "-L", "-J")
	if err := json.Unmarshal([]byte(out), &md); err != nil {
		t.Fatalf("kcat -L -J output is not JSON: %v\n%s", err, out)
	}
	partitions := map[string]int{}
	for _, tp := range md.Topics {
		partitions[tp.Topic] = len(tp.Partitions)
		for _, p := range tp.Partitions {
			if p.Leader != md.Brokers[0].ID {
				t.Errorf("%s: leader %d, want %d", tp.Topic, p.Leader, md.Brokers[0].ID)
			}
		}
	}
	want := map[string]int{"plain": 2, "__consumer_offsets": 1, "__transaction_state": 1}
	for name, n := range want {
		if partitions[name] != n {
			t.Errorf("kcat -L: %s has %d partitions, want %d (all: %v)", name, partitions[name], n, partitions)
		}
	}
}

// metadataFor asks for topics by name, allowing auto-creation, as a
// producer's metadata request does.
func metadataFor(t *testing.T, cl *kgo.Client, topics ...string) *kmsg.MetadataResponse {
	t.Helper()
	req := kmsg.NewPtrMetadataRequest()
	req.AllowAutoTopicCreation = true
	for _, name := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(name)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(testkit.Context(t, 10*time.Second), cl)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Topics) != len(topics) {
		t.Fatalf("Metadata answered %d topics for %d", len(resp.Topics), len(topics))
	}
	return resp
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
