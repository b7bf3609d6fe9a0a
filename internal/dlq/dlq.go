// Package dlq finds the dead-letter topics of share groups (KIP-1191),
// lists what they hold and moves it back (redrive), as SQS's
// StartMessageMoveTask does for queues. `idem dlq` and the admin API
// (/v1/dead-letters) and console are thin layers over it.
//
// Everything goes through a Kafka client the caller owns (franz-go kgo),
// so the broker's ACLs apply to whoever the client authenticates as. The
// short-lived readers this package makes are built from that client's own
// options (kgo.Client.Opts), credentials included; the client must
// therefore be a plain one, consuming nothing itself.
//
// Redrive is idempotent without transactions; see Redrive.
package dlq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	// RedriveHeader is the header every redriven record carries:
	// "<dead-letter topic>/<partition>/<offset>" of the dead letter it
	// came from. Recovery of an interrupted run looks for it.
	RedriveHeader = "__idem.redrive.from"
	// HeaderPrefix starts the headers the broker puts on a dead letter
	// (__dlq.errors.topic, .partition, .offset, .group, .delivery.count,
	// .message).
	HeaderPrefix = "__dlq.errors."

	// groupDLQConfig is the share-group config naming its dead-letter
	// topic; topicDLQConfig is the topic config that opts a topic in.
	groupDLQConfig = "errors.deadletterqueue.topic.name"
	topicDLQConfig = "errors.deadletterqueue.group.enable"
	// namePrefix is errors.deadletterqueue.topic.name.prefix's default:
	// a topic so named is taken for a dead-letter topic even before its
	// config says so.
	namePrefix = "dlq."
)

// Topic is one dead-letter topic.
type Topic struct {
	Name string `json:"name"`
	// Exists is false for a topic a share group names that nobody has
	// created yet (it is auto-created on the first dead letter when
	// errors.deadletterqueue.auto.create.topics.enable is on).
	Exists     bool  `json:"exists"`
	Partitions int   `json:"partitions"`
	Records    int64 `json:"records"`
	// Groups are the share groups whose errors.deadletterqueue.topic.name
	// names the topic (those the client may describe).
	Groups []string `json:"groups"`
}

// Topics lists the dead-letter topics the client can see: topics with
// errors.deadletterqueue.group.enable=true or named with the dlq. prefix,
// and the topics share groups name as theirs, with how many records each
// holds (end minus start offsets). Sorted by name.
func Topics(ctx context.Context, cl *kgo.Client) ([]Topic, error) {
	adm := kadm.NewClient(cl)
	listed, err := adm.ListTopics(ctx)
	if err != nil {
		return nil, err
	}
	byName := map[string]*Topic{}
	add := func(name string) *Topic {
		t, ok := byName[name]
		if !ok {
			t = &Topic{Name: name, Groups: []string{}}
			byName[name] = t
		}
		return t
	}
	if names := listed.Names(); len(names) > 0 {
		cfgs, err := adm.DescribeTopicConfigs(ctx, names...)
		if err != nil {
			return nil, err
		}
		for _, rc := range cfgs {
			if rc.Err == nil && (optedIn(rc.Configs) || strings.HasPrefix(rc.Name, namePrefix)) {
				add(rc.Name)
			}
		}
	}
	byGroup, err := groupDLQs(ctx, cl, adm)
	if err != nil {
		return nil, err
	}
	for _, g := range sortedKeysOf(byGroup) {
		t := add(byGroup[g])
		t.Groups = append(t.Groups, g)
	}
	names := sortedKeysOf(byName)
	var existing []string
	for _, n := range names {
		if listed.Has(n) {
			existing = append(existing, n)
		}
	}
	if len(existing) > 0 {
		starts, err := adm.ListStartOffsets(ctx, existing...)
		if err != nil {
			return nil, err
		}
		ends, err := adm.ListEndOffsets(ctx, existing...)
		if err != nil {
			return nil, err
		}
		ends.Each(func(o kadm.ListedOffset) {
			t, ok := byName[o.Topic]
			if !ok || o.Err != nil {
				return
			}
			t.Exists = true
			t.Partitions++
			if s, ok := starts.Lookup(o.Topic, o.Partition); ok && s.Err == nil {
				t.Records += o.Offset - s.Offset
			}
		})
	}
	out := make([]Topic, 0, len(names))
	for _, n := range names {
		out = append(out, *byName[n])
	}
	return out, nil
}

func optedIn(cs []kadm.Config) bool {
	for _, c := range cs {
		if c.Key == topicDLQConfig && c.Value != nil && *c.Value == "true" {
			return true
		}
	}
	return false
}

