package txn

import (
	"testing"

	"github.com/idem-dev/idem/internal/logstore"
)

func TestConfigValidation(t *testing.T) {
	for name, mod := range map[string]func(*Config){
		"no FS":                func(c *Config) { c.FS = nil },
		"no dir":               func(c *Config) { c.Dir = "" },
		"no producer ids":      func(c *Config) { c.ProducerIDs = nil },
		"no markers":           func(c *Config) { c.Markers = nil },
		"no offsets":           func(c *Config) { c.Offsets = nil },
		"zero max timeout":     func(c *Config) { c.MaxTimeout = 0 },
		"zero id expiration":   func(c *Config) { c.IDExpiration = 0 },
		"zero abort interval":  func(c *Config) { c.AbortInterval = 0 },
		"zero expire interval": func(c *Config) { c.ExpireInterval = 0 },
		"negative wait":        func(c *Config) { c.CompletionWait = -1 },
		"zero segment size":    func(c *Config) { c.SegmentBytes = 0 },
		"zero compaction":      func(c *Config) { c.CompactRecords = 0 },
		"no clock":             func(c *Config) { c.Now = nil },
		"no logger":            func(c *Config) { c.Logger = nil },
		"zero value, not filled": func(c *Config) {
			*c = Config{FS: c.FS, Dir: c.Dir, ProducerIDs: c.ProducerIDs, Markers: c.Markers, Offsets: c.Offsets}
		},
	} {
		t.Run(name, func(t *testing.T) {
			rec := &recorder{}
			cfg := DefaultConfig()
			cfg.FS, cfg.Dir, cfg.ProducerIDs, cfg.Markers, cfg.Offsets = logstore.NewMemFS(), testDir, &idSource{}, rec, rec
			mod(&cfg)
			if c, err := New(cfg); err == nil {
				c.Close()
				t.Fatal("New accepted the config")
			}
		})
	}
}
