package group

import (
	"maps"
	"slices"
)

// rangeAssignor is Kafka's "range" server assignor: topic by topic, the
// members subscribed to the topic (in member-id order) each get a
// contiguous share of its partitions, ⌊P/N⌋ each and one more for the first
// P mod N, so that members line up across co-partitioned topics. It is
// sticky like Kafka's: a member keeps partitions of its current target up
// to its share (members that already hold one more keep it, while extras
// remain), and only the rest is dealt out, in partition order, to the
// members below their share. Without a current target the result is the
// classic range assignment.
type rangeAssignor struct{}

func (rangeAssignor) assign(members []assignMember, partitions map[TopicID]int32) []Assignment {
	owned := make([]Assignment, len(members))
	for i := range owned {
		owned[i] = Assignment{}
	}
	for _, t := range slices.SortedFunc(maps.Keys(partitions), cmpTopicID) {
		var subs []int
		for i, m := range members {
			if m.topics[t] {
				subs = append(subs, i)
			}
		}
		if len(subs) == 0 {
			continue
		}
		total := partitions[t]
		quota, extras := total/int32(len(subs)), total%int32(len(subs))
		taken := make([]bool, total)
		kept := make([][]int32, len(subs))
		// Keep current partitions up to the share.
		for k, i := range subs {
			for _, p := range members[i].current[t] {
				if p < total && !taken[p] && int32(len(kept[k])) < quota {
					taken[p] = true
					kept[k] = append(kept[k], p)
				}
			}
		}
		// Members that hold one more keep it while extras remain.
		extra := make([]bool, len(subs))
		for k, i := range subs {
			if extras == 0 {
				break
			}
			for _, p := range members[i].current[t] {
				if p < total && !taken[p] && int32(len(kept[k])) == quota {
					taken[p] = true
					kept[k] = append(kept[k], p)
					extra[k] = true
					extras--
					break
				}
			}
		}
		// The remaining extras go to the first members without one.
		for k := range subs {
			if extras > 0 && !extra[k] {
				extra[k] = true
				extras--
			}
		}
		next := int32(0)
		for k, i := range subs {
			share := quota
			if extra[k] {
				share++
			}
			for int32(len(kept[k])) < share {
				for taken[next] {
					next++
				}
				taken[next] = true
				kept[k] = append(kept[k], next)
			}
			for _, p := range kept[k] {
				owned[i].add(topicPartition{t, p})
			}
		}
	}
	return owned
}
