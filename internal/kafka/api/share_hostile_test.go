package api_test

import (
	"context"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// rawShare speaks the share APIs by hand over one client's connection to
// the broker, so that a test can send what no well-behaved client sends.
type rawShare struct {
	t       *testing.T
	cl      *kgo.Client
	group   string
	member  string
	topicID [16]byte
}

func (r *rawShare) heartbeat(epoch int32, topics []string) *kmsg.ShareGroupHeartbeatResponse {
	r.t.Helper()
	req := kmsg.NewPtrShareGroupHeartbeatRequest()
	req.GroupID, req.MemberID, req.MemberEpoch, req.SubscribedTopicNames = r.group, r.member, epoch, topics
	resp, err := req.RequestWith(context.Background(), r.cl)
	if err != nil {
		r.t.Fatal(err)
	}
	return resp
}

type rawAck struct {
	first, last int64
	types       []int8
}

func (r *rawShare) fetch(epoch int32, maxRecords int32, acks ...rawAck) *kmsg.ShareFetchResponse {
	r.t.Helper()
	req := kmsg.NewPtrShareFetchRequest()
	req.GroupID, req.MemberID, req.ShareSessionEpoch = kmsg.StringPtr(r.group), kmsg.StringPtr(r.member), epoch
	req.MaxRecords, req.BatchSize, req.MaxBytes, req.ShareAcquireMode = maxRecords, maxRecords, 1<<20, 1
	t := kmsg.NewShareFetchRequestTopic()
	t.TopicID = r.topicID
	p := kmsg.NewShareFetchRequestTopicPartition()
	for _, a := range acks {
		p.AcknowledgementBatches = append(p.AcknowledgementBatches, kmsg.ShareFetchRequestTopicPartitionAcknowledgementBatch{FirstOffset: a.first, LastOffset: a.last, AcknowledgeTypes: a.types})
	}
	t.Partitions = append(t.Partitions, p)
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(context.Background(), r.cl.Broker(1))
	if err != nil {
		r.t.Fatal(err)
	}
	return resp
}

func (r *rawShare) ack(epoch int32, renew bool, acks ...rawAck) *kmsg.ShareAcknowledgeResponse {
	r.t.Helper()
	req := kmsg.NewPtrShareAcknowledgeRequest()
	req.GroupID, req.MemberID, req.ShareSessionEpoch, req.IsRenewAck = kmsg.StringPtr(r.group), kmsg.StringPtr(r.member), epoch, renew
	t := kmsg.NewShareAcknowledgeRequestTopic()
	t.TopicID = r.topicID
	p := kmsg.NewShareAcknowledgeRequestTopicPartition()
	for _, a := range acks {
		p.AcknowledgementBatches = append(p.AcknowledgementBatches, kmsg.ShareAcknowledgeRequestTopicPartitionAcknowledgementBatch{FirstOffset: a.first, LastOffset: a.last, AcknowledgeTypes: a.types})
	}
	t.Partitions = append(t.Partitions, p)
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(context.Background(), r.cl.Broker(1))
	if err != nil {
		r.t.Fatal(err)
	}
	return resp
}

func ackCode(resp *kmsg.ShareAcknowledgeResponse) int16 {
	if resp.ErrorCode != 0 {
		return resp.ErrorCode
	}
	return resp.Topics[0].Partitions[0].ErrorCode
}

func codeName(c int16) string {
	if c == 0 {
		return "OK"
	}
	return kerr.ErrorForCode(c).Error()
}

// TestShareHostileInput sends malformed acknowledgement batches, wrong
// session and member epochs and acknowledgements for records the member
// does not hold: each gets its Kafka error code, and nothing changes (the
// group's start offset does not move and a correct acknowledgement of the
// same records still succeeds afterwards).
func TestShareHostileInput(t *testing.T) {
	b := shareBroker(t)
	cl := b.Client(t)
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	createTopic(t, adm, "h", 1, nil)
	setGroupConfigs(t, cl, "g", "share.auto.offset.reset", "earliest")
	produceN(t, cl, "h", 0, 10)
	md, err := adm.Metadata(ctx, "h")
	if err != nil {
		t.Fatal(err)
	}
	a := &rawShare{t: t, cl: b.Client(t), group: "g", member: "a", topicID: md.Topics["h"].ID}
	o := &rawShare{t: t, cl: b.Client(t), group: "g", member: "o", topicID: md.Topics["h"].ID}

	// Membership.
	if r := a.heartbeat(3, nil); r.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Errorf("heartbeat before the group exists: %s", codeName(r.ErrorCode))
	}
	if r := a.heartbeat(0, nil); r.ErrorCode != kerr.InvalidRequest.Code {
		t.Errorf("join without topics: %s", codeName(r.ErrorCode))
	}
	long := &rawShare{t: t, cl: a.cl, group: "g", member: strings.Repeat("x", 37)}
	if r := long.heartbeat(0, []string{"h"}); r.ErrorCode != kerr.InvalidRequest.Code {
		t.Errorf("join with a 37-character member id: %s", codeName(r.ErrorCode))
	}
	if r := a.heartbeat(0, []string{"h"}); r.ErrorCode != 0 {
		t.Fatalf("join: %s", codeName(r.ErrorCode))
	}
	if r := o.heartbeat(0, []string{"h"}); r.ErrorCode != 0 {
		t.Fatalf("join: %s", codeName(r.ErrorCode))
	}
	if r := a.heartbeat(99, nil); r.ErrorCode != kerr.FencedMemberEpoch.Code {
		t.Errorf("heartbeat at a future epoch: %s", codeName(r.ErrorCode))
	}
	ghost := &rawShare{t: t, cl: a.cl, group: "g", member: "ghost"}
	if r := ghost.heartbeat(1, nil); r.ErrorCode != kerr.UnknownMemberID.Code {
		t.Errorf("heartbeat of an unknown member: %s", codeName(r.ErrorCode))
	}

	// Sessions.
	if r := a.ack(0, false, rawAck{0, 0, []int8{1}}); r.ErrorCode != kerr.InvalidShareSessionEpoch.Code {
		t.Errorf("ShareAcknowledge at epoch 0: %s", codeName(r.ErrorCode))
	}
	if r := a.fetch(0, 5, rawAck{0, 0, []int8{1}}); r.ErrorCode != kerr.InvalidRequest.Code {
		t.Errorf("ShareFetch opening a session with acks: %s", codeName(r.ErrorCode))
	}
	if r := a.fetch(4, 5); r.ErrorCode != kerr.ShareSessionNotFound.Code {
		t.Errorf("ShareFetch at epoch 4 without a session: %s", codeName(r.ErrorCode))
	}
	if r := ghost.fetch(0, 5); r.ErrorCode != kerr.UnknownMemberID.Code {
		t.Errorf("ShareFetch of a member not in the group: %s", codeName(r.ErrorCode))
	}
	r := a.fetch(0, 5)
	if r.ErrorCode != 0 || len(r.Topics) != 1 || len(r.Topics[0].Partitions[0].AcquiredRecords) != 1 {
		t.Fatalf("open fetch: %+v", r)
	}
	if ar := r.Topics[0].Partitions[0].AcquiredRecords[0]; ar.FirstOffset != 0 || ar.LastOffset != 4 {
		t.Fatalf("a acquired %+v", ar)
	}
	if r := o.fetch(0, 5); r.ErrorCode != 0 || r.Topics[0].Partitions[0].AcquiredRecords[0].FirstOffset != 5 {
		t.Fatalf("o's fetch: %+v", r)
	}
	if r := a.ack(2, false, rawAck{0, 0, []int8{1}}); r.ErrorCode != kerr.InvalidShareSessionEpoch.Code {
		t.Errorf("ShareAcknowledge at epoch 2 (want 1): %s", codeName(r.ErrorCode))
	}

	// Malformed batches, and records a does not hold: each is refused and
	// the session epoch still moves on (the request itself was valid).
	epoch := int32(1)
	for _, tc := range []struct {
		name string
		acks []rawAck
		want int16
	}{
		{"overlapping", []rawAck{{0, 2, []int8{1}}, {2, 3, []int8{1}}}, kerr.InvalidRequest.Code},
		{"descending", []rawAck{{3, 4, []int8{1}}, {0, 1, []int8{1}}}, kerr.InvalidRequest.Code},
		{"not a range", []rawAck{{4, 2, []int8{1}}}, kerr.InvalidRequest.Code},
		{"negative", []rawAck{{-1, 0, []int8{1}}}, kerr.InvalidRequest.Code},
		{"wrong number of types", []rawAck{{0, 3, []int8{1, 1}}}, kerr.InvalidRequest.Code},
		{"no types", []rawAck{{0, 0, nil}}, kerr.InvalidRequest.Code},
		{"unknown type", []rawAck{{0, 0, []int8{9}}}, kerr.InvalidRequest.Code},
		{"renew outside a renew request", []rawAck{{0, 0, []int8{4}}}, kerr.InvalidRequest.Code},
		{"beyond the in-flight window", []rawAck{{0, 10, []int8{1}}}, kerr.InvalidRequest.Code},
		{"huge range", []rawAck{{0, 1 << 62, []int8{1}}}, kerr.InvalidRequest.Code},
		{"another member's records", []rawAck{{5, 6, []int8{1}}}, kerr.InvalidRecordState.Code},
		{"own and another's", []rawAck{{0, 4, []int8{1}}, {5, 5, []int8{1}}}, kerr.InvalidRecordState.Code},
	} {
		resp := a.ack(epoch, false, tc.acks...)
		epoch++
		if got := ackCode(resp); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, codeName(got), codeName(tc.want))
		}
	}
	// A renew request must not fetch.
	renew := kmsg.NewPtrShareFetchRequest()
	renew.GroupID, renew.MemberID, renew.ShareSessionEpoch, renew.IsRenewAck, renew.MaxRecords = kmsg.StringPtr("g"), kmsg.StringPtr("a"), epoch, true, 5
	if resp, err := renew.RequestWith(ctx, a.cl.Broker(1)); err != nil || resp.ErrorCode != kerr.InvalidRequest.Code {
		t.Errorf("renew ShareFetch with MaxRecords 5: %v %v", resp, err)
	}
	// Nothing changed: the start offset is where it was, and the correct
	// acknowledgements succeed.
	offs, err := adm.DescribeShareGroupOffsets(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	if so, _ := offs["g"].Offsets.Lookup("h", 0); so.StartOffset != 0 {
		t.Errorf("start offset moved to %d", so.StartOffset)
	}
	if got := ackCode(a.ack(epoch, false, rawAck{0, 4, []int8{1}})); got != 0 {
		t.Errorf("accepting own records afterwards: %s", codeName(got))
	}
	epoch++
	if got := ackCode(o.ack(1, false, rawAck{5, 9, []int8{1}})); got != 0 {
		t.Errorf("o accepting its records: %s", codeName(got))
	}
	offs, _ = adm.DescribeShareGroupOffsets(ctx, "g")
	if so, _ := offs["g"].Offsets.Lookup("h", 0); so.StartOffset != 10 {
		t.Errorf("start offset %d after all were accepted, want 10", so.StartOffset)
	}
	// Closing the session with epoch -1, then using it, is refused.
	if r := a.ack(-1, false); ackCode(r) != kerr.InvalidRequest.Code {
		t.Errorf("closing ack with an empty partition: %s", codeName(ackCode(r)))
	}
	if r := a.fetch(epoch, 5); r.ErrorCode != kerr.ShareSessionNotFound.Code {
		t.Errorf("fetch after the session closed: %s", codeName(r.ErrorCode))
	}
}

