package verify

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// SetResult is the verdict of the set checker (Jepsen's total-queue): every
// send is attempted, some are acknowledged, and polls read values back.
type SetResult struct {
	Valid        bool
	Attempted    int // distinct values whose send was invoked
	Acknowledged int // distinct values whose send completed ok
	Read         int // distinct values read by some poll

	// Lost were acknowledged but never read: the broker broke its promise.
	Lost []string
	// Unexpected were read but never attempted, or read although their send
	// definitely failed: the broker invented or resurrected data.
	Unexpected []string
	// Recovered were read although their send's outcome was unknown (info) or
	// never completed: allowed, and how indeterminate writes usually end.
	Recovered []string
	// Duplicated maps a value to the number of distinct positions (partition,
	// offset) it was read at, for values read at more than one. Reading the
	// same position twice (two polls, two drains) is not a duplicate.
	Duplicated map[string]int
}

// String summarises the result on one line, listing the first few values of
// each anomaly so that a failure message is actionable.
func (r SetResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "valid=%t attempted=%d acknowledged=%d read=%d lost=%d unexpected=%d recovered=%d duplicated=%d",
		r.Valid, r.Attempted, r.Acknowledged, r.Read, len(r.Lost), len(r.Unexpected), len(r.Recovered), len(r.Duplicated))
	list := func(name string, vs []string) {
		if len(vs) > 0 {
			fmt.Fprintf(&b, "; %s: %s", name, firstFew(vs))
		}
	}
	list("lost", r.Lost)
	list("unexpected", r.Unexpected)
	list("duplicated", sortValues(slices.Collect(maps.Keys(r.Duplicated))))
	return b.String()
}

type position struct {
	partition int32
	offset    int64
}

func (p position) String() string { return fmt.Sprintf("%d/%d", p.partition, p.offset) }

// CheckSet runs the set checker over h. It is valid iff nothing acknowledged
// was lost and nothing unexpected was read; duplicates are reported for the
// caller to judge (at-least-once allows them, idempotent produce does not).
func CheckSet(h History) SetResult {
	attempted := map[string]bool{}
	acked := map[string]bool{}
	failed := map[string]bool{}
	readAt := map[string]map[position]bool{}
	for _, op := range h {
		switch op.F {
		case FSend:
			r, ok := op.Value.(Record)
			if !ok {
				continue
			}
			switch op.Type {
			case Invoke:
				attempted[r.Value] = true
			case OK:
				acked[r.Value] = true
			case Fail:
				failed[r.Value] = true
			}
		case FPoll:
			if op.Type != OK {
				continue
			}
			rs, _ := op.Value.([]Record)
			for _, r := range rs {
				if readAt[r.Value] == nil {
					readAt[r.Value] = map[position]bool{}
				}
				readAt[r.Value][position{r.Partition, r.Offset}] = true
			}
		}
	}

	res := SetResult{
		Attempted:    len(attempted),
		Acknowledged: len(acked),
		Read:         len(readAt),
		Duplicated:   map[string]int{},
	}
	for v := range acked {
		if readAt[v] == nil {
			res.Lost = append(res.Lost, v)
		}
	}
	for v, at := range readAt {
		switch {
		case !attempted[v] || (failed[v] && !acked[v]):
			res.Unexpected = append(res.Unexpected, v)
		case !acked[v]:
			res.Recovered = append(res.Recovered, v)
		}
		if len(at) > 1 {
			res.Duplicated[v] = len(at)
		}
	}
	sortValues(res.Lost)
	sortValues(res.Unexpected)
	sortValues(res.Recovered)
	res.Valid = len(res.Lost) == 0 && len(res.Unexpected) == 0
	return res
}

// OrderResult is the verdict of CheckOrder.
type OrderResult struct {
	Valid bool
	// Reordered describes each place where one producer's values appear in a
	// partition (or were acknowledged) out of the order it sent them.
	Reordered []string
	// Inconsistent describes positions read with two different values, and
	// values acknowledged at one position but read at another (Jepsen's
	// inconsistent offsets: an acknowledgement that lied).
	Inconsistent []string
}

func (r OrderResult) String() string {
	return fmt.Sprintf("valid=%t reordered=%d %s inconsistent=%d %s",
		r.Valid, len(r.Reordered), firstFew(r.Reordered), len(r.Inconsistent), firstFew(r.Inconsistent))
}

