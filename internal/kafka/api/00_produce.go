package api

// Produce, versions 0–12 advertised; 3–12 served.
//
// v0–2 are advertised only because librdkafka before 2.11 enables
// gzip/snappy/lz4 only when Produce v0 is in range (KAFKA-18659); Kafka 4
// advertises them for the same reason. They carry old message sets, so every
// partition of such a request gets UNSUPPORTED_VERSION (Kafka 4 closes the
// connection instead; a per-partition answer tells an old client why). These
// are the only advertised versions not served (api_versions_test.go).
// v12 is v11 for clients that use transaction version 2 (KIP-890 part 2):
// their transactional batches add their partition to the transaction
// themselves. v13 (topic ids) is not advertised yet.
//
// Behaviour:
//   - One v2 record batch per partition, CRC-32C checked (CORRUPT_MESSAGE),
//     client rules checked (INVALID_RECORD), stored byte-for-byte as sent
//     (compressed batches stay compressed; zstd needs v7+).
//   - Size: a batch over max.message.bytes (or the topic's max.message.bytes)
//     gets MESSAGE_TOO_LARGE; over the segment size RECORD_LIST_TOO_LARGE.
//   - Appends happen here, on the connection's reader, in request order: the
//     idempotent sequence checks depend on it. A duplicate batch (same
//     producer, epoch and sequences as one of the last five) is answered with
//     its original offsets and nothing is written.
//   - acks=0: nothing is sent back; if any partition failed, the connection is
//     closed so the client refreshes metadata (Kafka does the same).
//   - acks=1: answered after write(2) (survives kill -9).
//   - acks=-1: answered after the fsync covering every batch of the request
//     (survives power loss); concurrent requests share fsyncs. The wait is a
//     Deferred, so the reader goes on appending the next pipelined request.
//     TimeoutMillis bounds the wait (REQUEST_TIMED_OUT); a failed fsync
//     answers KAFKA_STORAGE_ERROR.
//   - Internal topics (__consumer_offsets, __transaction_state) cannot be
//     written: INVALID_TOPIC_EXCEPTION, as Kafka answers.
//   - A compacted topic (cleanup.policy includes compact) refuses a batch
//     with a record that has no key: INVALID_RECORD, "compacted topic cannot
//     accept a record without a key", as Kafka's LogValidator does.
//   - Transactional batches (KIP-890 part 1, checked in process): the
//     coordinator must have an ongoing transaction of this producer id and
//     epoch that includes the partition (INVALID_TXN_STATE otherwise;
//     INVALID_PRODUCER_EPOCH when fenced, NOT_ENOUGH_REPLICAS when the
//     coordinator cannot answer, as Kafka translates its verification
//     errors). A plain batch from a producer whose transaction is open on
//     the partition gets INVALID_TXN_STATE.
//   - v12 with a transactional id (transaction version 2): before anything
//     is appended, the partitions of the request's transactional batches
//     are added to the producer's transaction (starting one if none is
//     open), durably, so that a crash can never leave transactional data in
//     a partition the coordinator does not know of. The add checks the
//     epoch: a batch of an earlier transaction, delivered late, is fenced
//     (INVALID_PRODUCER_EPOCH) instead of joining the current one.

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/partition"
	"github.com/idem-dev/idem/internal/security"
	"github.com/idem-dev/idem/internal/txn"
)

func init() { register(0, 0, 12, handleProduce) }

// durableWait is one partition of an acks=all request waiting for its fsync.
type durableWait struct {
	p   *partition.Partition
	end int64
	rp  *kmsg.ProduceResponseTopicPartition
}

