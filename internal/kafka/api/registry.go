// Package api holds one file per Kafka API key (NN_name.go). Each file opens with
// the versions it serves and registers its handler in init(); the registry built
// from those calls is the single source of the ApiVersions table, so a key is
// advertised exactly when a handler for it exists.
//
// Handlers translate between the wire (kmsg types, kerr codes) and the broker's
// services in Env. Packages below this one never see Kafka error codes.
package api

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/time/rate"

	"github.com/idem-dev/idem/internal/config"
	"github.com/idem-dev/idem/internal/group"
	"github.com/idem-dev/idem/internal/security"
	"github.com/idem-dev/idem/internal/share"
	"github.com/idem-dev/idem/internal/topics"
	"github.com/idem-dev/idem/internal/txn"
)

// Handler serves one decoded request. It returns the response (already at the
// request's version, usually from req.ResponseKind()), or an error that makes the
// server close the connection. A nil response with a nil error means "send
// nothing" (acks=0 Produce).
//
// Handlers run on the connection's reading goroutine in request order. A handler
// that must wait (for an fsync, for data to arrive) returns a *Deferred so that
// the reader can go on decoding the next pipelined request while the writer waits.
type Handler func(ctx context.Context, env *Env, conn *Conn, req kmsg.Request) (kmsg.Response, error)

// Deferred is a response that is not complete yet. The connection's writer calls
// Wait (in request order, on the writer goroutine) before encoding Response; Wait
// fills in whatever the handler could not know yet, such as the outcome of an
// fsync, or the data of a Fetch long-poll. ctx is cancelled when the client goes
// away or a broker shutdown runs out of patience, in which case Wait should
// return promptly and the response is dropped; a graceful shutdown closes
// Env.Closing first, which long waits should also watch. Work done in Wait
// also bounds memory: at most one Deferred per connection is being completed.
//
// Deferred embeds the response so it satisfies kmsg.Response and can be returned
// from a Handler unchanged.
type Deferred struct {
	kmsg.Response
	// Wait completes Response. A non-nil error closes the connection.
	Wait func(ctx context.Context) error
	// Done, if set, is called once the response has been written (or the
	// connection died): a Fetch gives back the memory budget its records
	// held there.
	Done func()
}

// Finish calls Done, if any (nil-safe).
func (d *Deferred) Finish() {
	if d != nil && d.Done != nil {
		d.Done()
	}
}

// MemoryBudget is the broker-wide budget for what connections buffer
// (queued.max.request.bytes). Fetch takes from it the record bytes it reads
// into an answer and gives them back once the answer is written, so clients
// that stop reading cannot make the broker hold more than the budget.
type MemoryBudget interface {
	// Grab takes up to want bytes without waiting, nothing when fewer
	// than least are free, and returns what it took.
	Grab(want, least int64) int64
	// Force takes n bytes past the limit (a batch larger than what was
	// granted, which a fetch must still return whole).
	Force(n int64)
	Release(n int64)
}

// Conn describes the client connection a request arrived on.
type Conn struct {
	ID         uint64 // unique per broker process, for logs
	RemoteAddr string
	// ClientID is the client_id of the request being handled (it may change per request).
	ClientID string

	// Principal is who the client is: "User:ANONYMOUS" until SASL or a
	// client certificate says otherwise. ACL checks use it and Host.
	Principal string
	// Host is the client's IP address, as ACL bindings name hosts.
	Host string
	// Listener is the listener's name (PLAINTEXT, SASL_SSL, …).
	Listener string
	// AdvertisedHost and AdvertisedPort are where Metadata, FindCoordinator
	// and DescribeCluster send a client of this listener; an empty host
	// means Env's.
	AdvertisedHost string
	AdvertisedPort int32
	// SASL is the connection's authentication state; nil on a listener
	// without SASL.
	SASL *SASLState
	// CloseAfterResponse, set by a handler, makes the server close the
	// connection once this request's response is written (a failed SASL
	// exchange: Kafka answers, then closes).
	CloseAfterResponse bool
}

