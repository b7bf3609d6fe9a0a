// Package broker embeds idem's Kafka-compatible broker in a Go program:
//
//	b, err := broker.New(broker.WithDataDir("data"), broker.WithKafkaAddr("127.0.0.1:9092"))
//	if err != nil { … }
//	if err := b.Start(); err != nil { … }
//	defer b.Close()
//
// Every Kafka client can then connect to b.Addr(). The broker is durable:
// acks=all produce requests are answered only after an fsync, so acknowledged
// records survive kill -9 and power loss; acks=1 survives kill -9. Each broker
// has its own logger, Prometheus registry and goroutines, so several can run
// in one process (tests do).
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/idem-dev/idem/internal/admin"
	adminapi "github.com/idem-dev/idem/internal/admin/api"
	"github.com/idem-dev/idem/internal/catalog"
	"github.com/idem-dev/idem/internal/config"
	"github.com/idem-dev/idem/internal/group"
	"github.com/idem-dev/idem/internal/kafka"
	"github.com/idem-dev/idem/internal/kafka/api"
	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/partition"
	"github.com/idem-dev/idem/internal/security"
	"github.com/idem-dev/idem/internal/share"
	"github.com/idem-dev/idem/internal/topics"
	"github.com/idem-dev/idem/internal/txn"
)

// Broker is one idem broker.
type Broker struct {
	conf  *config.Config
	fs    logstore.FS
	log   *slog.Logger
	admin *string
	seed  []string

	reg *prometheus.Registry

	mu        sync.Mutex
	started   bool
	closed    bool
	addr      string
	addrs     map[string]string // advertised address by listener name
	adminAddr string

	parts    *topics.Manager
	disk     *logstore.Disk
	groups   *group.Coordinator
	txns     *txn.Coordinator
	shares   *share.Coordinator
	unlock   func() // releases the data directory lock
	server   *kafka.Server
	adminSrv *admin.Server
	api      *adminapi.Service // the admin API behind adminSrv
	// closeConsole stops the console's lag sampler (nil without an admin
	// server).
	closeConsole func()
	security     *security.Store
	oauth        *security.OAuthValidator
	tls          *security.TLSSource // the listeners' TLS material, if any
}

// New validates the options and returns an unstarted broker.
func New(opts ...Option) (*Broker, error) {
	var c cfg
	for _, o := range opts {
		o(&c)
	}
	conf := config.New()
	for _, kv := range c.props {
		if err := conf.Set(kv[0], kv[1]); err != nil {
			return nil, err
		}
	}
	b := &Broker{conf: conf, fs: c.fs, log: c.logger, admin: c.admin, seed: c.topics, reg: prometheus.NewRegistry()}
	if b.fs == nil {
		b.fs = logstore.OSFS()
	}
	if b.log == nil {
		b.log = slog.Default()
	}
	if b.admin == nil {
		def := "127.0.0.1:9644"
		b.admin = &def
	}
	for _, t := range c.topics {
		if err := catalog.ValidateName(t); err != nil {
			return nil, fmt.Errorf("WithTopics: %w", err)
		}
	}
	return b, nil
}

// Registry is the broker's Prometheus registry (served on /metrics).
func (b *Broker) Registry() *prometheus.Registry { return b.reg }