// groupDLQs maps each share group to the dead-letter topic its config
// names. kadm has no call for group configs, so this is a DescribeConfigs
// of GROUP resources; a group the client may not describe is left out.
func groupDLQs(ctx context.Context, cl *kgo.Client, adm *kadm.Client) (map[string]string, error) {
	groups, err := adm.ListGroupsByType(ctx, []string{"share"})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	if len(groups) == 0 {
		return out, nil
	}
	req := kmsg.NewPtrDescribeConfigsRequest()
	for _, g := range groups.Groups() {
		r := kmsg.NewDescribeConfigsRequestResource()
		r.ResourceType, r.ResourceName = kmsg.ConfigResourceTypeGroupConfig, g
		r.ConfigNames = []string{groupDLQConfig}
		req.Resources = append(req.Resources, r)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, err
	}
	for _, r := range resp.Resources {
		if r.ErrorCode != 0 {
			continue
		}
		for _, c := range r.Configs {
			if c.Name == groupDLQConfig && c.Value != nil && *c.Value != "" {
				out[r.ResourceName] = *c.Value
			}
		}
	}
	return out, nil
}

// IsDeadLetterTopic says whether an existing topic is a dead-letter topic
// by its own marks (errors.deadletterqueue.group.enable=true, or the dlq.
// prefix). A topic that does not exist, or that the client may not
// describe, is the Kafka error (kerr.UnknownTopicOrPartition,
// kerr.TopicAuthorizationFailed).
func IsDeadLetterTopic(ctx context.Context, cl *kgo.Client, topic string) (bool, error) {
	if err := mustExist(ctx, cl, topic); err != nil {
		return false, err
	}
	cfgs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return false, err
	}
	rc, err := cfgs.On(topic, nil)
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		return false, err
	}
	return optedIn(rc.Configs) || strings.HasPrefix(topic, namePrefix), nil
}

// mustExist answers the Kafka error of a topic that is not there or not
// the client's to see. It asks the broker, not kgo's metadata cache (kadm
// answers from the cache, which keeps "unknown topic" for MetadataMinAge,
// 5 s by default: a ledger created a moment ago would read as missing);
// the answer refreshes the cache for the kadm calls that follow.
func mustExist(ctx context.Context, cl *kgo.Client, topic string) error {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return err
	}
	for _, t := range resp.Topics {
		if t.Topic != nil && *t.Topic == topic {
			if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
				return fmt.Errorf("topic %q: %w", topic, err)
			}
			return nil
		}
	}
	return fmt.Errorf("topic %q: %w", topic, kerr.UnknownTopicOrPartition)
}

// Source is where a dead letter was consumed from.
type Source struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// Record is one dead letter and what its headers say.
type Record struct {
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	Timestamp time.Time `json:"timestamp"` // when it was dead-lettered
	Source    Source    `json:"source"`
	Group     string    `json:"group"`
	// DeliveryCount is how often the group delivered the record before
	// it was dead-lettered.
	DeliveryCount int `json:"delivery_count"`
	// Reason: "rejected by the consumer" or "delivery count limit reached".
	Reason string `json:"reason"`
	// Headers are all the dead letter's headers, __dlq.errors.* included.
	Headers map[string]string `json:"headers"`
	// HasPayload: the group copied the key, value and headers
	// (errors.deadletterqueue.copy.record.enable); otherwise redrive reads
	// them from the source.
	HasPayload bool `json:"has_payload"`
	// Redriven: the redrive ledger records it as moved back.
	Redriven bool `json:"redriven"`
}

// deadLetter is a Record with the Kafka record it was read from.
type deadLetter struct {
	Record
	r       *kgo.Record
	fromKey string // <dlq>/<partition>/<offset>, the RedriveHeader value
}

func parseDeadLetter(r *kgo.Record) deadLetter {
	d := deadLetter{r: r, Record: Record{Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UTC(),
		Headers: map[string]string{}, Source: Source{Partition: -1, Offset: -1}}}
	for _, h := range r.Headers {
		v := string(h.Value)
		d.Headers[h.Key] = v
		switch h.Key {
		case HeaderPrefix + "topic":
			d.Source.Topic = v
		case HeaderPrefix + "partition":
			if n, err := strconv.ParseInt(v, 10, 32); err == nil {
				d.Source.Partition = int32(n)
			}
		case HeaderPrefix + "offset":
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				d.Source.Offset = n
			}
		case HeaderPrefix + "group":
			d.Group = v
		case HeaderPrefix + "delivery.count":
			d.DeliveryCount, _ = strconv.Atoi(v)
		case HeaderPrefix + "message":
			d.Reason = v
		}
	}
	d.fromKey = fmt.Sprintf("%s/%d/%d", r.Topic, r.Partition, r.Offset)
	d.HasPayload = r.Key != nil || r.Value != nil
	return d
}

// ListOptions bounds a List.
type ListOptions struct {
	// Limit is the most records answered (> 0).
	Limit int
	// From, when set, resumes a listing where a Page's Next left off.
	From *Cursor
}

// Cursor is a place in a dead-letter topic: pages run through the
// partitions in order, each from its log start.
type Cursor struct {
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
}

