package verify

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// FTxn is a transactional send of several values (Jepsen's "txn" op without
// polls): Invoke carries the []Record to write, OK means the transaction
// committed (Records carry their offsets when known), Fail means it
// definitely aborted, Info means its outcome is unknown. A committed
// transaction's values must all be visible or, while unseen, none of them;
// an aborted transaction's values must never be read (read_committed).
const FTxn = "txn"

// Anomaly kinds reported by CheckLog. Each is a way a Kafka-like log can
// break its contract, named after the Jepsen checker that finds it
// (jepsen.tests.kafka), so a report can be compared with published analyses.
const (
	// AnomalyInconsistentOffsets: one (partition, offset) read with two
	// values, or a value acknowledged at one offset and read at another.
	AnomalyInconsistentOffsets = "inconsistent-offsets"
	// AnomalyDuplicate: one value at two offsets.
	AnomalyDuplicate = "duplicate"
	// AnomalyLostWrite: a value definitely written (acknowledged, or part of
	// a committed transaction) was never read although a later write of the
	// same partition was: not lag, but a hole.
	AnomalyLostWrite = "lost-write"
	// AnomalyUnseenAfterDrain: acknowledged, never read, although the
	// history ends with a complete drain (LogOptions.FinalDrain).
	AnomalyUnseenAfterDrain = "unseen-after-drain"
	// AnomalyAbortedRead (G1a): a value whose send definitely failed, or
	// whose transaction aborted, was read.
	AnomalyAbortedRead = "aborted-read"
	// AnomalyTornTxn: some but not all values of one transaction were read.
	AnomalyTornTxn = "torn-transaction"
	// AnomalyUnexpected: a value that was never sent was read.
	AnomalyUnexpected = "unexpected"
	// AnomalyProducerOrder: one producer's values in one partition are not in
	// the order it sent them (by offset, as read or as acknowledged).
	AnomalyProducerOrder = "producer-order"
	// AnomalyNonmonotonicPoll: offsets of a partition do not increase within
	// one poll, or (LogOptions.Assign) between consecutive polls of one
	// consumer process.
	AnomalyNonmonotonicPoll = "nonmonotonic-poll"
	// AnomalyPollSkip: a poll jumped over a value that exists at an offset
	// between two it returned (or, with Assign, between consecutive polls).
	// Offsets that no poll ever read with a committed value (transaction
	// markers, aborted records) are gaps, not skips.
	AnomalyPollSkip = "poll-skip"
)

// LogOptions say which anomalies are allowed for the workload that made the
// history, as Jepsen's allowed-error-types do.
type LogOptions struct {
	// Assign is true when each consumer process reads its partitions by
	// assignment (no group rebalances), so its positions must only move
	// forward between polls. With subscribe (false), a rebalance legitimately
	// rewinds a consumer to the last committed offset.
	Assign bool
	// Subscribers lists the processes that consume by group subscription
	// even when Assign is true: between their polls rewinds and jumps are
	// allowed (a rebalance resumes from the committed offset, which can be
	// behind or, for a zombie, ahead of what the process last read).
	Subscribers map[int]bool
	// FinalDrain is true when the history ends with polls that read every
	// partition to its end after all faults healed: then an acknowledged
	// value that was never read is lost, not merely unseen.
	FinalDrain bool
}

// LogResult is the verdict of CheckLog.
type LogResult struct {
	Valid        bool
	Attempted    int // distinct values sent (plain or transactional)
	Acknowledged int // values definitely written: send ok, or transaction committed
	Read         int // distinct values read
	// Unseen counts definitely written values never read. Without a final
	// drain that can be lag; with one (LogOptions.FinalDrain) each is also
	// reported as AnomalyUnseenAfterDrain.
	Unseen int
	// Recovered counts values read whose outcome was unknown (info): allowed.
	Recovered int
	// Anomalies maps a kind (Anomaly*) to descriptions, sorted.
	Anomalies map[string][]string
}

// Count returns the number of anomalies of kind.
func (r LogResult) Count(kind string) int { return len(r.Anomalies[kind]) }

// String summarises the result on one line with the first few cases of each
// anomaly, so that a failing test says what went wrong.
func (r LogResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "valid=%t attempted=%d acknowledged=%d read=%d unseen=%d recovered=%d",
		r.Valid, r.Attempted, r.Acknowledged, r.Read, r.Unseen, r.Recovered)
	for _, k := range slices.Sorted(maps.Keys(r.Anomalies)) {
		fmt.Fprintf(&b, "; %s=%d %s", k, len(r.Anomalies[k]), firstFew(r.Anomalies[k]))
	}
	return b.String()
}

