package broker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
)

// The group properties whose 0 means something (internal/config allows 0
// for exactly these four) reach the coordinator as 0, not as a default.

// commitMetadata commits offset 1 of t/0 for a standalone group with the
// given metadata and returns the partition's error code.
func commitMetadata(t *testing.T, cl *kgo.Client, group, metadata string) int16 {
	t.Helper()
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group, req.Generation = group, -1
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = "t"
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset, rp.Metadata = 0, 1, kmsg.StringPtr(metadata)
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctxT(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Topics[0].Partitions[0].ErrorCode
}

func TestOffsetMetadataMaxBytesZeroRefusesMetadata(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("t"), broker.WithProperty("offset.metadata.max.bytes", "0"))
	cl := b.Client(t)
	if code := commitMetadata(t, cl, "g", strings.Repeat("m", 100)); code != kerr.OffsetMetadataTooLarge.Code {
		t.Fatalf("commit with 100 bytes of metadata: %v, want OFFSET_METADATA_TOO_LARGE", kerr.ErrorForCode(code))
	}
	if code := commitMetadata(t, cl, "g", ""); code != 0 {
		t.Fatalf("commit without metadata: %v, want success", kerr.ErrorForCode(code))
	}
}

func TestOffsetMetadataMaxBytesDefault(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("t"))
	cl := b.Client(t)
	if code := commitMetadata(t, cl, "g", strings.Repeat("m", 4096)); code != 0 {
		t.Fatalf("commit with 4096 bytes of metadata: %v, want success", kerr.ErrorForCode(code))
	}
	if code := commitMetadata(t, cl, "g", strings.Repeat("m", 4097)); code != kerr.OffsetMetadataTooLarge.Code {
		t.Fatalf("commit with 4097 bytes of metadata: %v, want OFFSET_METADATA_TOO_LARGE", kerr.ErrorForCode(code))
	}
}

// joinGroup joins group as a new member with the given session timeout
// (retrying once with the member id a v4+ JoinGroup hands out) and returns
// the error code and how long the join took.
func joinGroup(t *testing.T, cl *kgo.Client, group string, session time.Duration) (int16, time.Duration) {
	t.Helper()
	start := time.Now()
	req := kmsg.NewPtrJoinGroupRequest()
	req.Group, req.ProtocolType = group, "consumer"
	req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = int32(session/time.Millisecond), 60_000
	p := kmsg.NewJoinGroupRequestProtocol()
	p.Name = "range"
	req.Protocols = append(req.Protocols, p)
	for {
		resp, err := req.RequestWith(ctxT(t), cl)
		if err != nil {
			t.Fatal(err)
		}
		if resp.ErrorCode != kerr.MemberIDRequired.Code {
			return resp.ErrorCode, time.Since(start)
		}
		req.MemberID = resp.MemberID
	}
}

// 0 means no delay: the first member's join completes at once, not after
// the default 3 s. (brokertest sets 0 anyway; this test says so itself.)
func TestInitialRebalanceDelayZeroMeansNone(t *testing.T) {
	b := brokertest.Run(t, broker.WithProperty("group.initial.rebalance.delay.ms", "0"))
	code, took := joinGroup(t, b.Client(t), "g", 10*time.Second)
	if code != 0 {
		t.Fatalf("join: %v", kerr.ErrorForCode(code))
	}
	if took >= 3*time.Second {
		t.Fatalf("join took %v: the default initial delay applied, not 0", took)
	}
}

func TestInitialRebalanceDelayApplies(t *testing.T) {
	b := brokertest.Run(t, broker.WithProperty("group.initial.rebalance.delay.ms", "300"))
	code, took := joinGroup(t, b.Client(t), "g", 10*time.Second)
	if code != 0 || took < 300*time.Millisecond {
		t.Fatalf("join: %v after %v, want success after the 300ms delay", kerr.ErrorForCode(code), took)
	}
}

// group.min.session.timeout.ms=0 accepts any session timeout down to 1 ms;
// with the default minimum (6 s) a 1 s session is refused.
func TestMinSessionTimeoutZeroAcceptsShortSessions(t *testing.T) {
	b := brokertest.Run(t, broker.WithProperty("group.min.session.timeout.ms", "0"))
	if code, _ := joinGroup(t, b.Client(t), "g", time.Second); code != 0 {
		t.Fatalf("join with a 1s session and no minimum: %v", kerr.ErrorForCode(code))
	}
	b = brokertest.Run(t)
	if code, _ := joinGroup(t, b.Client(t), "g", time.Second); code != kerr.InvalidSessionTimeout.Code {
		t.Fatalf("join with a 1s session and the default minimum: %v, want INVALID_SESSION_TIMEOUT", kerr.ErrorForCode(code))
	}
}

// group.max.session.timeout.ms=0 (with the minimum 0 too) refuses every
// session timeout above 0.
func TestMaxSessionTimeoutZeroRefusesSessions(t *testing.T) {
	b := brokertest.Run(t, broker.WithProperty("group.min.session.timeout.ms", "0"),
		broker.WithProperty("group.max.session.timeout.ms", "0"))
	if code, _ := joinGroup(t, b.Client(t), "g", 6*time.Second); code != kerr.InvalidSessionTimeout.Code {
		t.Fatalf("join with a 6s session and a maximum of 0: %v, want INVALID_SESSION_TIMEOUT", kerr.ErrorForCode(code))
	}
}
