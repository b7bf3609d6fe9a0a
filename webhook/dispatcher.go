package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/time/rate"

	"github.com/idem-dev/idem/dedupe"
)

// Config configures a Dispatcher. Topic and a way to reach Kafka (Brokers
// or ClientOpts) are required, unless the dispatcher only sends what is
// already in the store (Topic "").
type Config struct {
	// Brokers are the seed brokers of any Kafka-compatible cluster.
	Brokers []string
	// ClientOpts are passed to kgo.NewClient after the seed brokers (TLS,
	// SASL, …).
	ClientOpts []kgo.Opt
	// Topic holds the events: each record's value is the payload, sent as
	// is; its "type" field is the event type.
	Topic string
	// Group is the Kafka consumer group (default "idem-webhooks"). Every
	// dispatcher process of one deployment uses the same group and store.
	Group string
	// InstanceID is the static group membership id (see
	// dedupe.ConsumerConfig.InstanceID; default derived from the host).
	InstanceID string
	// IngestBatch is how many records of a partition are recorded per
	// database transaction (default 100).
	IngestBatch int

	// Retries are the pauses before each retry; the first attempt is
	// immediate (default DefaultRetries). After the last retry fails the
	// delivery is dead-lettered.
	Retries []time.Duration
	// Jitter adds up to this fraction of each pause at random (default
	// 0.2; negative: none), so retries of many deliveries do not arrive
	// together.
	Jitter float64
	// RequestTimeout bounds one attempt (default 15 s, Svix's).
	RequestTimeout time.Duration
	// Lease is how long a claimed delivery is this dispatcher's (default
	// 2×RequestTimeout + 30 s). A dispatcher sends only while at least
	// RequestTimeout + 1 s of the lease is left, so a delivery whose lease
	// expires (its dispatcher died) is never being sent by two at once.
	Lease time.Duration
	// DisableAfter disables an endpoint that has failed every attempt for
	// this long (default 5 days, Svix's; negative: never).
	DisableAfter time.Duration
	// MaxInFlight is the default concurrency limit per endpoint (default
	// 32); Endpoint.MaxInFlight overrides it.
	MaxInFlight int
	// MaxRetryAfter caps a Retry-After header of a 429 or 503 (default
	// 24 h).
	MaxRetryAfter time.Duration
	// PollInterval is how often due retries are looked for (default
	// 200 ms); new events go out at once, without waiting for it.
	PollInterval time.Duration
	// ClaimBatch is how many due deliveries one claim takes (default 500).
	ClaimBatch int
	// ResponseExcerpt is how much of each response body the attempt log
	// keeps (default 1024 bytes).
	ResponseExcerpt int
	// Retention is how long succeeded deliveries, their attempts and
	// messages are kept (default 30 days; negative: forever). Dead-lettered
	// and pending deliveries are kept until they succeed. Each dispatcher
	// cleans up once an hour.
	Retention time.Duration
	// Client sends the requests (default: no redirects, as the spec asks).
	Client *http.Client
	// Name identifies this dispatcher in the attempt log (default
	// host/pid).
	Name string
	// Now is the clock of schedules, leases and signatures (default
	// time.Now); tests inject a fake one.
	Now func() time.Time
	// OnAttempt, if set, is called after each attempt's result is stored
	// (for metrics; webhookprom counts them). It must be quick.
	OnAttempt func(AttemptResult)
	Logger    *slog.Logger
}

