package api

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/group"
	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/topics"
	"github.com/idem-dev/idem/internal/txn"
)

func groupEnv(t *testing.T) *Env {
	t.Helper()
	cfg := group.DefaultConfig()
	cfg.FS, cfg.Dir, cfg.InitialRebalanceDelay = logstore.NewMemFS(), "offsets", 0
	c, err := group.NewCoordinator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &Env{Groups: c, PartitionExists: func(topic string, p int32) bool { return topic != "missing" && p < 4 }}
}

// call runs the registered handler for req at version v and round-trips the
// response through the wire encoding at that version.
func call[T kmsg.Response](t *testing.T, env *Env, req kmsg.Request, v int16) T {
	t.Helper()
	req.SetVersion(v)
	// Round-trip the request too, so version-gated fields read as a client sends them.
	wire := req.AppendTo(nil)
	dreq := kmsg.RequestForKey(req.Key())
	dreq.SetVersion(v)
	if err := dreq.ReadFrom(wire); err != nil {
		t.Fatalf("key %d v%d: decode request: %v", req.Key(), v, err)
	}
	h, minV, maxV, ok := Lookup(req.Key())
	if !ok || v < minV || v > maxV {
		t.Fatalf("key %d v%d not registered (%d..%d)", req.Key(), v, minV, maxV)
	}
	resp, err := h(context.Background(), env, &Conn{ClientID: "cl", RemoteAddr: "127.0.0.1:5555"}, dreq)
	if err != nil {
		t.Fatalf("key %d v%d: handler: %v", req.Key(), v, err)
	}
	b := resp.AppendTo(nil)
	dresp := kmsg.ResponseForKey(req.Key())
	dresp.SetVersion(v)
	if err := dresp.ReadFrom(b); err != nil {
		t.Fatalf("key %d v%d: decode response: %v", req.Key(), v, err)
	}
	return dresp.(T)
}

