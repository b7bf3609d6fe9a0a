package api_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/logstore"
)

// advertisedButRefused are the versions advertised on purpose although no
// request at them is served: Produce v0–2 (old message sets), which Kafka 4
// advertises too because librdkafka ≤ 2.11 compresses with gzip, snappy or
// lz4 only when Produce v0 is in range (KAFKA-18659; 00_produce.go). Each
// partition of such a request is answered UNSUPPORTED_VERSION.
var advertisedButRefused = map[int16][2]int16{0: {0, 2}}

// TestAdvertisedVersionsAreServed holds ApiVersions to what the handlers
// accept. For every key the broker advertises, a minimal request at each
// advertised version must be answered without UNSUPPORTED_VERSION, and at the
// versions just outside the range the connection must be closed (the server
// cannot parse them; Kafka does the same), except ApiVersions above its
// range, which is answered in the v0 layout with UNSUPPORTED_VERSION
// (KIP-511).
func TestAdvertisedVersionsAreServed(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("t"))
	advertised := askApiVersions(t, b.Addr())
	if len(advertised) == 0 {
		t.Fatal("no API advertised")
	}
	for _, k := range advertised {
		lo := max(k.MinVersion-1, 0)
		for v := lo; v <= k.MaxVersion+1; v++ {
			name := fmt.Sprintf("%s v%d", kmsg.NameForKey(k.ApiKey), v)
			req := minimalRequest(t, k.ApiKey, v)
			resp, closed := roundTrip(t, b.Addr(), req, v)
			inRange := v >= k.MinVersion && v <= k.MaxVersion
			refused, isRefused := advertisedButRefused[k.ApiKey]
			isRefused = isRefused && v >= refused[0] && v <= refused[1]
			switch {
			case !inRange && k.ApiKey == 18 && v > k.MaxVersion:
				if closed || resp.(*kmsg.ApiVersionsResponse).ErrorCode != kerr.UnsupportedVersion.Code {
					t.Errorf("%s (above the range): want the v0-layout UNSUPPORTED_VERSION answer, closed=%v", name, closed)
				}
			case !inRange:
				if !closed {
					t.Errorf("%s is not advertised (%d..%d) but was answered", name, k.MinVersion, k.MaxVersion)
				}
			case closed:
				t.Errorf("%s is advertised but the connection was closed", name)
			case isRefused:
				if codes := errorCodes(resp); len(codes) == 0 || !all(codes, kerr.UnsupportedVersion.Code) {
					t.Errorf("%s is advertised only to be refused, but answered codes %v", name, codes)
				}
			default:
				want, ok := minimalAnswers[k.ApiKey]
				if !ok {
					t.Errorf("%s: minimalAnswers has no expected answer for this key", name)
				}
				for _, c := range errorCodes(resp) {
					if !want[c] {
						t.Errorf("%s is advertised but answered %v, want one of %v", name, kerr.ErrorForCode(c), codeNames(want))
						break
					}
				}
			}
		}
	}
}