// Page is what List answers.
type Page struct {
	Topic   string   `json:"topic"`
	Records []Record `json:"records"`
	// Next is where the next page starts; nil when this page reached the
	// end of the topic.
	Next *Cursor `json:"next,omitempty"`
}

// List answers up to opts.Limit records of a dead-letter topic, partition
// by partition, each marked redriven or not from the redrive ledger. An
// unknown topic is kerr.UnknownTopicOrPartition.
func List(ctx context.Context, cl *kgo.Client, topic string, opts ListOptions) (Page, error) {
	pg := Page{Topic: topic, Records: []Record{}}
	if opts.Limit <= 0 {
		return pg, fmt.Errorf("dlq.List: limit %d, want > 0", opts.Limit)
	}
	adm := kadm.NewClient(cl)
	if err := mustExist(ctx, cl, topic); err != nil {
		return pg, err
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return pg, err
	}
	var parts []int32
	ends.Each(func(o kadm.ListedOffset) {
		if o.Topic == topic && o.Err == nil && (opts.From == nil || o.Partition >= opts.From.Partition) {
			parts = append(parts, o.Partition)
		}
	})
	slices.Sort(parts)
	var done map[string]bool
	if l, err := readLedger(ctx, cl, topic); err == nil {
		done = l.done
	}
	for _, p := range parts {
		if len(pg.Records) == opts.Limit {
			// Full: the next page starts here unless nothing is left.
			if end, _ := ends.Lookup(topic, p); pg.Next == nil && end.Offset > 0 {
				pg.Next = &Cursor{Partition: p, Offset: 0}
			}
			break
		}
		from := map[int32]int64{p: 0}
		if opts.From != nil && p == opts.From.Partition {
			from[p] = opts.From.Offset
		}
		err := read(ctx, cl, topic, onlyFrom(from), func(r *kgo.Record) bool {
			if len(pg.Records) == opts.Limit {
				pg.Next = &Cursor{Partition: p, Offset: r.Offset}
				return false
			}
			d := parseDeadLetter(r)
			d.Redriven = done[d.fromKey]
			pg.Records = append(pg.Records, d.Record)
			return true
		})
		if err != nil {
			return pg, err
		}
		if pg.Next != nil {
			break
		}
	}
	return pg, nil
}

// pick chooses, per partition with records between start and end, the
// offset to read from, or false to skip the partition.
type pick func(partition int32, start int64) (int64, bool)

// fromStart reads every partition from its log start.
func fromStart(_ int32, start int64) (int64, bool) { return start, true }

// fromOffsets reads every partition, from the given offset where one is
// given (never below the log start).
func fromOffsets(from map[int32]int64) pick {
	return func(p int32, start int64) (int64, bool) {
		if f, ok := from[p]; ok {
			return max(start, f), true
		}
		return start, true
	}
}

// onlyFrom reads only the given partitions, from the given offsets.
func onlyFrom(from map[int32]int64) pick {
	return func(p int32, start int64) (int64, bool) {
		f, ok := from[p]
		return max(start, f), ok
	}
}

// read reads topic up to the end offsets it has now, from where choose
// says, calling fn for each record until fn answers false. A topic that
// does not exist has nothing to read. The reader is a short-lived client
// built from cl's own options.
func read(ctx context.Context, cl *kgo.Client, topic string, choose pick, fn func(*kgo.Record) bool) error {
	if err := mustExist(ctx, cl, topic); errors.Is(err, kerr.UnknownTopicOrPartition) {
		return nil
	} else if err != nil {
		return err
	}
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return err
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return err
	}
	want := map[int32]int64{}
	offsets := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Topic != topic || o.Err != nil {
			return
		}
		start := int64(0)
		if s, ok := starts.Lookup(topic, o.Partition); ok {
			start = s.Offset
		}
		from, ok := choose(o.Partition, start)
		if ok && from < o.Offset {
			want[o.Partition] = o.Offset
			offsets[o.Partition] = kgo.NewOffset().At(from)
		}
	})
	if len(want) == 0 {
		return nil
	}
	// Control records (transaction markers) are kept so that a partition
	// ending with one is seen to end; fn never gets them.
	rd, err := kgo.NewClient(append(cl.Opts(), kgo.KeepControlRecords(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))...)
	if err != nil {
		return err
	}
	defer rd.Close()
	for len(want) > 0 {
		fs := rd.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, e := range fs.Errors() {
			return fmt.Errorf("reading %s/%d: %w", e.Topic, e.Partition, e.Err)
		}
		stop := false
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := want[r.Partition]
			if stop || !ok || r.Offset >= end {
				return
			}
			if !r.Attrs.IsControl() && !fn(r) {
				stop = true
				return
			}
			if r.Offset+1 >= end {
				delete(want, r.Partition)
			}
		})
		if stop {
			return nil
		}
	}
	return nil
}

func sortedKeysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
