package catalog

import (
	"errors"
	"strings"
	"testing"

	"github.com/idem-dev/idem/internal/logstore"
)

func TestCatalogPersistsAndSurvivesPowerLoss(t *testing.T) {
	mem := logstore.NewMemFS()
	c, err := Open(mem, "/d")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Init(); err != nil {
		t.Fatal(err)
	}
	cid := c.ClusterID()
	a, err := c.Create("orders", 3, map[string]string{"retention.ms": "1000"})
	if err != nil {
		t.Fatal(err)
	}
	if a.ID == (ID{}) {
		t.Fatal("zero topic id")
	}
	if _, err := c.Create("orders", 1, nil); !errors.Is(err, ErrTopicExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if _, err := c.SetPartitions("orders", 5, false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetPartitions("orders", 4, false); !errors.Is(err, ErrInvalidPartitions) {
		t.Fatalf("shrink: %v", err)
	}
	// Every change is durable when it returns: a power loss keeps it.
	crashed := mem.CrashClone(logstore.CrashOptions{})
	c2, err := Open(crashed, "/d")
	if err != nil {
		t.Fatal(err)
	}
	got, ok := c2.Get("orders")
	if !ok || got.ID != a.ID || got.Partitions != 5 || got.Configs["retention.ms"] != "1000" || c2.ClusterID() != cid {
		t.Fatalf("after power loss: %+v ok=%v cluster %q vs %q", got, ok, c2.ClusterID(), cid)
	}
	if byID, ok := c2.ByID(a.ID); !ok || byID.Name != "orders" {
		t.Fatal("lookup by id failed")
	}
	if _, err := c2.Delete("orders", 42); err != nil {
		t.Fatal(err)
	}
	if d, ok := c2.Deleted(a.ID); !ok || d.Name != "orders" || d.DeletedAt != 42 {
		t.Fatalf("tombstone: %+v %v", d, ok)
	}
	b, err := c2.Create("orders", 1, nil)
	if err != nil || b.ID == a.ID {
		t.Fatalf("recreated: %v id reused=%v", err, b.ID == a.ID)
	}
}

func TestValidation(t *testing.T) {
	for _, bad := range []string{"", ".", "..", "a b", "ü", strings.Repeat("x", 250), "a/b"} {
		if err := ValidateName(bad); !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("%q accepted", bad)
		}
	}
	for _, good := range []string{"a", "A.b_c-1", strings.Repeat("x", 249)} {
		if err := ValidateName(good); err != nil {
			t.Errorf("%q: %v", good, err)
		}
	}
	mem := logstore.NewMemFS()
	mem.MkdirAll("/d")
	c, err := Open(mem, "/d")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create("x", 0, nil); !errors.Is(err, ErrInvalidPartitions) {
		t.Fatalf("0 partitions: %v", err)
	}
	if _, err := c.Create("x", 1, map[string]string{"retention.ms": "soon"}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("bad config: %v", err)
	}
	if _, err := c.Create("x", 1, map[string]string{"no.such": "1"}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("unknown config: %v", err)
	}
}

func TestDamagedCatalogRefused(t *testing.T) {
	mem := logstore.NewMemFS()
	c, err := Open(mem, "/d")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Init(); err != nil {
		t.Fatal(err)
	}
	mem.WriteFile("/d/catalog.json", []byte("{not json"))
	if _, err := Open(mem, "/d"); err == nil {
		t.Fatal("damaged catalog accepted")
	}
}

// TestOpenWithoutCatalogWritesNothing: a missing catalog is created in memory
// only; the caller decides whether the directory may be initialised.
func TestOpenWithoutCatalogWritesNothing(t *testing.T) {
	mem := logstore.NewMemFS()
	mem.MkdirAll("/d")
	c, err := Open(mem, "/d")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Created() {
		t.Fatal("Created() false for a missing catalog")
	}
	if names, _ := mem.ReadDir("/d"); len(names) != 0 {
		t.Fatalf("Open wrote %v", names)
	}
	if err := c.Init(); err != nil {
		t.Fatal(err)
	}
	c2, err := Open(mem, "/d")
	if err != nil || c2.Created() || c2.ClusterID() != c.ClusterID() {
		t.Fatalf("after Init: created=%v cluster %q vs %q err %v", c2.Created(), c2.ClusterID(), c.ClusterID(), err)
	}
}

// TestTombstonesForgetAndAdopt: a deletion is remembered durably until its
// data is gone; a topic can be adopted back under its old id.
func TestTombstonesForgetAndAdopt(t *testing.T) {
	mem := logstore.NewMemFS()
	c, err := Open(mem, "/d")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Init(); err != nil {
		t.Fatal(err)
	}
	a, err := c.Create("a", 2, map[string]string{"retention.ms": "5"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete("a", 7); err != nil {
		t.Fatal(err)
	}
	c2, err := Open(mem.CrashClone(logstore.CrashOptions{}), "/d")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c2.Deleted(a.ID); !ok {
		t.Fatal("tombstone lost in a power loss")
	}
	if err := c2.Forget(a.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := c2.Deleted(a.ID); ok {
		t.Fatal("tombstone kept after Forget")
	}
	if err := c2.Adopt(a); err != nil {
		t.Fatal(err)
	}
	if got, ok := c2.ByID(a.ID); !ok || got.Name != "a" || got.Partitions != 2 || got.Configs["retention.ms"] != "5" {
		t.Fatalf("adopted: %+v %v", got, ok)
	}
	if err := c2.Adopt(a); !errors.Is(err, ErrTopicExists) {
		t.Fatalf("second adopt: %v", err)
	}
}

// TestRebuildNeverOverwrites: rebuilding a lost catalog writes one only where
// none exists.
func TestRebuildNeverOverwrites(t *testing.T) {
	mem := logstore.NewMemFS()
	mem.MkdirAll("/d")
	topic := Topic{Name: "t", ID: newID(), Partitions: 3}
	if err := Rebuild(mem, "/d", "cid", []Topic{topic}); err != nil {
		t.Fatal(err)
	}
	c, err := Open(mem, "/d")
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := c.Get("t"); !ok || got.ID != topic.ID || c.ClusterID() != "cid" {
		t.Fatalf("rebuilt: %+v %v cluster %q", got, ok, c.ClusterID())
	}
	if err := Rebuild(mem, "/d", "other", nil); err == nil {
		t.Fatal("Rebuild overwrote an existing catalog")
	}
}
