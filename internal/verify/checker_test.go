package verify

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// hist builds histories compactly for the checker tests.
type hist struct{ h History }

func (b *hist) send(proc, seq int, t Type, partition int32, offset int64) *hist {
	v := Value(proc, seq)
	b.h = append(b.h, Op{Process: proc, Type: Invoke, F: FSend, Value: Record{Value: v, Partition: -1, Offset: -1}})
	if t != Invoke {
		b.h = append(b.h, Op{Process: proc, Type: t, F: FSend, Value: Record{Value: v, Partition: partition, Offset: offset}})
	}
	return b
}

func (b *hist) poll(rs ...Record) *hist {
	b.h = append(b.h, Op{Process: 99, Type: Invoke, F: FPoll}, Op{Process: 99, Type: OK, F: FPoll, Value: rs})
	return b
}

func rec(proc, seq int, partition int32, offset int64) Record {
	return Record{Value: Value(proc, seq), Partition: partition, Offset: offset}
}

func TestCheckSetValidWhenEveryAcknowledgedValueIsRead(t *testing.T) {
	b := (&hist{}).
		send(1, 0, OK, 0, 0).
		send(1, 1, OK, 0, 1).
		send(2, 0, Info, -1, -1). // outcome unknown, turned up: recovered
		send(2, 1, Info, -1, -1). // outcome unknown, never turned up: fine
		send(2, 2, Fail, -1, -1). // definitely failed, not read: fine
		poll(rec(1, 0, 0, 0), rec(1, 1, 0, 1), rec(2, 0, 0, 2)).
		poll(rec(1, 0, 0, 0)) // reading a position again is not a duplicate
	r := CheckSet(b.h)
	if !r.Valid {
		t.Fatalf("want valid, got %v", r)
	}
	if r.Attempted != 5 || r.Acknowledged != 2 || r.Read != 3 {
		t.Errorf("counts: got attempted=%d acknowledged=%d read=%d, want 5 2 3", r.Attempted, r.Acknowledged, r.Read)
	}
	if want := []string{"2-0"}; !slices.Equal(r.Recovered, want) {
		t.Errorf("recovered = %v, want %v", r.Recovered, want)
	}
	if len(r.Duplicated) != 0 || len(r.Lost) != 0 || len(r.Unexpected) != 0 {
		t.Errorf("unexpected anomalies: %v", r)
	}
}

func TestCheckSetReportsAcknowledgedButUnreadAsLost(t *testing.T) {
	b := (&hist{}).send(1, 0, OK, 0, 0).send(1, 1, OK, 0, 1).send(1, 2, OK, 0, 2).poll(rec(1, 1, 0, 1))
	r := CheckSet(b.h)
	if r.Valid {
		t.Fatalf("want invalid, got %v", r)
	}
	if want := []string{"1-0", "1-2"}; !slices.Equal(r.Lost, want) {
		t.Errorf("lost = %v, want %v", r.Lost, want)
	}
}

func TestCheckSetReportsNeverAttemptedAndDefinitelyFailedAsUnexpected(t *testing.T) {
	b := (&hist{}).send(1, 0, Fail, -1, -1).poll(rec(1, 0, 0, 0), rec(7, 7, 0, 1))
	r := CheckSet(b.h)
	if r.Valid {
		t.Fatalf("want invalid, got %v", r)
	}
	if want := []string{"1-0", "7-7"}; !slices.Equal(r.Unexpected, want) {
		t.Errorf("unexpected = %v, want %v", r.Unexpected, want)
	}
}

func TestCheckSetCountsValuesAtTwoPositionsAsDuplicatedButStaysValid(t *testing.T) {
	// At-least-once allows duplicates, so they do not invalidate the set
	// check; tests of idempotent producers assert on Duplicated themselves.
	b := (&hist{}).send(1, 0, OK, 0, 0).poll(rec(1, 0, 0, 0), rec(1, 0, 0, 1), rec(1, 0, 2, 5))
	r := CheckSet(b.h)
	if !r.Valid {
		t.Fatalf("want valid, got %v", r)
	}
	if want := map[string]int{"1-0": 3}; !reflect.DeepEqual(r.Duplicated, want) {
		t.Errorf("duplicated = %v, want %v", r.Duplicated, want)
	}
	if !strings.Contains(r.String(), "duplicated=1") {
		t.Errorf("String() = %q does not count the duplicate", r.String())
	}
}

