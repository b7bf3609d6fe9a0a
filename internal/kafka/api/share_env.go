package api

// Helpers of the share-group APIs (76–79, 90–92): the adapter that lets the
// share coordinator read and write partitions through the topic manager,
// and the map from the coordinator's errors to Kafka codes.

import (
	"bytes"
	"slices"

	"github.com/idem-dev/idem/internal/catalog"
	"github.com/idem-dev/idem/internal/partition"
	"github.com/idem-dev/idem/internal/share"
	"github.com/idem-dev/idem/internal/topics"
)

// ShareTopics adapts the broker's topic manager and producer-id allocator
// to what the share coordinator needs.
func ShareTopics(m *topics.Manager, pids *topics.IDAllocator) share.Topics {
	return shareTopics{m, pids}
}

type shareTopics struct {
	m    *topics.Manager
	pids *topics.IDAllocator
}

func topicInfo(t catalog.Topic) share.TopicInfo {
	return share.TopicInfo{Name: t.Name, ID: t.ID, Partitions: t.Partitions, Configs: t.Configs}
}

func (s shareTopics) ByName(name string) (share.TopicInfo, bool) {
	t, ok := s.m.Topic(name)
	return topicInfo(t), ok
}

func (s shareTopics) ByID(id [16]byte) (share.TopicInfo, bool) {
	t, ok := s.m.Catalog().ByID(catalog.ID(id))
	return topicInfo(t), ok
}

func (s shareTopics) Partition(topic string, index int32) (share.Partition, error) {
	p, err := s.m.Lookup(topic, index)
	if err != nil {
		return nil, err
	}
	return sharePartition{p}, nil
}

func (s shareTopics) CreateTopic(name string, partitions int32, configs map[string]string) (share.TopicInfo, error) {
	t, err := s.m.CreateTopic(name, partitions, configs)
	return topicInfo(t), err
}

func (s shareTopics) NewProducerID() (int64, error) { return s.pids.Next() }

type sharePartition struct{ *partition.Partition }

func (p sharePartition) AbortedTransactions(from, to int64) []share.AbortedTxn {
	var out []share.AbortedTxn
	for _, a := range p.Partition.AbortedTransactions(from, to) {
		out = append(out, share.AbortedTxn(a))
	}
	return out
}

func (p sharePartition) Append(b []byte) (share.AppendResult, error) {
	r, err := p.Partition.Append(b)
	return share.AppendResult{BaseOffset: r.BaseOffset, LastOffset: r.LastOffset, Duplicate: r.Duplicate}, err
}

// shareCode is the share-group APIs' answer for err (the one error table,
// coordinator family).
func shareCode(err error) int16 { return errorCode(err, coordinatorAPIs) }

// shareMessage is the error message sent beside a share error code.
func shareMessage(err error) *string {
	if err == nil {
		return nil
	}
	s := err.Error()
	return &s
}

// sortedShareTopicIDs orders a share assignment's topics for stable answers.
func sortedShareTopicIDs(m map[[16]byte][]int32) [][16]byte {
	ids := make([][16]byte, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b [16]byte) int { return bytes.Compare(a[:], b[:]) })
	return ids
}

func sortedStringKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
