package txn

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/testkit/txnkit"
)

// TestTransactionAPIsOnTheWire drives the coordinator's APIs with raw
// requests, pinning the error codes clients depend on: PRODUCER_FENCED
// from KIP-588 versions on, INVALID_PRODUCER_EPOCH before; the idempotent
// EndTxn retry; CONCURRENT_TRANSACTIONS while a fence aborts; unknown
// partitions; and what DescribeTransactions, ListTransactions and
// DescribeProducers report.
func TestTransactionAPIsOnTheWire(t *testing.T) {
	b := brokertest.Run(t)
	seeds := []string{b.Addr()}
	txnkit.CreateTopics(t, seeds, 2, "w")
	cl := b.Client(t)
	// old speaks the versions that predate KIP-588 (PRODUCER_FENCED).
	oldVersions := kversion.Stable()
	for key, v := range map[int16]int16{22: 3, 24: 1, 25: 1, 26: 1} {
		oldVersions.SetMaxKeyVersion(key, v)
	}
	old := b.Client(t, kgo.MaxVersions(oldVersions))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// clientFor returns the client speaking version (old: below 2, else the newest).
	clientFor := func(version int16) *kgo.Client {
		if version < 2 {
			return old
		}
		return cl
	}
	initPID := func(version int16, id string, pid int64, epoch int16) *kmsg.InitProducerIDResponse {
		t.Helper()
		req := kmsg.NewPtrInitProducerIDRequest()
		c := cl
		if version < 4 {
			c = old
		}
		req.TransactionalID = kmsg.StringPtr(id)
		req.TransactionTimeoutMillis = 60000
		req.ProducerID, req.ProducerEpoch = pid, epoch
		resp, err := req.RequestWith(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	addParts := func(version int16, id string, pid int64, epoch int16, parts ...int32) []int16 {
		t.Helper()
		req := kmsg.NewPtrAddPartitionsToTxnRequest()
		req.TransactionalID, req.ProducerID, req.ProducerEpoch = id, pid, epoch
		rt := kmsg.NewAddPartitionsToTxnRequestTopic()
		rt.Topic, rt.Partitions = "w", parts
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, clientFor(version))
		if err != nil {
			t.Fatal(err)
		}
		var codes []int16
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				codes = append(codes, rp.ErrorCode)
			}
		}
		return codes
	}
	endTxn := func(version int16, id string, pid int64, epoch int16, commit bool) int16 {
		t.Helper()
		req := kmsg.NewPtrEndTxnRequest()
		req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit = id, pid, epoch, commit
		resp, err := req.RequestWith(ctx, clientFor(version))
		if err != nil {
			t.Fatal(err)
		}
		return resp.ErrorCode
	}
	addOffsets := func(version int16, id string, pid int64, epoch int16) int16 {
		t.Helper()
		req := kmsg.NewPtrAddOffsetsToTxnRequest()
		req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group = id, pid, epoch, "g"
		resp, err := req.RequestWith(ctx, clientFor(version))
		if err != nil {
			t.Fatal(err)
		}
		return resp.ErrorCode
	}
	is := func(what string, got int16, want *kerr.Error) {
		t.Helper()
		if got != want.Code {
			t.Errorf("%s: got %v, want %v", what, kerr.ErrorForCode(got), want)
		}
	}
	ok := func(what string, got int16) {
		t.Helper()
		if got != 0 {
			t.Errorf("%s: got %v, want success", what, kerr.ErrorForCode(got))
		}
	}

	r := initPID(4, "w1", -1, -1)
	ok("InitProducerId", r.ErrorCode)
	pid, epoch := r.ProducerID, r.ProducerEpoch
	for _, c := range addParts(3, "w1", pid, epoch, 0, 1) {
		ok("AddPartitionsToTxn", c)
	}
	ok("AddOffsetsToTxn", addOffsets(3, "w1", pid, epoch))
	codes := addParts(3, "w1", pid, epoch, 0, 9)
	is("AddPartitionsToTxn, existing partition beside an unknown one", codes[0], kerr.OperationNotAttempted)
	is("AddPartitionsToTxn, unknown partition", codes[1], kerr.UnknownTopicOrPartition)

	// What the coordinator and the partitions report while it is open.
	dt := kmsg.NewPtrDescribeTransactionsRequest()
	dt.TransactionalIDs = []string{"w1", "nope"}
	dresp, err := dt.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	st := dresp.TransactionStates[0]
	if st.State != "Ongoing" || st.ProducerID != pid || st.ProducerEpoch != epoch || st.TimeoutMillis != 60000 ||
		st.StartTimestamp <= 0 || len(st.Topics) != 1 || len(st.Topics[0].Partitions) != 2 {
		t.Errorf("DescribeTransactions w1: %+v", st)
	}
	is("DescribeTransactions of an unknown id", dresp.TransactionStates[1].ErrorCode, kerr.TransactionalIDNotFound)
	lt := kmsg.NewPtrListTransactionsRequest()
	lt.StateFilters = []string{"Ongoing", "Bogus"}
	lresp, err := lt.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if len(lresp.TransactionStates) != 1 || lresp.TransactionStates[0].TransactionalID != "w1" ||
		len(lresp.UnknownStateFilters) != 1 || lresp.UnknownStateFilters[0] != "Bogus" {
		t.Errorf("ListTransactions Ongoing: %+v", lresp)
	}

	// A second instance fences the first: the open transaction is aborted
	// first (CONCURRENT_TRANSACTIONS until it is), then the epoch is bumped.
	r = initPID(4, "w1", -1, -1)
	is("InitProducerId while a transaction is open", r.ErrorCode, kerr.ConcurrentTransactions)
	deadline := time.Now().Add(10 * time.Second)
	for r.ErrorCode == kerr.ConcurrentTransactions.Code && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		r = initPID(4, "w1", -1, -1)
	}
	ok("InitProducerId after the fence", r.ErrorCode)
	if r.ProducerID != pid || r.ProducerEpoch != epoch+2 {
		t.Errorf("after the fence: producer %d epoch %d, want %d epoch %d", r.ProducerID, r.ProducerEpoch, pid, epoch+2)
	}
	is("EndTxn v2 from the fenced instance", endTxn(2, "w1", pid, epoch, true), kerr.ProducerFenced)
	is("EndTxn v1 from the fenced instance", endTxn(1, "w1", pid, epoch, true), kerr.InvalidProducerEpoch)
	is("AddPartitionsToTxn v2 from the fenced instance", addParts(2, "w1", pid, epoch, 0)[0], kerr.ProducerFenced)
	is("AddPartitionsToTxn v1 from the fenced instance", addParts(1, "w1", pid, epoch, 0)[0], kerr.InvalidProducerEpoch)
	is("AddOffsetsToTxn v1 from the fenced instance", addOffsets(1, "w1", pid, epoch), kerr.InvalidProducerEpoch)
	is("InitProducerId v3 with a stale epoch", initPID(3, "w1", pid, epoch).ErrorCode, kerr.InvalidProducerEpoch)
	is("InitProducerId v4 with a stale epoch", initPID(4, "w1", pid, epoch).ErrorCode, kerr.ProducerFenced)

	// The new instance commits; a retried EndTxn succeeds, the opposite fails.
	epoch = r.ProducerEpoch
	ok("AddPartitionsToTxn (new instance)", addParts(3, "w1", pid, epoch, 1)[0])
	is("EndTxn of a wrong producer id", endTxn(3, "w1", pid+1, epoch, true), kerr.InvalidProducerIDMapping)
	ok("EndTxn commit", endTxn(3, "w1", pid, epoch, true))
	ok("EndTxn commit retried", endTxn(3, "w1", pid, epoch, true))
	is("EndTxn abort after the commit", endTxn(3, "w1", pid, epoch, false), kerr.InvalidTxnState)
	is("EndTxn with nothing open", endTxn(3, "w2-unknown", 1, 0, true), kerr.InvalidProducerIDMapping)

	// A transactional produce to a partition never added is refused, and
	// DescribeProducers shows the producer on the partitions it wrote.
	pcl := b.Client(t, kgo.TransactionalID("w3"), kgo.DefaultProduceTopic("w"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := pcl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := pcl.ProduceSync(ctx, &kgo.Record{Value: []byte("x"), Partition: 0}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	dp := kmsg.NewPtrDescribeProducersRequest()
	dpt := kmsg.NewDescribeProducersRequestTopic()
	dpt.Topic, dpt.Partitions = "w", []int32{0, 7}
	dp.Topics = append(dp.Topics, dpt)
	// Straight to the broker: the client would route by partition leader
	// and refuse the unknown partition itself.
	dpresp, err := dp.RequestWith(ctx, cl.SeedBrokers()[0])
	if err != nil {
		t.Fatal(err)
	}
	parts := dpresp.Topics[0].Partitions
	if len(parts) != 2 || parts[0].ErrorCode != 0 || len(parts[0].ActiveProducers) == 0 ||
		parts[0].ActiveProducers[len(parts[0].ActiveProducers)-1].CurrentTxnStartOffset < 0 {
		t.Errorf("DescribeProducers w/0 with an open transaction: %+v", parts)
	}
	is("DescribeProducers of an unknown partition", parts[1].ErrorCode, kerr.UnknownTopicOrPartition)
	if err := pcl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
}