func (c *Config) defaults() error {
	if c.Group == "" {
		c.Group = "idem-webhooks"
	}
	if c.IngestBatch <= 0 {
		c.IngestBatch = 100
	}
	if c.Retries == nil {
		c.Retries = DefaultRetries
	}
	if c.Jitter == 0 {
		c.Jitter = 0.2
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 15 * time.Second
	}
	if c.Lease <= 0 {
		c.Lease = 2*c.RequestTimeout + 30*time.Second
	}
	if c.Lease < c.RequestTimeout+2*time.Second {
		return fmt.Errorf("webhook: Lease %v must exceed RequestTimeout %v by at least 2s", c.Lease, c.RequestTimeout)
	}
	if c.DisableAfter == 0 {
		c.DisableAfter = 5 * 24 * time.Hour
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 32
	}
	if c.MaxRetryAfter <= 0 {
		c.MaxRetryAfter = 24 * time.Hour
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 200 * time.Millisecond
	}
	if c.ClaimBatch <= 0 {
		c.ClaimBatch = 500
	}
	if c.ResponseExcerpt <= 0 {
		c.ResponseExcerpt = 1024
	}
	if c.Retention == 0 {
		c.Retention = 30 * 24 * time.Hour
	}
	if c.Client == nil {
		c.Client = newHTTPClient(c.MaxInFlight)
	}
	if c.Name == "" {
		host, _ := os.Hostname()
		c.Name = host + "/" + strconv.Itoa(os.Getpid())
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Dispatcher takes events from Kafka and delivers each to every endpoint
// subscribed to its type.
//
// The delivery guarantee is at least once per endpoint, across crashes:
// a record's deliveries are recorded in the same database transaction as
// the consumer's offset (dedupe's offsets-in-database pattern), so a crash
// neither loses nor re-creates them; a delivery leaves the pending state
// only when the endpoint's 2xx (or the last failure) is recorded, so a
// crash between the request and the record sends it again, with the same
// webhook-id. A Receiver dedupes those.
type Dispatcher struct {
	cfg     Config
	store   Store
	consume func(ctx context.Context) error // the Kafka consumer (nil: none)

	endpoints *endpointCache
	keys      sync.Map // secret → parsed Key
	results   chan AttemptResult
	kick      chan struct{} // wakes the claim loop

	mu      sync.Mutex
	runners map[string]*endpointRunner
	stash   map[recordPos][]Delivery // leased at ingest, handed over once committed
	sends   sync.WaitGroup
	running bool
}

type recordPos struct {
	topic     string
	partition int32
	offset    int64
}

// New returns a dispatcher over store. Run starts it.
func New[Tx any](store IngestStore[Tx], cfg Config) (*Dispatcher, error) {
	if store == nil {
		return nil, errors.New("webhook: New needs a store")
	}
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	dp := &Dispatcher{cfg: cfg, store: store, endpoints: &endpointCache{store: store, m: map[string]*Endpoint{}},
		results: make(chan AttemptResult, 4096), kick: make(chan struct{}, 1),
		runners: map[string]*endpointRunner{}, stash: map[recordPos][]Delivery{}}
	if cfg.Topic == "" {
		return dp, nil
	}
	if len(cfg.Brokers) == 0 && len(cfg.ClientOpts) == 0 {
		return nil, errors.New("webhook: Config needs Brokers (or ClientOpts) to consume Topic")
	}
	opts := append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...)}, cfg.ClientOpts...)
	c, err := dedupe.NewConsumer(dedupe.ConsumerConfig[Tx]{
		Store: store.Offsets(), Group: cfg.Group, Topics: []string{cfg.Topic}, ClientOpts: opts,
		InstanceID: cfg.InstanceID, MaxBatch: cfg.IngestBatch, Logger: cfg.Logger,
		Handler: func(ctx context.Context, tx Tx, r *kgo.Record) error {
			id, _ := dedupe.EventIDFrom(ctx)
			return dp.ingest([]*kgo.Record{r}, []string{id}, func(ms []IncomingMessage, l Lease) ([]Delivery, int, error) {
				return store.Ingest(ctx, tx, ms[0], l)
			})
		},
		BatchHandler: func(ctx context.Context, tx Tx, rs []*kgo.Record, ids []string) error {
			return dp.ingest(rs, ids, func(ms []IncomingMessage, l Lease) ([]Delivery, int, error) {
				return store.IngestBatch(ctx, tx, ms, l)
			})
		},
		OnResult: dp.ingested,
	})
	if err != nil {
		return nil, err
	}
	dp.consume = c.Run
	return dp, nil
}

// Store returns the dispatcher's store, for the admin API.
func (dp *Dispatcher) Store() Store { return dp.store }

// Config returns the dispatcher's configuration, defaults filled in.
func (dp *Dispatcher) Config() Config { return dp.cfg }

