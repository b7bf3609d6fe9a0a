package topics

import (
	"strings"
	"testing"
	"time"

	"github.com/idem-dev/idem/internal/catalog"
	"github.com/idem-dev/idem/internal/config"
	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/partition"
)

func TestIDAllocatorNeverReuses(t *testing.T) {
	mem := logstore.NewMemFS()
	mem.MkdirAll("/d")
	a, err := OpenIDAllocator(mem, "/d/pids")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	for range 1500 {
		id, err := a.Next()
		if err != nil || seen[id] {
			t.Fatalf("id %d err %v", id, err)
		}
		seen[id] = true
	}
	// Power loss: only synced state survives, yet no id repeats.
	crashed := mem.CrashClone(logstore.CrashOptions{})
	b, err := OpenIDAllocator(crashed, "/d/pids")
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		id, err := b.Next()
		if err != nil || seen[id] {
			t.Fatalf("id %d reused after crash (err %v)", id, err)
		}
	}
	// A damaged file refuses to guess.
	crashed.WriteFile("/d/pids", []byte("garbage-bytes"))
	if _, err := OpenIDAllocator(crashed, "/d/pids"); err == nil {
		t.Fatal("damaged allocator file accepted")
	}
}

func TestMissingCatalogRefusesToDeleteData(t *testing.T) {
	mem := logstore.NewMemFS()
	conf := config.New()
	cat, err := catalog.Open(mem, "/data")
	if err != nil {
		t.Fatal(err)
	}
	m, err := OpenManager(ManagerConfig{FS: mem, DataDir: "/data", Catalog: cat, Config: conf})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreateTopic("keep", 1, nil); err != nil {
		t.Fatal(err)
	}
	m.Close()
	mem.Remove("/data/catalog.json")
	cat, err = catalog.Open(mem, "/data")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenManager(ManagerConfig{FS: mem, DataDir: "/data", Catalog: cat, Config: conf}); err == nil || !strings.Contains(err.Error(), "catalog (/data/catalog.json) is missing") {
		t.Fatalf("open without catalog: %v", err)
	}
	if names, _ := mem.ReadDir("/data/topics"); len(names) != 1 {
		t.Fatalf("topic data removed: %v", names)
	}
}

