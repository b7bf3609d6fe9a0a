package broker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/idem-dev/idem/internal/catalog"
	"github.com/idem-dev/idem/internal/config"
	"github.com/idem-dev/idem/internal/group"
	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/topics"
	"github.com/idem-dev/idem/internal/txn"
)

// Every group and transaction property reaches its coordinator field as
// set, and with nothing set the fields equal the coordinators' DefaultConfig
// (so the two sets of defaults cannot drift apart).
func TestCoordinatorConfigsComeFromProperties(t *testing.T) {
	type field func(group.Config, txn.Config) any
	cases := []struct {
		props []string // name, value, …; applied in order
		field field
		want  any
	}{
		{[]string{"group.initial.rebalance.delay.ms", "0"}, func(g group.Config, _ txn.Config) any { return g.InitialRebalanceDelay }, time.Duration(0)},
		{[]string{"group.min.session.timeout.ms", "0"}, func(g group.Config, _ txn.Config) any { return g.MinSessionTimeout }, time.Duration(0)},
		{[]string{"group.min.session.timeout.ms", "0", "group.max.session.timeout.ms", "0"}, func(g group.Config, _ txn.Config) any { return g.MaxSessionTimeout }, time.Duration(0)},
		{[]string{"offsets.retention.minutes", "2"}, func(g group.Config, _ txn.Config) any { return g.OffsetsRetention }, 2 * time.Minute},
		{[]string{"offsets.retention.check.interval.ms", "5"}, func(g group.Config, _ txn.Config) any { return g.OffsetsRetentionCheckInterval }, 5 * time.Millisecond},
		{[]string{"offset.metadata.max.bytes", "0"}, func(g group.Config, _ txn.Config) any { return g.MaxMetadataBytes }, 0},
		{[]string{"transaction.max.timeout.ms", "5"}, func(_ group.Config, c txn.Config) any { return c.MaxTimeout }, 5 * time.Millisecond},
		{[]string{"transactional.id.expiration.ms", "5"}, func(_ group.Config, c txn.Config) any { return c.IDExpiration }, 5 * time.Millisecond},
	}
	defaults := config.New()
	for _, c := range cases {
		name := c.props[len(c.props)-2]
		t.Run(name, func(t *testing.T) {
			if got, want := c.field(groupConfig(defaults), txnConfig(defaults)), c.field(group.DefaultConfig(), txn.DefaultConfig()); got != want {
				t.Fatalf("default: the registry gives %v, DefaultConfig %v", got, want)
			}
			conf := config.New()
			for i := 0; i < len(c.props); i += 2 {
				if err := conf.Set(c.props[i], c.props[i+1]); err != nil {
					t.Fatal(err)
				}
			}
			if got := c.field(groupConfig(conf), txnConfig(conf)); got != c.want {
				t.Fatalf("%s=%s gives %v, want %v", name, c.props[len(c.props)-1], got, c.want)
			}
		})
	}
}

// A partition that has seen a newer epoch of the producer refuses the
// marker; the coordinator must see txn.ErrProducerFenced (which makes it
// skip the partition) without knowing internal/partition.
func TestMarkerWriterReportsFencingAsTxnError(t *testing.T) {
	mem := logstore.NewMemFS()
	cat, err := catalog.Open(mem, "/d")
	if err != nil {
		t.Fatal(err)
	}
	parts, err := topics.OpenManager(topics.ManagerConfig{FS: mem, DataDir: "/d", Catalog: cat, Config: config.New()})
	if err != nil {
		t.Fatal(err)
	}
	defer parts.Close()
	if _, err := parts.CreateTopic("t", 1, nil); err != nil {
		t.Fatal(err)
	}
	w, ctx := markerWriter{parts}, context.Background()
	if err := w.WriteMarker(ctx, "t", 0, 7, 1, true, 0); err != nil {
		t.Fatal(err)
	}
	err = w.WriteMarker(ctx, "t", 0, 7, 0, false, 0)
	if !errors.Is(err, txn.ErrProducerFenced) {
		t.Fatalf("stale marker: %v, want txn.ErrProducerFenced", err)
	}
	if err := w.WriteMarker(ctx, "gone", 0, 7, 1, true, 0); !errors.Is(err, txn.ErrUnknownPartition) {
		t.Fatalf("marker for a missing topic: %v, want txn.ErrUnknownPartition", err)
	}
}
