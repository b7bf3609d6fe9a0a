package api

// Incremental fetch sessions (KIP-227), the broker side, as Apache Kafka
// serves them (FetchSession.scala: FetchManager, FetchSessionCache,
// CachedPartition, the Full/Incremental/Sessionless fetch contexts).
//
// Why: a consumer of a thousand partitions otherwise names all of them in
// every Fetch, and the broker decodes a thousand partitions and answers a
// thousand entries for partitions that have nothing new. With a session the
// client names only what changed (a new fetch offset), the broker remembers
// the rest, and the answer lists only partitions with something to say.
//
// The request's SessionID and SessionEpoch say what it is:
//   - epoch 0 (INITIAL) or -1 (FINAL) is a full fetch. A session it names
//     is closed first. Epoch 0 then opens a new session holding every
//     partition of the request, if the cache has a free or evictable slot,
//     and answers its id; epoch -1 (and any full fetch that gets no slot)
//     answers SessionID 0: a sessionless fetch.
//   - any other epoch is incremental: an unknown id answers
//     FETCH_SESSION_ID_NOT_FOUND, a known one whose epoch is not the one
//     expected INVALID_FETCH_SESSION_EPOCH (a duplicate or a second
//     connection using the session), both with no partitions. Otherwise
//     the request's partitions are added to the session or update its
//     fetch parameters, ForgottenTopics leave it, and the session's epoch
//     moves on. A session left empty is closed and the request served
//     sessionless (Kafka does the same).
//   - versions below 7 have no session fields and are always sessionless.
//
// An incremental answer carries a session partition only when it has
// records, an error, or a high watermark or log start offset other than
// the one last sent for it (Kafka's maybeUpdateResponseData). A last
// stable offset that moves alone needs no answer: a read_committed
// consumer then has records to read below it, and a read_uncommitted one
// does not need it. A partition that answered an error is sent again next time
// (its remembered high watermark becomes -1), as long as it stays in the
// session. Partitions that returned records move to the back of the
// session, so that a MaxBytes-limited answer serves the others next time.
//
// Bounds: the cache holds at most max.incremental.fetch.session.cache.slots
// sessions; a session holds each (topic, partition) once, so at most the
// partitions that exist plus maxUnknownSessionPartitions that did not exist
// when they were added. A request that would exceed that gets no session
// (full fetch) or closes its session (incremental; served sessionless,
// which tells the client to fetch without sessions).

import (
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/catalog"
	"github.com/idem-dev/idem/internal/partition"
)

// maxUnknownSessionPartitions is how many partitions that did not exist
// when they were added one session may hold. Kafka keeps any partition a
// client names; without a bound a client could grow a session by a
// request's worth of invented partitions per fetch.
const maxUnknownSessionPartitions = 100

// FetchSessionCache holds the broker's incremental fetch sessions, shared by
// every connection (a client may reconnect and go on with its session).
// Its lock is taken before a session's, never while holding one.
type FetchSessionCache struct {
	slots    int
	eviction time.Duration
	now      func() time.Time // time.Now; tests move it

	mu         sync.Mutex
	sessions   map[int32]*fetchSession
	partitions int // cached partitions over all sessions, as of their last touch

	created, incremental, evictions atomic.Int64
}

// NewFetchSessionCache returns a cache of at most slots sessions, in which
// a session unused for longer than eviction (or created longer ago and
// smaller than a newcomer) may make room for a new one.
func NewFetchSessionCache(slots int, eviction time.Duration) *FetchSessionCache {
	return &FetchSessionCache{slots: slots, eviction: eviction, now: time.Now, sessions: map[int32]*fetchSession{}}
}

// fetchSession is one client's session.
type fetchSession struct {
	id      int32
	created time.Time

	// Guarded by the cache's lock.
	lastUsed  time.Time
	size      int  // partitions as of the last touch
	evictable bool // created longer than the eviction time ago, as of the last touch

	mu      sync.Mutex
	epoch   int32 // the epoch the next incremental request must carry
	parts   map[sessionKey]*sessionPartition
	head    *sessionPartition // the session's order: what is read first
	tail    *sessionPartition
	unknown int // partitions that did not exist when added
}