func handleProduce(ctx context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ProduceRequest)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	version := req.GetVersion()

	acksOK := req.Acks == 0 || req.Acks == 1 || req.Acks == -1
	txnAllowed := req.TransactionID == nil || allowedTxnID(env, conn, security.OpWrite, *req.TransactionID)
	var notAdded map[txn.TopicPartition]error
	if txnAllowed && acksOK && version >= 12 && req.TransactionID != nil && env.Txn != nil {
		// Only the topics the principal may write join the transaction.
		notAdded = addImplicitly(ctx, env, *req.TransactionID, req.Topics, func(topic string) bool {
			return allowedTopic(env, conn, security.OpWrite, topic)
		})
	}
	failed := false
	var waits []durableWait
	for _, rt := range req.Topics {
		topicAllowed := allowedTopic(env, conn, security.OpWrite, rt.Topic)
		limits := limitsOf(env, rt.Topic)
		st := kmsg.NewProduceResponseTopic()
		st.Topic = rt.Topic
		st.Partitions = make([]kmsg.ProduceResponseTopicPartition, 0, len(rt.Partitions))
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			var p *partition.Partition
			var res partition.AppendResult
			var err error
			addErr := notAdded[txn.TopicPartition{Topic: rt.Topic, Partition: rp.Partition}]
			switch {
			case !acksOK:
				sp.ErrorCode = kerr.InvalidRequiredAcks.Code
			case version < 3:
				sp.ErrorCode = kerr.UnsupportedVersion.Code
			case !txnAllowed:
				sp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
			case !topicAllowed:
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			case addErr != nil:
				sp.ErrorCode, err = errorCode(addErr, produceAPI), addErr
			default:
				p, res, sp.ErrorCode, err = produceOne(env, version, rt.Topic, limits, rp.Partition, rp.Records, req.Acks == -1)
			}
			if sp.ErrorCode != 0 {
				failed = true
				if err != nil && version >= 8 {
					sp.ErrorMessage = errMessage(err)
				}
				if sp.ErrorCode == kerr.OutOfOrderSequenceNumber.Code {
					env.Partitions.OutOfOrders.Add(1)
				}
			} else {
				sp.BaseOffset = res.BaseOffset
				sp.LogAppendTime = res.LogAppendTime
				sp.LogStartOffset = p.StartOffset()
				if res.Duplicate {
					env.Partitions.Duplicates.Add(1)
				}
			}
			st.Partitions = append(st.Partitions, sp)
			if sp.ErrorCode == 0 && req.Acks == -1 {
				waits = append(waits, durableWait{p: p, end: res.LastOffset + 1})
			}
		}
		resp.Topics = append(resp.Topics, st)
	}
	if req.Acks == 0 {
		if failed {
			return nil, errAcks0Failed
		}
		return nil, nil
	}
	if len(waits) == 0 {
		return resp, nil
	}
	// Point each wait at its response partition now that the slices are final.
	i := 0
	for ti := range resp.Topics {
		for pi := range resp.Topics[ti].Partitions {
			sp := &resp.Topics[ti].Partitions[pi]
			if i < len(waits) && sp.ErrorCode == 0 {
				waits[i].rp = sp
				i++
			}
		}
	}
	timeout := time.Duration(req.TimeoutMillis) * time.Millisecond
	return &Deferred{Response: resp, Wait: func(ctx context.Context) error {
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		for _, w := range waits {
			if err := w.p.WaitDurable(ctx, w.end); err != nil {
				if ctx.Err() != nil && ctx.Err() != context.DeadlineExceeded {
					return err // connection closing: drop the response
				}
				w.rp.ErrorCode = errorCode(err, produceAPI)
				if ctx.Err() == context.DeadlineExceeded {
					w.rp.ErrorCode = kerr.RequestTimedOut.Code
				}
				w.rp.BaseOffset, w.rp.LogAppendTime = -1, -1
			}
		}
		return nil
	}}, nil
}

type produceError string

func (e produceError) Error() string { return string(e) }

const errAcks0Failed = produceError("acks=0 produce failed for a partition; closing so the client refreshes metadata")

// addImplicitly adds the partitions of a transaction version 2 request's
// transactional batches to their transaction (one durable change per
// producer id and epoch) and returns the error of every partition it could
// not add. Batches that will be refused anyway (internal topics, unknown
// partitions, malformed headers) are left to produceOne.
func addImplicitly(ctx context.Context, env *Env, txnID string, topics []kmsg.ProduceRequestTopic, mayWrite func(string) bool) map[txn.TopicPartition]error {
	type producer struct {
		pid   int64
		epoch int16
	}
	var order []producer
	parts := map[producer][]txn.TopicPartition{}
	for _, rt := range topics {
		if isInternalTopic(env, rt.Topic) || !mayWrite(rt.Topic) {
			continue
		}
		for _, rp := range rt.Partitions {
			b := rp.Records
			if len(b) < 61 || b[16] != 2 || binary.BigEndian.Uint16(b[21:])&0x10 == 0 || !env.Partitions.Exists(rt.Topic, rp.Partition) {
				continue
			}
			p := producer{int64(binary.BigEndian.Uint64(b[43:])), int16(binary.BigEndian.Uint16(b[51:]))}
			if _, ok := parts[p]; !ok {
				order = append(order, p)
			}
			parts[p] = append(parts[p], txn.TopicPartition{Topic: rt.Topic, Partition: rp.Partition})
		}
	}
	var failed map[txn.TopicPartition]error
	for _, p := range order {
		if err := env.Txn.AddPartitionsImplicit(ctx, txnID, p.pid, p.epoch, parts[p]); err != nil {
			if failed == nil {
				failed = map[txn.TopicPartition]error{}
			}
			for _, tp := range parts[p] {
				failed[tp] = err
			}
		}
	}
	return failed
}

