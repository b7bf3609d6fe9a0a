package api

// Fetch, versions 4–12.
//
// v4 is the floor: record batches only, no down-conversion (Kafka 4 does the
// same). v13+ name topics by id and are not advertised yet; kgo then fetches
// with v12.
//
// Behaviour:
//   - Visible data ends at the high watermark, which is the durable offset:
//     a consumer never sees a record that a power loss could take back.
//   - Whole batches are returned as stored, starting with the batch holding
//     FetchOffset (clients skip the earlier records of that batch). At least
//     one batch is returned even if it exceeds PartitionMaxBytes or MaxBytes
//     (KIP-74), but once the response holds data MaxBytes stops further reads.
//     MaxBytes is capped by the broker's fetch.max.bytes (55 MiB).
//   - Long-poll: with less than MinBytes available the response waits, up to
//     MaxWaitMillis, for the high watermark of any requested partition to
//     advance. Reading and waiting happen in a Deferred on the connection's
//     writer, so a long-poll never blocks later requests from being read and
//     a connection holds at most one fetch response's data at a time.
//   - Fetch sessions (KIP-227) are served as Kafka serves them
//     (fetch_session.go): a full fetch at epoch 0 opens a session, and
//     incremental fetches then name only what changed and are answered only
//     the partitions with something new. Long-polls watch every partition
//     of the session.
//   - IsolationLevel 1 (read_committed) serves data only below the last
//     stable offset and lists the aborted transactions overlapping the data
//     returned (exactly those: entries whose marker precedes FetchOffset
//     would make the consumer skip later committed data). read_uncommitted
//     gets AbortedTransactions null and still sees aborted data.
//   - FetchOffset outside [log start, log end] gives OFFSET_OUT_OF_RANGE;
//     between the high watermark and the log end it is a valid empty poll.
//   - CurrentLeaderEpoch (v9+) above ours (always 0) gives UNKNOWN_LEADER_EPOCH.
//   - Internal topics are listed by Metadata but not served:
//     INVALID_TOPIC_EXCEPTION (internal_topics.go).

import (
	"context"
	"encoding/binary"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/partition"
	"github.com/idem-dev/idem/internal/security"
)

func init() { register(1, 4, 12, handleFetch) }

// defaultFetchMaxBytes applies when a request has no MaxBytes (v<3) or a
// non-positive one; it is Kafka's fetch.max.bytes default.
const defaultFetchMaxBytes = 50 << 20

// maxFetchWait caps MaxWaitMillis so a hostile client cannot park a
// connection's response for days.
const maxFetchWait = 5 * time.Minute

func handleFetch(_ context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.FetchRequest)
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	cache := env.FetchSessions
	switch {
	case req.Version < 7: // no session fields
		return fullFetch(env, conn, req, resp, nil), nil
	case req.SessionEpoch == 0 || req.SessionEpoch == -1:
		// A full fetch closes the session it names; epoch 0 opens a new one.
		if cache == nil {
			return fullFetch(env, conn, req, resp, nil), nil
		}
		if req.SessionID != 0 {
			cache.remove(req.SessionID)
		}
		if req.SessionEpoch == -1 {
			cache = nil
		}
		return fullFetch(env, conn, req, resp, cache), nil
	}
	var s *fetchSession
	if cache != nil {
		s = cache.get(req.SessionID)
	}
	if s == nil {
		resp.ErrorCode = kerr.FetchSessionIDNotFound.Code
		return resp, nil
	}
	s.mu.Lock()
	if s.epoch != req.SessionEpoch {
		s.mu.Unlock()
		resp.ErrorCode = kerr.InvalidFetchSessionEpoch.Code
		return resp, nil
	}
	if !s.update(env, req) || len(s.parts) == 0 {
		s.mu.Unlock()
		cache.removeSession(s)
		return fullFetch(env, conn, req, resp, nil), nil
	}
	s.epoch = nextFetchEpoch(s.epoch)
	epoch := s.epoch
	// Every partition served is checked, those the session carries from
	// earlier requests too: the ACL may have changed since, and a session
	// id is no credential.
	acl := readACL{}
	if env.Authorizer != nil {
		acl.allowed = map[string]bool{}
		for p := s.head; p != nil; p = p.next {
			if _, ok := acl.allowed[p.key.topic]; !ok {
				acl.allowed[p.key.topic] = allowedTopic(env, conn, security.OpRead, p.key.topic)
			}
		}
	}
	s.mu.Unlock()
	cache.touch(s)
	cache.incremental.Add(1)
	resp.SessionID = s.id
	return deferFetch(env, req, resp,
		func(resp *kmsg.FetchResponse, mem *fetchMemory) int {
			return fillSession(env, req, resp, mem, s, epoch, acl)
		},
		func(wake chan struct{}) func() { return s.watch(env, wake) },
		func(resp *kmsg.FetchResponse) bool { return s.commit(epoch, resp) },
	), nil
}