// TestGroupAPIsAllVersions drives a whole group life cycle through the
// handlers at every advertised version of every group API.
func TestGroupAPIsAllVersions(t *testing.T) {
	for v := int16(0); v <= 9; v++ {
		env := groupEnv(t)
		g := "g"
		// JoinGroup (v4+: MEMBER_ID_REQUIRED first).
		jreq := kmsg.NewPtrJoinGroupRequest()
		jreq.Group, jreq.ProtocolType, jreq.SessionTimeoutMillis, jreq.RebalanceTimeoutMillis = g, "consumer", 10000, 10000
		p := kmsg.NewJoinGroupRequestProtocol()
		p.Name, p.Metadata = "range", []byte{1}
		jreq.Protocols = append(jreq.Protocols, p)
		jresp := call[*kmsg.JoinGroupResponse](t, env, jreq, v)
		if v >= 4 {
			if jresp.ErrorCode != kerr.MemberIDRequired.Code || jresp.MemberID == "" {
				t.Fatalf("JoinGroup v%d: want MEMBER_ID_REQUIRED with an id, got %+v", v, jresp)
			}
			jreq.MemberID = jresp.MemberID
			jresp = call[*kmsg.JoinGroupResponse](t, env, jreq, v)
		}
		if jresp.ErrorCode != 0 || jresp.Generation != 1 || jresp.LeaderID != jresp.MemberID || len(jresp.Members) != 1 {
			t.Fatalf("JoinGroup v%d: %+v", v, jresp)
		}
		member := jresp.MemberID

		if sv := min(v, 5); true {
			sreq := kmsg.NewPtrSyncGroupRequest()
			sreq.Group, sreq.Generation, sreq.MemberID = g, 1, member
			a := kmsg.NewSyncGroupRequestGroupAssignment()
			a.MemberID, a.MemberAssignment = member, []byte("assigned")
			sreq.GroupAssignment = append(sreq.GroupAssignment, a)
			sresp := call[*kmsg.SyncGroupResponse](t, env, sreq, sv)
			if sresp.ErrorCode != 0 || string(sresp.MemberAssignment) != "assigned" {
				t.Fatalf("SyncGroup v%d: %+v", sv, sresp)
			}
		}
		if hv := min(v, 4); true {
			hreq := kmsg.NewPtrHeartbeatRequest()
			hreq.Group, hreq.Generation, hreq.MemberID = g, 1, member
			if hresp := call[*kmsg.HeartbeatResponse](t, env, hreq, hv); hresp.ErrorCode != 0 {
				t.Fatalf("Heartbeat v%d: %v", hv, kerr.ErrorForCode(hresp.ErrorCode))
			}
			hreq.Generation = 7
			if hresp := call[*kmsg.HeartbeatResponse](t, env, hreq, hv); hresp.ErrorCode != kerr.IllegalGeneration.Code {
				t.Fatalf("Heartbeat v%d stale generation: %v", hv, kerr.ErrorForCode(hresp.ErrorCode))
			}
		}
		if cv := max(v, 2); true {
			creq := kmsg.NewPtrOffsetCommitRequest()
			creq.Group, creq.Generation, creq.MemberID = g, 1, member
			ct := kmsg.NewOffsetCommitRequestTopic()
			ct.Topic = "t"
			for _, part := range []int32{0, 9} {
				cp := kmsg.NewOffsetCommitRequestTopicPartition()
				cp.Partition, cp.Offset, cp.LeaderEpoch = part, 42, 3
				cp.Metadata = kmsg.StringPtr("meta")
				ct.Partitions = append(ct.Partitions, cp)
			}
			creq.Topics = append(creq.Topics, ct)
			cresp := call[*kmsg.OffsetCommitResponse](t, env, creq, cv)
			if got := cresp.Topics[0].Partitions; got[0].ErrorCode != 0 || got[1].ErrorCode != kerr.UnknownTopicOrPartition.Code {
				t.Fatalf("OffsetCommit v%d: %+v", cv, got)
			}
		}
		if fv := max(v, 1); true {
			freq := kmsg.NewPtrOffsetFetchRequest()
			ft := kmsg.NewOffsetFetchRequestTopic()
			ft.Topic, ft.Partitions = "t", []int32{0, 1}
			if fv >= 8 {
				rg := kmsg.NewOffsetFetchRequestGroup()
				rg.Group = g
				gt := kmsg.NewOffsetFetchRequestGroupTopic()
				gt.Topic, gt.Partitions = "t", []int32{0, 1}
				rg.Topics = append(rg.Topics, gt)
				all := kmsg.NewOffsetFetchRequestGroup()
				all.Group = g // Topics nil: everything
				freq.Groups = append(freq.Groups, rg, all)
				fresp := call[*kmsg.OffsetFetchResponse](t, env, freq, fv)
				ps := fresp.Groups[0].Topics[0].Partitions
				if ps[0].Offset != 42 || ps[0].LeaderEpoch != 3 || *ps[0].Metadata != "meta" || ps[1].Offset != -1 {
					t.Fatalf("OffsetFetch v%d: %+v", fv, ps)
				}
				if len(fresp.Groups[1].Topics) != 1 || fresp.Groups[1].Topics[0].Partitions[0].Offset != 42 {
					t.Fatalf("OffsetFetch v%d all: %+v", fv, fresp.Groups[1])
				}
			} else {
				freq.Group = g
				freq.Topics = append(freq.Topics, ft)
				fresp := call[*kmsg.OffsetFetchResponse](t, env, freq, fv)
				ps := fresp.Topics[0].Partitions
				wantEpoch := int32(-1)
				if fv >= 5 && max(v, 2) >= 6 {
					wantEpoch = 3
				}
				if ps[0].Offset != 42 || ps[0].LeaderEpoch != wantEpoch || ps[1].Offset != -1 {
					t.Fatalf("OffsetFetch v%d: %+v", fv, ps)
				}
				if fv >= 2 {
					freq.Topics = nil
					fresp = call[*kmsg.OffsetFetchResponse](t, env, freq, fv)
					if len(fresp.Topics) != 1 || len(fresp.Topics[0].Partitions) != 1 {
						t.Fatalf("OffsetFetch v%d all: %+v", fv, fresp.Topics)
					}
				}
			}
		}
		if dv := min(v, 5); true {
			dreq := kmsg.NewPtrDescribeGroupsRequest()
			dreq.Groups = []string{g, "nope"}
			dresp := call[*kmsg.DescribeGroupsResponse](t, env, dreq, dv)
			d := dresp.Groups[0]
			if d.State != "Stable" || d.Protocol != "range" || len(d.Members) != 1 || string(d.Members[0].MemberAssignment) != "assigned" ||
				d.Members[0].ClientID != "cl" || d.Members[0].ClientHost != "/127.0.0.1" || dresp.Groups[1].State != "Dead" {
				t.Fatalf("DescribeGroups v%d: %+v", dv, dresp.Groups)
			}
		}
		if lv := min(v, 4); true {
			lreq := kmsg.NewPtrListGroupsRequest()
			lresp := call[*kmsg.ListGroupsResponse](t, env, lreq, lv)
			if len(lresp.Groups) != 1 || lresp.Groups[0].Group != g || lresp.Groups[0].ProtocolType != "consumer" {
				t.Fatalf("ListGroups v%d: %+v", lv, lresp)
			}
			if lv >= 4 {
				lreq.StatesFilter = []string{"Empty"}
				if lresp = call[*kmsg.ListGroupsResponse](t, env, lreq, lv); len(lresp.Groups) != 0 {
					t.Fatalf("ListGroups v%d filtered: %+v", lv, lresp)
				}
			}
		}
		// Deleting a live group fails; leave, then delete offsets and group.
		delReq := kmsg.NewPtrDeleteGroupsRequest()
		delReq.Groups = []string{g}
		if dresp := call[*kmsg.DeleteGroupsResponse](t, env, delReq, min(v, 2)); dresp.Groups[0].ErrorCode != kerr.NonEmptyGroup.Code {
			t.Fatalf("DeleteGroups of a live group: %+v", dresp)
		}
		if lv := min(v, 5); true {
			lreq := kmsg.NewPtrLeaveGroupRequest()
			lreq.Group = g
			if lv < 3 {
				lreq.MemberID = member
			} else {
				m := kmsg.NewLeaveGroupRequestMember()
				m.MemberID = member
				ghost := kmsg.NewLeaveGroupRequestMember()
				ghost.MemberID = "ghost"
				lreq.Members = append(lreq.Members, m, ghost)
			}
			lresp := call[*kmsg.LeaveGroupResponse](t, env, lreq, lv)
			if lresp.ErrorCode != 0 || (lv >= 3 && (lresp.Members[0].ErrorCode != 0 || lresp.Members[1].ErrorCode != kerr.UnknownMemberID.Code)) {
				t.Fatalf("LeaveGroup v%d: %+v", lv, lresp)
			}
		}
		odReq := kmsg.NewPtrOffsetDeleteRequest()
		odReq.Group = g
		odt := kmsg.NewOffsetDeleteRequestTopic()
		odt.Topic = "t"
		odp := kmsg.NewOffsetDeleteRequestTopicPartition()
		odt.Partitions = append(odt.Partitions, odp)
		odReq.Topics = append(odReq.Topics, odt)
		if odResp := call[*kmsg.OffsetDeleteResponse](t, env, odReq, 0); odResp.ErrorCode != 0 || odResp.Topics[0].Partitions[0].ErrorCode != 0 {
			t.Fatalf("OffsetDelete: %+v", odResp)
		}
		if dresp := call[*kmsg.DeleteGroupsResponse](t, env, delReq, min(v, 2)); dresp.Groups[0].ErrorCode != 0 {
			t.Fatalf("DeleteGroups: %+v", dresp)
		}
		if dresp := call[*kmsg.DeleteGroupsResponse](t, env, delReq, min(v, 2)); dresp.Groups[0].ErrorCode != kerr.GroupIDNotFound.Code {
			t.Fatalf("DeleteGroups twice: %+v", dresp)
		}
	}
}