type sessionKey struct {
	topic     string
	partition int32
}

// sessionPartition is a partition of a session: the fetch parameters the
// client last sent for it, and what the broker last answered about it.
type sessionPartition struct {
	key         sessionKey
	fetchOffset int64
	maxBytes    int32
	leaderEpoch int32
	unknown     bool // did not exist when added (counts against maxUnknownSessionPartitions)

	// Last answered; -1 until the partition was first answered, and the
	// high watermark again after an error, so that it is answered next time.
	highWatermark, logStart int64

	// part is the open partition last served, of the topic incarnation
	// partOf: looking a thousand partitions up in the topic manager on
	// every fetch was most of an incremental fetch's cost (three locks
	// each). It is used only while the topic still has that id and the
	// partition no error, which is what a lookup would check.
	part   *partition.Partition
	partOf catalog.ID

	prev, next *sessionPartition
}

// nextFetchEpoch is the epoch after e: FINAL stays FINAL, and the epoch
// wraps from MaxInt32 to 1 (0 is INITIAL).
func nextFetchEpoch(e int32) int32 {
	switch {
	case e < 0:
		return -1
	case e == math.MaxInt32:
		return 1
	}
	return e + 1
}

// get returns the session with id, or nil.
func (c *FetchSessionCache) get(id int32) *fetchSession {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sessions[id]
}

// remove closes the session with id, if there is one.
func (c *FetchSessionCache) remove(id int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.sessions[id]; s != nil {
		c.removeLocked(s)
	}
}

func (c *FetchSessionCache) removeLocked(s *fetchSession) {
	if c.sessions[s.id] != s {
		return
	}
	delete(c.sessions, s.id)
	c.partitions -= s.size
}

// touch records that s was used now, with its current size (not if s was
// evicted meanwhile). The caller must not hold s.mu.
func (c *FetchSessionCache) touch(s *fetchSession) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sessions[s.id] != s {
		return
	}
	now := c.now()
	s.mu.Lock()
	size := len(s.parts)
	s.mu.Unlock()
	c.partitions += size - s.size
	s.size = size
	s.lastUsed = now
	s.evictable = now.Sub(s.created) > c.eviction
}

// create adds s (not yet shared) as a new session if there is room or a
// session may be evicted for it, and returns its id, or 0 when it was not
// added.
func (c *FetchSessionCache) create(s *fetchSession) int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if len(c.sessions) >= c.slots && !c.evictFor(len(s.parts), now) {
		return 0
	}
	for s.id == 0 || c.sessions[s.id] != nil {
		s.id = rand.Int32N(math.MaxInt32-1) + 1
	}
	s.created, s.lastUsed = now, now
	s.epoch = 1
	s.size = len(s.parts)
	c.sessions[s.id] = s
	c.partitions += s.size
	c.created.Add(1)
	return s.id
}

// evictFor makes room for a new session of size partitions, as Kafka's
// tryEvict does (every idem session is a consumer's, none privileged): the
// least recently used session goes if it was unused for longer than the
// eviction time; otherwise the smallest (then lowest id) of the sessions
// created longer ago than the eviction time (as of their last use) goes if
// it has fewer partitions than the new one. A session in active use for
// less than the eviction time is never evicted, so a client opening session
// after session can only push out sessions nobody uses.
func (c *FetchSessionCache) evictFor(size int, now time.Time) bool {
	var lru, small *fetchSession
	for _, s := range c.sessions {
		if lru == nil || s.lastUsed.Before(lru.lastUsed) || (s.lastUsed.Equal(lru.lastUsed) && s.id < lru.id) {
			lru = s
		}
		if s.evictable && (small == nil || s.size < small.size || (s.size == small.size && s.id < small.id)) {
			small = s
		}
	}
	victim := small
	switch {
	case lru == nil:
		return false
	case now.Sub(lru.lastUsed) > c.eviction:
		victim = lru
	case small == nil || size <= small.size:
		return false
	}
	c.removeLocked(victim)
	c.evictions.Add(1)
	return true
}

