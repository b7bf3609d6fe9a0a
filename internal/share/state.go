package share

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"slices"
	"time"

	"github.com/idem-dev/idem/internal/statelog"
)

// recState is a record's state in a share partition (KIP-932's RecordState
// numbers, which the share log stores).
type recState uint8

const (
	stAvailable    recState = 0
	stAcquired     recState = 1
	stAcknowledged recState = 2
	stArchiving    recState = 3 // archived, its dead-letter copy not yet durable
	stArchived     recState = 4
)

func (s recState) String() string {
	return [...]string{"Available", "Acquired", "Acknowledged", "Archiving", "Archived"}[s]
}

func (s recState) terminal() bool { return s >= stAcknowledged }

// maxBatchOvershoot is the largest batch (in records) that batch-optimized
// acquisition takes whole past share.partition.max.record.locks; a batch
// claiming more (a hostile one) is cut at the limit, so one batch cannot
// make a window of millions of records.
const maxBatchOvershoot = 1 << 16

// maxWindow bounds a decoded run (a sanity check on the share log, far
// above group.share.partition.max.record.locks' maximum).
const maxWindow = 1 << 20

// Acknowledgement types, the wire's numbers.
const (
	AckGap     int8 = 0
	AckAccept  int8 = 1
	AckRelease int8 = 2
	AckReject  int8 = 3
	AckRenew   int8 = 4
)

// topicPartition names a share partition's partition by topic id, as the
// share APIs do (a topic recreated under the same name is another one).
type topicPartition struct {
	id        [16]byte
	partition int32
}

func (a topicPartition) compare(b topicPartition) int {
	if c := bytes.Compare(a.id[:], b.id[:]); c != 0 {
		return c
	}
	return cmp.Compare(a.partition, b.partition)
}

// inflight is one record of a share partition's in-flight window.
type inflight struct {
	state recState
	count int16 // deliveries so far (acquisitions)
	// acq identifies the acquisition while Acquired: a lock timer fires
	// only on the records whose acq still matches.
	acq      uint32
	owner    *session
	deadline int64 // unix ns when the lock expires (Acquired)
	availAt  int64 // unix ms from which it may be acquired again (Available)
	// pos is the share-log end after the record that made it Available
	// again; handing it out waits until that is durable.
	pos int64
}

// sharePartition is one group's state of one topic partition: the
// share-partition start offset (SPSO) and the in-flight window
// [SPSO, end()) of records acquired at least once and not all terminal.
// Every offset below SPSO is terminal; every offset at or past end() is
// Available with no deliveries.
type sharePartition struct {
	g     *group
	tp    topicPartition
	topic string // the topic's name when the state was loaded or created
	spso  int64
	recs  []inflight // recs[i] is offset spso+i
	// acqSeq numbers acquisitions (and renewals).
	acqSeq uint32
	// pos is the share-log end after the record that created this state:
	// the first records handed out wait until the start offset is durable.
	pos     int64
	deleted bool
}

func (sp *sharePartition) end() int64 { return sp.spso + int64(len(sp.recs)) }

func (sp *sharePartition) at(o int64) *inflight { return &sp.recs[o-sp.spso] }

// advance moves SPSO past the terminal records at the window's start.
func (sp *sharePartition) advance() {
	n := 0
	for n < len(sp.recs) && sp.recs[n].state.terminal() {
		n++
	}
	if n > 0 {
		sp.recs = sp.recs[n:]
		sp.spso += int64(n)
	}
	if len(sp.recs) == 0 {
		sp.recs = nil // let the old array go
	}
}

// moveStart moves SPSO to start (>= spso), treating everything skipped as
// terminal: the log start offset moved past it, or an admin reset it.
func (sp *sharePartition) moveStart(start int64) {
	if start <= sp.spso {
		return
	}
	if start >= sp.end() {
		sp.recs = nil
	} else {
		sp.recs = sp.recs[start-sp.spso:]
	}
	sp.spso = start
}

// grow extends the window to cover offsets below end with Available records.
func (sp *sharePartition) grow(end int64) {
	for sp.end() < end {
		sp.recs = append(sp.recs, inflight{})
	}
}

