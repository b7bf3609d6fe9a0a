package share

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/idem-dev/idem/internal/config"
	"github.com/idem-dev/idem/internal/statelog"
)

// A share session is one member's ShareFetch/ShareAcknowledge conversation
// on one connection: the partitions it fetches from and the epoch the next
// request must carry. Records acquired through a session are released when
// it ends: explicitly (epoch -1), when its connection closes, or when its
// member leaves or times out.

type sessionKey struct {
	group, member string
	conn          uint64
}

// Session is an open share session. Its fields belong to the coordinator.
type Session struct{ s *session }

type session struct {
	key    sessionKey
	g      *group
	epoch  int32 // what the next request must carry
	parts  []topicPartition
	closed bool
	// held lists the share partitions where it may hold records.
	held map[*sharePartition]struct{}
	rr   int // where the next fetch starts, for fairness
}

// OpenSession validates a request's share-session epoch and returns the
// session it belongs to: epoch 0 opens a new one (replacing the member's
// session on this connection), -1 names the session the request closes,
// any other must be the session's current epoch, which then moves on. ctx is
// the connection's: when it ends, the connection's sessions are closed and
// their records released.
func (c *Coordinator) OpenSession(ctx context.Context, group, memberID string, conn uint64, epoch int32) (*Session, error) {
	key := sessionKey{group, memberID, conn}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	s := c.sessions[key]
	switch {
	case epoch == 0:
		g := c.groups[group]
		if g == nil {
			return nil, ErrGroupNotFound
		}
		if g.members[memberID] == nil {
			return nil, ErrUnknownMember
		}
		if s != nil {
			c.closeSessionLocked(s, false)
		}
		if len(c.sessions) >= int(c.cfg.Broker.Int("group.share.max.share.sessions")) {
			return nil, ErrSessionLimit
		}
		s = &session{key: key, g: g, epoch: 1, held: map[*sharePartition]struct{}{}}
		c.sessions[key] = s
		conns := c.conns[conn]
		if conns == nil {
			conns = map[*session]struct{}{}
			c.conns[conn] = conns
			context.AfterFunc(ctx, func() { c.closeConn(conn) })
		}
		conns[s] = struct{}{}
		return &Session{s}, nil
	case s == nil:
		return nil, ErrSessionNotFound
	case epoch == -1:
		return &Session{s}, nil
	case epoch != s.epoch:
		return nil, fmt.Errorf("%w: got %d, want %d", ErrInvalidSessionEpoch, epoch, s.epoch)
	}
	if s.epoch == math.MaxInt32 {
		s.epoch = 1
	} else {
		s.epoch++
	}
	return &Session{s}, nil
}

// closeConn closes the sessions of a connection that went away; their
// records count as delivered (the consumer may have died processing them).
func (c *Coordinator) closeConn(conn uint64) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	var pos int64
	for s := range c.conns[conn] {
		pos = max(pos, c.closeSessionLocked(s, false))
	}
	delete(c.conns, conn)
	c.mu.Unlock()
	if err := c.waitDurable(context.Background(), pos); err != nil {
		c.logger.Error("share log sync failed releasing a connection's records", "err", err)
	}
}

// UpdateSession adds the partitions a request names to the session and
// removes the ones it forgets (in that order, as Kafka does).
func (c *Coordinator) UpdateSession(ss *Session, add, forget []TopicPartition) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := ss.s
	for _, tp := range add {
		k := topicPartition{tp.TopicID, tp.Partition}
		if !slices.Contains(s.parts, k) {
			s.parts = append(s.parts, k)
		}
	}
	for _, tp := range forget {
		k := topicPartition{tp.TopicID, tp.Partition}
		s.parts = slices.DeleteFunc(s.parts, func(x topicPartition) bool { return x == k })
	}
}

// TopicPartition names a partition by topic id.
type TopicPartition struct {
	TopicID   [16]byte
	Partition int32
}

// CloseSession ends a session (epoch -1) after its acknowledgements: the
// records it still holds were never processed, so they are released with
// their delivery taken back. It returns the share-log position to wait for.
func (c *Coordinator) CloseSession(ss *Session) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ss.s.closed {
		return c.log.End(), nil
	}
	return c.closeSessionLocked(ss.s, true), c.log.Err()
}