// readACL is what a fetch may read, decided on the connection's reader
// (the writer, which fills the answer, must not read conn).
type readACL struct {
	// allowed maps each topic checked to whether it may be read; nil
	// when there is no authorizer. A topic not checked is denied.
	allowed map[string]bool
}

func (a readACL) denied(topic string) bool {
	return a.allowed != nil && !a.allowed[topic]
}

// fullFetch serves a request that names every partition it wants. With
// open set, the answer opens a fetch session holding those partitions if
// the cache takes it (SessionID then names it).
func fullFetch(env *Env, conn *Conn, req *kmsg.FetchRequest, resp *kmsg.FetchResponse, open *FetchSessionCache) kmsg.Response {
	// Decided now, on the reader: the writer must not read conn. A
	// follower's fetch (ReplicaID ≥ 0) would need CLUSTER_ACTION; idem has
	// no followers, so every fetch is a consumer's and needs READ.
	acl := readACL{}
	if env.Authorizer != nil {
		acl.allowed = map[string]bool{}
		for _, rt := range req.Topics {
			acl.allowed[rt.Topic] = allowedTopic(env, conn, security.OpRead, rt.Topic)
		}
	}
	return deferFetch(env, req, resp,
		func(resp *kmsg.FetchResponse, mem *fetchMemory) int { return fillFetch(env, req, resp, mem, acl) },
		func(wake chan struct{}) func() {
			var stops []func()
			for _, rt := range req.Topics {
				for _, rp := range rt.Partitions {
					if p, err := lookupPartition(env, rt.Topic, rp.Partition); err == nil {
						stops = append(stops, p.Watch(wake))
					}
				}
			}
			return func() {
				for _, stop := range stops {
					stop()
				}
			}
		},
		func(resp *kmsg.FetchResponse) bool {
			if open != nil {
				if s := newFetchSession(env, req, resp); s != nil {
					resp.SessionID = open.create(s)
				}
			}
			return true
		},
	)
}