// CheckOrder checks per-producer order, for values made by Value: within one
// partition, a producer's values must sit at increasing offsets in the order
// of their sequence numbers, both as read and as acknowledged. An idempotent
// producer guarantees this even with several requests in flight and retries.
// Values that ParseValue does not understand are ignored.
func CheckOrder(h History) OrderResult {
	var res OrderResult
	ackedAt := map[string]position{}
	read := map[position]string{}
	readPos := map[string]position{}
	type key struct {
		proc      int
		partition int32
	}
	type ack struct {
		seq    int
		offset int64
		value  string
	}
	acks := map[key][]ack{}
	for _, op := range h {
		switch {
		case op.F == FSend && op.Type == OK:
			r, ok := op.Value.(Record)
			if !ok {
				continue
			}
			ackedAt[r.Value] = position{r.Partition, r.Offset}
			if p, s, ok := ParseValue(r.Value); ok {
				k := key{p, r.Partition}
				acks[k] = append(acks[k], ack{s, r.Offset, r.Value})
			}
		case op.F == FPoll && op.Type == OK:
			rs, _ := op.Value.([]Record)
			for _, r := range rs {
				pos := position{r.Partition, r.Offset}
				if prev, ok := read[pos]; ok && prev != r.Value {
					res.Inconsistent = append(res.Inconsistent, fmt.Sprintf("position %s read as %s and as %s", pos, prev, r.Value))
					continue
				}
				read[pos] = r.Value
				readPos[r.Value] = pos
			}
		}
	}
	for v, at := range ackedAt {
		if rp, ok := readPos[v]; ok && rp != at {
			res.Inconsistent = append(res.Inconsistent, fmt.Sprintf("%s acknowledged at %s but read at %s", v, at, rp))
		}
	}

	// Acknowledgements: sorted by sequence, offsets must increase.
	for k, as := range acks {
		slices.SortFunc(as, func(a, b ack) int { return cmp.Compare(a.seq, b.seq) })
		for i := 1; i < len(as); i++ {
			if as[i].offset <= as[i-1].offset && as[i].seq != as[i-1].seq {
				res.Reordered = append(res.Reordered, fmt.Sprintf("producer %d partition %d: %s acknowledged at offset %d, not after %s at %d",
					k.proc, k.partition, as[i].value, as[i].offset, as[i-1].value, as[i-1].offset))
			}
		}
	}

	// Reads: walking each partition by offset, sequences must increase.
	positions := slices.Collect(maps.Keys(read))
	slices.SortFunc(positions, func(a, b position) int {
		return cmp.Or(cmp.Compare(a.partition, b.partition), cmp.Compare(a.offset, b.offset))
	})
	type last struct {
		seq   int
		value string
		pos   position
	}
	prev := map[key]last{}
	for _, pos := range positions {
		v := read[pos]
		p, s, ok := ParseValue(v)
		if !ok {
			continue
		}
		k := key{p, pos.partition}
		if l, seen := prev[k]; seen && s <= l.seq {
			res.Reordered = append(res.Reordered, fmt.Sprintf("producer %d partition %d: %s at offset %d after %s at offset %d",
				p, pos.partition, v, pos.offset, l.value, l.pos.offset))
		}
		prev[k] = last{s, v, pos}
	}
	slices.Sort(res.Reordered)
	slices.Sort(res.Inconsistent)
	res.Valid = len(res.Reordered) == 0 && len(res.Inconsistent) == 0
	return res
}

// sortValues orders values made by Value by (producer, sequence), others
// lexically after them, so that reports read naturally.
func sortValues(vs []string) []string {
	slices.SortFunc(vs, func(a, b string) int {
		pa, sa, oka := ParseValue(a)
		pb, sb, okb := ParseValue(b)
		switch {
		case oka && okb:
			return cmp.Or(cmp.Compare(pa, pb), cmp.Compare(sa, sb))
		case oka:
			return -1
		case okb:
			return 1
		}
		return strings.Compare(a, b)
	})
	return vs
}

func firstFew(vs []string) string {
	const n = 10
	if len(vs) <= n {
		return "[" + strings.Join(vs, " ") + "]"
	}
	return fmt.Sprintf("[%s … and %d more]", strings.Join(vs[:n], " "), len(vs)-n)
}