// outcome of one value's write.
type writeState int8

const (
	wUnknown writeState = iota // invoked, no completion or info
	wOK                        // acknowledged / committed
	wFail                      // definitely not written / aborted
)

type written struct {
	state writeState
	pos   position // acknowledged position, partition -1 if unknown
	txn   int      // index into txns, -1 if a plain send
}

// CheckLog is the log checker (docs/reliability.md, "The checkers"): a Go port of
// the analyses of Jepsen's kafka workload that apply to a single-node broker.
// It reads plain sends (FSend), transactional sends (FTxn) and polls (FPoll)
// from h and reports every anomaly it finds; Valid is true iff there is none.
//
// Offsets are sparse: transaction markers and aborted records occupy offsets
// that read_committed polls never return, so a gap between two offsets is
// never by itself a loss or a skip. Polls are assumed to be read_committed
// (or the workload non-transactional): a value read is taken as visible.
// Lost writes are judged against every poll, so each reader must read its
// partitions from the log start, or the history must end with a drain that
// does (then a value missing below a later one is missing from the log).
//
// Each analysis is one method of logCheck, run in this order: the version
// order first, because every later analysis reads it.
func CheckLog(h History, opt LogOptions) LogResult {
	c := newLogCheck(h, opt)
	c.buildVersionOrder()
	c.judgeReads()
	c.findLostWrites()
	c.findTornTransactions()
	c.checkProducerOrder(h)
	c.checkPolls()
	for k := range c.res.Anomalies {
		slices.Sort(c.res.Anomalies[k])
	}
	c.res.Valid = len(c.res.Anomalies) == 0
	return c.res
}

// logCheck is the state CheckLog's analyses share: what was written and
// polled, as read from the history, and the version order built from the
// polls.
type logCheck struct {
	opt    LogOptions
	writes map[string]*written // every value sent, plain or transactional
	txns   [][]string          // values of each FTxn invocation, in history order
	polls  []pollOp            // successful polls, in history order

	at     map[position]string          // version order: offset → value, from every read
	readAt map[string]map[position]bool // value → positions it was read at

	res LogResult
}

// pollOp is one successful poll: who polled and what it returned.
type pollOp struct {
	proc int
	rs   []Record
}

// newLogCheck reads the writes, their outcomes and the successful polls from
// h.
func newLogCheck(h History, opt LogOptions) *logCheck {
	c := &logCheck{opt: opt, writes: map[string]*written{}, res: LogResult{Anomalies: map[string][]string{}}}
	txnOf := map[int]int{} // process → its open transaction
	for _, op := range h {
		switch op.F {
		case FSend:
			r, ok := op.Value.(Record)
			if !ok {
				continue
			}
			w := c.written(r.Value)
			if op.Type != Invoke {
				w.complete(op.Type, r)
			}
		case FTxn:
			rs := records(op.Value)
			if op.Type == Invoke {
				i := len(c.txns)
				var vs []string
				for _, r := range rs {
					c.written(r.Value).txn = i
					vs = append(vs, r.Value)
				}
				c.txns = append(c.txns, vs)
				txnOf[op.Process] = i
				continue
			}
			i, open := txnOf[op.Process]
			if !open {
				continue
			}
			delete(txnOf, op.Process)
			byValue := map[string]Record{}
			for _, r := range rs {
				byValue[r.Value] = r
			}
			for _, v := range c.txns[i] {
				r, ok := byValue[v]
				if !ok {
					r = Record{Value: v, Partition: -1, Offset: -1}
				}
				c.written(v).complete(op.Type, r)
			}
		case FPoll:
			if op.Type == OK {
				c.polls = append(c.polls, pollOp{op.Process, records(op.Value)})
			}
		}
	}
	return c
}

// written returns v's write, adding it (outcome unknown) if it is new.
func (c *logCheck) written(v string) *written {
	w := c.writes[v]
	if w == nil {
		w = &written{pos: position{-1, -1}, txn: -1}
		c.writes[v] = w
	}
	return w
}

// complete records a completion of w: OK makes it written (at r's position
// if known), Fail makes it not written unless it was already acknowledged.
func (w *written) complete(t Type, r Record) {
	switch t {
	case OK:
		w.state = wOK
		if r.Partition >= 0 && r.Offset >= 0 {
			w.pos = position{r.Partition, r.Offset}
		}
	case Fail:
		if w.state != wOK {
			w.state = wFail
		}
	}
}

