package api

// Internal topics: the names Kafka keeps for its own state.
//
// Behaviour:
//   - __consumer_offsets (while the group coordinator runs) and
//     __transaction_state (while the transaction coordinator runs) are listed
//     by Metadata as Kafka lists them: IsInternal true, both when all topics
//     are asked for and when they are named, never auto-created. Each has
//     one partition, led by this node: idem keeps each in one log (Kafka's
//     default is 50 partitions, one per coordinator shard). Their topic ids
//     are derived from the cluster id and the name, so they are stable
//     across restarts. Clients use IsInternal to leave them out of regex
//     subscriptions (franz-go, the Java client) and listings (kadm
//     ListTopics, kafka-topics --exclude-internal); librdkafka 2.0.2 has no
//     IsInternal and kcat -L lists them like any topic.
//   - Clients cannot write, read, trim or delete them: Produce, Fetch,
//     ListOffsets, OffsetForLeaderEpoch, DeleteRecords, DescribeProducers,
//     CreatePartitions and DeleteTopics answer INVALID_TOPIC_EXCEPTION (what
//     Kafka answers a Produce to an internal topic; Kafka protects the rest
//     with ACLs, and its kafka-topics tool refuses to delete them).
//     AddPartitionsToTxn answers TOPIC_AUTHORIZATION_FAILED, as Kafka does
//     for internal topics. Fetch is refused rather than served: idem's
//     __consumer_offsets log holds Kafka's record format, but it belongs to
//     the group coordinator, which offers no read path to clients;
//     __transaction_state is stored in idem's own format.
//   - CreateTopics of either name answers TOPIC_ALREADY_EXISTS, as Kafka
//     does once they exist. __share_group_state (idem has no share groups)
//     and __cluster_metadata (KRaft's log) cannot be created either
//     (INVALID_REQUEST, Kafka's answer for __cluster_metadata); other names
//     beginning with "__" are ordinary topics, as in Kafka (Debezium and
//     Confluent tools create such topics).
//
// A topic with one of these names in the catalog can only come from an idem
// that predates this file (Metadata auto-created __consumer_offsets as a
// plain topic); it is shadowed by the internal topic and left on disk.

import (
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/catalog"
	"github.com/idem-dev/idem/internal/partition"
)

// errInternalTopic refuses a client's read, write or delete of an internal
// topic (INVALID_TOPIC_EXCEPTION).
var errInternalTopic = errors.New("internal topic: it holds the broker's own state, which clients cannot read, write or delete")

// errReservedTopic refuses the creation of a name Kafka reserves for state
// this broker does not keep (INVALID_REQUEST).
var errReservedTopic = errors.New("reserved topic name")

// internalTopicNames are the internal topics idem serves, in the order
// Metadata lists them.
var internalTopicNames = []string{"__consumer_offsets", "__transaction_state"}

// reservedTopics says why each name Kafka reserves cannot be created when
// it is not an internal topic served now.
var reservedTopics = map[string]string{
	"__consumer_offsets":  "is kept by the group coordinator, which is not running",
	"__transaction_state": "is kept by the transaction coordinator, which is not running",
	"__share_group_state": "is kept by Kafka's share-group coordinator; this broker has no share groups",
	"__cluster_metadata":  "is KRaft's metadata log",
}

// isInternalTopic reports whether name is an internal topic this broker
// serves now.
func isInternalTopic(env *Env, name string) bool {
	switch name {
	case "__consumer_offsets":
		return env.Groups != nil
	case "__transaction_state":
		return env.Txn != nil
	}
	return false
}

// isReservedTopic reports whether name is one Kafka keeps for itself,
// served or not; such names are never auto-created.
func isReservedTopic(name string) bool {
	_, ok := reservedTopics[name]
	return ok
}

// createTopicError says why a client cannot create name (nil when it may):
// an internal topic already exists, and the other reserved names are refused.
func createTopicError(env *Env, name string) error {
	if isInternalTopic(env, name) {
		return fmt.Errorf("%w: %s is an internal topic", catalog.ErrTopicExists, name)
	}
	if why, ok := reservedTopics[name]; ok {
		return fmt.Errorf("%w: %s %s", errReservedTopic, name, why)
	}
	return nil
}

// internalTopicError is errInternalTopic naming the topic.
func internalTopicError(name string) error {
	return fmt.Errorf("%w (%s)", errInternalTopic, name)
}

// lookupPartition finds a partition for a data API, refusing internal topics
// before the catalog is asked.
func lookupPartition(env *Env, topic string, index int32) (*partition.Partition, error) {
	if isInternalTopic(env, topic) {
		return nil, internalTopicError(topic)
	}
	return env.Partitions.Lookup(topic, index)
}

// internalTopicID is the stable, non-zero topic id of an internal topic.
func internalTopicID(env *Env, name string) [16]byte {
	sum := sha256.Sum256([]byte("idem internal topic\x00" + env.ClusterID + "\x00" + name))
	var id [16]byte
	copy(id[:], sum[:16])
	id[0] |= 1 // never the zero id, which means "no id"
	return id
}

// internalTopicByID returns the name of the internal topic with id.
func internalTopicByID(env *Env, id [16]byte) (string, bool) {
	for _, name := range internalTopicNames {
		if isInternalTopic(env, name) && internalTopicID(env, name) == id {
			return name, true
		}
	}
	return "", false
}

// metadataInternalTopic describes an internal topic: one partition led by
// this node.
func metadataInternalTopic(env *Env, name string) kmsg.MetadataResponseTopic {
	st := kmsg.NewMetadataResponseTopic()
	st.Topic = kmsg.StringPtr(name)
	st.TopicID = internalTopicID(env, name)
	st.IsInternal = true
	sp := kmsg.NewMetadataResponseTopicPartition()
	sp.Partition = 0
	sp.Leader = env.NodeID
	sp.LeaderEpoch = 0
	sp.Replicas = []int32{env.NodeID}
	sp.ISR = []int32{env.NodeID}
	sp.OfflineReplicas = []int32{}
	st.Partitions = append(st.Partitions, sp)
	return st
}