// newFetchSession builds the session a full fetch opens, from the request's
// partitions and the answer given for them (zipped: fillFetch answers
// every requested partition in order). It returns nil when the request
// names more partitions that do not exist than a session may hold.
func newFetchSession(env *Env, req *kmsg.FetchRequest, resp *kmsg.FetchResponse) *fetchSession {
	s := &fetchSession{parts: map[sessionKey]*sessionPartition{}}
	for i := range req.Topics {
		rt, st := &req.Topics[i], &resp.Topics[i]
		for j := range rt.Partitions {
			if !s.put(env, rt.Topic, &rt.Partitions[j]) {
				return nil
			}
			sp := &st.Partitions[j]
			s.parts[sessionKey{rt.Topic, sp.Partition}].answered(sp)
		}
	}
	return s
}

// put adds a partition to the session, or updates the fetch parameters of
// one it has. It reports false when the partition would be one more that
// does not exist than the session may hold.
func (s *fetchSession) put(env *Env, topic string, rp *kmsg.FetchRequestTopicPartition) bool {
	k := sessionKey{topic, rp.Partition}
	p := s.parts[k]
	if p == nil {
		p = &sessionPartition{key: k, highWatermark: -1, logStart: -1}
		if !partitionExists(env, topic, rp.Partition) {
			if s.unknown >= maxUnknownSessionPartitions {
				return false
			}
			p.unknown = true
			s.unknown++
		}
		s.parts[k] = p
		s.pushBack(p)
	}
	p.fetchOffset, p.maxBytes, p.leaderEpoch = rp.FetchOffset, rp.PartitionMaxBytes, rp.CurrentLeaderEpoch
	return true
}

func partitionExists(env *Env, topic string, partition int32) bool {
	if env.PartitionExists != nil {
		return env.PartitionExists(topic, partition)
	}
	return env.Partitions != nil && env.Partitions.Exists(topic, partition)
}

// forget removes a partition from the session, if it is there.
func (s *fetchSession) forget(topic string, partition int32) {
	k := sessionKey{topic, partition}
	p := s.parts[k]
	if p == nil {
		return
	}
	if p.unknown {
		s.unknown--
	}
	delete(s.parts, k)
	s.unlink(p)
}

// update applies an incremental request: its partitions join the session
// or update their fetch parameters, then its forgotten partitions leave.
// It reports false when the session would hold too many partitions that do
// not exist (the caller closes it).
func (s *fetchSession) update(env *Env, req *kmsg.FetchRequest) bool {
	for i := range req.Topics {
		rt := &req.Topics[i]
		for j := range rt.Partitions {
			if !s.put(env, rt.Topic, &rt.Partitions[j]) {
				return false
			}
		}
	}
	for _, ft := range req.ForgottenTopics {
		for _, p := range ft.Partitions {
			s.forget(ft.Topic, p)
		}
	}
	return true
}

func (s *fetchSession) pushBack(p *sessionPartition) {
	p.prev, p.next = s.tail, nil
	if s.tail != nil {
		s.tail.next = p
	} else {
		s.head = p
	}
	s.tail = p
}

func (s *fetchSession) unlink(p *sessionPartition) {
	if p.prev != nil {
		p.prev.next = p.next
	} else {
		s.head = p.next
	}
	if p.next != nil {
		p.next.prev = p.prev
	} else {
		s.tail = p.prev
	}
	p.prev, p.next = nil, nil
}

// mustAnswer reports whether an incremental answer includes the partition,
// whose answer would be sp (Kafka's maybeUpdateResponseData, without the
// update).
func (p *sessionPartition) mustAnswer(sp *kmsg.FetchResponseTopicPartition) bool {
	return len(sp.RecordBatches) > 0 || sp.ErrorCode != 0 || sp.HighWatermark != p.highWatermark ||
		sp.LogStartOffset != p.logStart
}

