package api_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
)

// TestConsumerGroupAPIsOnTheWire drives the KIP-848 APIs with raw requests
// and pins what clients read: member ids (chosen by the client at v1, by
// the coordinator at v0), assignments by topic id, keepalives without an
// assignment, error codes with messages, and how the other group APIs
// treat a consumer group (ListGroups v5 types, DescribeGroups showing it Dead,
// OffsetCommit/OffsetFetch/TxnOffsetCommit member epochs).
func TestConsumerGroupAPIsOnTheWire(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("cg-t"), broker.WithProperty("num.partitions", "4"))
	cl := b.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	meta, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	var topicID [16]byte
	for _, mt := range meta.Topics {
		if mt.Topic != nil && *mt.Topic == "cg-t" {
			topicID = mt.TopicID
		}
	}

	heartbeat := func(c *kgo.Client, member string, epoch int32, full bool) *kmsg.ConsumerGroupHeartbeatResponse {
		t.Helper()
		req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
		req.Group, req.MemberID, req.MemberEpoch = "cg", member, epoch
		if full {
			req.RebalanceTimeoutMillis = 30000
			req.SubscribedTopicNames = []string{"cg-t"}
			req.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
		}
		resp, err := req.RequestWith(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	// v1: the client's member id; the whole topic is assigned by id.
	r := heartbeat(cl, "m1", 0, true)
	if r.ErrorCode != 0 || r.MemberID == nil || *r.MemberID != "m1" || r.MemberEpoch != 1 || r.HeartbeatIntervalMillis != 5000 {
		t.Fatalf("join: %+v", r)
	}
	if r.Assignment == nil || len(r.Assignment.Topics) != 1 || r.Assignment.Topics[0].TopicID != topicID || len(r.Assignment.Topics[0].Partitions) != 4 {
		t.Fatalf("join assignment: %+v", r.Assignment)
	}
	// A keepalive carries no assignment.
	req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	req.Group, req.MemberID, req.MemberEpoch, req.RebalanceTimeoutMillis = "cg", "m1", 1, -1
	if resp, err := req.RequestWith(ctx, cl); err != nil || resp.ErrorCode != 0 || resp.Assignment != nil || resp.MemberEpoch != 1 {
		t.Fatalf("keepalive: %+v %v", resp, err)
	}
	// Errors come with a message.
	if r := heartbeat(cl, "m1", 9, false); r.ErrorCode != kerr.FencedMemberEpoch.Code || r.ErrorMessage == nil {
		t.Fatalf("wrong epoch: %+v", r)
	}
	if r := heartbeat(cl, "", 0, true); r.ErrorCode != kerr.InvalidRequest.Code {
		t.Fatalf("v1 join without a member id: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	// v0: the coordinator names the member.
	v0 := kversion.Stable()
	v0.SetMaxKeyVersion(68, 0)
	old := b.Client(t, kgo.MaxVersions(v0))
	r = heartbeat(old, "", 0, true)
	if r.ErrorCode != 0 || r.MemberID == nil || *r.MemberID == "" {
		t.Fatalf("v0 join: %+v", r)
	}

	// ConsumerGroupDescribe.
	dreq := kmsg.NewPtrConsumerGroupDescribeRequest()
	dreq.Groups = []string{"cg", "nope"}
	dresp, err := dreq.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	g := dresp.Groups[0]
	if g.ErrorCode != 0 || g.Epoch != 2 || g.AssignorName != "uniform" || len(g.Members) != 2 || g.Members[0].MemberType != 1 {
		t.Fatalf("describe: %+v", g)
	}
	for _, m := range g.Members {
		if m.MemberID == "m1" && (len(m.Assignment.TopicPartitions) != 1 || m.Assignment.TopicPartitions[0].Topic != "cg-t" || len(m.SubscribedTopics) != 1) {
			t.Fatalf("describe member: %+v", m)
		}
	}
	if dresp.Groups[1].ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("describe of an unknown group: %v", kerr.ErrorForCode(dresp.Groups[1].ErrorCode))
	}

	// ListGroups v5 filters by type; DescribeGroups does not describe it.
	lreq := kmsg.NewPtrListGroupsRequest()
	lreq.TypesFilter = []string{"Consumer"}
	lresp, err := lreq.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if len(lresp.Groups) != 1 || lresp.Groups[0].GroupType != "consumer" || lresp.Groups[0].ProtocolType != "consumer" {
		t.Fatalf("list consumer groups: %+v", lresp.Groups)
	}
	lreq.TypesFilter = []string{"classic"}
	if lresp, err = lreq.RequestWith(ctx, cl); err != nil || len(lresp.Groups) != 0 {
		t.Fatalf("list classic groups: %+v %v", lresp, err)
	}
	dg := kmsg.NewPtrDescribeGroupsRequest()
	dg.Groups = []string{"cg"}
	if dgr, err := dg.RequestWith(ctx, cl); err != nil || dgr.Groups[0].ErrorCode != 0 || dgr.Groups[0].State != "Dead" || len(dgr.Groups[0].Members) != 0 {
		t.Fatalf("DescribeGroups of a consumer group (v5: Dead, as Kafka answers before v6): %+v %v", dgr, err)
	}

	// OffsetCommit: v9 at the member's epoch; v8 refused; another epoch stale.
	commit := func(c *kgo.Client, member string, epoch int32) int16 {
		t.Helper()
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Group, req.MemberID, req.Generation = "cg", member, epoch
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic = "cg-t"
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset = 0, 1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].Partitions[0].ErrorCode
	}
	if code := commit(cl, "m1", 1); code != 0 {
		t.Errorf("commit at the member's epoch: %v", kerr.ErrorForCode(code))
	}
	if code := commit(cl, "m1", 5); code != kerr.StaleMemberEpoch.Code {
		t.Errorf("commit at another epoch: %v", kerr.ErrorForCode(code))
	}
	v8 := kversion.Stable()
	v8.SetMaxKeyVersion(8, 8)
	if code := commit(b.Client(t, kgo.MaxVersions(v8)), "m1", 1); code != kerr.UnsupportedVersion.Code {
		t.Errorf("commit v8 by a consumer-protocol member: %v", kerr.ErrorForCode(code))
	}

	// OffsetFetch v9: the member's epoch, or none (an admin fetch).
	fetch := func(member *string, epoch int32) int16 {
		t.Helper()
		req := kmsg.NewPtrOffsetFetchRequest()
		rg := kmsg.NewOffsetFetchRequestGroup()
		rg.Group, rg.MemberID, rg.MemberEpoch = "cg", member, epoch
		req.Groups = append(req.Groups, rg)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Groups[0].ErrorCode
	}
	if code := fetch(kmsg.StringPtr("m1"), 1); code != 0 {
		t.Errorf("fetch at the member's epoch: %v", kerr.ErrorForCode(code))
	}
	if code := fetch(kmsg.StringPtr("m1"), 0); code != kerr.StaleMemberEpoch.Code {
		t.Errorf("fetch at another epoch: %v", kerr.ErrorForCode(code))
	}
	if code := fetch(kmsg.StringPtr("gone"), 1); code != kerr.UnknownMemberID.Code {
		t.Errorf("fetch by an unknown member: %v", kerr.ErrorForCode(code))
	}
	if code := fetch(nil, -1); code != 0 {
		t.Errorf("admin fetch: %v", kerr.ErrorForCode(code))
	}

	// TxnOffsetCommit by a member at another epoch: ILLEGAL_GENERATION.
	pcl := b.Client(t, kgo.TransactionalID("cg-txn"))
	if err := pcl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	pid, pepoch, err := pcl.ProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	treq := kmsg.NewPtrTxnOffsetCommitRequest()
	treq.TransactionalID, treq.Group, treq.ProducerID, treq.ProducerEpoch = "cg-txn", "cg", pid, pepoch
	treq.MemberID, treq.Generation = "m1", 7
	tt := kmsg.NewTxnOffsetCommitRequestTopic()
	tt.Topic = "cg-t"
	tp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
	tt.Partitions = append(tt.Partitions, tp)
	treq.Topics = append(treq.Topics, tt)
	tresp, err := treq.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if code := tresp.Topics[0].Partitions[0].ErrorCode; code != kerr.IllegalGeneration.Code {
		t.Errorf("TxnOffsetCommit at another epoch: %v", kerr.ErrorForCode(code))
	}
}