// Advertised is where this connection's client should connect.
func (c *Conn) Advertised(env *Env) (string, int32) {
	if c.AdvertisedHost != "" {
		return c.AdvertisedHost, c.AdvertisedPort
	}
	return env.Host, env.Port
}

// Env carries the broker's services to handlers. It is built once by the broker
// and shared by every connection; its fields are not modified after Start.
type Env struct {
	// Groups is the classic consumer-group coordinator.
	Groups *group.Coordinator
	// PartitionExists reports whether topic/partition exists now; the group
	// coordinator's handlers use it to validate OffsetCommit.
	PartitionExists func(topic string, partition int32) bool
	Logger          *slog.Logger

	// NodeID, Host and Port are what Metadata and FindCoordinator advertise.
	NodeID    int32
	Host      string
	Port      int32
	ClusterID string

	Config      *config.Config
	Partitions  *topics.Manager     // topics and their open partitions (and the catalog)
	ProducerIDs *topics.IDAllocator // durable, never-reused producer ids
	// Txn is the transaction coordinator (nil: transactional requests get
	// COORDINATOR_NOT_AVAILABLE or INVALID_TXN_STATE).
	Txn *txn.Coordinator
	// Share is the share-group coordinator, which also keeps dynamic group
	// and broker configs (nil: share APIs get COORDINATOR_NOT_AVAILABLE).
	Share *share.Coordinator
	// Closing is closed when the broker starts shutting down; long-polls
	// answer early instead of holding up Close.
	Closing <-chan struct{}
	// Memory is the budget Fetch answers take their records from; nil
	// means no limit.
	Memory MemoryBudget
	// FetchSessions is the broker's incremental fetch session cache
	// (KIP-227); nil declines sessions: every fetch is served as a full
	// fetch with SessionID 0, and an incremental one gets
	// FETCH_SESSION_ID_NOT_FOUND.
	FetchSessions *FetchSessionCache
	// AutoCreate paces topic auto-creation by Metadata requests
	// (idem.auto.create.topics.max.per.minute); nil means no pacing.
	AutoCreate *rate.Limiter

	// Security is the store of users, ACLs and quotas (nil: the SCRAM,
	// ACL and quota APIs answer as a broker without them would).
	Security *security.Store
	// Authorizer checks every request (nil: no authorizer, everything is
	// allowed and the ACL APIs answer SECURITY_DISABLED, as in Kafka).
	Authorizer *security.Authorizer
}

// entry is one registered API key.
type entry struct {
	key, min, max int16
	h             Handler
}

var (
	registry [256]*entry
	// sealed is set once the server has read the registry; registering after
	// that would silently change nothing on live connections.
	sealed atomic.Bool
)

// register adds the handler for key serving versions min..max. It is called from
// each NN_name.go init(); registering a key twice is a programming error.
func register(key, minVersion, maxVersion int16, h Handler) {
	if sealed.Load() {
		panic("api: register after the registry was read")
	}
	if key < 0 || int(key) >= len(registry) || minVersion < 0 || maxVersion < minVersion || h == nil {
		panic(fmt.Sprintf("api: bad registration for key %d (%d..%d)", key, minVersion, maxVersion))
	}
	if registry[key] != nil {
		panic(fmt.Sprintf("api: key %d registered twice", key))
	}
	registry[key] = &entry{key: key, min: minVersion, max: maxVersion, h: h}
}

// Lookup returns the handler and version range for key.
func Lookup(key int16) (h Handler, minVersion, maxVersion int16, ok bool) {
	sealed.Store(true)
	if key < 0 || int(key) >= len(registry) || registry[key] == nil {
		return nil, 0, 0, false
	}
	e := registry[key]
	return e.h, e.min, e.max, true
}

// VersionRange is one row of the ApiVersions table.
type VersionRange struct{ Key, Min, Max int16 }

// Versions returns every registered key with its range, sorted by key (Kafka
// always sends ApiVersions sorted).
func Versions() []VersionRange {
	sealed.Store(true)
	var out []VersionRange
	for _, e := range registry {
		if e != nil {
			out = append(out, VersionRange{e.key, e.min, e.max})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}
