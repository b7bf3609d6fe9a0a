package group

import (
	"bytes"
	"maps"
	"slices"
)

// Server-side assignors of KIP-848 consumer groups. A consumer group's
// target assignment is computed here, on the coordinator, whenever the
// group epoch moves past the assignment epoch (a member joined, left or
// changed its subscription, or the subscribed topics changed). Both
// assignors are sticky, as Kafka's are: a partition stays with the member
// that has it unless balance requires a move, so a rebalance revokes as
// little as it can.

// TopicID is a topic's 16-byte id, by which KIP-848 assignments name topics.
type TopicID [16]byte

// Assignment is a set of partitions by topic id; each slice is sorted and
// holds no duplicates. Assignments are values: functions here return new
// ones and never change their arguments.
type Assignment map[TopicID][]int32

// topicPartition names one partition by topic id.
type topicPartition struct {
	topic     TopicID
	partition int32
}

func cmpTopicID(a, b TopicID) int { return bytes.Compare(a[:], b[:]) }

// sortedTopics returns a's topics in id order (determinism everywhere).
func (a Assignment) sortedTopics() []TopicID {
	return slices.SortedFunc(maps.Keys(a), cmpTopicID)
}

// count is the number of partitions in a.
func (a Assignment) count() int {
	n := 0
	for _, ps := range a {
		n += len(ps)
	}
	return n
}

func (a Assignment) has(tp topicPartition) bool {
	_, ok := slices.BinarySearch(a[tp.topic], tp.partition)
	return ok
}

// each calls fn for every partition of a, in order.
func (a Assignment) each(fn func(topicPartition)) {
	for _, t := range a.sortedTopics() {
		for _, p := range a[t] {
			fn(topicPartition{t, p})
		}
	}
}

func (a Assignment) equal(b Assignment) bool {
	if a.count() != b.count() {
		return false
	}
	for t, ps := range a {
		if !slices.Equal(ps, b[t]) {
			return false
		}
	}
	return true
}

// filter returns the partitions of a for which keep is true.
func (a Assignment) filter(keep func(topicPartition) bool) Assignment {
	out := Assignment{}
	a.each(func(tp topicPartition) {
		if keep(tp) {
			out[tp.topic] = append(out[tp.topic], tp.partition)
		}
	})
	return out
}

// union returns a ∪ b.
func (a Assignment) union(b Assignment) Assignment {
	out := Assignment{}
	for _, x := range []Assignment{a, b} {
		x.each(func(tp topicPartition) { out.add(tp) })
	}
	return out
}

// add puts tp into a (which it changes: for assignments being built).
func (a Assignment) add(tp topicPartition) {
	ps := a[tp.topic]
	i, ok := slices.BinarySearch(ps, tp.partition)
	if !ok {
		a[tp.topic] = slices.Insert(ps, i, tp.partition)
	}
}

// assignMember is one member as an assignor sees it: its resolved
// subscription and its current target, which stickiness keeps.
type assignMember struct {
	id      string
	topics  map[TopicID]bool
	current Assignment
}

// assignor computes a target assignment: one Assignment per member, in
// the order of members (which the caller sorts by member id). partitions
// gives the partition count of every topic any member subscribes to.
type assignor interface {
	assign(members []assignMember, partitions map[TopicID]int32) []Assignment
}

// assignors are the server assignors by the names clients send
// (ConsumerGroupHeartbeat.ServerAssignor); Kafka's are "uniform" and
// "range", and group.consumer.assignors picks the default.
var assignors = map[string]assignor{
	"uniform": uniformAssignor{},
	"range":   rangeAssignor{},
}

// validCurrent reports whether member m may keep tp from its current
// target: it still subscribes to the topic and the partition still exists.
func (m assignMember) validCurrent(tp topicPartition, partitions map[TopicID]int32) bool {
	return m.topics[tp.topic] && tp.partition < partitions[tp.topic]
}