// Start binds the Kafka listener, opens the data directory and serves. It
// returns once clients can connect; partitions are recovered in the
// background (a request for one not yet open opens it on the spot), so a
// large data directory does not keep the port closed.
func (b *Broker) Start() (err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		return errors.New("broker: already started")
	}
	b.started = true
	var cleanup []func() error
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()

	// Bind first: a start that cannot listen must not touch the data
	// directory. Clients that connect before storage is open wait in the
	// listen backlog for a moment.
	listeners, err := b.conf.Listeners()
	if err != nil {
		return err
	}
	if err := refuseExposedListeners(b.conf, listeners); err != nil {
		return err
	}
	lns := make([]net.Listener, len(listeners))
	advertisedAt := make([]string, len(listeners))
	var host string
	var port int
	for i, l := range listeners {
		ln, err := net.Listen("tcp", net.JoinHostPort(l.Host, strconv.Itoa(l.Port)))
		if err != nil {
			return fmt.Errorf("kafka listener %s: %w", l.URL(), err)
		}
		cleanup = append(cleanup, ln.Close)
		lns[i] = ln
		h, p, err := advertised(l, ln.Addr())
		if err != nil {
			return err
		}
		listeners[i].AdvertisedHost, listeners[i].AdvertisedPort = h, p
		advertisedAt[i] = net.JoinHostPort(h, strconv.Itoa(p))
		if i == 0 {
			host, port = h, p
		}
	}

	dir := b.conf.String("log.dirs")
	if err := b.fs.MkdirAll(dir); err != nil {
		return fmt.Errorf("data directory %s: %w", dir, err)
	}
	if b.fs == logstore.OSFS() {
		unlock, err := topics.LockDataDir(dir)
		if err != nil {
			return err
		}
		b.unlock = unlock
		cleanup = append(cleanup, func() error { unlock(); b.unlock = nil; return nil })
	}
	cat, err := catalog.Open(b.fs, dir)
	if err != nil {
		return err
	}
	disk, err := logstore.OpenDisk(b.fs, dir, b.conf.Int("idem.disk.reserve.bytes"), b.log)
	if err != nil {
		return err
	}
	disk.Files().SetLimit(int(b.conf.Int("idem.log.open.files.max")))
	disk.SetSoloSyncs(int(b.conf.Int("idem.log.sync.solo.max")))
	// Runs after every log opened below is closed (cleanups run in
	// reverse): their final points, and a flush still in the background.
	cleanup = append(cleanup, disk.FlushRecoveryPoints)
	cat.UseDisk(disk)
	parts, err := topics.OpenManager(topics.ManagerConfig{
		FS: b.fs, DataDir: dir, Catalog: cat, Config: b.conf, Logger: b.log, Disk: disk,
		RetentionInterval: b.conf.Millis("log.retention.check.interval.ms"),
	})
	if err != nil {
		return err
	}
	cleanup = append(cleanup, parts.Close)
	disk.Maintain() // the data directory is accepted: create the reserve
	pids, err := topics.OpenIDAllocator(b.fs, path.Join(dir, "producer_ids"))
	if err != nil {
		return err
	}
	pids.UseDisk(disk)
	if pids.Fresh() {
		if !cat.Created() {
			// The reservation file is gone but data is not: never hand out
			// an id that partitions (or transactions) may still remember.
			maxID, err := parts.MaxProducerID(context.Background())
			if err != nil {
				return err
			}
			if maxID >= 0 {
				skip := maxID + 1_000_000
				b.log.Warn("producer id reservation file missing; skipping past every recorded producer id", "next_id", skip)
				pids.SkipTo(skip)
			}
		}
		if err := pids.Init(); err != nil {
			return err
		}
	}
	gcfg := groupConfig(b.conf)
	gcfg.FS, gcfg.Dir, gcfg.Logger, gcfg.Disk = b.fs, path.Join(dir, "__consumer_offsets"), b.log, disk
	groups, err := group.NewCoordinator(gcfg)
	if err != nil {
		return err
	}
	cleanup = append(cleanup, groups.Close)
	tcfg := txnConfig(b.conf)
	tcfg.FS, tcfg.Dir, tcfg.Logger, tcfg.Disk = b.fs, path.Join(dir, "__transaction_state"), b.log, disk
	tcfg.ProducerIDs, tcfg.Markers, tcfg.Offsets = pids, markerWriter{parts}, groups
	txns, err := txn.New(tcfg)
	if err != nil {
		return err
	}
	cleanup = append(cleanup, txns.Close)
	scfg := share.DefaultConfig()
	scfg.FS, scfg.Dir, scfg.Logger, scfg.Disk = b.fs, path.Join(dir, "__share_group_state"), b.log, disk
	scfg.Topics, scfg.Broker = api.ShareTopics(parts, pids), b.conf
	shares, err := share.New(scfg)
	if err != nil {
		return err
	}
	cleanup = append(cleanup, shares.Close)
	sec, err := security.Open(security.StoreConfig{FS: b.fs, Dir: path.Join(dir, "__security"), Disk: disk, Logger: b.log})
	if err != nil {
		return err
	}
	cleanup = append(cleanup, sec.Close)
	served, err := b.securityListeners(listeners, sec)
	if err != nil {
		return err
	}
	if b.oauth != nil {
		cleanup = append(cleanup, func() error { b.oauth.Close(); return nil })
	}
	for _, t := range b.seed {
		if _, ok := parts.Topic(t); ok {
			continue
		}
		if _, err := parts.CreateTopic(t, int32(b.conf.Int("num.partitions")), nil); err != nil {
			return err
		}
	}

	env := &api.Env{
		Groups:          groups,
		PartitionExists: parts.Exists,
		Logger:          b.log,
		NodeID:          int32(b.conf.Int("node.id")),
		Host:            host,
		Port:            int32(port),
		ClusterID:       cat.ClusterID(),
		Config:          b.conf,
		Partitions:      parts,
		ProducerIDs:     pids,
		Txn:             txns,
		Share:           shares,
		Security:        sec,
	}
	if b.conf.AuthorizerEnabled() {
		env.Authorizer = security.NewAuthorizer(sec, strings.Split(b.conf.String("super.users"), ";"), b.conf.Bool("allow.everyone.if.no.acl.found"))
	}
	env.FetchSessions = api.NewFetchSessionCache(int(b.conf.Int("max.incremental.fetch.session.cache.slots")), b.conf.Millis("min.incremental.fetch.session.eviction.ms"))
	b.reg.MustRegister(env.FetchSessions.Collector())
	if perMin := b.conf.Int("idem.auto.create.topics.max.per.minute"); perMin >= 0 {
		env.AutoCreate = rate.NewLimiter(rate.Limit(float64(perMin)/60), int(max(perMin, 1)))
		if perMin == 0 {
			env.AutoCreate = rate.NewLimiter(0, 0)
		}
	}
	maxConns := connectionLimit(int(b.conf.Int("max.connections")), b.log)
	// One budget for what connections buffer: large request frames and
	// the records of Fetch answers not yet written. It is at least the
	// largest frame, which must always be able to get through.
	var budget *kafka.Budget
	if q := b.conf.Int("queued.max.request.bytes"); q > 0 {
		budget = kafka.NewBudget(max(q, b.conf.Int("socket.request.max.bytes")))
		env.Memory = budget
	}
	srv := kafka.NewServer(kafka.Config{
		Env:             env,
		MaxRequestBytes: int32(b.conf.Int("socket.request.max.bytes")),
		IdleTimeout:     b.conf.Millis("connections.max.idle.ms"),
		Metrics:         kafka.NewMetrics(b.reg),
		Logger:          b.log,

		MaxConnections:      maxConns,
		MaxConnectionsPerIP: int(b.conf.Int("max.connections.per.ip")),
		Budget:              budget,
		Throttler: security.NewThrottler(sec, int(b.conf.Int("quota.window.num")),
			time.Duration(b.conf.Int("quota.window.size.seconds"))*time.Second, nil),
	})
	env.Closing = srv.Closing()
	b.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "idem_kafka_connections",
		Help: "Open client connections, over every listener.",
	}, func() float64 { return float64(srv.Connections()) }))
	b.registerMetrics(parts, disk)
	b.registerSemanticsMetrics(parts, disk, groups, txns)
	b.reg.MustRegister(shares.Collector())
	for i, ln := range lns {
		if err := srv.ServeListener(ln, served[i]); err != nil {
			return err
		}
	}
	cleanup = append(cleanup, srv.Close)
	if *b.admin != "" {
		acfg := admin.Config{Addr: *b.admin, Registry: b.reg, Health: b.health, Logger: b.log}
		if err := b.secureAdmin(&acfg, listeners, sec, env.Authorizer); err != nil {
			return err
		}
		bound := make([]net.Addr, len(lns))
		for i, ln := range lns {
			bound[i] = ln.Addr()
		}
		b.api = b.adminAPI(listeners, bound, acfg.Authenticate != nil)
		cleanup = append(cleanup, func() error { b.api.Close(); return nil })
		var closeConsole func()
		if acfg.Handler, closeConsole, err = b.adminHandler(b.api); err != nil {
			return err
		}
		b.closeConsole = closeConsole
		cleanup = append(cleanup, func() error { closeConsole(); return nil })
		as, err := admin.Start(acfg)
		if err != nil {
			return err
		}
		b.adminSrv, b.adminAddr = as, as.Addr()
	}
	b.parts, b.groups, b.txns, b.shares, b.server, b.disk, b.security = parts, groups, txns, shares, srv, disk, sec
	b.addr = net.JoinHostPort(host, strconv.Itoa(port))
	b.addrs = map[string]string{}
	for i, l := range listeners {
		b.addrs[l.Name] = advertisedAt[i]
		b.log.Info("kafka listener", "name", l.Name, "protocol", l.Protocol, "bound", lns[i].Addr().String(), "advertised", advertisedAt[i])
	}
	b.log.Info("idem broker started", "max_connections", maxConns, "advertised", b.addr, "admin", b.adminAddr, "data", dir, "cluster_id", cat.ClusterID(),
		"authorizer", env.Authorizer != nil, "users", len(sec.Users()), "acls", sec.ACLCount())
	return nil
}

