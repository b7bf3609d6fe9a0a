package api

// DescribeProducers, version 0 (KIP-664): each partition's producers with
// live idempotence state — id, epoch, last sequence, last write time — and
// the first offset of the transaction a producer has open there, which is
// what holds the partition's last stable offset back. With
// DescribeTransactions (the coordinator's side) an operator can tell a slow
// transaction from a hanging one.
//
// The coordinator epoch of each producer's last marker is not kept by
// partitions; one node's coordinator epoch never changes, so it is reported
// as -1 (unknown), which tools print as such.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
)

func init() { register(61, 0, 0, handleDescribeProducers) }

func handleDescribeProducers(_ context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeProducersRequest)
	resp := req.ResponseKind().(*kmsg.DescribeProducersResponse)
	for _, t := range req.Topics {
		rt := kmsg.NewDescribeProducersResponseTopic()
		rt.Topic = t.Topic
		for _, idx := range t.Partitions {
			rp := kmsg.NewDescribeProducersResponseTopicPartition()
			rp.Partition = idx
			p, err := lookupPartition(env, t.Topic, idx)
			if !allowedTopic(env, conn, security.OpRead, t.Topic) {
				rp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				rt.Partitions = append(rt.Partitions, rp)
				continue
			}
			if err != nil {
				rp.ErrorCode = errorCode(err, dataAPIs)
				rt.Partitions = append(rt.Partitions, rp)
				continue
			}
			for _, st := range p.ProducerStates() {
				ap := kmsg.NewDescribeProducersResponseTopicPartitionActiveProducer()
				ap.ProducerID = st.ProducerID
				ap.ProducerEpoch = int32(st.Epoch)
				ap.LastSequence = st.LastSequence
				ap.LastTimestamp = st.LastTime
				ap.CoordinatorEpoch = -1
				ap.CurrentTxnStartOffset = st.TxnStartOffset
				rp.ActiveProducers = append(rp.ActiveProducers, ap)
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, nil
}
