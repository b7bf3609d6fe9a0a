package topics

import (
	"strings"
	"testing"

	"github.com/idem-dev/idem/internal/catalog"
	"github.com/idem-dev/idem/internal/config"
	"github.com/idem-dev/idem/internal/logstore"
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
	if _, err := OpenManager(ManagerConfig{FS: mem, DataDir: "/data", Catalog: cat, Config: conf}); err == nil || !strings.Contains(err.Error(), "catalog is missing") {
		t.Fatalf("open without catalog: %v", err)
	}
	if names, _ := mem.ReadDir("/data/topics"); len(names) != 1 {
		t.Fatalf("topic data removed: %v", names)
	}
}