func TestCheckSetIgnoresFailedPollsAndNemesisOps(t *testing.T) {
	b := (&hist{}).send(1, 0, OK, 0, 0)
	b.h = append(b.h,
		Op{Process: NemesisProcess, Type: Info, F: FKill, Value: "SIGKILL"},
		Op{Process: 3, Type: Fail, F: FPoll, Value: []Record{rec(9, 9, 0, 0)}},
	)
	b.poll(rec(1, 0, 0, 0))
	if r := CheckSet(b.h); !r.Valid || len(r.Unexpected) != 0 {
		t.Fatalf("want valid without unexpected values, got %v", r)
	}
}

func TestCheckOrderAcceptsEachProducerInSequenceOrderPerPartition(t *testing.T) {
	// Producers interleave, and each spreads over partitions; only the order
	// within (producer, partition) matters.
	b := (&hist{}).
		send(1, 0, OK, 0, 0).send(2, 0, OK, 0, 1).send(1, 1, OK, 1, 0).send(1, 2, OK, 0, 2).send(2, 1, OK, 0, 3).
		poll(rec(1, 0, 0, 0), rec(2, 0, 0, 1), rec(1, 2, 0, 2), rec(2, 1, 0, 3), rec(1, 1, 1, 0))
	if r := CheckOrder(b.h); !r.Valid {
		t.Fatalf("want valid, got %v", r)
	}
}

func TestCheckOrderReportsASequenceReadBeforeAnEarlierOne(t *testing.T) {
	b := (&hist{}).send(1, 0, Info, -1, -1).send(1, 1, Info, -1, -1).
		poll(rec(1, 1, 0, 0), rec(1, 0, 0, 1))
	r := CheckOrder(b.h)
	if r.Valid || len(r.Reordered) != 1 {
		t.Fatalf("want one reordering, got %v", r)
	}
	if !strings.Contains(r.Reordered[0], "1-0 at offset 1 after 1-1 at offset 0") {
		t.Errorf("reordering described as %q", r.Reordered[0])
	}
}

func TestCheckOrderReportsAcknowledgementsOutOfSequence(t *testing.T) {
	b := (&hist{}).send(1, 0, OK, 0, 5).send(1, 1, OK, 0, 4)
	if r := CheckOrder(b.h); r.Valid || len(r.Reordered) != 1 {
		t.Fatalf("want one reordering from the acknowledgements, got %v", r)
	}
}

func TestCheckOrderReportsInconsistentOffsets(t *testing.T) {
	b := (&hist{}).send(1, 0, OK, 0, 0).send(1, 1, OK, 0, 1).
		poll(rec(1, 0, 0, 0), rec(1, 1, 0, 2)). // acknowledged at 0/1, read at 0/2
		poll(rec(2, 0, 0, 0))                   // 0/0 read with two values
	r := CheckOrder(b.h)
	if r.Valid || len(r.Inconsistent) != 2 {
		t.Fatalf("want two inconsistencies, got %v", r)
	}
}