// deferFetch returns the Deferred that reads a fetch's answer (read, into
// resp) on the connection's writer, waits as the request allows for more
// data (watch registers wake with every partition the fetch reads and
// returns what undoes it), and lets final settle the answer given: it
// reports false when the answer carries no records after all.
func deferFetch(env *Env, req *kmsg.FetchRequest, resp *kmsg.FetchResponse,
	read func(*kmsg.FetchResponse, *fetchMemory) int, watch func(chan struct{}) func(),
	final func(*kmsg.FetchResponse) bool) *Deferred {
	wait := min(time.Duration(req.MaxWaitMillis)*time.Millisecond, maxFetchWait)
	deadline := time.Now().Add(wait)
	// Everything, even the first read, happens on the writer when this
	// response's turn comes: a client that pipelines fetches without reading
	// the answers then holds at most one response's data in memory, not one
	// per queued request. What it reads is taken from the broker's memory
	// budget until it is written, so many such clients together cannot
	// hold more than the budget either.
	mem := &fetchMemory{budget: env.Memory}
	fill := func(ctx context.Context) error {
		n := read(resp, mem)
		if n >= int(req.MinBytes) || wait <= 0 || fetchHasError(resp) || !time.Now().Before(deadline) {
			return nil
		}
		// Watch, then re-read, so that an advance between the first read
		// and the wait is not missed.
		wake := make(chan struct{}, 1)
		defer watch(wake)()
		timer := time.NewTimer(time.Until(deadline))
		defer timer.Stop()
		for {
			mem.releaseAll() // the previous read is replaced
			fresh := req.ResponseKind().(*kmsg.FetchResponse)
			fresh.SessionID = resp.SessionID
			n := read(fresh, mem)
			*resp = *fresh
			if n >= int(req.MinBytes) || fetchHasError(resp) {
				return nil
			}
			select {
			case <-wake:
			case <-timer.C:
				return nil
			case <-env.Closing:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return &Deferred{Response: resp, Done: mem.finish, Wait: func(ctx context.Context) error {
		err := fill(ctx)
		if err != nil {
			return err
		}
		if final(resp) {
			mem.countServed() // resp is the answer sent: count its records per partition
		} else {
			mem.served = mem.served[:0]
		}
		return nil
	}}
}

func fetchHasError(resp *kmsg.FetchResponse) bool {
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode != 0 {
				return true
			}
		}
	}
	return false
}

// fetchMemory is what one Fetch answer holds of the broker's memory budget.
type fetchMemory struct {
	budget MemoryBudget
	held   int64
	// buf holds the answer's record bytes, every partition's read one
	// after the other: a buffer from fetchBuffers, given back once the
	// answer is encoded (finish), so a consumer reading at full speed does
	// not have every byte it reads allocated, zeroed and collected.
	buf []byte
	// parts are the answer's per-topic partition lists, from
	// partitionLists: a consumer of a thousand partitions without a fetch
	// session names every one in every fetch, and a list of a thousand
	// entries allocated per fetch was most of the broker's garbage under
	// such a consumer.
	parts []*[]kmsg.FetchResponseTopicPartition
	// served is what the last fillFetch put in the answer, per partition,
	// counted once the answer is final (a long poll reads several times).
	served []servedBytes
}

type servedBytes struct {
	p       *partition.Partition
	n       int // record batch bytes
	records int // records in the data batches (transaction markers not counted)
}

// countServed adds the final answer's record bytes to each partition's
// fetched-bytes counter.
func (m *fetchMemory) countServed() {
	for _, s := range m.served {
		s.p.CountFetched(s.n, s.records)
	}
	m.served = m.served[:0]
}

// minFetchGrant is the least a read is worth taking budget for.
const minFetchGrant = 64 << 10

// grant returns how many bytes a read may return, at most want: all of it
// when there is no budget, less when the budget is short, 0 when it is spent
// (the partition then answers no records this time and the client asks
// again).
func (m *fetchMemory) grant(want int) int {
	if m.budget == nil || want <= 0 {
		return want
	}
	n := m.budget.Grab(int64(want), min(int64(want), minFetchGrant))
	m.held += n
	return int(n)
}

// settle corrects the holding once a read granted g bytes returned got: a
// read returns less than asked, or one whole batch more than asked (KIP-74).
func (m *fetchMemory) settle(g, got int) {
	if m.budget == nil {
		return
	}
	switch d := int64(got - g); {
	case d < 0:
		m.budget.Release(-d)
		m.held += d
	case d > 0:
		m.budget.Force(d)
		m.held += d
	}
}

// releaseAll gives back everything the answer holds: a long poll reads
// again into the same buffer (the answer it replaces is dropped).
func (m *fetchMemory) releaseAll() {
	if m.budget != nil && m.held > 0 {
		m.budget.Release(m.held)
	}
	m.held = 0
	m.buf = m.buf[:0]
	for _, l := range m.parts {
		clear(*l) // drop the references to the answer's records
		*l = (*l)[:0]
		partitionLists.Put(l)
	}
	m.parts = m.parts[:0]
}

// partitionLists recycles the partition lists of Fetch answers.
var partitionLists sync.Pool // of *[]kmsg.FetchResponseTopicPartition

// partitionList returns an empty list with room for n partitions, kept
// until the answer is encoded.
func (m *fetchMemory) partitionList(n int) []kmsg.FetchResponseTopicPartition {
	l, ok := partitionLists.Get().(*[]kmsg.FetchResponseTopicPartition)
	if !ok || cap(*l) < n {
		s := make([]kmsg.FetchResponseTopicPartition, 0, n)
		l = &s
	}
	m.parts = append(m.parts, l)
	return (*l)[:0]
}

// keepPartitionList records the list a topic's partitions were appended to
// (the one partitionList gave, grown in place).
func (m *fetchMemory) keepPartitionList(list []kmsg.FetchResponseTopicPartition) {
	*m.parts[len(m.parts)-1] = list
}

// finish runs once the answer is encoded (or dropped): nothing reads its
// record bytes any more, so the buffer goes back to the pool. Only once:
// buf is nil afterwards.
func (m *fetchMemory) finish() {
	m.releaseAll()
	if m.buf != nil && cap(m.buf) <= maxPooledFetch {
		b := m.buf[:0]
		fetchBuffers.Put(&b)
	}
	m.buf = nil
}

// fetchBuffers recycles the record buffers of Fetch answers; none larger
// than maxPooledFetch is kept, and sync.Pool lets the collector take idle
// ones within two cycles.
var fetchBuffers sync.Pool // of *[]byte

const maxPooledFetch = 16 << 20

// readBuffer is where the next partition's read goes: after what earlier
// partitions read, in a pooled buffer for the first.
func (m *fetchMemory) readBuffer() []byte {
	if m.buf == nil {
		if b, ok := fetchBuffers.Get().(*[]byte); ok {
			m.buf = (*b)[:0]
		}
	}
	return m.buf
}

// adopt records that data was read into readBuffer's spare capacity, or,
// when it did not fit there, into an array of its own, which later reads
// then continue (the earlier partitions' bytes stay where they are).
func (m *fetchMemory) adopt(data []byte) {
	if len(data) == 0 {
		return
	}
	if n := len(m.buf); cap(m.buf) > n && &m.buf[:n+1][n] == &data[0] {
		m.buf = m.buf[:n+len(data)]
		return
	}
	m.buf = data
}

// fillFetch reads every requested partition into resp and returns the number
// of record bytes.
func fillFetch(env *Env, req *kmsg.FetchRequest, resp *kmsg.FetchResponse, mem *fetchMemory, acl readACL) int {
	maxBytes := fetchMaxBytes(env, req)
	total := 0
	mem.served = mem.served[:0]
	resp.Topics = slices.Grow(resp.Topics[:0], len(req.Topics))
	for _, rt := range req.Topics {
		st := kmsg.NewFetchResponseTopic()
		st.Topic = rt.Topic
		st.TopicID = rt.TopicID
		// Sized once and recycled (fetchMemory.parts): growing this list
		// of large structs by doubling, per fetch, was most of what a
		// fetch naming a thousand partitions cost.
		st.Partitions = mem.partitionList(len(rt.Partitions))
		for _, rp := range rt.Partitions {
			sp := kmsg.NewFetchResponseTopicPartition()
			sp.Partition = rp.Partition
			// Empty, not null: librdkafka rejects a null record set
			// ("invalid MessageSetSize -1"); Kafka always sends size 0.
			sp.RecordBatches = []byte{}
			if acl.denied(rt.Topic) {
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			p, err := lookupPartition(env, rt.Topic, rp.Partition)
			if err != nil {
				sp.ErrorCode = errorCode(err, dataAPIs)
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			n := fetchPartition(p, req, &rp, &sp, maxBytes-total, total > 0, mem)
			if n > 0 {
				mem.served = append(mem.served, servedBytes{p, n, dataRecords(sp.RecordBatches)})
			}
			total += n
			st.Partitions = append(st.Partitions, sp)
		}
		mem.keepPartitionList(st.Partitions)
		resp.Topics = append(resp.Topics, st)
	}
	return total
}

// fetchMaxBytes is the most record bytes the answer to req may carry.
func fetchMaxBytes(env *Env, req *kmsg.FetchRequest) int {
	maxBytes := int(req.MaxBytes)
	if maxBytes <= 0 {
		maxBytes = defaultFetchMaxBytes
	}
	// The broker's fetch.max.bytes caps what a client may ask for, so one
	// request cannot make the broker read gigabytes into memory.
	if limit := int(env.Config.Int("fetch.max.bytes")); maxBytes > limit {
		maxBytes = limit
	}
	return maxBytes
}

func fetchPartition(p *partition.Partition, req *kmsg.FetchRequest, rp *kmsg.FetchRequestTopicPartition, sp *kmsg.FetchResponseTopicPartition, remaining int, haveData bool, mem *fetchMemory) int {
	hwm := p.HighWatermark()
	lso := p.LastStableOffset()
	committed := req.IsolationLevel == 1
	sp.HighWatermark = hwm
	sp.LastStableOffset = lso
	sp.LogStartOffset = p.StartOffset()
	if committed {
		sp.AbortedTransactions = []kmsg.FetchResponseTopicPartitionAbortedTransaction{}
	}
	if c := leaderEpochCode(rp.CurrentLeaderEpoch); c != 0 {
		sp.ErrorCode = c
		return 0
	}
	off := rp.FetchOffset
	if off < sp.LogStartOffset || off > p.EndOffset() {
		sp.ErrorCode = kerr.OffsetOutOfRange.Code
		return 0
	}
	visible := hwm
	if committed {
		visible = lso
	}
	if off >= visible || (haveData && remaining <= 0) {
		return 0
	}
	limit := int(rp.PartitionMaxBytes)
	if limit <= 0 || (remaining > 0 && remaining < limit) {
		limit = max(remaining, 1)
	}
	read := p.ReadInto
	if committed {
		read = p.ReadCommittedInto
	}
	granted := mem.grant(limit)
	if granted == 0 {
		return 0 // the broker's memory budget is spent: no records this time
	}
	data, err := read(mem.readBuffer(), off, granted)
	mem.adopt(data)
	mem.settle(granted, len(data))
	if err != nil {
		sp.ErrorCode = errorCode(err, dataAPIs)
		return 0
	}
	if len(data) > 0 {
		sp.RecordBatches = data
		if committed {
			for _, a := range p.AbortedTransactions(off, endOffset(data)) {
				at := kmsg.NewFetchResponseTopicPartitionAbortedTransaction()
				at.ProducerID, at.FirstOffset = a.ProducerID, a.FirstOffset
				sp.AbortedTransactions = append(sp.AbortedTransactions, at)
			}
		}
	}
	return len(data)
}

// dataRecords counts the records of the data batches in data (whole batches
// as the log returns them; control batches, the transaction markers, are
// not records a consumer sees).
func dataRecords(data []byte) int {
	n := 0
	for len(data) >= 61 {
		size := 12 + int(binary.BigEndian.Uint32(data[8:]))
		if size < 61 || size > len(data) {
			break
		}
		if binary.BigEndian.Uint16(data[21:])&0x20 == 0 {
			n += int(int32(binary.BigEndian.Uint32(data[57:])))
		}
		data = data[size:]
	}
	return n
}

// endOffset is the offset after the last batch in data (whole batches as the
// log returns them).
func endOffset(data []byte) int64 {
	end := int64(0)
	for len(data) >= 61 {
		n := 12 + int(binary.BigEndian.Uint32(data[8:]))
		if n < 61 || n > len(data) {
			break
		}
		end = int64(binary.BigEndian.Uint64(data)) + int64(int32(binary.BigEndian.Uint32(data[23:]))) + 1
		data = data[n:]
	}
	return end
}