// closeSessionLocked releases what s holds and forgets it.
func (c *Coordinator) closeSessionLocked(s *session, graceful bool) int64 {
	if s.closed {
		return 0
	}
	s.closed = true
	delete(c.sessions, s.key)
	if conns := c.conns[s.key.conn]; conns != nil {
		delete(conns, s)
	}
	var pos int64
	now := c.now()
	st := c.settingsLocked(s.key.group)
	for _, sp := range sortedHeld(s.held) {
		if sp.deleted {
			continue
		}
		cs := &changeSet{}
		for i := range sp.recs {
			if r := &sp.recs[i]; r.state == stAcquired && r.owner == s {
				c.releaseLocked(sp, sp.spso+int64(i), r, &st, now, graceful, cs)
			}
		}
		if len(cs.offsets) > 0 {
			end, err := c.commitChangesLocked(sp, cs)
			if err != nil {
				c.logger.Error("share log append failed releasing a session", "err", err)
			}
			pos = max(pos, end)
			sp.g.wakeLocked()
		}
	}
	s.held = nil
	return pos
}

func sortedHeld(m map[*sharePartition]struct{}) []*sharePartition {
	out := make([]*sharePartition, 0, len(m))
	for sp := range m {
		out = append(out, sp)
	}
	slices.SortFunc(out, func(a, b *sharePartition) int { return a.tp.compare(b.tp) })
	return out
}

// AckBatch is one acknowledgement batch: one type for the whole range, or
// one per offset.
type AckBatch struct {
	First, Last int64
	Types       []int8
}

// Acknowledge applies one partition's acknowledgement batches for the
// session's member, all or nothing: every batch is validated (ascending,
// not overlapping, inside the in-flight window, one type or one per
// offset, RENEW only in a renew request) and every offset must be held by
// the member; then all are applied and written as one record. It returns
// the share-log position the caller waits for before answering.
func (c *Coordinator) Acknowledge(ss *Session, tp TopicPartition, batches []AckBatch, renewRequest bool) (int64, error) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	s := ss.s
	if c.closed {
		return 0, ErrClosed
	}
	if err := c.log.Err(); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	if err := validateBatches(batches, renewRequest); err != nil {
		return 0, err
	}
	st := c.settingsLocked(s.key.group)
	if renewRequest && !st.renewEnabled {
		return 0, fmt.Errorf("%w: share.renew.acknowledge.enable is false", ErrInvalidRequest)
	}
	if ti, ok := c.cfg.Topics.ByID(tp.TopicID); !ok || tp.Partition < 0 || tp.Partition >= ti.Partitions {
		return 0, ErrUnknownTopic
	}
	sp := s.g.sps[topicPartition{tp.TopicID, tp.Partition}]
	if sp == nil || sp.deleted {
		return 0, fmt.Errorf("%w: the group holds no records of this partition", ErrInvalidRecordState)
	}
	for _, b := range batches {
		if b.Last >= sp.end() {
			return 0, fmt.Errorf("%w: batch %d-%d goes past the in-flight window (ends at %d)", ErrInvalidRequest, b.First, b.Last, sp.end())
		}
	}
	for _, b := range batches {
		if b.First < sp.spso {
			return 0, fmt.Errorf("%w: offset %d is below the share-partition start offset %d", ErrInvalidRecordState, b.First, sp.spso)
		}
		for o := b.First; o <= b.Last; o++ {
			r := sp.at(o)
			if r.state != stAcquired || r.owner == nil || r.owner.key.member != s.key.member || r.owner.key.group != s.key.group {
				return 0, fmt.Errorf("%w: offset %d is %v", ErrInvalidRecordState, o, r.state)
			}
		}
	}
	cs := &changeSet{}
	for _, b := range batches {
		var renewAcq uint32
		renewed := false
		for o := b.First; o <= b.Last; o++ {
			t := b.Types[0]
			if len(b.Types) > 1 {
				t = b.Types[o-b.First]
			}
			r := sp.at(o)
			switch t {
			case AckAccept:
				r.state, r.owner, r.acq, r.deadline = stAcknowledged, nil, 0, 0
				cs.add(o)
				c.stats.accepted.Add(1)
			case AckRelease:
				c.releaseLocked(sp, o, r, &st, now, false, cs)
			case AckReject:
				c.stats.rejected.Add(1)
				c.archiveLocked(sp, o, r, &st, reasonRejected, cs)
			case AckGap:
				r.state, r.owner, r.acq, r.deadline = stArchived, nil, 0, 0
				cs.add(o)
			case AckRenew:
				if !renewed {
					sp.acqSeq++
					renewAcq, renewed = sp.acqSeq, true
				}
				r.acq = renewAcq
				r.deadline = now.Add(st.lockDuration).UnixNano()
				c.stats.renewed.Add(1)
			}
		}
		if renewed {
			c.addTimerLocked(timer{at: now.Add(st.lockDuration).UnixNano(), kind: timerLock, sp: sp, first: b.First, last: b.Last, acq: renewAcq})
		}
	}
	if len(cs.offsets) == 0 {
		return c.log.End(), nil // renewals only: nothing durable changes
	}
	before := sp.spso
	end, err := c.commitChangesLocked(sp, cs)
	if err != nil {
		return 0, err
	}
	if len(cs.available) > 0 || sp.spso != before {
		// Records to redeliver, or room in the window: long-polls of
		// the group may acquire now.
		s.g.wakeLocked()
	}
	return end, nil
}

