package group

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// randomGroup builds members with random subscriptions over random topics
// (homogeneous: everyone subscribes to everything).
func randomGroup(rng *rand.Rand, homogeneous bool) ([]assignMember, map[TopicID]int32) {
	partitions := map[TopicID]int32{}
	var ids []TopicID
	for i := range 1 + rng.IntN(5) {
		id := topicID(fmt.Sprint("topic-", i))
		partitions[id] = int32(1 + rng.IntN(12))
		ids = append(ids, id)
	}
	var members []assignMember
	for i := range 1 + rng.IntN(7) {
		m := assignMember{id: fmt.Sprintf("m%02d", i), topics: map[TopicID]bool{}, current: Assignment{}}
		for _, id := range ids {
			if homogeneous || rng.IntN(2) == 0 {
				m.topics[id] = true
			}
		}
		members = append(members, m)
	}
	// Only subscribed topics are passed to assignors.
	subscribed := map[TopicID]int32{}
	for _, m := range members {
		for id := range m.topics {
			subscribed[id] = partitions[id]
		}
	}
	return members, subscribed
}

// checkComplete: every partition of a subscribed topic goes to exactly one
// member, and only to a member that subscribes to its topic.
func checkComplete(t *testing.T, name string, members []assignMember, partitions map[TopicID]int32, out []Assignment) {
	t.Helper()
	seen := map[topicPartition]string{}
	for i, a := range out {
		a.each(func(tp topicPartition) {
			if o, ok := seen[tp]; ok {
				t.Fatalf("%s: %v assigned to %s and %s", name, tp, o, members[i].id)
			}
			seen[tp] = members[i].id
			if !members[i].topics[tp.topic] || tp.partition >= partitions[tp.topic] {
				t.Fatalf("%s: %v assigned to %s, which does not subscribe to it", name, tp, members[i].id)
			}
		})
	}
	total := 0
	for _, n := range partitions {
		total += int(n)
	}
	if len(seen) != total {
		t.Fatalf("%s: %d of %d partitions assigned", name, len(seen), total)
	}
}

func counts(out []Assignment) []int {
	var cs []int
	for _, a := range out {
		cs = append(cs, a.count())
	}
	return cs
}

// TestAssignorsAreCompleteBalancedAndSticky checks both assignors on random
// groups: complete and valid; with identical subscriptions balanced
// (uniform: counts within one; range: within one per topic); stable (a
// target given again as current comes back unchanged); and sticky when a
// member joins (identical subscriptions): existing members only lose
// partitions, never swap them, and the joiner gets only what they lost.
func TestAssignorsAreCompleteBalancedAndSticky(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 848))
		homogeneous := seed%2 == 0
		members, partitions := randomGroup(rng, homogeneous)
		for _, name := range []string{"uniform", "range"} {
			as := assignors[name]
			what := fmt.Sprintf("%s seed %d", name, seed)
			out := as.assign(members, partitions)
			checkComplete(t, what, members, partitions, out)
			if homogeneous && name == "uniform" {
				if cs := counts(out); slices.Max(cs)-slices.Min(cs) > 1 {
					t.Fatalf("%s: unbalanced %v", what, cs)
				}
			}
			if homogeneous && name == "range" {
				for id, n := range partitions {
					var per []int
					for _, a := range out {
						per = append(per, len(a[id]))
					}
					if slices.Max(per)-slices.Min(per) > 1 || slices.Max(per) > int(n+int32(len(members))-1)/len(members) {
						t.Fatalf("%s: topic shares %v", what, per)
					}
				}
			}
			// Stable.
			again := make([]assignMember, len(members))
			for i, m := range members {
				again[i] = m
				again[i].current = out[i]
			}
			if out2 := as.assign(again, partitions); !slices.EqualFunc(out, out2, Assignment.equal) {
				t.Fatalf("%s: not stable:\n %v\n %v", what, out, out2)
			}
			// A member joins.
			joiner := assignMember{id: "zz-joiner", topics: map[TopicID]bool{}, current: Assignment{}}
			for id := range partitions {
				if homogeneous || rng.IntN(2) == 0 {
					joiner.topics[id] = true
				}
			}
			after := as.assign(append(again, joiner), partitions)
			checkComplete(t, what+" after a join", append(again, joiner), partitions, after)
			lost := Assignment{}
			for i := range members {
				after[i].each(func(tp topicPartition) {
					if !out[i].has(tp) && homogeneous {
						t.Fatalf("%s: %s gained %v when a member joined", what, members[i].id, tp)
					}
				})
				out[i].each(func(tp topicPartition) {
					if !after[i].has(tp) {
						lost.add(tp)
					}
				})
			}
			if homogeneous && !lost.equal(after[len(members)]) {
				t.Fatalf("%s: the joiner got %v, the others lost %v", what, after[len(members)], lost)
			}
		}
	}
}

// TestRangeWithoutHistoryIsClassicRange: with no current target the range
// assignor deals contiguous shares, the first P mod N members one more,
// the same partition numbers across topics of equal size.
func TestRangeWithoutHistoryIsClassicRange(t *testing.T) {
	a, b := topicID("a"), topicID("b")
	var members []assignMember
	for _, id := range []string{"m1", "m2", "m3"} {
		members = append(members, assignMember{id: id, topics: map[TopicID]bool{a: true, b: true}, current: Assignment{}})
	}
	out := rangeAssignor{}.assign(members, map[TopicID]int32{a: 7, b: 7})
	want := [][]int32{{0, 1, 2}, {3, 4}, {5, 6}}
	for i := range members {
		if !slices.Equal(out[i][a], want[i]) || !slices.Equal(out[i][b], want[i]) {
			t.Errorf("%s: %v / %v, want %v on both topics", members[i].id, out[i][a], out[i][b], want[i])
		}
	}
}