func TestHistoryRoundTripsThroughJSONLines(t *testing.T) {
	rec := NewRecorder()
	rec.Invoke(1, FSend, Record{Value: Value(1, 0), Partition: -1, Offset: -1})
	rec.Complete(1, Info, FSend, Record{Value: Value(1, 0), Partition: -1, Offset: -1}, errors.New("connection reset"))
	rec.Add(Op{Process: NemesisProcess, Type: Info, F: FKill, Value: "SIGKILL pid 42"})
	rec.Complete(2, OK, FPoll, []Record{{Value: "1-0", Partition: 2, Offset: 7}}, nil)
	h := rec.History()

	var buf bytes.Buffer
	if err := h.WriteJSONL(&buf); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(buf.String(), "\n"); lines != 4 {
		t.Fatalf("want 4 lines, got %d:\n%s", lines, buf.String())
	}
	if !strings.Contains(buf.String(), `"proc":1,"type":"info","f":"send","value":{"v":"1-0","p":-1,"o":-1}`) {
		t.Errorf("unexpected encoding:\n%s", buf.String())
	}
	got, err := ReadJSONL(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, h) {
		t.Errorf("round trip:\n got %#v\nwant %#v", got, h)
	}
	for i := 1; i < len(h); i++ {
		if h[i].Time < h[i-1].Time {
			t.Errorf("op %d recorded at %v, before op %d at %v", i, h[i].Time, i-1, h[i-1].Time)
		}
	}
}

func TestValuesAreUniquePerProducerAndSequence(t *testing.T) {
	seen := map[string]bool{}
	for p := 0; p < 12; p++ {
		for s := 0; s < 120; s++ {
			v := Value(p, s)
			if seen[v] {
				t.Fatalf("value %q made twice", v)
			}
			seen[v] = true
			gp, gs, ok := ParseValue(v)
			if !ok || gp != p || gs != s {
				t.Fatalf("ParseValue(%q) = %d, %d, %t", v, gp, gs, ok)
			}
		}
	}
	for _, bad := range []string{"", "x", "1-", "-1", "a-b"} {
		if _, _, ok := ParseValue(bad); ok {
			t.Errorf("ParseValue(%q) accepted", bad)
		}
	}
}

func TestSendOutcomeIsFailOnlyWhenTheRecordCannotHaveBeenAppended(t *testing.T) {
	for _, c := range []struct {
		err  error
		want Type
	}{
		{nil, OK},
		{kgo.ErrRecordTimeout, Info},
		{kgo.ErrRecordRetries, Info},
		{errors.New("broken pipe"), Info},
		{kerr.NotLeaderForPartition, Info},
		{kerr.RequestTimedOut, Info},
		{kerr.ProducerFenced, Info},
		{kgo.ErrMaxBuffered, Fail},
		{fmt.Errorf("wrapped: %w", kerr.MessageTooLarge), Fail},
	} {
		if got := SendOutcome(c.err); got != c.want {
			t.Errorf("SendOutcome(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}

func TestRecorderKeepsEveryOpFromConcurrentClientsInTimeOrder(t *testing.T) {
	rec := NewRecorder()
	var wg sync.WaitGroup
	for p := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range 500 {
				rec.Invoke(p, FSend, Record{Value: Value(p, s), Partition: -1, Offset: -1})
			}
		}()
	}
	wg.Wait()
	h := rec.History()
	if len(h) != 8*500 {
		t.Fatalf("recorded %d ops, want %d", len(h), 8*500)
	}
	for i := 1; i < len(h); i++ {
		if h[i].Time < h[i-1].Time {
			t.Fatalf("op %d at %v precedes op %d at %v", i, h[i].Time, i-1, h[i-1].Time)
		}
	}
	if r := CheckSet(h); r.Attempted != 8*500 {
		t.Fatalf("attempted %d distinct values, want %d", r.Attempted, 8*500)
	}
}

func TestStreamingRecorderWritesEachOpAsItHappens(t *testing.T) {
	var buf bytes.Buffer
	rec := NewStreamingRecorder(&buf)
	rec.Invoke(1, FSend, Record{Value: "1-0", Partition: -1, Offset: -1})
	if !strings.HasSuffix(buf.String(), "\n") || strings.Count(buf.String(), "\n") != 1 {
		t.Fatalf("after one op the stream holds %q", buf.String())
	}
	rec.Complete(1, OK, FSend, Record{Value: "1-0", Partition: 0, Offset: 0}, nil)
	streamed, err := ReadJSONL(&buf)
	if err != nil || rec.Err() != nil {
		t.Fatal(err, rec.Err())
	}
	if !reflect.DeepEqual(streamed, rec.History()) {
		t.Fatalf("stream %v differs from history %v", streamed, rec.History())
	}
}