// validateBatches checks the shape of a partition's acknowledgement
// batches, before anything is looked up.
func validateBatches(batches []AckBatch, renewRequest bool) error {
	if len(batches) == 0 {
		return fmt.Errorf("%w: no acknowledgement batches", ErrInvalidRequest)
	}
	for i, b := range batches {
		switch {
		case b.First < 0 || b.Last < b.First:
			return fmt.Errorf("%w: batch %d-%d is not a range", ErrInvalidRequest, b.First, b.Last)
		case i > 0 && b.First <= batches[i-1].Last:
			return fmt.Errorf("%w: batch %d-%d overlaps or precedes the one before", ErrInvalidRequest, b.First, b.Last)
		case len(b.Types) != 1 && int64(len(b.Types)) != b.Last-b.First+1:
			return fmt.Errorf("%w: batch %d-%d has %d acknowledgement types (want 1 or %d)", ErrInvalidRequest, b.First, b.Last, len(b.Types), b.Last-b.First+1)
		}
		for _, t := range b.Types {
			if t < AckGap || t > AckRenew || (t == AckRenew && !renewRequest) {
				return fmt.Errorf("%w: acknowledgement type %d", ErrInvalidRequest, t)
			}
		}
	}
	return nil
}

// FetchOptions bound one ShareFetch.
type FetchOptions struct {
	MaxRecords        int
	Strict            bool // KIP-1206 record-limit mode: exactly MaxRecords at most
	MaxBytes          int
	PartitionMaxBytes int
	MaxWait           time.Duration
	// Closing ends a long-poll early (graceful shutdown).
	Closing <-chan struct{}
}

// PartitionResult is one partition of a fetch: the record batches read and
// the ranges of them the member now holds, or an error.
type PartitionResult struct {
	TopicID   [16]byte
	Partition int32
	Err       error
	Records   []byte
	Acquired  []AcquiredRange
}

// FetchResult is a ShareFetch's records.
type FetchResult struct {
	Partitions  []PartitionResult
	LockTimeout time.Duration
	// selfBlocked: nothing could be acquired because windows are full of
	// records this session holds.
	selfBlocked bool
}

// readChunk is how much one share-partition read asks for at most: enough
// for a full fetch of small records, while what is sent back is cut to the
// batches that hold acquired records.
const readChunk = 1 << 20