func (c *logCheck) add(kind, format string, args ...any) {
	c.res.Anomalies[kind] = append(c.res.Anomalies[kind], fmt.Sprintf(format, args...))
}

// buildVersionOrder builds the version order of each partition from every
// read (offset → value) and reports a position read with two values.
func (c *logCheck) buildVersionOrder() {
	c.at = map[position]string{}
	c.readAt = map[string]map[position]bool{}
	for _, p := range c.polls {
		for _, r := range p.rs {
			pos := position{r.Partition, r.Offset}
			if prev, ok := c.at[pos]; ok && prev != r.Value {
				c.add(AnomalyInconsistentOffsets, "%s read as %s and as %s", pos, prev, r.Value)
				continue
			}
			c.at[pos] = r.Value
			if c.readAt[r.Value] == nil {
				c.readAt[r.Value] = map[position]bool{}
			}
			c.readAt[r.Value][pos] = true
		}
	}
}

// judgeReads judges every value read against its write: never sent, failed
// or aborted, read at two offsets, or read away from its acknowledged
// offset. Reads of values whose outcome was unknown count as recovered.
func (c *logCheck) judgeReads() {
	for v, ps := range c.readAt {
		w, sent := c.writes[v]
		switch {
		case !sent:
			c.add(AnomalyUnexpected, "%s read at %s but never sent", v, positions(ps))
		case w.state == wFail && w.txn >= 0:
			c.add(AnomalyAbortedRead, "%s of an aborted transaction read at %s", v, positions(ps))
		case w.state == wFail:
			c.add(AnomalyAbortedRead, "%s of a failed send read at %s", v, positions(ps))
		case w.state == wUnknown:
			c.res.Recovered++
		}
		if len(ps) > 1 {
			c.add(AnomalyDuplicate, "%s read at %s", v, positions(ps))
		}
		if sent && w.pos.partition >= 0 && !ps[w.pos] {
			c.add(AnomalyInconsistentOffsets, "%s acknowledged at %s but read at %s", v, w.pos, positions(ps))
		}
	}
	c.res.Read = len(c.readAt)
}

// findLostWrites counts the writes and reports each definitely written value
// that is missing although a later value of its partition was read. "Later"
// is by acknowledged offset when known, else by the producer's own sequence
// (Value). Without such evidence a missing value is unseen, which after a
// final drain is an anomaly of its own.
func (c *logCheck) findLostWrites() {
	type prodPart struct {
		proc      int
		partition int32
	}
	maxRead := map[int32]int64{}
	maxSeqRead := map[prodPart]int{}
	for pos, v := range c.at {
		maxRead[pos.partition] = max(maxRead[pos.partition], pos.offset+1)
		if p, s, ok := ParseValue(v); ok {
			k := prodPart{p, pos.partition}
			if cur, seen := maxSeqRead[k]; !seen || s > cur {
				maxSeqRead[k] = s
			}
		}
	}
	for v, w := range c.writes {
		c.res.Attempted++
		if w.state != wOK {
			continue
		}
		c.res.Acknowledged++
		if c.readAt[v] != nil {
			continue
		}
		c.res.Unseen++
		switch {
		case w.pos.partition >= 0 && laterRead(c.at, w.pos):
			c.add(AnomalyLostWrite, "%s acknowledged at %s never read; partition %d was read up to offset %d", v, w.pos, w.pos.partition, maxRead[w.pos.partition]-1)
		case w.pos.partition >= 0:
			if p, s, ok := ParseValue(v); ok {
				if m, seen := maxSeqRead[prodPart{p, w.pos.partition}]; seen && m > s {
					c.add(AnomalyLostWrite, "%s acknowledged at %s never read; producer %d's later %s was", v, w.pos, p, Value(p, m))
					continue
				}
			}
			fallthrough
		default:
			if c.opt.FinalDrain {
				c.add(AnomalyUnseenAfterDrain, "%s acknowledged at %s never read by the final drain", v, w.pos)
			}
		}
	}
}

// findTornTransactions reports each transaction of which some values were
// read and others not: all or nothing of a transaction is visible.
func (c *logCheck) findTornTransactions() {
	for i, vs := range c.txns {
		var seen, unseen []string
		for _, v := range vs {
			if c.readAt[v] != nil {
				seen = append(seen, v)
			} else {
				unseen = append(unseen, v)
			}
		}
		if len(seen) > 0 && len(unseen) > 0 {
			c.add(AnomalyTornTxn, "transaction %d: read %s but not %s", i, firstFew(seen), firstFew(unseen))
		}
	}
}

