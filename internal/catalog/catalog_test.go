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
	if _, err := c2.Delete("orders"); err != nil {
		t.Fatal(err)
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
	c, err := Open(logstore.NewMemFS(), "/d")
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
	if _, err := Open(mem, "/d"); err != nil {
		t.Fatal(err)
	}
	mem.WriteFile("/d/catalog.json", []byte("{not json"))
	if _, err := Open(mem, "/d"); err == nil {
		t.Fatal("damaged catalog accepted")
	}
}