// Fetch acquires records for the session from its partitions and waits, up
// to opts.MaxWait, for some to become available. It returns once the share
// log is durable up to everything the records handed out depend on.
func (c *Coordinator) Fetch(ctx context.Context, ss *Session, opts FetchOptions) (FetchResult, error) {
	if opts.MaxRecords <= 0 {
		opts.MaxRecords = 500
	}
	deadline := c.now().Add(opts.MaxWait)
	wake := make(chan struct{}, 1)
	var stops []func()
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	watching := false
	var timerC <-chan time.Time
	for {
		res, changed, wait, err := c.fetchOnce(ss, opts)
		if err != nil {
			return FetchResult{}, err
		}
		if res.hasData() || res.selfBlocked || opts.MaxWait <= 0 || !c.now().Before(deadline) {
			if err := c.waitDurable(ctx, wait); err != nil {
				return FetchResult{}, err
			}
			return res, nil
		}
		if !watching {
			// Watch, then fetch again, so that data arriving between the
			// first attempt and the wait is not missed.
			watching = true
			for _, p := range c.sessionPartitions(ss) {
				stops = append(stops, p.Watch(wake))
			}
			t := time.NewTimer(time.Until(deadline))
			defer t.Stop()
			timerC = t.C
			continue
		}
		select {
		case <-wake:
		case <-changed:
		case <-timerC:
			return res, nil
		case <-opts.Closing:
			return res, nil
		case <-c.stop:
			return res, nil
		case <-ctx.Done():
			return FetchResult{}, ctx.Err()
		}
	}
}

func (r *FetchResult) hasData() bool {
	for _, p := range r.Partitions {
		if p.Err != nil || len(p.Acquired) > 0 {
			return true
		}
	}
	return false
}