// inFlight counts the records in the window that are not terminal.
func (sp *sharePartition) inFlight() (acquired, available int) {
	for i := range sp.recs {
		switch sp.recs[i].state {
		case stAcquired:
			acquired++
		case stAvailable:
			available++
		}
	}
	return acquired, available
}

// runs describes the window for a full state record: acquired records are
// written as Available with their count (acquisitions are volatile; the
// delivery they stand for is counted).
func (sp *sharePartition) runs() []run {
	var out []run
	for i := range sp.recs {
		r := &sp.recs[i]
		st := r.state
		if st == stAcquired {
			st = stAvailable
		}
		if st == stAvailable && r.count == 0 && r.availAt == 0 {
			continue // the default state needs no run
		}
		o := sp.spso + int64(i)
		if n := len(out); n > 0 && out[n-1].last == o-1 && out[n-1].state == st && out[n-1].count == r.count && out[n-1].availAt == r.availAt {
			out[n-1].last = o
			continue
		}
		out = append(out, run{first: o, last: o, state: st, count: r.count, availAt: r.availAt})
	}
	return out
}

// apply loads a state record (replay).
func (sp *sharePartition) apply(full bool, spso int64, runs []run) {
	if full {
		sp.spso, sp.recs = spso, nil
	} else {
		sp.moveStart(spso)
	}
	for _, rn := range runs {
		if rn.last < sp.spso {
			continue
		}
		sp.grow(rn.last + 1)
		for o := max(rn.first, sp.spso); o <= rn.last; o++ {
			*sp.at(o) = inflight{state: rn.state, count: rn.count, availAt: rn.availAt}
		}
	}
	sp.advance()
}

// changeSet collects what one operation changed in one share partition, to
// be written as one delta record (plus the dead-letter records it caused)
// in the same batch.
type changeSet struct {
	offsets []int64
	extra   []statelog.Record
	// available lists the offsets made Available, which learn the batch's
	// end as their pos.
	available []int64
}

func (cs *changeSet) add(o int64) { cs.offsets = append(cs.offsets, o) }

// deltaRuns describes the changed offsets still in the window.
func (sp *sharePartition) deltaRuns(offsets []int64) []run {
	slices.Sort(offsets)
	var out []run
	for i, o := range offsets {
		if o < sp.spso || o >= sp.end() || (i > 0 && offsets[i-1] == o) {
			continue
		}
		r := sp.at(o)
		if r.state == stAcquired {
			continue // a renewal changes nothing durable
		}
		if n := len(out); n > 0 && out[n-1].last == o-1 && out[n-1].state == r.state && out[n-1].count == r.count && out[n-1].availAt == r.availAt {
			out[n-1].last = o
			continue
		}
		out = append(out, run{first: o, last: o, state: r.state, count: r.count, availAt: r.availAt})
	}
	return out
}

// commitChangesLocked advances SPSO and appends one delta record for the
// changes in cs, with cs's extra records in the same batch. It returns the
// log end to wait for before acknowledging the changes.
func (c *Coordinator) commitChangesLocked(sp *sharePartition, cs *changeSet) (int64, error) {
	sp.advance()
	recs := append([]statelog.Record{stateRecord(sp.g.id, sp.tp, false, sp.spso, sp.deltaRuns(cs.offsets), false)}, cs.extra...)
	end, err := c.appendLocked(recs)
	if err != nil {
		return 0, err
	}
	for _, o := range cs.available {
		if o >= sp.spso && o < sp.end() {
			if r := sp.at(o); r.state == stAvailable {
				r.pos = end
			}
		}
	}
	return end, nil
}

// settings are a group's effective share configs, read once per operation.
type settings struct {
	lockDuration    time.Duration
	deliveryLimit   int16
	maxLocks        int
	readCommitted   bool
	renewEnabled    bool
	dlqTopic        string
	dlqCopy         bool
	backoff         time.Duration
	backoffMax      time.Duration
	backoffMultiple float64
	backoffJitter   float64
	autoReset       string
	sessionTimeout  time.Duration
	heartbeat       time.Duration
}

