package verify

import (
	"strings"
	"testing"
	"time"
)

// TestCheckShareCatchesEachAnomaly: a valid history passes, and each
// anomaly the checker promises to find turns it red.
func TestCheckShareCatchesEachAnomaly(t *testing.T) {
	const L = int64(2 * time.Second)
	s := int64(time.Second)
	deliver := func(at int64, m, k string) ShareEvent {
		return ShareEvent{Time: at, Kind: ShareDeliver, Member: m, Key: k, Count: 1, Deadline: at + L}
	}
	ack := func(at int64, m, k, a string) ShareEvent {
		return ShareEvent{Time: at, Kind: ShareAck, Member: m, Key: k, Ack: a}
	}
	acked := func(at int64, m, k, a string) ShareEvent {
		return ShareEvent{Time: at, Kind: ShareAcked, Member: m, Key: k, Ack: a}
	}
	valid := []ShareEvent{
		deliver(0, "a", "1"), ack(s/10, "a", "1", AckAccept), acked(s/5, "a", "1", AckAccept),
		deliver(0, "a", "2"), ack(s/10, "a", "2", AckRelease), acked(s/5, "a", "2", AckRelease),
		deliver(s/2, "b", "2"), ack(s, "b", "2", AckReject), acked(s+s/10, "b", "2", AckReject),
		// a dies holding 3; b gets it at once.
		deliver(0, "a", "3"), {Time: s / 2, Kind: ShareMemberDown, Member: "a"},
		deliver(s/2+1, "b", "3"), ack(s, "b", "3", AckAccept),
		// 4's lock runs out; b gets it after the deadline.
		deliver(0, "a", "4"), deliver(L+s/10, "b", "4"), ack(L+s/5, "b", "4", AckAccept), acked(L+s/4, "b", "4", AckAccept),
	}
	out := ShareOutcome{Produced: []string{"1", "2", "3", "4"}, DeadLettered: map[string]int{"2": 1}, LockDuration: 2 * time.Second}
	if r := CheckShare(valid, out); !r.Valid || r.Accepted != 3 || r.DeadLettered != 1 || r.Redeliveries != 3 {
		t.Fatalf("valid history judged %v", r)
	}
	for _, c := range []struct {
		name   string
		events []ShareEvent
		out    func(o ShareOutcome) ShareOutcome
		want   string
	}{
		{"lost", valid, func(o ShareOutcome) ShareOutcome { o.Produced = append(o.Produced, "5"); return o }, "lost 1: [5]"},
		{"dead-lettered twice", valid, func(o ShareOutcome) ShareOutcome { o.DeadLettered = map[string]int{"2": 2}; return o }, "dead-lettered twice 1: [2]"},
		{"reject lost", valid, func(o ShareOutcome) ShareOutcome { o.DeadLettered = nil; return o }, "rejected but not dead-lettered 1: [2]"},
		{"accepted and dead-lettered", valid, func(o ShareOutcome) ShareOutcome { o.DeadLettered = map[string]int{"2": 1, "1": 1}; return o }, "accepted and dead-lettered 1: [1]"},
		{"accepted twice", append(valid, deliver(3*s, "b", "1"), acked(3*s+1, "b", "1", AckAccept)), nil, "accepted twice 1: [1]"},
		{"delivered after accept", append(valid, deliver(3*s, "b", "1")), nil, "delivered after accept 1: [1]"},
		{"held twice", append(valid, deliver(0, "c", "6"), deliver(s, "d", "6")), func(o ShareOutcome) ShareOutcome {
			o.Produced = append(o.Produced, "6")
			o.DeadLettered = map[string]int{"2": 1, "6": 1}
			return o
		}, "held by two members 1: [6]"},
		{"unexpected", append(valid, deliver(0, "a", "x")), nil, "unexpected 1: [x]"},
	} {
		o := out
		if c.out != nil {
			o = c.out(out)
		}
		r := CheckShare(c.events, o)
		if r.Valid || !strings.Contains(r.String(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, r, c.want)
		}
	}
	// A broker restart ends every hold: not held twice.
	restart := append(valid, deliver(0, "a", "7"), ShareEvent{Time: s / 2, Kind: ShareBrokerDown}, deliver(s, "b", "7"), ack(s, "b", "7", AckAccept))
	o := out
	o.Produced = append(o.Produced, "7")
	if r := CheckShare(restart, o); !r.Valid {
		t.Errorf("broker restart: %v", r)
	}
}

func TestReadShareEventsIgnoresATornLastLine(t *testing.T) {
	in := `{"t":1,"kind":"deliver","member":"a","key":"1"}` + "\n" + `{"t":2,"kind":"ac`
	evs, err := ReadShareEvents(strings.NewReader(in))
	if err != nil || len(evs) != 1 || evs[0].Key != "1" {
		t.Fatalf("%v %v", evs, err)
	}
	if _, err := ReadShareEvents(strings.NewReader(`{bad` + "\n" + `{"t":1}` + "\n")); err == nil {
		t.Fatal("a bad line in the middle accepted")
	}
}