// ingest records Kafka records' messages and deliveries in the consumer's
// transaction (ids are the event ids the consumer claimed), and keeps the
// leased deliveries until it commits.
func (dp *Dispatcher) ingest(rs []*kgo.Record, ids []string, record func([]IncomingMessage, Lease) ([]Delivery, int, error)) error {
	now := dp.cfg.Now()
	ms := make([]IncomingMessage, len(rs))
	pos := make(map[string]recordPos, len(rs))
	for i, r := range rs {
		eventID := ids[i]
		if eventID == "" {
			eventID = dedupe.EventID(r, dedupe.DefaultKeyHeader)
		}
		ms[i] = IncomingMessage{ID: webhookID(eventID), EventType: eventType(r.Value), Payload: r.Value, Key: r.Key,
			Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, At: now}
		if ms[i].Payload == nil {
			ms[i].Payload = []byte{}
		}
		pos[ms[i].ID] = recordPos{r.Topic, r.Partition, r.Offset}
	}
	leased, unleased, err := record(ms, Lease{Token: rand.Int64(), Until: now.Add(dp.cfg.Lease), Except: dp.saturated()})
	if err != nil {
		return err
	}
	dp.mu.Lock()
	for _, r := range rs { // a rolled-back batch re-runs this and overwrites it
		dp.stash[recordPos{r.Topic, r.Partition, r.Offset}] = nil
	}
	for _, d := range leased {
		p := pos[d.MessageID]
		dp.stash[p] = append(dp.stash[p], d)
	}
	dp.mu.Unlock()
	if unleased > 0 {
		dp.wake()
	}
	return nil
}

// ingested runs after a record's transaction committed (or was settled
// otherwise): its leased deliveries go to their endpoints' senders.
func (dp *Dispatcher) ingested(r *kgo.Record, res dedupe.Result) {
	pos := recordPos{r.Topic, r.Partition, r.Offset}
	dp.mu.Lock()
	leased := dp.stash[pos]
	delete(dp.stash, pos)
	dp.mu.Unlock()
	if res.Status != dedupe.Processed {
		return
	}
	for i := range leased {
		dp.offer(&leased[i])
	}
}

func (dp *Dispatcher) wake() {
	select {
	case dp.kick <- struct{}{}:
	default:
	}
}

// Run consumes, sends and records until ctx is done, then stops: requests
// in flight are cancelled and their deliveries released, results are
// stored, and the consumer leaves its group. It returns the consumer's
// error, if it failed.
func (dp *Dispatcher) Run(ctx context.Context) error {
	dp.mu.Lock()
	if dp.running {
		dp.mu.Unlock()
		return errors.New("webhook: dispatcher already running")
	}
	dp.running = true
	dp.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := dp.endpoints.reload(ctx); err != nil && ctx.Err() == nil {
		dp.cfg.Logger.Warn("webhook: loading endpoints failed; retrying", "err", err)
	}
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		dp.recordLoop()
	}()
	var wg sync.WaitGroup
	var consumeErr error
	if dp.consume != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if consumeErr = dp.consume(ctx); consumeErr != nil {
				cancel() // without its consumer the dispatcher stops
			}
		}()
	}
	wg.Add(3)
	go func() {
		defer wg.Done()
		dp.claimLoop(ctx)
	}()
	go func() {
		defer wg.Done()
		dp.cleanupLoop(ctx)
	}()
	go func() {
		defer wg.Done()
		dp.refreshLoop(ctx)
	}()
	wg.Wait()
	dp.mu.Lock()
	runners := dp.runners
	dp.runners = map[string]*endpointRunner{}
	dp.mu.Unlock()
	for _, r := range runners {
		r.stop()
	}
	dp.sends.Wait()
	close(dp.results)
	<-recorded
	dp.cfg.Client.CloseIdleConnections()
	return consumeErr
}