// TestFeatures checks the feature flags ApiVersions sends (KIP-584): at v3+
// the supported range and the finalized level of every feature idem
// implements, with a finalized epoch clients accept; nothing below v3, whose
// layout has no such fields. franz-go switches to transaction version 2 on
// exactly this (client.go, supportsKIP890p2).
func TestFeatures(t *testing.T) {
	b := brokertest.Run(t)
	for v := int16(0); v <= 4; v++ {
		resp, closed := roundTrip(t, b.Addr(), minimalRequest(t, 18, v), v)
		if closed {
			t.Fatalf("ApiVersions v%d: closed", v)
		}
		r := resp.(*kmsg.ApiVersionsResponse)
		if v < 3 {
			if len(r.SupportedFeatures)+len(r.FinalizedFeatures) > 0 {
				t.Errorf("v%d carries features", v)
			}
			continue
		}
		supported := map[string][2]int16{}
		for _, f := range r.SupportedFeatures {
			supported[f.Name] = [2]int16{f.MinVersion, f.MaxVersion}
		}
		finalized := map[string][2]int16{}
		for _, f := range r.FinalizedFeatures {
			finalized[f.Name] = [2]int16{f.MinVersionLevel, f.MaxVersionLevel}
		}
		if got := supported["transaction.version"]; got != [2]int16{0, 2} {
			t.Errorf("v%d: supported transaction.version %v, want [0 2]", v, got)
		}
		if got := finalized["transaction.version"]; got != [2]int16{2, 2} {
			t.Errorf("v%d: finalized transaction.version %v, want level 2", v, got)
		}
		if got, want := finalized["group.version"], [2]int16{1, 1}; got != want || supported["group.version"] != [2]int16{0, 1} {
			t.Errorf("v%d: group.version supported %v finalized %v, want [0 1] and level 1 (KIP-848)", v, supported["group.version"], got)
		}
		if r.FinalizedFeaturesEpoch < 0 {
			t.Errorf("v%d: finalized features epoch %d; clients ignore features at -1", v, r.FinalizedFeaturesEpoch)
		}
		// What a transaction version 2 client needs with it.
		for key, least := range map[int16]int16{0: 12, 26: 5, 28: 5} {
			for _, k := range r.ApiKeys {
				if k.ApiKey == key && k.MaxVersion < least {
					t.Errorf("v%d: %s max %d < %d, which transaction version 2 needs", v, kmsg.NameForKey(key), k.MaxVersion, least)
				}
			}
		}
	}
}

// askApiVersions returns the table the broker advertises, as a client sees it.
func askApiVersions(t *testing.T, addr string) []kmsg.ApiVersionsResponseApiKey {
	t.Helper()
	req := minimalRequest(t, 18, 3)
	resp, closed := roundTrip(t, addr, req, 3)
	if closed {
		t.Fatal("ApiVersions v3: connection closed")
	}
	return resp.(*kmsg.ApiVersionsResponse).ApiKeys
}

// minimalAnswers are the codes the minimal request of each key may get back
// at an advertised version (0 = success). Anything else, UNSUPPORTED_VERSION
// above all, means a version is advertised that the handler does not serve.
var minimalAnswers = map[int16]map[int16]bool{
	0:  codes(0),                            // Produce
	1:  codes(0),                            // Fetch
	2:  codes(0),                            // ListOffsets
	3:  codes(0),                            // Metadata
	8:  codes(0),                            // OffsetCommit (a simple commit)
	9:  codes(0),                            // OffsetFetch
	10: codes(0),                            // FindCoordinator
	11: codes(kerr.UnknownMemberID.Code),    // JoinGroup
	12: codes(kerr.UnknownMemberID.Code),    // Heartbeat
	13: codes(0, kerr.UnknownMemberID.Code), // LeaveGroup (v3+: per member)
	14: codes(kerr.UnknownMemberID.Code),    // SyncGroup
	15: codes(0),                            // DescribeGroups (a Dead group)
	16: codes(0),                            // ListGroups
	17: codes(kerr.IllegalSaslState.Code),   // SaslHandshake on a listener without SASL
	18: codes(0),                            // ApiVersions
	19: codes(0),                            // CreateTopics
	20: codes(kerr.UnknownTopicOrPartition.Code),
	21: codes(0), // DeleteRecords
	22: codes(0), // InitProducerId (idempotent)
	23: codes(0), // OffsetForLeaderEpoch
	// The transactional id was never initialised.
	24: codes(0, kerr.InvalidProducerIDMapping.Code), // AddPartitionsToTxn (v4+: the top-level code is 0)
	25: codes(kerr.InvalidProducerIDMapping.Code),    // AddOffsetsToTxn
	26: codes(kerr.InvalidProducerIDMapping.Code),    // EndTxn
	28: codes(kerr.InvalidProducerIDMapping.Code),    // TxnOffsetCommit
	29: codes(kerr.SecurityDisabled.Code),            // DescribeAcls without an authorizer
	30: codes(0),                                     // CreateAcls (nothing to create)
	31: codes(0),                                     // DeleteAcls (no filters)
	32: codes(0),                                     // DescribeConfigs
	36: codes(kerr.IllegalSaslState.Code),            // SaslAuthenticate on a listener without SASL
	35: codes(0),                                     // DescribeLogDirs
	37: codes(0),                                     // CreatePartitions (validate only)
	42: codes(kerr.GroupIDNotFound.Code),             // DeleteGroups
	47: codes(0),                                     // OffsetDelete
	48: codes(0),                                     // DescribeClientQuotas (everything)
	49: codes(0),                                     // AlterClientQuotas (nothing to alter)
	50: codes(0),                                     // DescribeUserScramCredentials (all users)
	51: codes(0),                                     // AlterUserScramCredentials (nothing to alter)
	60: codes(0),                                     // DescribeCluster
	61: codes(0),                                     // DescribeProducers
	65: codes(kerr.TransactionalIDNotFound.Code),     // DescribeTransactions
	66: codes(0),                                     // ListTransactions
	68: codes(0),                                     // ConsumerGroupHeartbeat (a join)
	69: codes(0),                                     // ConsumerGroupDescribe (the group the join made)
	33: codes(0),                                     // AlterConfigs (nothing to alter)
	44: codes(0),                                     // IncrementalAlterConfigs (nothing to alter)
	76: codes(kerr.InvalidGroupID.Code),              // ShareGroupHeartbeat (no group id)
	77: codes(0),                                     // ShareGroupDescribe (no groups named)
	78: codes(kerr.InvalidRequest.Code),              // ShareFetch (no group, no member)
	79: codes(kerr.InvalidRequest.Code),              // ShareAcknowledge (no session)
	90: codes(0),                                     // DescribeShareGroupOffsets (no groups named)
	91: codes(kerr.InvalidGroupID.Code),              // AlterShareGroupOffsets (no group id)
	92: codes(kerr.GroupIDNotFound.Code),             // DeleteShareGroupOffsets (unknown group)
}

