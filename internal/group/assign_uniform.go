package group

import (
	"maps"
	"slices"
)

// uniformAssignor is Kafka's default server assignor ("uniform"): it
// spreads all subscribed partitions as evenly as the subscriptions allow,
// counting partitions over all topics, and is sticky. With identical
// subscriptions every member ends with ⌊P/N⌋ or ⌈P/N⌉ partitions.
//
// The steps:
//  1. every member keeps the partitions of its current target that still
//     exist and that it still subscribes to (each partition once);
//  2. each partition nobody has goes to the subscribed member with the
//     fewest partitions;
//  3. while a member has at least two partitions more than another member
//     that could take one of them, the largest such donor gives one (its
//     highest) to the smallest such receiver.
//
// Step 3 moves only what balance requires, so a join revokes from each
// existing member only its excess, and a leave moves only the leaver's
// partitions.
type uniformAssignor struct{}

func (uniformAssignor) assign(members []assignMember, partitions map[TopicID]int32) []Assignment {
	n := len(members)
	owned := make([]Assignment, n)
	for i := range owned {
		owned[i] = Assignment{}
	}
	taken := map[topicPartition]bool{}
	for i, m := range members {
		m.current.each(func(tp topicPartition) {
			if m.validCurrent(tp, partitions) && !taken[tp] {
				taken[tp] = true
				owned[i].add(tp)
			}
		})
	}
	counts := make([]int, n)
	for i := range owned {
		counts[i] = owned[i].count()
	}
	for _, t := range slices.SortedFunc(maps.Keys(partitions), cmpTopicID) {
		for p := range partitions[t] {
			tp := topicPartition{t, p}
			if taken[tp] {
				continue
			}
			best := -1
			for i, m := range members {
				if m.topics[t] && (best < 0 || counts[i] < counts[best]) {
					best = i
				}
			}
			if best < 0 {
				continue // no member subscribes (cannot happen: partitions holds subscribed topics only)
			}
			taken[tp] = true
			owned[best].add(tp)
			counts[best]++
		}
	}
	// Balance. Each move lowers the sum of squared counts, so this ends.
	for {
		donor, receiver, move := -1, -1, topicPartition{}
		for d := range members {
			if donor >= 0 && counts[d] <= counts[donor] {
				continue
			}
			r, tp, ok := bestReceiver(members, owned, counts, d)
			if ok {
				donor, receiver, move = d, r, tp
			}
		}
		if donor < 0 {
			break
		}
		owned[donor] = owned[donor].filter(func(tp topicPartition) bool { return tp != move })
		owned[receiver].add(move)
		counts[donor]--
		counts[receiver]++
	}
	return owned
}

// bestReceiver finds, for donor d, the member with the fewest partitions
// that has at least two fewer than d and subscribes to one of d's
// partitions, and the partition to move: of the topic where the donor has
// the most more than the receiver (then where the receiver has fewest),
// so that topics spread too, its highest partition.
func bestReceiver(members []assignMember, owned []Assignment, counts []int, d int) (int, topicPartition, bool) {
	best := -1
	for r, m := range members {
		if counts[r] > counts[d]-2 || (best >= 0 && counts[r] >= counts[best]) {
			continue
		}
		for t := range owned[d] {
			if m.topics[t] {
				best = r
				break
			}
		}
	}
	if best < 0 {
		return -1, topicPartition{}, false
	}
	var topic TopicID
	found, bestGap, bestHave := false, 0, 0
	for _, t := range owned[d].sortedTopics() {
		if !members[best].topics[t] {
			continue
		}
		have := len(owned[best][t])
		gap := len(owned[d][t]) - have
		if !found || gap > bestGap || (gap == bestGap && have < bestHave) {
			topic, found, bestGap, bestHave = t, true, gap, have
		}
	}
	ps := owned[d][topic]
	return best, topicPartition{topic, ps[len(ps)-1]}, true
}