// sessionPartitions returns the open partitions of the session (for
// watching their high watermarks).
func (c *Coordinator) sessionPartitions(ss *Session) []Partition {
	c.mu.Lock()
	parts := slices.Clone(ss.s.parts)
	c.mu.Unlock()
	var out []Partition
	for _, tp := range parts {
		ti, ok := c.cfg.Topics.ByID(tp.id)
		if !ok {
			continue
		}
		if p, err := c.cfg.Topics.Partition(ti.Name, tp.partition); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// fetchPlan is one partition a fetch reads.
type fetchPlan struct {
	tp    topicPartition
	sp    *sharePartition
	p     Partition
	from  int64
	err   error
	topic string
}

// fetchOnce tries every partition of the session once. It returns what it
// acquired, the group's change channel (closed when records may have
// become available) and the share-log position to wait for.
func (c *Coordinator) fetchOnce(ss *Session, opts FetchOptions) (FetchResult, <-chan struct{}, int64, error) {
	now := c.now()
	c.mu.Lock()
	s := ss.s
	if c.closed {
		c.mu.Unlock()
		return FetchResult{}, nil, 0, ErrClosed
	}
	if s.closed {
		c.mu.Unlock()
		return FetchResult{}, nil, 0, ErrSessionNotFound
	}
	st := c.settingsLocked(s.key.group)
	changed := s.g.changed
	selfBlocked := false
	n := len(s.parts)
	plans := make([]fetchPlan, 0, n)
	var wait int64
	for i := range n {
		tp := s.parts[(s.rr+i)%n]
		pl := fetchPlan{tp: tp}
		sp, p, pos, err := c.sharePartitionLocked(s.g, tp, &st, now)
		wait = max(wait, pos)
		if err != nil {
			pl.err = err
			plans = append(plans, pl)
			continue
		}
		pl.sp, pl.p, pl.topic = sp, p, sp.topic
		pl.from = sp.firstAcquirable(now.UnixMilli(), st.maxLocks)
		if _, holds := s.held[sp]; pl.from < 0 && holds {
			// The window is full and this session holds records in it:
			// only its own acknowledgements can make room, and a client
			// sends them with its next request, so waiting would only
			// delay them.
			selfBlocked = true
		}
		hw := p.HighWatermark()
		if st.readCommitted {
			hw = p.LastStableOffset()
		}
		if pl.from < 0 || pl.from >= hw {
			continue
		}
		plans = append(plans, pl)
	}
	if n > 0 {
		s.rr = (s.rr + 1) % n
	}
	c.mu.Unlock()

	res := FetchResult{LockTimeout: st.lockDuration, selfBlocked: selfBlocked}
	want := opts.MaxRecords
	remaining := opts.MaxBytes
	for _, pl := range plans {
		pr := PartitionResult{TopicID: pl.tp.id, Partition: pl.tp.partition}
		if pl.err != nil {
			pr.Err = pl.err
			res.Partitions = append(res.Partitions, pr)
			continue
		}
		if want <= 0 || (remaining <= 0 && len(res.Partitions) > 0) {
			break
		}
		limit := min(readChunk, max(remaining, 1))
		if opts.PartitionMaxBytes > 0 {
			limit = min(limit, opts.PartitionMaxBytes)
		}
		read := pl.p.Read
		if st.readCommitted {
			read = pl.p.ReadCommitted
		}
		data, err := read(pl.from, limit)
		if err != nil {
			pr.Err = err
			res.Partitions = append(res.Partitions, pr)
			continue
		}
		batches := parseBatches(data)
		if len(batches) == 0 {
			continue
		}
		var aborted []AbortedTxn
		if st.readCommitted {
			aborted = pl.p.AbortedTransactions(batches[0].base, batches[len(batches)-1].last+1)
		}
		c.mu.Lock()
		if s.closed || pl.sp.deleted || c.closed {
			c.mu.Unlock()
			continue
		}
		cs := &changeSet{}
		ranges, w := c.acquireLocked(pl.sp, s, batches, aborted, want, opts.Strict, &st, now, cs)
		if len(cs.offsets) > 0 {
			end, err := c.commitChangesLocked(pl.sp, cs)
			if err != nil {
				c.mu.Unlock()
				return FetchResult{}, nil, 0, err
			}
			w = max(w, end)
		}
		c.mu.Unlock()
		if len(ranges) == 0 {
			continue
		}
		wait = max(wait, w)
		pr.Records = trimToAcquired(data, batches, ranges)
		pr.Acquired = ranges
		for _, rg := range ranges {
			want -= int(rg.Last - rg.First + 1)
		}
		remaining -= len(pr.Records)
		res.Partitions = append(res.Partitions, pr)
	}
	return res, changed, wait, nil
}

// trimToAcquired cuts data to the batches from the one holding the first
// acquired offset to the one holding the last.
func trimToAcquired(data []byte, batches []batchInfo, ranges []AcquiredRange) []byte {
	first, last := ranges[0].First, ranges[len(ranges)-1].Last
	start, end := 0, len(data)
	for _, b := range batches {
		if b.last < first {
			start = b.end
		}
		if b.base <= last {
			end = b.end
		}
	}
	return data[start:end]
}

// sharePartitionLocked returns the group's state of tp, creating it (at
// share.auto.offset.reset) on first use, and the partition to read. The
// state is moved past records the log no longer holds. pos is where the
// creation was written (the caller waits for it before handing records
// out).
func (c *Coordinator) sharePartitionLocked(g *group, tp topicPartition, st *settings, now time.Time) (*sharePartition, Partition, int64, error) {
	ti, ok := c.cfg.Topics.ByID(tp.id)
	if !ok || tp.partition < 0 || tp.partition >= ti.Partitions {
		return nil, nil, 0, ErrUnknownTopic
	}
	p, err := c.cfg.Topics.Partition(ti.Name, tp.partition)
	if err != nil {
		return nil, nil, 0, err
	}
	sp := g.sps[tp]
	if sp == nil {
		start, err := initialOffset(p, st.autoReset, now)
		if err != nil {
			return nil, nil, 0, err
		}
		sp = &sharePartition{g: g, tp: tp, topic: ti.Name, spso: start}
		end, err := c.appendLocked([]statelog.Record{stateRecord(g.id, tp, true, start, nil, false)})
		if err != nil {
			return nil, nil, 0, err
		}
		sp.pos = end
		g.sps[tp] = sp
	}
	if sp.topic == "" {
		sp.topic = ti.Name
	}
	if ls := p.StartOffset(); ls > sp.spso {
		sp.moveStart(ls)
	}
	return sp, p, sp.pos, nil
}

// initialOffset is where a group starts reading a partition it has no
// state for.
func initialOffset(p Partition, reset string, now time.Time) (int64, error) {
	switch {
	case reset == "earliest":
		return p.StartOffset(), nil
	case len(reset) > len("by_duration:") && reset[:len("by_duration:")] == "by_duration:":
		ms, err := config.ParseByDuration(reset[len("by_duration:"):])
		if err != nil {
			return 0, err
		}
		off, ok, err := p.OffsetForTime(now.UnixMilli() - ms)
		if err != nil {
			return 0, err
		}
		if ok {
			return max(off, p.StartOffset()), nil
		}
	}
	return p.HighWatermark(), nil
}