// releaseLocked makes an acquired record available again, or archives it
// when it has reached the delivery count limit. decrement takes back the
// delivery (records a consumer never saw: its graceful close).
func (c *Coordinator) releaseLocked(sp *sharePartition, o int64, r *inflight, st *settings, now time.Time, decrement bool, cs *changeSet) {
	r.owner, r.acq, r.deadline = nil, 0, 0
	if decrement && r.count > 0 {
		r.count--
	}
	cs.add(o)
	if r.count >= st.deliveryLimit {
		c.archiveLocked(sp, o, r, st, reasonLimit, cs)
		return
	}
	r.state = stAvailable
	r.availAt = 0
	if d := backoffFor(st, r.count, c.cfg.rand); d > 0 && !decrement {
		at := now.Add(d)
		r.availAt = at.UnixMilli()
		c.addTimerLocked(timer{at: at.UnixNano(), kind: timerAvailable, sp: sp})
	}
	cs.available = append(cs.available, o)
	c.stats.released.Add(1)
}

// backoffFor is idem's delayed retry: base × multiplier^(deliveries-1),
// capped, with ± jitter.
func backoffFor(st *settings, count int16, rnd func() float64) time.Duration {
	if st.backoff <= 0 || count <= 0 {
		return 0
	}
	d := float64(st.backoff)
	for i := int16(1); i < count && d < float64(st.backoffMax); i++ {
		d *= st.backoffMultiple
	}
	d = min(d, float64(st.backoffMax))
	if st.backoffJitter > 0 {
		d *= 1 + st.backoffJitter*(2*rnd()-1)
	}
	return time.Duration(max(d, 0))
}

// Why a record is archived, which its dead-letter copy says.
const (
	reasonRejected = "rejected by the consumer"
	reasonLimit    = "delivery count limit reached"
)

// archiveLocked archives a record for good; if the group has a dead-letter
// topic it becomes Archiving until its copy there is durable.
func (c *Coordinator) archiveLocked(sp *sharePartition, o int64, r *inflight, st *settings, reason string, cs *changeSet) {
	r.owner, r.acq, r.deadline, r.availAt = nil, 0, 0, 0
	cs.add(o)
	c.stats.archived.Add(1)
	if st.dlqTopic == "" {
		r.state = stArchived
		return
	}
	r.state = stArchiving
	cs.extra = append(cs.extra, c.dlqIntentLocked(sp, o, r.count, st, reason))
}

// batchInfo is what acquisition needs of one record batch.
type batchInfo struct {
	base, last   int64
	control, txn bool
	producerID   int64
	end          int // byte offset of the batch's end in the data read
}

// parseBatches reads the headers of the whole batches in data.
func parseBatches(data []byte) []batchInfo {
	var out []batchInfo
	pos := 0
	for len(data)-pos >= 61 {
		b := data[pos:]
		n := 12 + int(binary.BigEndian.Uint32(b[8:]))
		if n < 61 || n > len(b) {
			break
		}
		attrs := binary.BigEndian.Uint16(b[21:])
		base := int64(binary.BigEndian.Uint64(b))
		out = append(out, batchInfo{
			base:       base,
			last:       base + int64(int32(binary.BigEndian.Uint32(b[23:]))),
			control:    attrs&0x20 != 0,
			txn:        attrs&0x10 != 0,
			producerID: int64(binary.BigEndian.Uint64(b[43:])),
			end:        pos + n,
		})
		pos += n
	}
	return out
}

// AcquiredRange is a run of records a member now holds, all delivered the
// same number of times.
type AcquiredRange struct {
	First, Last   int64
	DeliveryCount int16
}