// TestShareFetchV1: librdkafka 2.15 pins ShareFetch and ShareAcknowledge to
// v1 (no acquire mode, no renew); a client limited to v1 acquires and
// acknowledges, and its response carries the lock timeout.
func TestShareFetchV1(t *testing.T) {
	b := shareBroker(t)
	cl := b.Client(t)
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	createTopic(t, adm, "v1", 1, nil)
	setGroupConfigs(t, cl, "g", "share.auto.offset.reset", "earliest", "share.record.lock.duration.ms", "2000")
	produceN(t, cl, "v1", 0, 3)
	md, err := adm.Metadata(ctx, "v1")
	if err != nil {
		t.Fatal(err)
	}
	vs := kversion.Stable()
	vs.SetMaxKeyVersion(78, 1)
	vs.SetMaxKeyVersion(79, 1)
	a := &rawShare{t: t, cl: b.Client(t, kgo.MaxVersions(vs)), group: "g", member: "v1-member", topicID: md.Topics["v1"].ID}
	if r := a.heartbeat(0, []string{"v1"}); r.ErrorCode != 0 {
		t.Fatalf("join: %s", codeName(r.ErrorCode))
	}
	r := a.fetch(0, 10)
	if r.GetVersion() != 1 || r.ErrorCode != 0 || r.AcquisitionLockTimeoutMillis != 2000 || len(r.Topics) != 1 {
		t.Fatalf("v%d fetch: %+v", r.GetVersion(), r)
	}
	if ar := r.Topics[0].Partitions[0].AcquiredRecords; len(ar) != 1 || ar[0].FirstOffset != 0 || ar[0].LastOffset != 2 || ar[0].DeliveryCount != 1 {
		t.Fatalf("acquired %+v", ar)
	}
	ack := a.ack(1, false, rawAck{0, 2, []int8{1}})
	if ack.GetVersion() != 1 || ackCode(ack) != 0 {
		t.Fatalf("v%d ack: %s", ack.GetVersion(), codeName(ackCode(ack)))
	}
	offs, _ := adm.DescribeShareGroupOffsets(ctx, "g")
	if so, _ := offs["g"].Offsets.Lookup("v1", 0); so.StartOffset != 3 {
		t.Errorf("start offset %d after accepting all three", so.StartOffset)
	}
}