// connectionLimit is max.connections, but never more than half of the
// process's file descriptors: the other half stays for segment files,
// indexes and checkpoints, so a flood of connections cannot make a segment
// roll fail.
func connectionLimit(configured int, log *slog.Logger) int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur == unix.RLIM_INFINITY {
		return configured
	}
	half := int(min(lim.Cur/2, uint64(math.MaxInt32)))
	if configured > half {
		log.Debug("limiting client connections to half of the file descriptor limit; the rest is kept for the logs",
			"max_connections", half, "fd_limit", lim.Cur)
		return half
	}
	return configured
}

// advertised picks the address clients are told to use: the configured one,
// else the bound address with a wildcard host replaced by 127.0.0.1.
func advertised(l config.Listener, bound net.Addr) (string, int, error) {
	if l.AdvertisedHost != "" {
		return l.AdvertisedHost, l.AdvertisedPort, nil
	}
	tcp, ok := bound.(*net.TCPAddr)
	if !ok {
		return "", 0, fmt.Errorf("unexpected listener address %v", bound)
	}
	host := tcp.IP.String()
	if tcp.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return host, tcp.Port, nil
}

// health reports what /healthz shows: degraded while any partition is
// offline or poisoned or topic data is kept unserved, starting while
// partitions are still being opened.
func (b *Broker) health() admin.Health {
	b.mu.Lock()
	parts, disk := b.parts, b.disk
	b.mu.Unlock()
	if parts == nil {
		return admin.Health{Status: admin.StatusStarting}
	}
	var problems []string
	if st := disk.Status(); st.Full {
		problems = append(problems, fmt.Sprintf("disk full since %s: new records are refused (free %d bytes, reserve %d bytes)",
			st.FullSince.UTC().Format(time.RFC3339), st.FreeBytes, st.ReserveBytes))
	}
	for _, o := range parts.Offline() {
		problems = append(problems, fmt.Sprintf("partition %s-%d offline: %v", o.Topic, o.Index, o.Err))
	}
	for _, o := range parts.Orphans() {
		problems = append(problems, fmt.Sprintf("topic data %s (%q) not in the catalog: kept, not served", o.Dir, o.Name))
	}
	if len(problems) > 0 {
		return admin.Health{Status: admin.StatusDegraded, Problems: problems}
	}
	if n := parts.Loading(); n > 0 {
		return admin.Health{Status: admin.StatusStarting, Problems: []string{fmt.Sprintf("%d partitions still opening", n)}}
	}
	return admin.Health{Status: admin.StatusOK}
}