// TestInterruptedDeletionFinishesAtStart: a deletion recorded in the catalog
// whose data removal never ran (a crash in between) is finished by the next
// start, and only then is the tombstone dropped.
func TestInterruptedDeletionFinishesAtStart(t *testing.T) {
	mem := logstore.NewMemFS()
	conf := config.New()
	open := func() *Manager {
		t.Helper()
		cat, err := catalog.Open(mem, "/data")
		if err != nil {
			t.Fatal(err)
		}
		m, err := OpenManager(ManagerConfig{FS: mem, DataDir: "/data", Catalog: cat, Config: conf})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := open()
	gone, err := m.CreateTopic("gone", 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreateTopic("kept", 1, nil); err != nil {
		t.Fatal(err)
	}
	m.Close()
	// The crash: the catalog records the deletion, the data is still there.
	cat, err := catalog.Open(mem, "/data")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cat.Delete("gone", 1); err != nil {
		t.Fatal(err)
	}
	m = open()
	defer m.Close()
	if names, _ := mem.ReadDir("/data/topics"); len(names) != 1 {
		t.Fatalf("topic dirs after start: %v", names)
	}
	if _, ok := m.Catalog().Deleted(gone.ID); ok {
		t.Fatal("tombstone kept after the data was removed")
	}
	if len(m.Orphans()) != 0 {
		t.Fatalf("orphans: %+v", m.Orphans())
	}
}

// TestUnlistedTopicDataIsNeverRemoved: data the catalog does not know about
// is an orphan: reported, not served, not deleted, start after start.
func TestUnlistedTopicDataIsNeverRemoved(t *testing.T) {
	mem := logstore.NewMemFS()
	conf := config.New()
	cat, err := catalog.Open(mem, "/data")
	if err != nil {
		t.Fatal(err)
	}
	m, err := OpenManager(ManagerConfig{FS: mem, DataDir: "/data", Catalog: cat, Config: conf})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	mem.MkdirAll("/data/topics/0123456789abcdef0123456789abcdef/0")
	mem.MkdirAll("/data/topics/not-a-topic")
	for range 3 {
		cat, err := catalog.Open(mem, "/data")
		if err != nil {
			t.Fatal(err)
		}
		m, err := OpenManager(ManagerConfig{FS: mem, DataDir: "/data", Catalog: cat, Config: conf})
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Orphans(); len(got) != 2 {
			t.Fatalf("orphans: %+v", got)
		}
		m.Close()
	}
	if names, _ := mem.ReadDir("/data/topics"); len(names) != 2 {
		t.Fatalf("orphan data removed: %v", names)
	}
	rep, err := RecoverCatalog(mem, "/data")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Topics) != 1 || rep.Topics[0].Topic.Partitions != 1 || rep.Topics[0].FromMeta || len(rep.Skipped) != 1 {
		t.Fatalf("recovery: %+v", rep)
	}
}

// TestDeletedTopicIsNeverReopened: a partition that was offline when its
// topic was deleted is not reopened by the retry of offline partitions,
// which would recreate the deleted topic's directory.
func TestDeletedTopicIsNeverReopened(t *testing.T) {
	mem := logstore.NewMemFS()
	m := openTestManager(t, mem)
	tp, err := m.CreateTopic("gone", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := m.slot("gone", 0)
	if _, err := m.DeleteTopic("gone"); err != nil {
		t.Fatal(err)
	}
	if s.retriable() || s.reset() {
		t.Fatal("a deleted topic's partition is eligible for reopening")
	}
	m.retryOffline()
	if names, _ := mem.ReadDir("/data/topics"); len(names) != 0 {
		t.Fatalf("deleted topic %s recreated: %v", tp.ID.Hex(), names)
	}
}

// TestLookupWaitsForAPartitionALoaderIsOpening: a produce that arrives while
// a loader is opening its partition after a start is served once the open
// settles, instead of being refused with ErrLoading (NOT_LEADER), which a
// client without retries saw as a failed write right after a restart.
func TestLookupWaitsForAPartitionALoaderIsOpening(t *testing.T) {
	mem := logstore.NewMemFS()
	m := openTestManager(t, mem)
	if _, err := m.CreateTopic("t", 1, nil); err != nil {
		t.Fatal(err)
	}
	s := m.slot("t", 0)
	p, err := s.get()
	if err != nil {
		t.Fatal(err)
	}
	// Put the slot back where a loader holds it: opening, not yet settled.
	s.mu.Lock()
	s.state, s.p, s.ready = opening, nil, make(chan struct{})
	s.mu.Unlock()

	type result struct {
		p   *partition.Partition
		err error
	}
	got := make(chan result, 1)
	go func() {
		p, err := m.Lookup("t", 0)
		got <- result{p, err}
	}()
	select {
	case r := <-got:
		s.settle(p, nil) // so that m.Close does not wait for the open forever
		t.Fatalf("Lookup answered while the partition was opening: %v", r.err)
	case <-time.After(50 * time.Millisecond):
	}
	s.settle(p, nil) // the loader finishes
	r := <-got
	if r.err != nil || r.p != p {
		t.Fatalf("Lookup after the open settled: %v, %v", r.p, r.err)
	}
}

// openTestManager opens a manager on mem's /data, closed when the test ends.
func openTestManager(t *testing.T, mem *logstore.MemFS) *Manager {
	t.Helper()
	cat, err := catalog.Open(mem, "/data")
	if err != nil {
		t.Fatal(err)
	}
	m, err := OpenManager(ManagerConfig{FS: mem, DataDir: "/data", Catalog: cat, Config: config.New()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestDeletedTopicLeavesTheSharedRecoveryPoints: deleting a topic drops its
// partitions' entries from the data directory's shared recovery-point file,
// so the file does not keep every topic ever created.
func TestDeletedTopicLeavesTheSharedRecoveryPoints(t *testing.T) {
	mem := logstore.NewMemFS()
	cat, err := catalog.Open(mem, "/data")
	if err != nil {
		t.Fatal(err)
	}
	disk, err := logstore.OpenDisk(mem, "/data", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := OpenManager(ManagerConfig{FS: mem, DataDir: "/data", Catalog: cat, Config: config.New(), Disk: disk})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	gone, err := m.CreateTopic("gone", 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	kept, err := m.CreateTopic("kept", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"gone", "kept"} {
		p, err := m.Lookup(name, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Append(recordBatch("k", "v")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.DeleteTopic("gone"); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := disk.FlushRecoveryPoints(); err != nil {
		t.Fatal(err)
	}
	points, err := logstore.LoadRecoveryPoints(mem, "/data")
	if err != nil {
		t.Fatal(err)
	}
	if points.Has("/data/topics/"+gone.ID.Hex()+"/0") || points.Has("/data/topics/"+gone.ID.Hex()+"/1") {
		t.Fatal("the deleted topic's partition is still in the shared recovery-point file")
	}
	if !points.Has("/data/topics/" + kept.ID.Hex() + "/0") {
		t.Fatal("the kept topic's partition is missing from the shared recovery-point file")
	}
}