func codeNames(m map[int16]bool) []string {
	var names []string
	for c := range m {
		if e := kerr.ErrorForCode(c); e != nil {
			names = append(names, e.(*kerr.Error).Message)
		} else {
			names = append(names, "NONE")
		}
	}
	sort.Strings(names)
	return names
}

func codes(cs ...int16) map[int16]bool {
	m := map[int16]bool{}
	for _, c := range cs {
		m[c] = true
	}
	return m
}

// minimalRequest is a small request for key at version that a broker can
// answer at once: it names topic "t" partition 0, group "g" and
// transactional id "tx", none of which needs to be in any state (an error
// such as UNKNOWN_MEMBER_ID is an answer).
func minimalRequest(t *testing.T, key, version int16) kmsg.Request {
	t.Helper()
	req := kmsg.RequestForKey(key)
	if req == nil {
		t.Fatalf("kmsg has no request for key %d", key)
	}
	const topic, group, txnID = "t", "g", "tx"
	switch r := req.(type) {
	case *kmsg.ProduceRequest:
		r.Acks, r.TimeoutMillis = 1, 5000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = oneRecordBatch()
		rt.Partitions = append(rt.Partitions, rp)
		r.Topics = append(r.Topics, rt)
	case *kmsg.FetchRequest:
		r.MaxWaitMillis, r.MaxBytes = 0, 1<<20
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.PartitionMaxBytes = 1 << 20
		rt.Partitions = append(rt.Partitions, rp)
		r.Topics = append(r.Topics, rt)
	case *kmsg.ListOffsetsRequest:
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Timestamp = -1
		rt.Partitions = append(rt.Partitions, rp)
		r.Topics = append(r.Topics, rt)
	case *kmsg.MetadataRequest:
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(topic)
		r.Topics = append(r.Topics, rt)
	case *kmsg.OffsetCommitRequest:
		r.Group, r.Generation = group, -1
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic = topic
		rt.Partitions = append(rt.Partitions, kmsg.NewOffsetCommitRequestTopicPartition())
		r.Topics = append(r.Topics, rt)
	case *kmsg.OffsetFetchRequest:
		r.Group = group
		g := kmsg.NewOffsetFetchRequestGroup()
		g.Group = group
		r.Groups = append(r.Groups, g)
	case *kmsg.FindCoordinatorRequest:
		r.CoordinatorKey, r.CoordinatorKeys = group, []string{group}
	case *kmsg.JoinGroupRequest:
		// An unknown member is answered at once (UNKNOWN_MEMBER_ID),
		// without waiting for a rebalance.
		r.Group, r.MemberID, r.ProtocolType = group, "nobody", "consumer"
		r.SessionTimeoutMillis, r.RebalanceTimeoutMillis = 10000, 10000
		p := kmsg.NewJoinGroupRequestProtocol()
		p.Name = "range"
		r.Protocols = append(r.Protocols, p)
	case *kmsg.HeartbeatRequest:
		r.Group, r.MemberID = group, "nobody"
	case *kmsg.LeaveGroupRequest:
		r.Group, r.MemberID = group, "nobody"
		m := kmsg.NewLeaveGroupRequestMember()
		m.MemberID = "nobody"
		r.Members = append(r.Members, m)
	case *kmsg.SyncGroupRequest:
		r.Group, r.MemberID = group, "nobody"
	case *kmsg.DescribeGroupsRequest:
		r.Groups = []string{group}
	case *kmsg.ApiVersionsRequest:
		r.ClientSoftwareName, r.ClientSoftwareVersion = "idem-test", "1"
	case *kmsg.CreateTopicsRequest:
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic = fmt.Sprintf("created-v%d", version)
		rt.NumPartitions, rt.ReplicationFactor = 1, 1
		r.Topics = append(r.Topics, rt)
		r.TimeoutMillis = 5000
	case *kmsg.DeleteTopicsRequest:
		r.TopicNames = []string{"absent"}
		rt := kmsg.NewDeleteTopicsRequestTopic()
		rt.Topic = kmsg.StringPtr("absent")
		r.Topics = append(r.Topics, rt)
	case *kmsg.DeleteRecordsRequest:
		rt := kmsg.NewDeleteRecordsRequestTopic()
		rt.Topic = topic
		rt.Partitions = append(rt.Partitions, kmsg.NewDeleteRecordsRequestTopicPartition())
		r.Topics = append(r.Topics, rt)
	case *kmsg.InitProducerIDRequest:
		r.TransactionTimeoutMillis = 60000
	case *kmsg.OffsetForLeaderEpochRequest:
		rt := kmsg.NewOffsetForLeaderEpochRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
		rp.CurrentLeaderEpoch = -1
		rt.Partitions = append(rt.Partitions, rp)
		r.Topics = append(r.Topics, rt)
	case *kmsg.AddPartitionsToTxnRequest:
		r.TransactionalID = txnID
		rt := kmsg.NewAddPartitionsToTxnRequestTopic()
		rt.Topic, rt.Partitions = topic, []int32{0}
		r.Topics = append(r.Topics, rt)
		// v4+: the batched form, one transaction to verify.
		tx := kmsg.NewAddPartitionsToTxnRequestTransaction()
		tx.TransactionalID, tx.VerifyOnly = txnID, true
		tt := kmsg.NewAddPartitionsToTxnRequestTransactionTopic()
		tt.Topic, tt.Partitions = topic, []int32{0}
		tx.Topics = append(tx.Topics, tt)
		r.Transactions = append(r.Transactions, tx)
	case *kmsg.AddOffsetsToTxnRequest:
		r.TransactionalID, r.Group = txnID, group
	case *kmsg.EndTxnRequest:
		r.TransactionalID = txnID
	case *kmsg.TxnOffsetCommitRequest:
		r.TransactionalID, r.Group = txnID, group
		rt := kmsg.NewTxnOffsetCommitRequestTopic()
		rt.Topic = topic
		rt.Partitions = append(rt.Partitions, kmsg.NewTxnOffsetCommitRequestTopicPartition())
		r.Topics = append(r.Topics, rt)
	case *kmsg.DescribeConfigsRequest:
		rr := kmsg.NewDescribeConfigsRequestResource()
		rr.ResourceType, rr.ResourceName = kmsg.ConfigResourceTypeTopic, topic
		r.Resources = append(r.Resources, rr)
	case *kmsg.CreatePartitionsRequest:
		rt := kmsg.NewCreatePartitionsRequestTopic()
		rt.Topic, rt.Count = topic, 2
		r.Topics = append(r.Topics, rt)
		r.ValidateOnly = true
	case *kmsg.DeleteGroupsRequest:
		r.Groups = []string{"absent"}
	case *kmsg.OffsetDeleteRequest:
		r.Group = group
		rt := kmsg.NewOffsetDeleteRequestTopic()
		rt.Topic = topic
		rt.Partitions = append(rt.Partitions, kmsg.NewOffsetDeleteRequestTopicPartition())
		r.Topics = append(r.Topics, rt)
	case *kmsg.DescribeProducersRequest:
		rt := kmsg.NewDescribeProducersRequestTopic()
		rt.Topic, rt.Partitions = topic, []int32{0}
		r.Topics = append(r.Topics, rt)
	case *kmsg.DescribeTransactionsRequest:
		r.TransactionalIDs = []string{txnID}
	case *kmsg.ConsumerGroupHeartbeatRequest:
		// A join of a new member (v0: the coordinator names it).
		r.Group, r.MemberEpoch, r.RebalanceTimeoutMillis = "cg", 0, 30000
		if version >= 1 {
			r.MemberID = fmt.Sprintf("member-v%d", version)
		}
		r.SubscribedTopicNames = []string{topic}
		r.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	case *kmsg.ConsumerGroupDescribeRequest:
		r.Groups = []string{"cg"}
	}
	req.SetVersion(version)
	return req
}