// Addr is the advertised host:port of the Kafka listener.
func (b *Broker) Addr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addr
}

// ListenerAddr is the advertised host:port of the listener called name
// (PLAINTEXT, SASL_SSL, …), or "" if there is none.
func (b *Broker) ListenerAddr(name string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addrs[name]
}

// AdminAddr is the host:port of the admin HTTP server ("" when off).
func (b *Broker) AdminAddr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.adminAddr
}

// Close shuts down gracefully: stop accepting, stop reading requests, finish
// the responses in flight, then close the group coordinator and every
// partition (each fsyncs and snapshots its producer state).
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed || !b.started {
		b.closed = true
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	var errs []error
	if b.server != nil {
		errs = append(errs, b.server.Close())
	}
	errs = append(errs, b.closeStorage()...)
	err := errors.Join(errs...)
	if err != nil {
		b.log.Error("broker closed with errors", "err", err)
	} else {
		b.log.Info("idem broker stopped")
	}
	return err
}

// Fault is what an injected fault does to one request: delay it, drop the
// connection instead of handling it, or handle it and lose the response (a
// lost acknowledgement). See SetFault.
type Fault = kafka.Fault

// SetFault makes every request of api key (0 = Produce, 1 = Fetch, …) pass
// through f, which returns the fault to apply (the zero Fault serves it
// normally); nil removes it. Faults belong to this broker instance: a
// restarted broker starts without them. The broker must be started.
func (b *Broker) SetFault(key int16, f func(req kmsg.Request) Fault) {
	b.mu.Lock()
	srv := b.server
	b.mu.Unlock()
	if srv == nil {
		return
	}
	if f == nil {
		srv.SetFault(key, nil)
		return
	}
	srv.SetFault(key, f)
}

