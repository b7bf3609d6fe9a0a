package verify

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// The share-group (queue) checker: what share consumers saw and did, and
// what must follow from it whatever crashed.

// Share history event kinds.
const (
	// ShareDeliver: a consumer got a record (Key) with a delivery count;
	// Deadline is its acquisition lock's end as the client computed it.
	ShareDeliver = "deliver"
	// ShareAck: a consumer is about to send an acknowledgement (Ack).
	ShareAck = "ack"
	// ShareAcked: the broker answered that acknowledgement without error.
	ShareAcked = "acked"
	// ShareMemberDown: a consumer died (its connections closed), at Time.
	ShareMemberDown = "member-down"
	// ShareBrokerDown: the broker crashed or restarted: every acquisition
	// ends (they are volatile by design).
	ShareBrokerDown = "broker-down"
)

// Share acknowledgement types as histories spell them.
const (
	AckAccept  = "accept"
	AckRelease = "release"
	AckReject  = "reject"
)

// ShareEvent is one event of a share-group history. Times are Unix
// nanoseconds on one machine's clock.
type ShareEvent struct {
	Time     int64  `json:"t"`
	Kind     string `json:"kind"`
	Member   string `json:"member,omitempty"`
	Key      string `json:"key,omitempty"`
	Count    int32  `json:"count,omitempty"`
	Deadline int64  `json:"deadline,omitempty"`
	Ack      string `json:"ack,omitempty"`
}

