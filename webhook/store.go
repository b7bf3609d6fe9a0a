package webhook

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/idem-dev/idem/dedupe"
)

// Endpoint is a receiver URL and what it subscribes to.
type Endpoint struct {
	ID          string `json:"id"`
	URL         string `json:"url"`
	Description string `json:"description,omitempty"`
	// EventTypes are the event types it receives; empty means all.
	EventTypes []string `json:"event_types"`
	// Ordered: events with the same record key reach the endpoint in
	// order, one at a time; different keys proceed in parallel. Records
	// without a key are not ordered.
	Ordered bool `json:"ordered"`
	// Enabled: a disabled endpoint receives nothing, but its deliveries
	// keep accumulating (pending) and go out once it is enabled again.
	Enabled        bool   `json:"enabled"`
	DisabledReason string `json:"disabled_reason,omitempty"`
	// RateLimit caps requests per second to the endpoint (0: none), per
	// dispatcher process.
	RateLimit float64 `json:"rate_limit,omitempty"`
	// MaxInFlight caps concurrent requests to the endpoint (0: the
	// dispatcher's default), per dispatcher process.
	MaxInFlight int `json:"max_in_flight,omitempty"`
	// Secrets sign each request; all that have not expired sign it, so
	// receivers holding the old or the new secret of a rotation accept it.
	Secrets []Secret `json:"-"`
	// FailingSince is the first failure of the current run of failures
	// (zero if the last attempt succeeded). After Config.DisableAfter of
	// failing everything the endpoint is disabled.
	FailingSince time.Time `json:"failing_since,omitzero"`
	CreatedAt    time.Time `json:"created_at"`
}

