package verify

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// logHist builds histories for the log checker tests.
type logHist struct{ h History }

func (b *logHist) send(proc, seq int, t Type, partition int32, offset int64) *logHist {
	v := Value(proc, seq)
	b.h = append(b.h, Op{Process: proc, Type: Invoke, F: FSend, Value: Record{Value: v, Partition: -1, Offset: -1}})
	if t != Invoke {
		b.h = append(b.h, Op{Process: proc, Type: t, F: FSend, Value: Record{Value: v, Partition: partition, Offset: offset}})
	}
	return b
}

// txn records a transaction of proc writing rs (with their offsets) that
// ended with t.
func (b *logHist) txn(proc int, t Type, rs ...Record) *logHist {
	inv := make([]Record, len(rs))
	for i, r := range rs {
		inv[i] = Record{Value: r.Value, Partition: r.Partition, Offset: -1}
	}
	b.h = append(b.h, Op{Process: proc, Type: Invoke, F: FTxn, Value: inv}, Op{Process: proc, Type: t, F: FTxn, Value: rs})
	return b
}

func (b *logHist) pollBy(proc int, rs ...Record) *logHist {
	b.h = append(b.h, Op{Process: proc, Type: Invoke, F: FPoll}, Op{Process: proc, Type: OK, F: FPoll, Value: rs})
	return b
}

func (b *logHist) poll(rs ...Record) *logHist { return b.pollBy(100, rs...) }

func at(proc, seq int, partition int32, offset int64) Record {
	return Record{Value: Value(proc, seq), Partition: partition, Offset: offset}
}

func wantOnly(t *testing.T, r LogResult, kinds ...string) {
	t.Helper()
	var got []string
	for k := range r.Anomalies {
		got = append(got, k)
	}
	slices.Sort(got)
	slices.Sort(kinds)
	if !slices.Equal(got, kinds) {
		t.Fatalf("anomalies %v, want exactly %v\n%v", got, kinds, r)
	}
	if r.Valid != (len(kinds) == 0) {
		t.Fatalf("Valid=%t with anomalies %v", r.Valid, got)
	}
}

func TestCheckLogAcceptsAHealthyTransactionalHistoryWithMarkerGaps(t *testing.T) {
	// Partition 0: 1-0 at 0, txn {2-0 at 1, 2-1 at 2}, commit marker at 3,
	// aborted txn {2-2 at 4} and its marker at 5, 1-1 at 6.
	b := (&logHist{}).
		send(1, 0, OK, 0, 0).
		txn(2, OK, at(2, 0, 0, 1), at(2, 1, 0, 2)).
		txn(2, Fail, at(2, 2, 0, 4)).
		send(1, 1, OK, 0, 6).
		send(1, 2, Info, -1, -1). // unknown outcome, never appeared
		send(1, 3, Info, -1, -1). // unknown outcome, appeared: recovered
		poll(at(1, 0, 0, 0), at(2, 0, 0, 1), at(2, 1, 0, 2), at(1, 1, 0, 6)).
		poll(at(1, 3, 0, 7)).
		poll(at(1, 0, 0, 0), at(2, 0, 0, 1), at(2, 1, 0, 2), at(1, 1, 0, 6), at(1, 3, 0, 7)) // final drain
	r := CheckLog(b.h, LogOptions{FinalDrain: true})
	wantOnly(t, r)
	if r.Attempted != 7 || r.Acknowledged != 4 || r.Read != 5 || r.Recovered != 1 || r.Unseen != 0 {
		t.Fatalf("counts: %v", r)
	}
}

func TestCheckLogFindsTwoValuesAtOneOffset(t *testing.T) {
	b := (&logHist{}).send(1, 0, OK, 0, 0).send(1, 1, OK, 0, 1).
		poll(at(1, 0, 0, 0)).poll(at(1, 1, 0, 0))
	wantOnly(t, CheckLog(b.h, LogOptions{}), AnomalyInconsistentOffsets)
}

func TestCheckLogFindsAnAcknowledgementThatNamedTheWrongOffset(t *testing.T) {
	b := (&logHist{}).send(1, 0, OK, 0, 5).poll(at(1, 0, 0, 3))
	wantOnly(t, CheckLog(b.h, LogOptions{}), AnomalyInconsistentOffsets)
}

func TestCheckLogFindsOneValueAtTwoOffsets(t *testing.T) {
	b := (&logHist{}).send(1, 0, OK, 0, 0).send(1, 1, OK, 0, 1).
		poll(at(1, 0, 0, 0), at(1, 1, 0, 1), at(1, 0, 0, 2))
	r := CheckLog(b.h, LogOptions{})
	// The duplicate at offset 2 is also behind 1-1 of the same producer; it
	// was acknowledged at 0/0, where it was read, so no offset lied.
	wantOnly(t, r, AnomalyDuplicate, AnomalyProducerOrder)
	if r.Count(AnomalyDuplicate) != 1 || !strings.Contains(r.Anomalies[AnomalyDuplicate][0], "1-0 read at 0/0,0/2") {
		t.Fatalf("duplicate: %v", r.Anomalies[AnomalyDuplicate])
	}
}

func TestCheckLogFindsAWriteMissingBelowLaterReads(t *testing.T) {
	b := (&logHist{}).send(1, 0, OK, 0, 0).send(1, 1, OK, 0, 1).send(2, 0, OK, 0, 2).
		poll(at(1, 0, 0, 0), at(2, 0, 0, 2))
	r := CheckLog(b.h, LogOptions{})
	wantOnly(t, r, AnomalyLostWrite)
	if r.Unseen != 1 || !strings.Contains(r.Anomalies[AnomalyLostWrite][0], "1-1") {
		t.Fatalf("%v", r)
	}
}