// TestSimpleCommitAndNoCoordinator: generation -1 commits create the group;
// without a coordinator every group API answers COORDINATOR_NOT_AVAILABLE.
func TestSimpleCommitAndNoCoordinator(t *testing.T) {
	env := groupEnv(t)
	creq := kmsg.NewPtrOffsetCommitRequest()
	creq.Group, creq.Generation = "simple", -1
	ct := kmsg.NewOffsetCommitRequestTopic()
	ct.Topic = "t"
	cp := kmsg.NewOffsetCommitRequestTopicPartition()
	cp.Offset = 5
	ct.Partitions = append(ct.Partitions, cp)
	creq.Topics = append(creq.Topics, ct)
	if resp := call[*kmsg.OffsetCommitResponse](t, env, creq, 2); resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("simple commit: %+v", resp)
	}
	none := &Env{}
	if resp := call[*kmsg.OffsetCommitResponse](t, none, creq, 8); resp.Topics[0].Partitions[0].ErrorCode != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("commit without coordinator: %+v", resp)
	}
	jreq := kmsg.NewPtrJoinGroupRequest()
	jreq.Group = "g"
	if resp := call[*kmsg.JoinGroupResponse](t, none, jreq, 9); resp.ErrorCode != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("join without coordinator: %+v", resp)
	}
}