// oneRecordBatch is a v2 batch holding one record, as any client sends it.
func oneRecordBatch() []byte {
	r := kmsg.Record{Value: []byte("v")}
	r.Length = int32(len(r.AppendTo(nil)) - 1)
	b := kmsg.RecordBatch{PartitionLeaderEpoch: -1, Magic: 2, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: 1, Records: r.AppendTo(nil)}
	b.Length = int32(len(b.AppendTo(nil)) - 12)
	out := b.AppendTo(nil)
	logstore.FixCRC(out)
	return out
}

// roundTrip sends req at version on a fresh connection and returns the
// decoded response, or closed = true when the broker closed the connection
// instead of answering.
func roundTrip(t *testing.T, addr string, req kmsg.Request, version int16) (resp kmsg.Response, closed bool) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	const corr = 7
	if _, err := c.Write(kmsg.NewRequestFormatter(kmsg.FormatterClientID("idem-apiversions-test")).AppendRequest(nil, req, corr)); err != nil {
		t.Fatal(err)
	}
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%s v%d: neither answered nor closed", kmsg.NameForKey(req.Key()), version)
		}
		return nil, true
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatalf("%s v%d: reading the response: %v", kmsg.NameForKey(req.Key()), version, err)
	}
	if got := int32(binary.BigEndian.Uint32(body)); got != corr {
		t.Fatalf("%s v%d: correlation id %d", kmsg.NameForKey(req.Key()), version, got)
	}
	body = body[4:]
	resp = req.ResponseKind()
	resp.SetVersion(version)
	switch {
	case req.Key() == 18 && version > req.MaxVersion():
		resp.SetVersion(0) // KIP-511: the v0 layout
	case req.Key() == 18:
		// ApiVersions responses always have header v0.
	case resp.IsFlexible():
		body = body[1:] // the response header's empty tag section
	}
	if err := resp.ReadFrom(body); err != nil {
		t.Fatalf("%s v%d: decoding the response: %v", kmsg.NameForKey(req.Key()), version, err)
	}
	return resp, false
}

// errorCodes collects every ErrorCode field of a response, at any depth.
func errorCodes(resp kmsg.Response) []int16 {
	var codes []int16
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Pointer:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Struct:
			for i := range v.NumField() {
				f := v.Type().Field(i)
				if f.Name == "ErrorCode" && f.Type.Kind() == reflect.Int16 {
					codes = append(codes, int16(v.Field(i).Int()))
					continue
				}
				if f.IsExported() {
					walk(v.Field(i))
				}
			}
		case reflect.Slice:
			if v.Type().Elem().Kind() == reflect.Uint8 {
				return
			}
			for i := range v.Len() {
				walk(v.Index(i))
			}
		}
	}
	walk(reflect.ValueOf(resp))
	return codes
}

func all(codes []int16, c int16) bool {
	for _, x := range codes {
		if x != c {
			return false
		}
	}
	return true
}