func TestCheckLogCallsTheUnreadTailUnseenUntilAFinalDrainMakesItLost(t *testing.T) {
	b := (&logHist{}).send(1, 0, OK, 0, 0).send(1, 1, OK, 0, 1).poll(at(1, 0, 0, 0))
	r := CheckLog(b.h, LogOptions{})
	wantOnly(t, r)
	if r.Unseen != 1 {
		t.Fatalf("unseen = %d, want 1", r.Unseen)
	}
	wantOnly(t, CheckLog(b.h, LogOptions{FinalDrain: true}), AnomalyUnseenAfterDrain)
}

func TestCheckLogFindsReadsOfAbortedTransactionsAndFailedSends(t *testing.T) {
	b := (&logHist{}).txn(1, Fail, at(1, 0, 0, 0), at(1, 1, 0, 1)).send(2, 0, Fail, -1, -1).
		poll(at(1, 0, 0, 0), at(1, 1, 0, 1), at(2, 0, 0, 3))
	r := CheckLog(b.h, LogOptions{})
	wantOnly(t, r, AnomalyAbortedRead)
	if r.Count(AnomalyAbortedRead) != 3 {
		t.Fatalf("%v", r)
	}
}

func TestCheckLogFindsATornTransaction(t *testing.T) {
	// The commit's outcome is unknown to the client (info), yet atomicity
	// still holds: half of it may not be visible.
	b := (&logHist{}).txn(1, Info, at(1, 0, 0, -1), at(1, 1, 1, -1)).
		poll(at(1, 0, 0, 0))
	wantOnly(t, CheckLog(b.h, LogOptions{}), AnomalyTornTxn)
}

func TestCheckLogFindsValuesNobodySent(t *testing.T) {
	b := (&logHist{}).send(1, 0, OK, 0, 0).poll(at(1, 0, 0, 0), at(9, 9, 0, 1))
	wantOnly(t, CheckLog(b.h, LogOptions{}), AnomalyUnexpected)
}

func TestCheckLogFindsOneProducersValuesOutOfOrder(t *testing.T) {
	b := (&logHist{}).send(1, 0, OK, 0, 1).send(1, 1, OK, 0, 0).
		poll(at(1, 1, 0, 0), at(1, 0, 0, 1))
	wantOnly(t, CheckLog(b.h, LogOptions{}), AnomalyProducerOrder)
}

func TestCheckLogFindsOffsetsGoingBackwardsInsideOnePoll(t *testing.T) {
	b := (&logHist{}).send(1, 0, OK, 0, 0).send(2, 0, OK, 0, 1).
		poll(at(2, 0, 0, 1), at(1, 0, 0, 0))
	wantOnly(t, CheckLog(b.h, LogOptions{}), AnomalyNonmonotonicPoll)
}

func TestCheckLogFindsAPollThatSkipsAValueOthersRead(t *testing.T) {
	b := (&logHist{}).send(1, 0, OK, 0, 0).send(2, 0, OK, 0, 1).send(3, 0, OK, 0, 2).
		pollBy(7, at(1, 0, 0, 0), at(3, 0, 0, 2)).
		pollBy(8, at(2, 0, 0, 1))
	wantOnly(t, CheckLog(b.h, LogOptions{}), AnomalyPollSkip)
}

func TestCheckLogAllowsRewindsBetweenPollsOnlyWhenSubscribed(t *testing.T) {
	b := (&logHist{}).send(1, 0, OK, 0, 0).send(1, 1, OK, 0, 1).send(1, 2, OK, 0, 2).
		pollBy(7, at(1, 0, 0, 0), at(1, 1, 0, 1)).
		pollBy(7, at(1, 1, 0, 1), at(1, 2, 0, 2)) // a rebalance rewound to offset 1
	wantOnly(t, CheckLog(b.h, LogOptions{Assign: false}))
	wantOnly(t, CheckLog(b.h, LogOptions{Assign: true}), AnomalyNonmonotonicPoll)

	skip := (&logHist{}).send(1, 0, OK, 0, 0).send(1, 1, OK, 0, 1).send(1, 2, OK, 0, 2).
		pollBy(7, at(1, 0, 0, 0)).
		pollBy(7, at(1, 2, 0, 2)).
		pollBy(8, at(1, 1, 0, 1))
	wantOnly(t, CheckLog(skip.h, LogOptions{Assign: true}), AnomalyPollSkip)
	wantOnly(t, CheckLog(skip.h, LogOptions{Assign: false}))
	// A subscriber among assigned readers keeps its rebalance allowance.
	wantOnly(t, CheckLog(b.h, LogOptions{Assign: true, Subscribers: map[int]bool{7: true}}))
	wantOnly(t, CheckLog(skip.h, LogOptions{Assign: true, Subscribers: map[int]bool{8: true}}), AnomalyPollSkip)
}

func TestCheckLogGivesTheSameVerdictOnAHistoryReadBackFromJSON(t *testing.T) {
	b := (&logHist{}).txn(1, OK, at(1, 0, 0, 0), at(1, 1, 1, 0)).txn(1, Fail, at(1, 2, 0, 2)).
		poll(at(1, 0, 0, 0), at(1, 2, 0, 2))
	want := CheckLog(b.h, LogOptions{})
	wantOnly(t, want, AnomalyTornTxn, AnomalyAbortedRead)
	var buf bytes.Buffer
	if err := b.h.WriteJSONL(&buf); err != nil {
		t.Fatal(err)
	}
	h, err := ReadJSONL(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := CheckLog(h, LogOptions{}); got.String() != want.String() {
		t.Fatalf("after JSON: %v\nbefore: %v", got, want)
	}
}