// ReadShareEvents reads a JSON-lines share history (a consumer's log); a
// torn last line (the writer was killed mid-write) is ignored.
func ReadShareEvents(r io.Reader) ([]ShareEvent, error) {
	var out []ShareEvent
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var pending error
	for sc.Scan() {
		if pending != nil {
			return nil, pending // a bad line that was not the last
		}
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		var e ShareEvent
		if err := json.Unmarshal(line, &e); err != nil {
			pending = fmt.Errorf("share history line %q: %w", line, err)
			continue
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// ShareOutcome is how a share-group run ended.
type ShareOutcome struct {
	// Produced are the keys written to the source topic (acknowledged).
	Produced []string
	// DeadLettered counts, per source key, the records in the dead-letter
	// topic.
	DeadLettered map[string]int
	// LockDuration is the group's share.record.lock.duration.ms.
	LockDuration time.Duration
	// Slack absorbs the clock's and the network's imprecision when
	// comparing times taken in different processes (default 250 ms).
	Slack time.Duration
}

// ShareResult is the checker's verdict.
type ShareResult struct {
	Valid bool
	Keys  int
	// Accepted and DeadLettered count the keys that ended each way.
	Accepted, DeadLettered int
	// Redeliveries counts deliveries after the first.
	Redeliveries int

	// Lost keys ended neither accepted (no consumer ever sent an ACCEPT)
	// nor dead-lettered.
	Lost []string
	// DeadLetteredTwice are in the dead-letter topic more than once.
	DeadLetteredTwice []string
	// AcceptedAndDeadLettered had an answered ACCEPT and a dead letter.
	AcceptedAndDeadLettered []string
	// RejectNotDeadLettered had an answered REJECT but no dead letter.
	RejectNotDeadLettered []string
	// AcceptedTwice had two answered ACCEPTs.
	AcceptedTwice []string
	// DeliveredAfterAccept were acquired again after their ACCEPT was
	// answered.
	DeliveredAfterAccept []string
	// HeldTwice were acquired by a member while another member provably
	// still held them: its lock had not run out, it had not acknowledged
	// them, it was alive, and the broker had not restarted.
	HeldTwice []string
	// Unexpected keys were delivered but never produced.
	Unexpected []string
}

func (r ShareResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "valid=%t keys=%d accepted=%d dead-lettered=%d redeliveries=%d", r.Valid, r.Keys, r.Accepted, r.DeadLettered, r.Redeliveries)
	for _, l := range []struct {
		name string
		vs   []string
	}{
		{"lost", r.Lost}, {"dead-lettered twice", r.DeadLetteredTwice}, {"accepted and dead-lettered", r.AcceptedAndDeadLettered},
		{"rejected but not dead-lettered", r.RejectNotDeadLettered}, {"accepted twice", r.AcceptedTwice},
		{"delivered after accept", r.DeliveredAfterAccept}, {"held by two members", r.HeldTwice}, {"unexpected", r.Unexpected},
	} {
		if len(l.vs) > 0 {
			fmt.Fprintf(&b, "; %s %d: %s", l.name, len(l.vs), firstFew(l.vs))
		}
	}
	return b.String()
}

// CheckShare judges a share-group history: every produced key ended
// exactly once, accepted or dead-lettered, none lost; an answered ACCEPT is
// final (no second answered ACCEPT, no later acquisition, no dead letter);
// an answered REJECT leaves exactly one dead letter; and no two members held
// a record at once.
func CheckShare(events []ShareEvent, out ShareOutcome) ShareResult {
	slack := out.Slack
	if slack == 0 {
		slack = 250 * time.Millisecond
	}
	evs := slices.Clone(events)
	slices.SortStableFunc(evs, func(a, b ShareEvent) int { return cmpInt64(a.Time, b.Time) })
	produced := map[string]bool{}
	for _, k := range out.Produced {
		produced[k] = true
	}
	type delivery struct {
		member        string
		at, deadline  int64
		released      int64 // when the member sent an ack for it (0: never)
		memberDown    int64
		brokerRestart int64
	}
	deliveries := map[string][]*delivery{}
	open := map[[2]string]*delivery{} // (member, key) → its latest delivery
	acceptTried := map[string]bool{}
	acceptedAt := map[string][]int64{}
	rejected := map[string]bool{}
	unexpected := map[string]bool{}
	var downs []ShareEvent
	for _, e := range evs {
		switch e.Kind {
		case ShareDeliver:
			if !produced[e.Key] {
				unexpected[e.Key] = true
			}
			d := &delivery{member: e.Member, at: e.Time, deadline: e.Deadline}
			deliveries[e.Key] = append(deliveries[e.Key], d)
			open[[2]string{e.Member, e.Key}] = d
		case ShareAck:
			if d := open[[2]string{e.Member, e.Key}]; d != nil && d.released == 0 {
				d.released = e.Time
			}
			if e.Ack == AckAccept {
				acceptTried[e.Key] = true
			}
		case ShareAcked:
			switch e.Ack {
			case AckAccept:
				acceptedAt[e.Key] = append(acceptedAt[e.Key], e.Time)
			case AckReject:
				rejected[e.Key] = true
			}
		case ShareMemberDown, ShareBrokerDown:
			downs = append(downs, e)
		}
	}
	// Mark, on each delivery, the first member death or broker restart
	// after it that ended its hold.
	for _, ds := range deliveries {
		for _, d := range ds {
			for _, down := range downs {
				if down.Time < d.at {
					continue
				}
				if down.Kind == ShareBrokerDown && d.brokerRestart == 0 {
					d.brokerRestart = down.Time
				}
				if down.Kind == ShareMemberDown && down.Member == d.member && d.memberDown == 0 {
					d.memberDown = down.Time
				}
			}
		}
	}
	res := ShareResult{Keys: len(out.Produced), Unexpected: sortValues(keysOf(unexpected))}
	for _, k := range out.Produced {
		dl := out.DeadLettered[k]
		ds := deliveries[k]
		if len(ds) > 1 {
			res.Redeliveries += len(ds) - 1
		}
		switch {
		case dl > 1:
			res.DeadLetteredTwice = append(res.DeadLetteredTwice, k)
		case dl == 1 && len(acceptedAt[k]) > 0:
			res.AcceptedAndDeadLettered = append(res.AcceptedAndDeadLettered, k)
		case dl == 0 && rejected[k]:
			res.RejectNotDeadLettered = append(res.RejectNotDeadLettered, k)
		case dl == 0 && !acceptTried[k]:
			res.Lost = append(res.Lost, k)
		}
		if dl >= 1 {
			res.DeadLettered++
		} else if acceptTried[k] {
			res.Accepted++
		}
		if len(acceptedAt[k]) > 1 {
			res.AcceptedTwice = append(res.AcceptedTwice, k)
		}
		if len(acceptedAt[k]) > 0 {
			first := acceptedAt[k][0]
			for _, d := range ds {
				// The acquisition happened about one lock duration
				// before the deadline the client computed.
				acquired := d.deadline - int64(out.LockDuration)
				if d.deadline == 0 {
					acquired = d.at
				}
				if acquired > first+int64(slack) {
					res.DeliveredAfterAccept = append(res.DeliveredAfterAccept, k)
					break
				}
			}
		}
		// Held twice: b acquired k while a provably still held it.
	held:
		for i, a := range ds {
			for _, b := range ds[i+1:] {
				if b.member == a.member {
					continue
				}
				t := b.at
				switch {
				case a.deadline == 0 || t >= a.deadline-int64(slack):
				case a.released != 0 && a.released <= t:
				case a.memberDown != 0 && a.memberDown <= t:
				case a.brokerRestart != 0 && a.brokerRestart <= t:
				default:
					res.HeldTwice = append(res.HeldTwice, k)
					break held
				}
			}
		}
	}
	res.Valid = len(res.Lost)+len(res.DeadLetteredTwice)+len(res.AcceptedAndDeadLettered)+len(res.RejectNotDeadLettered)+
		len(res.AcceptedTwice)+len(res.DeliveredAfterAccept)+len(res.HeldTwice)+len(res.Unexpected) == 0
	return res
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func keysOf(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