// quiet reports, from two atomic loads, that a read_uncommitted fetch of
// part would give nothing an incremental answer includes: the client asks
// from the high watermark (no records, and in range), which is the one
// last answered, as is the log start offset. Most partitions of a large
// session are quiet in most fetches; reading them in full takes the
// partition's and the log's locks for the last stable and end offsets.
func (p *sessionPartition) quiet(part *partition.Partition) bool {
	hwm := part.HighWatermark()
	return p.fetchOffset == hwm && hwm == p.highWatermark && part.StartOffset() == p.logStart &&
		p.fetchOffset >= p.logStart && leaderEpochCode(p.leaderEpoch) == 0
}

// answered remembers what was sent for the partition.
func (p *sessionPartition) answered(sp *kmsg.FetchResponseTopicPartition) {
	p.highWatermark, p.logStart = sp.HighWatermark, sp.LogStartOffset
	if sp.ErrorCode != 0 {
		p.highWatermark = -1
	}
}

// commit records an incremental answer in the session, unless another
// request moved the session on since this one was accepted (two
// connections using one session): then the answer is INVALID_FETCH_SESSION_EPOCH
// with no partitions, as in Kafka. Partitions that returned records move to
// the back of the session.
func (s *fetchSession) commit(epoch int32, resp *kmsg.FetchResponse) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.epoch != epoch {
		resp.ErrorCode = kerr.InvalidFetchSessionEpoch.Code
		resp.Topics = nil
		return false
	}
	for i := range resp.Topics {
		st := &resp.Topics[i]
		for j := range st.Partitions {
			sp := &st.Partitions[j]
			p := s.parts[sessionKey{st.Topic, sp.Partition}]
			if p == nil {
				continue
			}
			p.answered(sp)
			if len(sp.RecordBatches) > 0 && p != s.tail {
				s.unlink(p)
				s.pushBack(p)
			}
		}
	}
	return true
}

// Collector exports the cache's metrics.
func (c *FetchSessionCache) Collector() prometheus.Collector { return sessionCollector{c} }

var (
	fetchSessionsDesc          = prometheus.NewDesc("idem_fetch_sessions", "Incremental fetch sessions (KIP-227) in the cache.", nil, nil)
	fetchSessionPartitionsDesc = prometheus.NewDesc("idem_fetch_session_partitions", "Partitions held by the cached fetch sessions.", nil, nil)
	fetchSessionEventsDesc     = prometheus.NewDesc("idem_fetch_session_events_total", "Fetch session events: created, incremental (an incremental fetch accepted), evicted.", []string{"event"}, nil)
)

type sessionCollector struct{ c *FetchSessionCache }

func (sessionCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- fetchSessionsDesc
	ch <- fetchSessionPartitionsDesc
	ch <- fetchSessionEventsDesc
}

func (col sessionCollector) Collect(ch chan<- prometheus.Metric) {
	c := col.c
	c.mu.Lock()
	n, parts := len(c.sessions), c.partitions
	c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(fetchSessionsDesc, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(fetchSessionPartitionsDesc, prometheus.GaugeValue, float64(parts))
	for _, e := range []struct {
		name string
		v    *atomic.Int64
	}{{"created", &c.created}, {"incremental", &c.incremental}, {"evicted", &c.evictions}} {
		ch <- prometheus.MustNewConstMetric(fetchSessionEventsDesc, prometheus.CounterValue, float64(e.v.Load()), e.name)
	}
}

// removeSession closes s, unless it was evicted or replaced meanwhile.
func (c *FetchSessionCache) removeSession(s *fetchSession) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removeLocked(s)
}

