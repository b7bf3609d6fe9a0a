package group

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/idem-dev/idem/internal/logstore"
)

// Config values are used as given: 0 is a value, never "the default".
func TestZeroIsAValue(t *testing.T) {
	cfg := testConfig(logstore.NewMemFS())
	cfg.MaxMetadataBytes = 0
	cfg.MinSessionTimeout, cfg.MaxSessionTimeout = 0, 0
	cfg.manualTick = true
	c := mustOpen(t, cfg)
	defer c.Close()
	errs, err := c.CommitOffsets(context.Background(), CommitRequest{Group: "g", Generation: -1, Offsets: []OffsetCommit{
		{Topic: "t", Partition: 0, Offset: 1, LeaderEpoch: -1, Metadata: strings.Repeat("m", 100)},
		{Topic: "t", Partition: 1, Offset: 1, LeaderEpoch: -1},
	}})
	if err != nil || !errors.Is(errs[0], ErrOffsetMetadataTooLarge) || errs[1] != nil {
		t.Fatalf("commit with MaxMetadataBytes 0: %v, %v; want metadata refused, none accepted", errs, err)
	}
	_, _, err = c.joinStart(JoinRequest{Group: "g2", ClientID: "c", ProtocolType: "consumer",
		Protocols: []Protocol{{Name: "range"}}, SessionTimeout: time.Millisecond})
	if !errors.Is(err, ErrInvalidSessionTimeout) {
		t.Fatalf("join with MaxSessionTimeout 0: %v, want ErrInvalidSessionTimeout", err)
	}
}

func TestConfigValidation(t *testing.T) {
	for name, mod := range map[string]func(*Config){
		"no FS":                  func(c *Config) { c.FS = nil },
		"no dir":                 func(c *Config) { c.Dir = "" },
		"negative delay":         func(c *Config) { c.InitialRebalanceDelay = -1 },
		"negative min session":   func(c *Config) { c.MinSessionTimeout = -1 },
		"min above max":          func(c *Config) { c.MinSessionTimeout, c.MaxSessionTimeout = time.Minute, time.Second },
		"zero retention":         func(c *Config) { c.OffsetsRetention = 0 },
		"zero retention check":   func(c *Config) { c.OffsetsRetentionCheckInterval = 0 },
		"negative metadata":      func(c *Config) { c.MaxMetadataBytes = -1 },
		"zero segment size":      func(c *Config) { c.SegmentBytes = 0 },
		"zero compaction":        func(c *Config) { c.CompactRecords = 0 },
		"no clock":               func(c *Config) { c.Now = nil },
		"no logger":              func(c *Config) { c.Logger = nil },
		"zero value, not filled": func(c *Config) { *c = Config{FS: c.FS, Dir: c.Dir} },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(logstore.NewMemFS())
			mod(&cfg)
			if c, err := NewCoordinator(cfg); err == nil {
				c.Close()
				t.Fatal("NewCoordinator accepted the config")
			}
		})
	}
}