// claimLoop claims due deliveries: retries, ordered deliveries, those of
// re-enabled endpoints and those whose lease expired.
func (dp *Dispatcher) claimLoop(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-dp.kick:
		}
		now := dp.cfg.Now()
		lease := Lease{Token: rand.Int64(), Until: now.Add(dp.cfg.Lease)}
		ds, err := dp.store.Claim(ctx, now, dp.cfg.ClaimBatch, dp.saturated(), lease)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			dp.cfg.Logger.Warn("webhook: claiming due deliveries failed", "err", err)
			t.Reset(min(dp.cfg.PollInterval<<min(failures, 6), 10*time.Second))
			continue
		}
		failures = 0
		for i := range ds {
			dp.offer(&ds[i])
		}
		if len(ds) == dp.cfg.ClaimBatch {
			t.Reset(0) // more are due
		} else {
			t.Reset(dp.cfg.PollInterval)
		}
	}
}

// saturated lists the endpoints whose senders have enough queued; the
// claim leaves their deliveries to later, or to another dispatcher.
func (dp *Dispatcher) saturated() []string {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	var out []string
	for id, r := range dp.runners {
		if len(r.queue) >= cap(r.queue)/2 {
			out = append(out, id)
		}
	}
	return out
}

// cleanupLoop deletes what Retention no longer keeps, hourly.
func (dp *Dispatcher) cleanupLoop(ctx context.Context) {
	if dp.cfg.Retention < 0 {
		return
	}
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := dp.store.Cleanup(ctx, dp.cfg.Now().Add(-dp.cfg.Retention), 1000); err != nil && ctx.Err() == nil {
			dp.cfg.Logger.Warn("webhook: cleanup failed", "err", err)
		} else if n > 0 {
			dp.cfg.Logger.Info("webhook: cleaned up succeeded deliveries", "deleted", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (dp *Dispatcher) refreshLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := dp.endpoints.reload(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			dp.cfg.Logger.Warn("webhook: reloading endpoints failed", "err", err)
			continue
		}
		dp.mu.Lock()
		for id, r := range dp.runners {
			if e := dp.endpoints.peek(id); e != nil {
				r.setRate(e.RateLimit)
			}
		}
		dp.mu.Unlock()
	}
}

// release gives a delivery's lease back without an attempt.
func (dp *Dispatcher) release(d *Delivery) {
	dp.results <- AttemptResult{DeliveryID: d.ID, MessageID: d.MessageID, EndpointID: d.EndpointID, Token: d.Token, Outcome: OutcomeReleased}
}

// offer hands a leased delivery to its endpoint's sender, or releases it
// if the sender's queue is full or the dispatcher is stopping.
func (dp *Dispatcher) offer(d *Delivery) {
	e := dp.endpoints.get(context.Background(), d.EndpointID)
	dp.mu.Lock()
	r := dp.runners[d.EndpointID]
	if r == nil && e != nil && dp.running {
		r = dp.newRunner(e)
		dp.runners[d.EndpointID] = r
	}
	dp.mu.Unlock()
	if r == nil || !r.offer(d) {
		dp.release(d)
	}
}

// recordLoop stores results in batches: whatever has arrived while the
// previous batch was being written goes in the next transaction.
func (dp *Dispatcher) recordLoop() {
	for r := range dp.results {
		batch := []AttemptResult{r}
	drain:
		for len(batch) < 1000 {
			select {
			case r, ok := <-dp.results:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		dp.store1(batch)
	}
}

// store1 writes one batch, retrying while the store is down (for at most a
// minute: past that the leases have expired anyway, and the deliveries are
// sent again by whoever claims them).
func (dp *Dispatcher) store1(batch []AttemptResult) {
	deadline := time.Now().Add(time.Minute)
	for n := 1; ; n++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := dp.store.Record(ctx, batch, dp.cfg.DisableAfter)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			dp.cfg.Logger.Error("webhook: could not record attempt results; their deliveries will be sent again", "results", len(batch), "err", err)
			return
		}
		dp.cfg.Logger.Warn("webhook: recording attempt results failed; retrying", "err", err)
		time.Sleep(min(time.Duration(n)*100*time.Millisecond, 2*time.Second))
	}
	if dp.cfg.OnAttempt != nil {
		for _, r := range batch {
			if r.Outcome != OutcomeReleased {
				dp.cfg.OnAttempt(r)
			}
		}
	}
}

// endpointRunner sends one endpoint's deliveries within its limits, so a
// slow or failing endpoint holds up only its own queue.
type endpointRunner struct {
	dp      *Dispatcher
	id      string
	queue   chan *Delivery
	sem     chan struct{}
	limiter *rate.Limiter
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
	rateMu  sync.Mutex
	rate    float64
}

func (dp *Dispatcher) newRunner(e *Endpoint) *endpointRunner {
	n := e.MaxInFlight
	if n <= 0 {
		n = dp.cfg.MaxInFlight
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &endpointRunner{dp: dp, id: e.ID, queue: make(chan *Delivery, max(8*n, 256)), sem: make(chan struct{}, n),
		limiter: rate.NewLimiter(rate.Inf, 1), ctx: ctx, cancel: cancel, done: make(chan struct{})}
	r.setRate(e.RateLimit)
	go r.run()
	return r
}

func (r *endpointRunner) setRate(perSecond float64) {
	r.rateMu.Lock()
	defer r.rateMu.Unlock()
	if perSecond == r.rate {
		return
	}
	r.rate = perSecond
	if perSecond <= 0 {
		r.limiter.SetLimit(rate.Inf)
		return
	}
	r.limiter.SetLimit(rate.Limit(perSecond))
	r.limiter.SetBurst(max(1, int(perSecond/10)))
}

func (r *endpointRunner) offer(d *Delivery) bool {
	select {
	case <-r.ctx.Done():
		return false
	default:
	}
	select {
	case r.queue <- d:
		return true
	default:
		return false
	}
}

// stop cancels requests in flight and releases what is queued.
func (r *endpointRunner) stop() {
	r.cancel()
	<-r.done
}

func (r *endpointRunner) run() {
	defer close(r.done)
	defer func() { // release what is left
		for {
			select {
			case d := <-r.queue:
				r.dp.release(d)
			default:
				return
			}
		}
	}()
	for {
		var d *Delivery
		select {
		case <-r.ctx.Done():
			return
		case d = <-r.queue:
		}
		select {
		case r.sem <- struct{}{}:
		case <-r.ctx.Done():
			r.dp.release(d)
			return
		}
		if err := r.limiter.Wait(r.ctx); err != nil {
			<-r.sem
			r.dp.release(d)
			return
		}
		r.dp.sends.Add(1)
		go func() {
			defer r.dp.sends.Done()
			defer func() { <-r.sem }()
			r.dp.results <- r.send(d)
		}()
	}
}

// send makes one attempt, unless the endpoint was disabled meanwhile or
// too little of the lease is left to finish within it.
func (r *endpointRunner) send(d *Delivery) AttemptResult {
	dp := r.dp
	released := AttemptResult{DeliveryID: d.ID, MessageID: d.MessageID, EndpointID: d.EndpointID, Token: d.Token, Outcome: OutcomeReleased}
	e := dp.endpoints.peek(d.EndpointID)
	if e == nil || !e.Enabled {
		return released
	}
	if dp.cfg.Now().Add(dp.cfg.RequestTimeout + time.Second).After(d.LeaseUntil) {
		return released
	}
	res := dp.attempt(r.ctx, e, d)
	if r.ctx.Err() != nil && res.Outcome != OutcomeSucceeded {
		return released // cut short by the stop: not an attempt of the endpoint's
	}
	return res
}

// endpointCache holds the endpoints' configuration, reloaded every second,
// so the senders read it without a query per request.
type endpointCache struct {
	store Store
	mu    sync.Mutex
	m     map[string]*Endpoint
}

func (c *endpointCache) reload(ctx context.Context) error {
	es, err := c.store.Endpoints(ctx)
	if err != nil {
		return err
	}
	m := make(map[string]*Endpoint, len(es))
	for i := range es {
		m[es[i].ID] = &es[i]
	}
	c.mu.Lock()
	c.m = m
	c.mu.Unlock()
	return nil
}

func (c *endpointCache) peek(id string) *Endpoint {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[id]
}

// get returns the endpoint, reloading once if it is not known yet (it was
// created since the last reload).
func (c *endpointCache) get(ctx context.Context, id string) *Endpoint {
	if e := c.peek(id); e != nil {
		return e
	}
	if err := c.reload(ctx); err != nil {
		return nil
	}
	return c.peek(id)
}