// checkProducerOrder reports values of one producer out of its sending
// order, judged on the version order and on the acknowledgements in h.
func (c *logCheck) checkProducerOrder(h History) {
	for _, s := range CheckOrder(orderView(h, c.at)).Reordered {
		c.add(AnomalyProducerOrder, "%s", s)
	}
}

// checkPolls reports offsets that do not increase within one poll (and, with
// Assign, across a process's consecutive polls), and polls that jump over a
// value that is in the log between two offsets they returned.
func (c *logCheck) checkPolls() {
	last := map[int]map[int32]int64{} // proc → partition → last offset read
	for i, p := range c.polls {
		if last[p.proc] == nil || !c.opt.Assign || c.opt.Subscribers[p.proc] {
			last[p.proc] = map[int32]int64{}
		}
		prev := last[p.proc]
		inPoll := map[int32]bool{}
		for _, r := range p.rs {
			lo, ok := prev[r.Partition]
			if ok && r.Offset <= lo {
				where := "within"
				if !inPoll[r.Partition] {
					where = "between polls of"
				}
				c.add(AnomalyNonmonotonicPoll, "poll %d of process %d: partition %d offset %d after %d (%s one consumer)", i, p.proc, r.Partition, r.Offset, lo, where)
			} else if ok && r.Offset-lo < 1<<16 {
				if o, v, skipped := c.committedBetween(r.Partition, lo, r.Offset); skipped {
					c.add(AnomalyPollSkip, "poll %d of process %d: partition %d jumped from %d to %d over %s at %d", i, p.proc, r.Partition, lo, r.Offset, v, o)
				}
			}
			prev[r.Partition] = r.Offset
			inPoll[r.Partition] = true
		}
	}
}

// committedBetween returns the first offset strictly between lo and hi of
// partition p at which some poll read a value that was not definitely
// failed: a value a poll from lo to hi should have returned.
func (c *logCheck) committedBetween(p int32, lo, hi int64) (int64, string, bool) {
	for o := lo + 1; o < hi; o++ {
		if v, ok := c.at[position{p, o}]; ok {
			if w := c.writes[v]; w == nil || w.state != wFail {
				return o, v, true
			}
		}
	}
	return 0, "", false
}

// laterRead reports whether some value was read in pos's partition at an
// offset after pos.
func laterRead(at map[position]string, pos position) bool {
	for p := range at {
		if p.partition == pos.partition && p.offset > pos.offset {
			return true
		}
	}
	return false
}

// orderView turns the transactional sends of h into plain ones and keeps one
// poll of the version order, so that CheckOrder judges per-producer order of
// every value exactly once (reading a position twice is not a reorder).
func orderView(h History, at map[position]string) History {
	var out History
	open := map[int][]Record{}
	for _, op := range h {
		switch op.F {
		case FSend:
			out = append(out, op)
		case FTxn:
			if op.Type == Invoke {
				open[op.Process] = records(op.Value)
				continue
			}
			if op.Type == OK {
				for _, r := range records(op.Value) {
					if r.Offset >= 0 {
						out = append(out, Op{Process: op.Process, Type: OK, F: FSend, Value: r})
					}
				}
			}
			delete(open, op.Process)
		}
	}
	var rs []Record
	for pos, v := range at {
		rs = append(rs, Record{Value: v, Partition: pos.partition, Offset: pos.offset})
	}
	slices.SortFunc(rs, func(a, b Record) int {
		return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
	})
	return append(out, Op{Type: OK, F: FPoll, Value: rs})
}

func positions(ps map[position]bool) string {
	l := slices.Collect(maps.Keys(ps))
	slices.SortFunc(l, func(a, b position) int {
		return cmp.Or(cmp.Compare(a.partition, b.partition), cmp.Compare(a.offset, b.offset))
	})
	s := make([]string, len(l))
	for i, p := range l {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// records returns v as []Record: the type ops carry in memory, or the
// []any that a history read back from JSON holds for an op kind History
// does not know (FTxn).
func records(v any) []Record {
	switch v := v.(type) {
	case []Record:
		return v
	case nil:
		return nil
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return nil
		}
		var rs []Record
		if json.Unmarshal(b, &rs) != nil {
			return nil
		}
		return rs
	}
}
