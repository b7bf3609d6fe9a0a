package broker

import (
	"log/slog"

	"github.com/idem-dev/idem/internal/brokerhook"
	"github.com/idem-dev/idem/internal/logstore"
)

// Option configures a Broker. Options are applied in order by New, which
// validates the result once.
type Option func(*cfg)

type cfg struct {
	props  [][2]string // name=value in the order given; validated by New
	admin  *string
	logger *slog.Logger
	fs     logstore.FS
	topics []string
}

// WithDataDir sets the directory holding all data (the log.dirs property).
// Default: ./idem-data.
func WithDataDir(dir string) Option { return WithProperty("log.dirs", dir) }

// WithKafkaAddr sets the host:port the Kafka listener binds (the listeners
// property); port 0 picks a free port. Default: 127.0.0.1:9092.
func WithKafkaAddr(addr string) Option { return WithProperty("listeners", addr) }

// WithAdvertisedAddr sets the host:port clients are told to connect to (the
// advertised.listeners property). Default: the bound listener address.
func WithAdvertisedAddr(addr string) Option { return WithProperty("advertised.listeners", addr) }

// WithAdminAddr sets the host:port of the admin HTTP server (/healthz,
// /metrics, the /v1 admin API and the web console at /; docs/console.md);
// "" turns it off. Default: 127.0.0.1:9644.
func WithAdminAddr(addr string) Option {
	return func(c *cfg) { c.admin = &addr }
}

// WithProperty sets any broker property by its Kafka name
// (num.partitions, log.retention.ms, …); New rejects unknown names and
// invalid values with an error naming the property.
func WithProperty(name, value string) Option {
	return func(c *cfg) { c.props = append(c.props, [2]string{name, value}) }
}

// WithLogger sets the structured logger. Default: slog.Default().
func WithLogger(l *slog.Logger) Option { return func(c *cfg) { c.logger = l } }

// withFS replaces the file system (the operating system's by default). It is
// not exported, because users cannot name logstore.FS; idem's own tests use
// it through brokerhook to run a broker on a crash-simulating MemFS.
func withFS(fsys logstore.FS) Option { return func(c *cfg) { c.fs = fsys } }

func init() {
	brokerhook.WithFS = func(fsys logstore.FS) any { return withFS(fsys) }
}

// WithTopics creates these topics on Start if they do not exist, with
// num.partitions partitions each.
func WithTopics(names ...string) Option {
	return func(c *cfg) { c.topics = append(c.topics, names...) }
}