// topicLimits are what a produced batch is checked against. They are
// looked up once per topic of a request, not per partition: a producer
// writing 1,000 partitions of a topic sends them all in each request.
type topicLimits struct {
	maxMessage, segmentBytes int64
	compacted                bool // records must have keys
}

func limitsOf(env *Env, topic string) topicLimits {
	t, _ := env.Partitions.Topic(topic)
	maxMsg := env.Config.Int("message.max.bytes")
	if v, ok := t.Configs["max.message.bytes"]; ok {
		maxMsg = parseInt(v, maxMsg)
	}
	return topicLimits{maxMessage: maxMsg, segmentBytes: env.Partitions.LogConfig(t).SegmentBytes, compacted: env.Partitions.Compacted(t)}
}

// produceOne validates and appends one partition's batch; with syncNow
// (acks=all) the partition's fsync starts at once.
func produceOne(env *Env, version int16, topic string, limits topicLimits, index int32, records []byte, syncNow bool) (*partition.Partition, partition.AppendResult, int16, error) {
	var none partition.AppendResult
	if isInternalTopic(env, topic) {
		err := internalTopicError(topic)
		return nil, none, errorCode(err, produceAPI), err
	}
	p, err := env.Partitions.Lookup(topic, index)
	if err != nil {
		return nil, none, errorCode(err, produceAPI), nil
	}
	switch {
	case len(records) < 61:
		return nil, none, kerr.CorruptMessage.Code, produceError("records shorter than a v2 batch header")
	case records[16] != 2:
		return nil, none, kerr.InvalidRecord.Code, produceError("only record batches of magic 2 are supported")
	case 12+int64(int32(binary.BigEndian.Uint32(records[8:]))) < int64(len(records)):
		return nil, none, kerr.InvalidRecord.Code, produceError("exactly one record batch per partition is allowed")
	case int64(len(records)) > limits.segmentBytes:
		return nil, none, kerr.RecordListTooLarge.Code, nil
	case int64(len(records)) > limits.maxMessage:
		return nil, none, kerr.MessageTooLarge.Code, nil
	}
	switch codec := binary.BigEndian.Uint16(records[21:]) & 0x07; {
	case codec > 4:
		return nil, none, kerr.CorruptMessage.Code, produceError("unknown compression codec")
	case codec == 4 && version < 7:
		return nil, none, kerr.UnsupportedCompressionType.Code, nil
	}
	if attrs := binary.BigEndian.Uint16(records[21:]); attrs&0x10 != 0 {
		pid := int64(binary.BigEndian.Uint64(records[43:]))
		epoch := int16(binary.BigEndian.Uint16(records[51:]))
		if env.Txn == nil {
			return nil, none, kerr.InvalidTxnState.Code, produceError("transactions are not enabled on this broker")
		}
		// Hold the transaction open across the append: an EndTxn that
		// arrives between the check and the write waits for it, so the
		// batch can never land after its own transaction's marker (where
		// it would pin the last stable offset until the producer's next
		// transaction on this partition).
		release, err := env.Txn.VerifyHold(pid, epoch, topic, index)
		if err != nil {
			return nil, none, errorCode(err, produceAPI), err
		}
		defer release()
	}
	if limits.compacted {
		if err := partition.RequireKeys(records); err != nil {
			return nil, none, errorCode(err, produceAPI), err
		}
	}
	var res partition.AppendResult
	if syncNow {
		res, err = p.AppendSyncNow(records)
	} else {
		res, err = p.Append(records)
	}
	if err != nil {
		return nil, none, errorCode(err, produceAPI), err
	}
	return p, res, 0, nil
}