// acquireLocked acquires for s the Available records of batches, at most
// want of them (strict, KIP-1206's record-limit mode: exactly; otherwise,
// batch-optimized: whole batches). The window does not grow past
// st.maxLocks, except that in batch-optimized mode a batch begun below the
// limit is acquired whole (as Kafka checks the in-flight limit per batch),
// so a client does not decode a large batch again for each slice of it;
// a batch of more than maxBatchOvershoot records is cut at the limit. It
// returns the ranges acquired and the share-log position to wait for
// before handing them out.
func (c *Coordinator) acquireLocked(sp *sharePartition, s *session, batches []batchInfo, aborted []AbortedTxn, want int, strict bool, st *settings, now time.Time, cs *changeSet) (ranges []AcquiredRange, wait int64) {
	nowMs := now.UnixMilli()
	sp.acqSeq++
	acq := sp.acqSeq
	deadline := now.Add(st.lockDuration).UnixNano()
	got := 0
	first, last := int64(-1), int64(-1)
	full := func() bool { return len(sp.recs) >= st.maxLocks }
outer:
	for _, b := range batches {
		if b.last < sp.spso {
			continue
		}
		if !strict && got >= want {
			break
		}
		whole := !strict && !full() && b.last-b.base < maxBatchOvershoot
		isAborted := b.txn && !b.control && st.readCommitted && abortedBatch(aborted, b.producerID, b.base)
		for o := max(b.base, sp.spso); o <= b.last; o++ {
			if strict && got >= want {
				break outer
			}
			if o >= sp.end() {
				if full() && !whole {
					break outer
				}
				sp.grow(o + 1)
			}
			r := sp.at(o)
			if r.state != stAvailable || r.availAt > nowMs {
				continue
			}
			if b.control || isAborted {
				// Markers and aborted records are never delivered;
				// the next scan would skip them again, so they need
				// no record of their own.
				r.state = stArchived
				continue
			}
			if r.count >= st.deliveryLimit {
				// The limit was lowered after its last delivery.
				c.archiveLocked(sp, o, r, st, reasonLimit, cs)
				continue
			}
			r.state, r.owner, r.acq, r.deadline = stAcquired, s, acq, deadline
			r.count++
			wait = max(wait, r.pos)
			got++
			if n := len(ranges); n > 0 && ranges[n-1].Last == o-1 && ranges[n-1].DeliveryCount == r.count {
				ranges[n-1].Last = o
			} else {
				ranges = append(ranges, AcquiredRange{First: o, Last: o, DeliveryCount: r.count})
			}
			if first < 0 {
				first = o
			}
			last = o
		}
	}
	if got > 0 {
		c.addTimerLocked(timer{at: deadline, kind: timerLock, sp: sp, first: first, last: last, acq: acq})
		s.held[sp] = struct{}{}
		c.stats.acquired.Add(int64(got))
		for _, rg := range ranges {
			c.stats.observeDelivery(rg.DeliveryCount, rg.Last-rg.First+1)
		}
	}
	return ranges, max(wait, sp.pos)
}

// abortedBatch reports whether a transactional batch of pid at base
// belongs to an aborted transaction.
func abortedBatch(aborted []AbortedTxn, pid, base int64) bool {
	for _, a := range aborted {
		if a.ProducerID == pid && a.FirstOffset <= base && base < a.LastOffset {
			return true
		}
	}
	return false
}

// firstAcquirable is where a read must start to find records to acquire:
// the first Available record of the window whose delayed retry is over, or
// the window's end if it may still grow; -1 when neither.
func (sp *sharePartition) firstAcquirable(nowMs int64, maxLocks int) int64 {
	for i := range sp.recs {
		if r := &sp.recs[i]; r.state == stAvailable && r.availAt <= nowMs {
			return sp.spso + int64(i)
		}
	}
	if len(sp.recs) < maxLocks {
		return sp.end()
	}
	return -1
}

// expireLocksLocked releases the records of one acquisition whose lock ran
// out (the timer's acquisition id still on them).
func (c *Coordinator) expireLocksLocked(sp *sharePartition, t timer, now time.Time, cs *changeSet) {
	var st *settings
	for o := max(t.first, sp.spso); o <= t.last && o < sp.end(); o++ {
		r := sp.at(o)
		if r.state != stAcquired || r.acq != t.acq {
			continue
		}
		if st == nil {
			s := c.settingsLocked(sp.g.id)
			st = &s
		}
		c.stats.lockExpiries.Add(1)
		c.releaseLocked(sp, o, r, st, now, false, cs)
	}
}
