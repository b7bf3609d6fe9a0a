package api

import (
	"math"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The eviction rules of Kafka's FetchSessionCache, on a clock the test
// moves (the wire tests cannot wait minutes).

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newTestCache(slots int, eviction time.Duration) (*FetchSessionCache, *clock) {
	c := NewFetchSessionCache(slots, eviction)
	clk := &clock{t: time.Unix(1_000_000, 0)}
	c.now = clk.now
	return c, clk
}

// sessionOf returns a session of n partitions of topic t, not yet cached.
func sessionOf(n int) *fetchSession {
	s := &fetchSession{parts: map[sessionKey]*sessionPartition{}}
	env := &Env{PartitionExists: func(string, int32) bool { return true }}
	for i := range n {
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = int32(i)
		s.put(env, "t", &rp)
	}
	return s
}

func TestFetchSessionCacheEvictsAsKafka(t *testing.T) {
	c, clk := newTestCache(2, time.Minute)
	big, small := sessionOf(5), sessionOf(1)
	if c.create(big) == 0 || c.create(small) == 0 {
		t.Fatal("sessions not created in an empty cache")
	}
	// Full, both recently created and used: nothing is evictable, however
	// large the newcomer.
	clk.advance(30 * time.Second)
	if id := c.create(sessionOf(100)); id != 0 {
		t.Fatal("evicted a session created and used within the eviction time")
	}
	// Both in use after the eviction time: they become evictable by a
	// newcomer with more partitions than they have, smallest first.
	clk.advance(90 * time.Second)
	c.touch(big)
	c.touch(small)
	if id := c.create(sessionOf(1)); id != 0 {
		t.Fatal("a newcomer evicted a session as small as itself")
	}
	mid := sessionOf(3)
	if c.create(mid) == 0 {
		t.Fatal("a newcomer of 3 partitions did not evict an old session of 1")
	}
	if c.get(small.id) != nil || c.get(big.id) == nil {
		t.Fatal("evicted the wrong session: want the smallest old one")
	}
	// mid is new (not evictable); big (5) yields only to a larger one.
	if c.create(sessionOf(5)) != 0 {
		t.Fatal("evicted an old session for a newcomer of equal size")
	}
	six := sessionOf(6)
	if c.create(six) == 0 || c.get(big.id) != nil {
		t.Fatal("a newcomer of 6 did not evict the old session of 5")
	}
	// A session unused for longer than the eviction time goes first,
	// whatever its size: mid was last used when created, six since.
	clk.advance(30 * time.Second)
	c.touch(six)
	clk.advance(31 * time.Second)
	if c.create(sessionOf(0)) == 0 || c.get(mid.id) != nil {
		t.Fatal("a stale session was not evicted for an empty newcomer")
	}
	if got := c.evictions.Load(); got != 3 {
		t.Fatalf("%d evictions counted, want 3", got)
	}
	c.mu.Lock()
	parts := c.partitions
	c.mu.Unlock()
	if parts != 6 {
		t.Fatalf("cache counts %d partitions, want 6 (sessions of 6 and 0)", parts)
	}
}

func TestFetchSessionCacheWithoutSlotsOpensNone(t *testing.T) {
	c, _ := newTestCache(0, 0)
	if c.create(sessionOf(1)) != 0 {
		t.Fatal("a cache of 0 slots opened a session")
	}
}

func TestFetchSessionIDsAreUniqueAndNeverZero(t *testing.T) {
	c, _ := newTestCache(5000, time.Minute)
	seen := map[int32]bool{}
	for range 5000 {
		id := c.create(sessionOf(0))
		if id <= 0 || seen[id] {
			t.Fatalf("session id %d (seen before: %v)", id, seen[id])
		}
		seen[id] = true
	}
}

func TestFetchSessionHoldsFewPartitionsThatDoNotExist(t *testing.T) {
	env := &Env{PartitionExists: func(topic string, _ int32) bool { return topic == "real" }}
	s := &fetchSession{parts: map[sessionKey]*sessionPartition{}}
	rp := kmsg.NewFetchRequestTopicPartition()
	for i := range 1000 {
		rp.Partition = int32(i)
		if !s.put(env, "real", &rp) {
			t.Fatalf("refused existing partition %d", i)
		}
	}
	for i := range maxUnknownSessionPartitions {
		rp.Partition = int32(i)
		if !s.put(env, "invented", &rp) {
			t.Fatalf("refused unknown partition %d, below the bound", i)
		}
	}
	rp.Partition = maxUnknownSessionPartitions
	if s.put(env, "invented", &rp) {
		t.Fatal("a session took one more partition that does not exist than the bound")
	}
	s.forget("invented", 0)
	if !s.put(env, "invented", &rp) {
		t.Fatal("forgetting an unknown partition did not make room for another")
	}
}

func TestFetchSessionEpochWraps(t *testing.T) {
	for _, c := range [][2]int32{{1, 2}, {math.MaxInt32, 1}, {-1, -1}} {
		if got := nextFetchEpoch(c[0]); got != c[1] {
			t.Errorf("epoch after %d is %d, want %d", c[0], got, c[1])
		}
	}
}

// An answer read for an epoch the session has moved past (another
// connection's request was accepted meanwhile) is not sent: Kafka answers
// INVALID_FETCH_SESSION_EPOCH with no partitions, and the session keeps
// what it last sent.
func TestFetchSessionAnswerForAnOutdatedEpochIsRefused(t *testing.T) {
	c, _ := newTestCache(10, time.Minute)
	s := sessionOf(1)
	c.create(s)
	resp := kmsg.NewPtrFetchResponse()
	st := kmsg.NewFetchResponseTopic()
	st.Topic = "t"
	sp := kmsg.NewFetchResponseTopicPartition()
	sp.HighWatermark = 7
	st.Partitions = append(st.Partitions, sp)
	resp.Topics = append(resp.Topics, st)
	s.epoch = nextFetchEpoch(s.epoch) // accepted our request (epoch 1)
	mine := s.epoch
	s.epoch = nextFetchEpoch(s.epoch) // and then another connection's
	if s.commit(mine, resp) || resp.ErrorCode != kerr.InvalidFetchSessionEpoch.Code || len(resp.Topics) != 0 {
		t.Fatalf("outdated answer committed: error %d, %d topics", resp.ErrorCode, len(resp.Topics))
	}
	if hw := s.parts[sessionKey{"t", 0}].highWatermark; hw != -1 {
		t.Fatalf("the refused answer's high watermark %d was remembered", hw)
	}
}