// Crash stops the broker the way a crash would, for fault tests: every
// connection is dropped at once without finishing responses in flight, then
// atCrash runs (a test takes logstore.MemFS.CrashClone or KillClone there:
// nothing acknowledged after that instant), and only then is storage closed
// so that the broker's goroutines end. With the OS file system Crash is not
// a real crash: use a separate process and SIGKILL for that.
func (b *Broker) Crash(atCrash func()) error {
	b.mu.Lock()
	if b.closed || !b.started {
		b.closed = true
		b.mu.Unlock()
		if atCrash != nil {
			atCrash()
		}
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	if b.server != nil {
		b.server.Abort()
	}
	if atCrash != nil {
		atCrash()
	}
	return errors.Join(b.closeStorage()...)
}

// closeStorage closes everything behind the wire server, users before what
// they use: the transaction coordinator writes markers to partitions and
// completes offsets in the group coordinator.
func (b *Broker) closeStorage() []error {
	var errs []error
	if b.adminSrv != nil {
		errs = append(errs, b.adminSrv.Close())
	}
	if b.closeConsole != nil {
		b.closeConsole()
	}
	if b.api != nil {
		b.api.Close()
	}
	if b.txns != nil {
		errs = append(errs, b.txns.Close())
	}
	if b.shares != nil {
		errs = append(errs, b.shares.Close())
	}
	if b.security != nil {
		errs = append(errs, b.security.Close())
	}
	b.oauth.Close()
	if b.groups != nil {
		errs = append(errs, b.groups.Close())
	}
	if b.parts != nil {
		errs = append(errs, b.parts.Close())
	}
	// Every log is closed: their final recovery points, one file for all.
	errs = append(errs, b.disk.FlushRecoveryPoints())
	if b.unlock != nil {
		b.unlock()
	}
	return errs
}

// groupConfig fills every group coordinator setting that is a broker
// property from that property: the registry is the only source of their
// defaults, and 0 means what the property says it means. The rest (storage
// tuning, clock) comes from group.DefaultConfig; the caller sets FS, Dir and
// Logger.
func groupConfig(conf *config.Config) group.Config {
	cfg := group.DefaultConfig()
	cfg.InitialRebalanceDelay = conf.Millis("group.initial.rebalance.delay.ms")
	cfg.MinSessionTimeout = conf.Millis("group.min.session.timeout.ms")
	cfg.MaxSessionTimeout = conf.Millis("group.max.session.timeout.ms")
	cfg.OffsetsRetention = time.Duration(conf.Int("offsets.retention.minutes")) * time.Minute
	cfg.OffsetsRetentionCheckInterval = conf.Millis("offsets.retention.check.interval.ms")
	cfg.MaxMetadataBytes = int(conf.Int("offset.metadata.max.bytes"))
	cfg.ConsumerSessionTimeout = conf.Millis("group.consumer.session.timeout.ms")
	cfg.ConsumerHeartbeatInterval = conf.Millis("group.consumer.heartbeat.interval.ms")
	cfg.ConsumerMaxSize = int(conf.Int("group.consumer.max.size"))
	cfg.ConsumerAssignors = nil
	for _, a := range strings.Split(conf.String("group.consumer.assignors"), ",") {
		// Kafka names them by class; idem by the name clients send.
		switch a = strings.TrimSpace(a); a {
		case "org.apache.kafka.coordinator.group.assignor.UniformAssignor":
			a = "uniform"
		case "org.apache.kafka.coordinator.group.assignor.RangeAssignor":
			a = "range"
		}
		cfg.ConsumerAssignors = append(cfg.ConsumerAssignors, a)
	}
	return cfg
}

// txnConfig is groupConfig for the transaction coordinator; the caller sets
// FS, Dir, Logger, ProducerIDs, Markers and Offsets.
func txnConfig(conf *config.Config) txn.Config {
	cfg := txn.DefaultConfig()
	cfg.MaxTimeout = conf.Millis("transaction.max.timeout.ms")
	cfg.IDExpiration = conf.Millis("transactional.id.expiration.ms")
	return cfg
}

// markerWriter lets the transaction coordinator write COMMIT/ABORT markers
// to partitions, translating partition errors into the txn sentinels the
// coordinator acts on.
type markerWriter struct{ m *topics.Manager }

func (w markerWriter) WriteMarker(ctx context.Context, topic string, index int32, pid int64, epoch int16, commit bool, coordinatorEpoch int32) error {
	p, err := w.m.WaitPartition(ctx, topic, index)
	if errors.Is(err, topics.ErrUnknownPartition) {
		return fmt.Errorf("%w: %s-%d", txn.ErrUnknownPartition, topic, index)
	}
	if err != nil {
		return err
	}
	_, err = p.WriteMarker(ctx, pid, epoch, commit, coordinatorEpoch)
	switch {
	case errors.Is(err, partition.ErrProducerFenced):
		return fmt.Errorf("%w: %s-%d: %w", txn.ErrProducerFenced, topic, index, err)
	case errors.Is(err, partition.ErrClosed) || errors.Is(err, logstore.ErrClosed):
		if !w.m.Exists(topic, index) {
			return fmt.Errorf("%w: %s-%d deleted", txn.ErrUnknownPartition, topic, index)
		}
	}
	return err
}

// registerMetrics adds the partition and process collectors.
func (b *Broker) registerMetrics(parts *topics.Manager, disk *logstore.Disk) {
	b.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	b.reg.MustRegister(&partitionCollector{m: parts}, &diskCollector{d: disk})
}

var (
	diskFullDesc    = prometheus.NewDesc("idem_disk_full", "1 while the data directory's disk is full and new records are refused.", nil, nil)
	diskFreeDesc    = prometheus.NewDesc("idem_disk_free_bytes", "Free space on the data directory's file system.", nil, nil)
	diskReserveDesc = prometheus.NewDesc("idem_disk_reserve_bytes", "Bytes held in space.reserve for metadata writes on a full disk.", nil, nil)
	diskENOSPCDesc  = prometheus.NewDesc("idem_disk_no_space_errors_total", "Writes refused because the disk was full.", nil, nil)
	diskDrawnDesc   = prometheus.NewDesc("idem_disk_reserve_draws_total", "Times a metadata write drew on the disk reserve.", nil, nil)
)

// diskCollector reports the data directory's space at scrape time.
type diskCollector struct{ d *logstore.Disk }

func (c *diskCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{diskFullDesc, diskFreeDesc, diskReserveDesc, diskENOSPCDesc, diskDrawnDesc} {
		ch <- d
	}
}

func (c *diskCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.d.Status()
	full := 0.0
	if st.Full {
		full = 1
	}
	ch <- prometheus.MustNewConstMetric(diskFullDesc, prometheus.GaugeValue, full)
	if st.FreeBytes >= 0 {
		ch <- prometheus.MustNewConstMetric(diskFreeDesc, prometheus.GaugeValue, float64(st.FreeBytes))
	}
	ch <- prometheus.MustNewConstMetric(diskReserveDesc, prometheus.GaugeValue, float64(st.ReserveBytes))
	ch <- prometheus.MustNewConstMetric(diskENOSPCDesc, prometheus.CounterValue, float64(st.NoSpaceErrors))
	ch <- prometheus.MustNewConstMetric(diskDrawnDesc, prometheus.CounterValue, float64(st.ReserveDrawn))
}

var (
	hwmDesc   = prometheus.NewDesc("idem_partition_high_watermark", "Offset below which records are durable and visible to consumers.", []string{"topic", "partition"}, nil)
	startDesc = prometheus.NewDesc("idem_partition_log_start_offset", "First offset still in the partition's log.", []string{"topic", "partition"}, nil)
	lsoDesc   = prometheus.NewDesc("idem_partition_last_stable_offset", "Offset below which no transaction is open: what read_committed consumers can read.", []string{"topic", "partition"}, nil)
	endDesc   = prometheus.NewDesc("idem_partition_log_end_offset", "Next offset to assign (written, maybe not yet durable).", []string{"topic", "partition"}, nil)
	sizeDesc  = prometheus.NewDesc("idem_log_size_bytes", "Bytes of segment files, summed over the topic's partitions.", []string{"topic"}, nil)
	dupDesc   = prometheus.NewDesc("idem_idempotent_duplicates_total", "Produce retries recognised as duplicates and answered with their original offsets.", nil, nil)
	oooDesc   = prometheus.NewDesc("idem_out_of_order_sequence_total", "Produce batches rejected with OUT_OF_ORDER_SEQUENCE_NUMBER.", nil, nil)
	pidsDesc  = prometheus.NewDesc("idem_producer_ids_active", "Idempotent producer states held, summed over partitions.", nil, nil)

	offlineDesc  = prometheus.NewDesc("idem_partition_offline", "1 for a partition that is not served because its storage failed (see /healthz and `idem storage check`).", []string{"topic", "partition"}, nil)
	offlineNDesc = prometheus.NewDesc("idem_partitions_offline", "Partitions not served because their storage failed.", nil, nil)
	loadingDesc  = prometheus.NewDesc("idem_partitions_loading", "Partitions still being opened after a start.", nil, nil)
	orphansDesc  = prometheus.NewDesc("idem_topic_dirs_unserved", "Topic directories the catalog does not list, kept on disk but not served.", nil, nil)
)

// partitionCollector reads partition state at scrape time, so topics created
// or deleted later appear and disappear without bookkeeping.
type partitionCollector struct{ m *topics.Manager }

func (c *partitionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{hwmDesc, lsoDesc, startDesc, endDesc, sizeDesc, dupDesc, oooDesc, pidsDesc, offlineDesc, offlineNDesc, loadingDesc, orphansDesc} {
		ch <- d
	}
}

func (c *partitionCollector) Collect(ch chan<- prometheus.Metric) {
	active := 0
	sizes := map[string]int64{}
	for _, p := range c.m.All() {
		sizes[p.Topic()] += p.SizeBytes()
		idx := strconv.Itoa(int(p.Index()))
		ch <- prometheus.MustNewConstMetric(hwmDesc, prometheus.GaugeValue, float64(p.HighWatermark()), p.Topic(), idx)
		ch <- prometheus.MustNewConstMetric(lsoDesc, prometheus.GaugeValue, float64(p.LastStableOffset()), p.Topic(), idx)
		ch <- prometheus.MustNewConstMetric(startDesc, prometheus.GaugeValue, float64(p.StartOffset()), p.Topic(), idx)
		ch <- prometheus.MustNewConstMetric(endDesc, prometheus.GaugeValue, float64(p.EndOffset()), p.Topic(), idx)
		active += p.Producers()
	}
	for topic, size := range sizes {
		ch <- prometheus.MustNewConstMetric(sizeDesc, prometheus.GaugeValue, float64(size), topic)
	}
	ch <- prometheus.MustNewConstMetric(dupDesc, prometheus.CounterValue, float64(c.m.Duplicates.Load()))
	ch <- prometheus.MustNewConstMetric(oooDesc, prometheus.CounterValue, float64(c.m.OutOfOrders.Load()))
	ch <- prometheus.MustNewConstMetric(pidsDesc, prometheus.GaugeValue, float64(active))
	offline := c.m.Offline()
	for _, o := range offline {
		ch <- prometheus.MustNewConstMetric(offlineDesc, prometheus.GaugeValue, 1, o.Topic, strconv.Itoa(int(o.Index)))
	}
	ch <- prometheus.MustNewConstMetric(offlineNDesc, prometheus.GaugeValue, float64(len(offline)))
	ch <- prometheus.MustNewConstMetric(loadingDesc, prometheus.GaugeValue, float64(c.m.Loading()))
	ch <- prometheus.MustNewConstMetric(orphansDesc, prometheus.GaugeValue, float64(len(c.m.Orphans())))
}