// Secret is one signing key of an endpoint.
type Secret struct {
	Key string `json:"key"` // whsec_… or whsk_…
	// ExpiresAt is when a rotated-out secret stops signing (zero: current).
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// activeKeys returns the keys that sign at now; parse turns a secret into
// its key (the dispatcher caches the parsed keys).
func (e *Endpoint) activeKeys(now time.Time, parse func(string) (Key, error)) ([]Key, error) {
	var keys []Key
	for _, s := range e.Secrets {
		if !s.ExpiresAt.IsZero() && !now.Before(s.ExpiresAt) {
			continue
		}
		k, err := parse(s.Key)
		if err != nil {
			return nil, fmt.Errorf("endpoint %s: %w", e.ID, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("endpoint %s has no current secret", e.ID)
	}
	return keys, nil
}

// Delivery states.
const (
	StatusPending   = "pending"   // waiting for its next attempt (or in flight)
	StatusSucceeded = "succeeded" // the endpoint answered 2xx
	StatusDead      = "dead"      // dead-lettered: the schedule ran out; kept for replay
)

// Delivery is one message on its way to one endpoint, as the dispatcher
// claims it.
type Delivery struct {
	ID         int64 // also its place in the per-key order
	MessageID  string
	EndpointID string
	// Attempts made before this one.
	Attempts int
	// Token fences the lease: results are recorded only while the
	// delivery's lease still carries it.
	Token      int64
	LeaseUntil time.Time
	EventType  string
	Payload    []byte
	OrderKey   *string
	CreatedAt  time.Time // when the message was taken from Kafka
}

// Message is what the dispatcher takes from one Kafka record.
type IncomingMessage struct {
	ID        string // the webhook-id
	EventType string
	Payload   []byte
	Key       []byte // the record key; nil: none
	Topic     string
	Partition int32
	Offset    int64
	At        time.Time
}

// Lease is a claim on deliveries: until Until, only the holder of Token
// sends them.
type Lease struct {
	Token int64
	Until time.Time
	// Except names endpoints whose new deliveries Ingest leaves unleased:
	// their senders are full, and a delivery leased to a full sender would
	// only be released again.
	Except []string
}

// Outcome says how an attempt ended, which decides the delivery's next
// state.
type Outcome string

const (
	OutcomeSucceeded Outcome = "succeeded" // 2xx
	OutcomeFailed    Outcome = "failed"    // retried at NextAttempt
	OutcomeDead      Outcome = "dead"      // the last attempt failed: dead-lettered
	OutcomeGone      Outcome = "gone"      // 410: the endpoint is disabled; the delivery waits
	// OutcomeReleased: not attempted (the endpoint was disabled or busy,
	// or too little of the lease was left); the lease is given back.
	OutcomeReleased Outcome = "released"
)

// AttemptResult is what the store records after an attempt.
type AttemptResult struct {
	DeliveryID int64
	MessageID  string
	EndpointID string
	Token      int64
	Attempt    int // 1-based
	Outcome    Outcome
	Started    time.Time
	Latency    time.Duration
	StatusCode int    // 0: no HTTP response
	Error      string // transport error or "HTTP 500"
	Response   string // the start of the response body
	// NextAttempt is when a failed delivery is tried again.
	NextAttempt time.Time
	Dispatcher  string
}

// Attempt is one row of the attempt log.
type Attempt struct {
	ID         int64         `json:"id"`
	DeliveryID int64         `json:"delivery_id"`
	MessageID  string        `json:"message_id"`
	EndpointID string        `json:"endpoint_id"`
	Attempt    int           `json:"attempt"`
	Outcome    Outcome       `json:"outcome"`
	Started    time.Time     `json:"started_at"`
	Latency    time.Duration `json:"latency_ns"`
	StatusCode int           `json:"status_code,omitempty"`
	Error      string        `json:"error,omitempty"`
	Response   string        `json:"response,omitempty"`
	Dispatcher string        `json:"dispatcher"`
}

// AttemptFilter selects attempts; zero fields do not filter. Newest first.
type AttemptFilter struct {
	EndpointID string
	MessageID  string
	Outcome    Outcome
	Since      time.Time
	Limit      int // default 100
}

// DeliveryInfo is a delivery's state, for listing.
type DeliveryInfo struct {
	ID          int64     `json:"id"`
	MessageID   string    `json:"message_id"`
	EndpointID  string    `json:"endpoint_id"`
	EventType   string    `json:"event_type"`
	Status      string    `json:"status"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt_at,omitzero"`
	LastStatus  int       `json:"last_status,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// DeliveryFilter selects deliveries; zero fields do not filter. Newest
// first.
type DeliveryFilter struct {
	EndpointID string
	MessageID  string
	Status     string
	Limit      int // default 100
}

// Replay selects deliveries to send again, from their first attempt (the
// same webhook-id, so a deduping receiver applies each once): one message
// (optionally to one endpoint), an endpoint's dead-lettered deliveries, or
// everything an endpoint got since a time.
type Replay struct {
	MessageID  string
	EndpointID string
	DeadOnly   bool
	Since      time.Time
}

// Validate says whether r selects something a store can replay.
func (r Replay) Validate() error {
	switch {
	case r.MessageID == "" && r.EndpointID == "":
		return errors.New("webhook: replay needs a message id or an endpoint id")
	case r.MessageID == "" && !r.DeadOnly && r.Since.IsZero():
		return errors.New("webhook: replaying an endpoint needs dead-only or a since time")
	}
	return nil
}

// Stats is the queue's state, for metrics.
type Stats struct {
	// Pending deliveries per endpoint, and the creation time of the
	// oldest.
	Pending       map[string]int64
	OldestPending map[string]time.Time
	Dead          map[string]int64
	Endpoints     int
	Disabled      int
}

// ErrEndpointNotFound is returned for an unknown endpoint id.
var ErrEndpointNotFound = errors.New("webhook: endpoint not found")

// Store is the dispatcher's durable state: endpoints, messages, deliveries
// and the attempt log. webhook/sqlitestore and webhook/pgstore implement it
// (with IngestStore). Its methods are safe for concurrent use.
type Store interface {
	AddEndpoint(ctx context.Context, e Endpoint) error
	Endpoints(ctx context.Context) ([]Endpoint, error)
	Endpoint(ctx context.Context, id string) (Endpoint, error)
	// SetEnabled enables or disables an endpoint. Enabling clears
	// FailingSince.
	SetEnabled(ctx context.Context, id string, enabled bool, reason string) error
	SetSecrets(ctx context.Context, id string, secrets []Secret) error

	// Claim leases up to limit due deliveries of enabled endpoints not in
	// exclude, oldest due first. For an ordered endpoint only the first
	// pending delivery of each key is due. A delivery whose lease expired
	// is due again.
	Claim(ctx context.Context, now time.Time, limit int, exclude []string, lease Lease) ([]Delivery, error)
	// Record stores attempt results in one transaction: each delivery's
	// new state (only while its lease still carries the result's token),
	// the attempt log, and the endpoints' failure runs: an endpoint with
	// a failure run older than disableAfter (if > 0) is disabled.
	Record(ctx context.Context, results []AttemptResult, disableAfter time.Duration) error

	Attempts(ctx context.Context, f AttemptFilter) ([]Attempt, error)
	Deliveries(ctx context.Context, f DeliveryFilter) ([]DeliveryInfo, error)
	// Replay makes the selected deliveries due at now, from their first
	// attempt, and returns how many. Deliveries in flight are left alone.
	Replay(ctx context.Context, r Replay, now time.Time) (int64, error)
	Stats(ctx context.Context) (Stats, error)
	// Cleanup deletes succeeded deliveries last updated before before,
	// with their attempts, and the messages left without deliveries, at
	// most batch rows per transaction, until none are left. Dead-lettered
	// and pending deliveries are kept. It returns the deliveries deleted.
	Cleanup(ctx context.Context, before time.Time, batch int) (int64, error)
	Close() error
}

// IngestStore is a Store whose database also holds the Kafka consumer's
// offsets and processed ids (a dedupe.OffsetStore): taking a record from
// Kafka and recording its deliveries commit in one transaction.
type IngestStore[Tx any] interface {
	Store
	// Offsets is the dedupe store of the same database.
	Offsets() dedupe.OffsetStore[Tx]
	// Ingest records m and one delivery per endpoint subscribed to its
	// type (enabled or not), inside tx. Deliveries of enabled endpoints
	// that need no ordering are created already leased with lease, and
	// returned, so the dispatcher sends them without a claim. A message
	// id already recorded creates nothing.
	Ingest(ctx context.Context, tx Tx, m IncomingMessage, lease Lease) (leased []Delivery, unleased int, err error)
	// IngestBatch is Ingest for several messages (distinct ids, in record
	// order), in as few statements as the database allows.
	IngestBatch(ctx context.Context, tx Tx, ms []IncomingMessage, lease Lease) (leased []Delivery, unleased int, err error)
}

// Health is what a batch of attempt results says about one endpoint, for a
// Store's Record.
type Health struct {
	EndpointID string
	// Gone: the endpoint answered 410; disable it now.
	Gone bool
	// Succeeded: some attempt succeeded; the endpoint is not failing.
	Succeeded bool
	// FirstFailure and LastFailure bound the failed attempts (when none
	// succeeded); Reason is why the endpoint would be disabled.
	FirstFailure, LastFailure time.Time
	Reason                    string
}

// EndpointHealth folds attempt results into one Health per endpoint (in
// order of first appearance), ignoring released deliveries.
func EndpointHealth(results []AttemptResult) []Health {
	var out []Health
	at := map[string]int{}
	for _, r := range results {
		if r.Outcome == OutcomeReleased {
			continue
		}
		i, ok := at[r.EndpointID]
		if !ok {
			i = len(out)
			at[r.EndpointID] = i
			out = append(out, Health{EndpointID: r.EndpointID})
		}
		h := &out[i]
		switch r.Outcome {
		case OutcomeSucceeded:
			h.Succeeded = true
		case OutcomeGone:
			h.Gone = true
			h.Reason = "410 Gone"
		default:
			if h.FirstFailure.IsZero() || r.Started.Before(h.FirstFailure) {
				h.FirstFailure = r.Started
			}
			if r.Started.After(h.LastFailure) {
				h.LastFailure = r.Started
			}
			if !h.Gone {
				h.Reason = "failing since the first of a run of failed attempts for longer than the disable period; last error: " + r.Error
			}
		}
	}
	return out
}