// fillSession reads the session's partitions, in the session's order, into
// resp as an incremental answer: only partitions with something to say
// (mustAnswer) are listed, grouped into topics as they come (a topic may
// appear twice, as in Kafka). It returns the number of record bytes. The
// session is locked throughout, so that another connection's request cannot
// change it half way; if one moved it on already (epoch), nothing is read
// and commit answers INVALID_FETCH_SESSION_EPOCH.
func fillSession(env *Env, req *kmsg.FetchRequest, resp *kmsg.FetchResponse, mem *fetchMemory, s *fetchSession, epoch int32, acl readACL) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	mem.served = mem.served[:0]
	resp.Topics = resp.Topics[:0]
	if s.epoch != epoch {
		return 0
	}
	maxBytes := fetchMaxBytes(env, req)
	total := 0
	var st *kmsg.FetchResponseTopic
	var r partitionResolver
	for p := s.head; p != nil; p = p.next {
		sp := kmsg.NewFetchResponseTopicPartition()
		sp.Partition = p.key.partition
		sp.RecordBatches = []byte{} // empty, not null (see fillFetch)
		switch part, err := r.resolve(env, p); {
		case acl.denied(p.key.topic):
			sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
		case err != nil:
			sp.ErrorCode = errorCode(err, dataAPIs)
		case req.IsolationLevel == 0 && p.quiet(part):
			continue
		default:
			rp := kmsg.FetchRequestTopicPartition{Partition: p.key.partition, CurrentLeaderEpoch: p.leaderEpoch,
				FetchOffset: p.fetchOffset, PartitionMaxBytes: p.maxBytes}
			n := fetchPartition(part, req, &rp, &sp, maxBytes-total, total > 0, mem)
			if n > 0 {
				mem.served = append(mem.served, servedBytes{part, n, dataRecords(sp.RecordBatches)})
			}
			total += n
		}
		if !p.mustAnswer(&sp) {
			continue
		}
		if st == nil || st.Topic != p.key.topic {
			if st != nil {
				mem.keepPartitionList(st.Partitions)
			}
			t := kmsg.NewFetchResponseTopic()
			t.Topic = p.key.topic
			t.Partitions = mem.partitionList(0)
			resp.Topics = append(resp.Topics, t)
			st = &resp.Topics[len(resp.Topics)-1]
		}
		st.Partitions = append(st.Partitions, sp)
	}
	if st != nil {
		mem.keepPartitionList(st.Partitions)
	}
	return total
}

// watch registers wake with every partition of the session and returns
// what undoes it.
func (s *fetchSession) watch(env *Env, wake chan struct{}) func() {
	s.mu.Lock()
	stops := make([]func(), 0, len(s.parts))
	var r partitionResolver
	for p := s.head; p != nil; p = p.next {
		if part, err := r.resolve(env, p); err == nil {
			stops = append(stops, part.Watch(wake))
		}
	}
	s.mu.Unlock()
	return func() {
		for _, stop := range stops {
			stop()
		}
	}
}

// partitionResolver finds the open partitions of a session's partitions,
// asking the topic manager for each topic once per pass (the session's
// order keeps a topic's partitions mostly together) and for a partition
// only when the one remembered is not known to be current.
type partitionResolver struct {
	topic string
	id    catalog.ID
	known bool // topic exists, with id
}

func (r *partitionResolver) resolve(env *Env, p *sessionPartition) (*partition.Partition, error) {
	if env.Partitions == nil || isInternalTopic(env, p.key.topic) {
		return lookupPartition(env, p.key.topic, p.key.partition)
	}
	if r.topic != p.key.topic {
		t, ok := env.Partitions.Topic(p.key.topic)
		r.topic, r.id, r.known = p.key.topic, t.ID, ok
	}
	if r.known && p.part != nil && p.partOf == r.id && p.part.Err() == nil {
		return p.part, nil
	}
	part, err := lookupPartition(env, p.key.topic, p.key.partition)
	p.part, p.partOf = nil, catalog.ID{}
	if err == nil && r.known {
		p.part, p.partOf = part, r.id
	}
	return part, err
}