// TestTxnOffsetCommitAndRequireStable: transactional offsets are pending
// until the marker; OffsetFetch with RequireStable reports them unstable.
func TestTxnOffsetCommitAndRequireStable(t *testing.T) {
	for v := int16(0); v <= 4; v++ {
		env := groupEnv(t)
		pe := txnEnv(t, env, "tx", "g")
		treq := kmsg.NewPtrTxnOffsetCommitRequest()
		treq.TransactionalID, treq.Group, treq.ProducerID, treq.ProducerEpoch, treq.Generation = "tx", "g", pe.ProducerID, pe.Epoch, -1
		tt := kmsg.NewTxnOffsetCommitRequestTopic()
		tt.Topic = "t"
		for _, part := range []int32{0, 9} {
			tp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
			tp.Partition, tp.Offset = part, 10
			tt.Partitions = append(tt.Partitions, tp)
		}
		treq.Topics = append(treq.Topics, tt)
		tresp := call[*kmsg.TxnOffsetCommitResponse](t, env, treq, v)
		if ps := tresp.Topics[0].Partitions; ps[0].ErrorCode != 0 || ps[1].ErrorCode != kerr.UnknownTopicOrPartition.Code {
			t.Fatalf("TxnOffsetCommit v%d: %+v", v, ps)
		}
		fetchAt := func(fv int16, stable bool) kmsg.OffsetFetchResponseTopicPartition {
			freq := kmsg.NewPtrOffsetFetchRequest()
			freq.Group, freq.RequireStable = "g", stable
			ft := kmsg.NewOffsetFetchRequestTopic()
			ft.Topic, ft.Partitions = "t", []int32{0}
			freq.Topics = append(freq.Topics, ft)
			return call[*kmsg.OffsetFetchResponse](t, env, freq, fv).Topics[0].Partitions[0]
		}
		if p := fetchAt(7, true); p.ErrorCode != kerr.UnstableOffsetCommit.Code {
			t.Fatalf("RequireStable fetch of a pending offset: %+v", p)
		}
		if p := fetchAt(6, false); p.ErrorCode != 0 || p.Offset != -1 {
			t.Fatalf("fetch of a pending offset: %+v", p)
		}
		if err := env.Groups.CompleteTxnOffsets(context.Background(), "g", pe.ProducerID, pe.Epoch, true); err != nil {
			t.Fatal(err)
		}
		if p := fetchAt(7, true); p.ErrorCode != 0 || p.Offset != 10 {
			t.Fatalf("fetch after the commit marker: %+v", p)
		}
	}
}

// txnEnv gives env a real transaction coordinator (markers are not needed
// here) and opens a transaction for id that includes group.
func txnEnv(t *testing.T, env *Env, id, group string) txn.ProducerIDEpoch {
	t.Helper()
	fsys := logstore.NewMemFS()
	ids, err := topics.OpenIDAllocator(fsys, "producer-ids")
	if err != nil {
		t.Fatal(err)
	}
	cfg := txn.DefaultConfig()
	cfg.FS, cfg.Dir, cfg.ProducerIDs, cfg.Markers, cfg.Offsets = fsys, "txn", ids, noMarkers{}, env.Groups
	c, err := txn.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	env.Txn = c
	ctx := context.Background()
	pe, err := c.InitProducerID(ctx, id, time.Minute, txn.NoProducer)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddOffsets(ctx, id, pe.ProducerID, pe.Epoch, group); err != nil {
		t.Fatal(err)
	}
	return pe
}

type noMarkers struct{}

func (noMarkers) WriteMarker(context.Context, string, int32, int64, int16, bool, int32) error {
	return nil
}

// TestTxnOffsetCommitOutsideATransaction: offsets from a producer that did
// not add the group to an ongoing transaction are refused, so they can never
// sit pending with no marker coming and block RequireStable fetches.
func TestTxnOffsetCommitOutsideATransaction(t *testing.T) {
	env := groupEnv(t)
	pe := txnEnv(t, env, "tx", "other-group")
	for _, c := range []struct {
		name  string
		pid   int64
		epoch int16
		want  int16
	}{
		{"group not added", pe.ProducerID, pe.Epoch, kerr.InvalidTxnState.Code},
		{"stale epoch", pe.ProducerID, pe.Epoch - 1, kerr.ProducerFenced.Code},
	} {
		treq := kmsg.NewPtrTxnOffsetCommitRequest()
		treq.TransactionalID, treq.Group, treq.ProducerID, treq.ProducerEpoch, treq.Generation = "tx", "g", c.pid, c.epoch, -1
		tt := kmsg.NewTxnOffsetCommitRequestTopic()
		tt.Topic = "t"
		tp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
		tp.Partition, tp.Offset = 0, 10
		tt.Partitions = append(tt.Partitions, tp)
		treq.Topics = append(treq.Topics, tt)
		resp := call[*kmsg.TxnOffsetCommitResponse](t, env, treq, 3)
		if got := resp.Topics[0].Partitions[0].ErrorCode; got != c.want {
			t.Errorf("%s: error %d, want %d", c.name, got, c.want)
		}
	}
	freq := kmsg.NewPtrOffsetFetchRequest()
	freq.Group, freq.RequireStable = "g", true
	ft := kmsg.NewOffsetFetchRequestTopic()
	ft.Topic, ft.Partitions = "t", []int32{0}
	freq.Topics = append(freq.Topics, ft)
	if p := call[*kmsg.OffsetFetchResponse](t, env, freq, 7).Topics[0].Partitions[0]; p.ErrorCode != 0 || p.Offset != -1 {
		t.Fatalf("a refused transactional commit left the group unstable: %+v", p)
	}
}
