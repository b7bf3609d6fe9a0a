package share

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/idem-dev/idem/internal/catalog"
	"github.com/idem-dev/idem/internal/config"
	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/partition"
	"github.com/idem-dev/idem/internal/topics"
)

// testTopics adapts a real topics.Manager (on a MemFS) to Topics, as the
// broker's adapter in internal/kafka/api does.
type testTopics struct {
	m    *topics.Manager
	pids *topics.IDAllocator
}

func (t testTopics) info(ct catalog.Topic) TopicInfo {
	return TopicInfo{Name: ct.Name, ID: ct.ID, Partitions: ct.Partitions, Configs: ct.Configs}
}

func (t testTopics) ByName(name string) (TopicInfo, bool) {
	ct, ok := t.m.Topic(name)
	return t.info(ct), ok
}

func (t testTopics) ByID(id [16]byte) (TopicInfo, bool) {
	ct, ok := t.m.Catalog().ByID(catalog.ID(id))
	return t.info(ct), ok
}

func (t testTopics) Partition(topic string, index int32) (Partition, error) {
	p, err := t.m.Lookup(topic, index)
	if err != nil {
		return nil, err
	}
	return testPartition{p}, nil
}

func (t testTopics) CreateTopic(name string, partitions int32, configs map[string]string) (TopicInfo, error) {
	ct, err := t.m.CreateTopic(name, partitions, configs)
	return t.info(ct), err
}

func (t testTopics) NewProducerID() (int64, error) { return t.pids.Next() }

type testPartition struct{ *partition.Partition }

func (p testPartition) AbortedTransactions(from, to int64) []AbortedTxn {
	var out []AbortedTxn
	for _, a := range p.Partition.AbortedTransactions(from, to) {
		out = append(out, AbortedTxn(a))
	}
	return out
}

func (p testPartition) Append(b []byte) (AppendResult, error) {
	r, err := p.Partition.Append(b)
	return AppendResult{BaseOffset: r.BaseOffset, LastOffset: r.LastOffset, Duplicate: r.Duplicate}, err
}

// storage is a data directory on a MemFS: topics, producer ids and the
// share log, reopened together after a restart or a crash.
type storage struct {
	t    testing.TB
	fs   *logstore.MemFS
	conf *config.Config
	now  func() time.Time
	tm   *topics.Manager
	pids *topics.IDAllocator
}

func newStorage(t testing.TB, fs *logstore.MemFS, conf *config.Config, now func() time.Time) *storage {
	t.Helper()
	if fs == nil {
		fs = logstore.NewMemFS()
	}
	s := &storage{t: t, fs: fs, conf: conf, now: now}
	fs.MkdirAll("/data")
	cat, err := catalog.Open(fs, "/data")
	if err != nil {
		t.Fatal(err)
	}
	s.tm, err = topics.OpenManager(topics.ManagerConfig{FS: fs, DataDir: "/data", Catalog: cat, Config: conf, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.tm.WaitLoaded(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.pids, err = topics.OpenIDAllocator(fs, "/data/producer_ids")
	if err != nil {
		t.Fatal(err)
	}
	if s.pids.Fresh() {
		if err := s.pids.Init(); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func (s *storage) topics() testTopics { return testTopics{s.tm, s.pids} }

func (s *storage) close() { s.tm.Close() }

func (s *storage) config(manual bool) Config {
	cfg := DefaultConfig()
	cfg.FS, cfg.Dir, cfg.Topics, cfg.Broker, cfg.Now = s.fs, "/data/__share_group_state", s.topics(), s.conf, s.now
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.manualTick = manual
	cfg.rand = func() float64 { return 0.5 }
	return cfg
}

// produce appends n one-record batches of values prefix-i to topic/p and
// waits until they are durable.
func (s *storage) produce(topic string, p int32, prefix string, n int) {
	s.t.Helper()
	part, err := s.tm.Lookup(topic, p)
	if err != nil {
		s.t.Fatal(err)
	}
	var end int64
	for i := range n {
		b := encodeDLQBatch(-1, -1, -1, s.now().UnixMilli(), nil, []byte(prefix+itoa(i)), nil)
		res, err := part.Append(b)
		if err != nil {
			s.t.Fatal(err)
		}
		end = res.LastOffset + 1
	}
	if err := part.WaitDurable(context.Background(), end); err != nil {
		s.t.Fatal(err)
	}
}

// produceBatches appends n records in batches of size records each.
func (s *storage) produceBatches(topic string, p int32, n, size int) {
	s.t.Helper()
	part, err := s.tm.Lookup(topic, p)
	if err != nil {
		s.t.Fatal(err)
	}
	var end int64
	for i := 0; i < n; i += size {
		var recs []logstore.Record
		for j := i; j < min(n, i+size); j++ {
			recs = append(recs, logstore.Record{Value: []byte(itoa(j))})
		}
		res, err := part.Append(logstore.EncodeBatch(recs, s.now().UnixMilli(), 0, -1, -1))
		if err != nil {
			s.t.Fatal(err)
		}
		end = res.LastOffset + 1
	}
	if err := part.WaitDurable(context.Background(), end); err != nil {
		s.t.Fatal(err)
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{digits[i%10]}, b...)
	}
	return string(b)
}

var errNames = map[error]string{
	ErrClosed: "COORDINATOR_NOT_AVAILABLE(closed)", ErrStorage: "COORDINATOR_NOT_AVAILABLE(storage)",
	ErrInvalidRequest: "INVALID_REQUEST", ErrInvalidGroupID: "INVALID_GROUP_ID", ErrGroupNotFound: "GROUP_ID_NOT_FOUND",
	ErrNonEmptyGroup: "NON_EMPTY_GROUP", ErrGroupMaxSize: "GROUP_MAX_SIZE_REACHED", ErrUnknownMember: "UNKNOWN_MEMBER_ID",
	ErrFencedMemberEpoch: "FENCED_MEMBER_EPOCH", ErrSessionNotFound: "SHARE_SESSION_NOT_FOUND",
	ErrInvalidSessionEpoch: "INVALID_SHARE_SESSION_EPOCH", ErrSessionLimit: "SHARE_SESSION_LIMIT_REACHED",
	ErrInvalidRecordState: "INVALID_RECORD_STATE", ErrUnknownTopic: "UNKNOWN_TOPIC_ID", ErrInvalidConfig: "INVALID_CONFIG",
}

func errName(err error) string {
	if err == nil {
		return "ok"
	}
	for e, n := range errNames {
		if errors.Is(err, e) {
			return n
		}
	}
	return err.Error()
}
