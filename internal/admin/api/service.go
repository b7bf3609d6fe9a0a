// Package api is the broker's admin API: JSON over HTTP under /v1 on the
// admin address, described by the OpenAPI 3 document served at
// /v1/openapi.json (openapi.json in this directory, embedded).
//
// Every operation is carried out by an in-process Kafka client (franz-go's
// kgo and kadm) dialled to the broker's own listener, not by reaching into
// the broker's internals. That was chosen because it is the one path that
// is correct by construction: each request goes through exactly the checks,
// quotas, authorization and error codes any Kafka client meets, and the
// semantics (what a reset of offsets does to a group with members, what a
// lag is, what an abort does to a transaction) are Kafka's own rather than a
// second implementation of them. The cost is a loopback round trip per
// Kafka request, small next to a browser's.
//
// When the admin server asks for HTTP Basic credentials (security
// configured), the client connects to the listener as that user with SASL
// PLAIN or SCRAM, so the broker's ACLs apply to the user of the API exactly
// as to any client: an operation the user may not do answers 403.
//
// Service holds the clients and the operations as Go methods, which the
// HTTP handlers (http.go) and the web console (package console) share.
package api

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/internal/admin"
)

// Listener is one of the broker's Kafka listeners, as /v1/cluster shows it.
type Listener struct {
	Name     string `json:"name"`
	Protocol string `json:"protocol"`
	Address  string `json:"address"`
}

// Config configures New.
type Config struct {
	// ClientOpts returns the kgo options that reach the broker's own
	// listener as user (user and password are "" when the admin server
	// asks for no credentials). Required.
	ClientOpts func(user, password string) ([]kgo.Opt, error)
	// Credentials says that the admin server authenticates requests with
	// HTTP Basic (admin.Config.Authenticate), so the client connects as
	// the request's user; without it, credentials a request carries are
	// ignored and every request shares one client.
	Credentials bool
	// NodeID, Version and Listeners are shown by /v1/cluster.
	NodeID    int32
	Version   string
	Listeners []Listener
	// Health is the broker's health, as /healthz shows it.
	Health func() admin.Health
	Logger *slog.Logger
	// Lab runs `idem lab` for /v1/lab/runs (lab.go, labruns.go); nil: those routes
	// answer 503. Close closes it.
	Lab *LabRuns
}

// Service runs the admin operations with one Kafka client per user.
type Service struct {
	cfg Config

	mu      sync.Mutex
	closed  bool
	clients map[[32]byte]*Conn
}

// maxClients bounds the per-user clients kept; past it the oldest is
// closed. Admin users are few; the bound only stops a loop of distinct
// (valid) users from holding connections forever.
const maxClients = 16

// New returns a Service; clients are dialled lazily, on first use.
func New(cfg Config) *Service {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Health == nil {
		cfg.Health = func() admin.Health { return admin.Health{Status: admin.StatusOK} }
	}
	return &Service{cfg: cfg, clients: map[[32]byte]*Conn{}}
}

// Conn is a Kafka connection to the broker as one user.
type Conn struct {
	Client *kgo.Client
	Admin  *kadm.Client
	used   time.Time
}

// ErrClosed is returned once the Service is closed.
var ErrClosed = errors.New("admin api: closed")

// Conn returns the connection for user (see Config.ClientOpts), making it
// on first use.
func (s *Service) Conn(user, password string) (*Conn, error) {
	if !s.cfg.Credentials {
		user, password = "", ""
	}
	key := sha256.Sum256([]byte(user + "\x00" + password))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if c, ok := s.clients[key]; ok {
		c.used = time.Now()
		return c, nil
	}
	opts, err := s.cfg.ClientOpts(user, password)
	if err != nil {
		return nil, err
	}
	opts = append([]kgo.Opt{
		kgo.ClientID("idem-admin"),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
		kgo.MetadataMinAge(100 * time.Millisecond),
		kgo.RequestRetries(2),
		kgo.RetryTimeout(5 * time.Second),
	}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("admin api client: %w", err)
	}
	if len(s.clients) >= maxClients {
		var oldest [32]byte
		var at time.Time
		for k, c := range s.clients {
			if at.IsZero() || c.used.Before(at) {
				oldest, at = k, c.used
			}
		}
		s.clients[oldest].Client.Close()
		delete(s.clients, oldest)
	}
	c := &Conn{Client: cl, Admin: kadm.NewClient(cl), used: time.Now()}
	s.clients[key] = c
	return c, nil
}

// Close cancels the lab run going on and closes every client.
func (s *Service) Close() {
	if s.cfg.Lab != nil {
		s.cfg.Lab.Close()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for k, c := range s.clients {
		c.Client.Close()
		delete(s.clients, k)
	}
}

// Health is the broker's health.
func (s *Service) Health() admin.Health { return s.cfg.Health() }

// ClusterInfo is what GET /v1/cluster answers.
type ClusterInfo struct {
	ClusterID string     `json:"cluster_id"`
	NodeID    int32      `json:"node_id"`
	Version   string     `json:"version"`
	Listeners []Listener `json:"listeners"`
	Health    HealthInfo `json:"health"`
}

// HealthInfo is the broker's health as JSON.
type HealthInfo struct {
	Status   string   `json:"status"`
	Problems []string `json:"problems"`
}

// Cluster describes the broker.
func (s *Service) Cluster(ctx context.Context, c *Conn) (ClusterInfo, error) {
	md, err := c.Admin.BrokerMetadata(ctx)
	if err != nil {
		return ClusterInfo{}, err
	}
	h := s.cfg.Health()
	info := ClusterInfo{
		ClusterID: md.Cluster,
		NodeID:    s.cfg.NodeID,
		Version:   s.cfg.Version,
		Listeners: s.cfg.Listeners,
		Health:    HealthInfo{Status: h.Status, Problems: h.Problems},
	}
	if info.Listeners == nil {
		info.Listeners = []Listener{}
	}
	if info.Health.Problems == nil {
		info.Health.Problems = []string{}
	}
	return info, nil
}
