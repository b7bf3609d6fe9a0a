// Package idempotency is net/http middleware for the Idempotency-Key request
// header (IETF draft-ietf-httpapi-idempotency-key-header, with Stripe's
// semantics where the draft leaves a choice).
//
// For a request carrying a key:
//
//   - First request: the key is claimed, the handler runs, and its response
//     (status, replayable headers, body) is stored together with a
//     fingerprint of the request, then sent.
//   - Retry after completion, same fingerprint: the stored response is
//     replayed without running the handler, with "Idempotent-Replayed: true".
//   - Same key, different fingerprint: 422 Unprocessable Content.
//   - Retry while the first is still running: 409 Conflict (with
//     Retry-After); the only case in which the client may resend unchanged.
//   - Key missing on a route that requires it: 400 Bad Request.
//   - Keys are scoped per client (Config.Scope, required) and expire after
//     Config.Retention (24 h by default, Stripe's minimum).
//
// # What is replayed
//
// Only the headers in Config.ReplayHeaders (DefaultReplayHeaders: content
// type, location, caching and the like) are stored and replayed. Set-Cookie,
// Authorization, WWW-Authenticate, Proxy-Authenticate and hop-by-hop
// headers never are: a replay must not hand one client's session to
// another. A body larger than Config.MaxResponseBytes (1 MiB) is sent but not
// stored; a retry then gets 410 Gone with the original status.
//
// # Failures release the key
//
// Stripe stores and replays 500s too. This middleware instead releases the
// key when the handler answers 5xx or 429 (Config.ReleaseOn), and when it
// panics: the client's retry runs the handler again. That is safe because of
// atomic phases: a handler that writes through the request's transaction
// (sqlitestore.Tx, pgstore.Tx) has those writes rolled back with the
// release, so a failed attempt leaves nothing behind that a retry could
// duplicate. A handler that calls other services must make those calls
// idempotent itself, for instance by passing the same key downstream. If
// the store itself fails (a lost connection), the answer is 503 and the key
// is released as soon as the store answers again.
//
// # Atomic phases
//
// The handler's own database writes and the stored response commit in one
// transaction: the handler gets it with sqlitestore.Tx(r.Context()) or
// pgstore.Tx(r.Context()). Either the order row and the stored "201 Created"
// both exist, or neither does. If the claim's lease (Config.Lease) ran out
// and a retry took the key over, completing fails, the transaction rolls
// back, and this request answers 409: its successor's result stands.
// redisstore keeps keys in Redis instead, without that atomicity (see its
// documentation).
//
// Responses are buffered, so streaming handlers do not belong behind this
// middleware.
package idempotency

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Header names.
const (
	HeaderKey      = "Idempotency-Key"
	HeaderReplayed = "Idempotent-Replayed"
	// HeaderOriginalStatus accompanies the 410 answered for a completed
	// request whose response was too large to store (MaxResponseBytes).
	HeaderOriginalStatus = "Idempotent-Original-Status"
)

// MaxKeyLength is Stripe's limit; the draft sets none.
const MaxKeyLength = 255

// Config configures Middleware. Store is required.
type Config struct {
	Store Store
	// Methods the middleware applies to (default POST and PATCH, the
	// non-idempotent methods the draft names). Other methods pass through.
	Methods []string
	// Optional lets requests without a key through, unprotected. By default
	// a key is required and its absence answers 400.
	Optional bool
	// Scope returns the client identity keys are scoped to: your
	// authenticated user or tenant id. It is required (Middleware panics
	// without it) unless AllowEmptyScope is set, because clients that share
	// a scope can replay, and so read, each other's responses.
	// ScopeByAuthorization is ready-made. A request whose scope is "" is
	// refused with 400 unless AllowEmptyScope is set.
	Scope func(r *http.Request) string
	// AllowEmptyScope is the explicit opt-in to one shared key space: every
	// request whose Scope is "" (all of them if Scope is nil) shares it. Use
	// it only where one trusted client sends all requests, or where
	// responses carry nothing a client may not see of another's.
	AllowEmptyScope bool
	// ReplayHeaders lists the response headers that are stored and replayed
	// (default DefaultReplayHeaders()). Whatever it says, Set-Cookie,
	// Authorization, WWW-Authenticate, Proxy-Authenticate and hop-by-hop
	// headers are never stored or replayed. The original response is sent
	// with all its headers.
	ReplayHeaders []string
	// MaxResponseBytes caps the size of a stored response body (default
	// 1 MiB; negative means no cap). A larger response is still sent, and
	// the key is recorded as completed without its body: a retry gets 410
	// Gone, saying the request was processed and with what status, instead
	// of a second run.
	MaxResponseBytes int64
	// Fingerprint identifies "the same request". The default
	// (DefaultFingerprint) hashes the method, the path with its query, and
	// the body byte for byte; FingerprintJSON compares JSON bodies as JSON.
	Fingerprint func(r *http.Request, body []byte) string
	// Retention is how long a key is remembered (default 24 h).
	Retention time.Duration
	// Lease bounds how long an in-flight request holds its key without a
	// sign of life (default 90 s). While the handler runs, the middleware
	// renews the lease every Lease/3; a server that crashed mid-request stops
	// renewing, and after Lease a retry may take the key over instead of
	// getting 409 until the key expires.
	Lease time.Duration
	// MaxBodyBytes caps the request body read for the fingerprint (default
	// 1 MiB); larger bodies answer 413.
	MaxBodyBytes int64
	// ReleaseOn decides which response statuses are not stored, so the key is
	// released and a retry runs the handler again (default: 5xx and 429).
	ReleaseOn func(status int) bool
	// Now is the clock (default time.Now).
	Now func() time.Time
	// DocsURL, if set, is linked from error responses (type and Link header).
	DocsURL string
	// Logger receives store errors (default slog.Default()).
	Logger *slog.Logger
	// OnOutcome, if set, is called once per request the middleware handles
	// (one of Methods), after the response was written; a handler panic is
	// reported as OutcomeReleased before the panic goes on. It must be quick
	// and safe for concurrent use. idempotencyprom turns it into
	// Prometheus counters.
	OnOutcome func(Event)
	// ErrorWriter writes the middleware's own error responses (400, 409,
	// 410, 413, 422, 503; default WriteProblem, RFC 9457 problem+json).
	// Headers the middleware sets first (Retry-After, Link,
	// Idempotent-Replayed) are already on w.
	ErrorWriter func(w http.ResponseWriter, r *http.Request, p Problem)
}

func (c Config) withDefaults() Config {
	if len(c.Methods) == 0 {
		c.Methods = []string{http.MethodPost, http.MethodPatch}
	}
	if c.Scope == nil {
		c.Scope = ScopeByAuthorization
	}
	if c.ReplayHeaders == nil {
		c.ReplayHeaders = DefaultReplayHeaders()
	}
	if c.MaxResponseBytes == 0 {
		c.MaxResponseBytes = 1 << 20
	}
	if c.Fingerprint == nil {
		c.Fingerprint = DefaultFingerprint
	}
	if c.Retention <= 0 {
		c.Retention = 24 * time.Hour
	}
	if c.Lease <= 0 {
		c.Lease = 90 * time.Second
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.ReleaseOn == nil {
		c.ReleaseOn = func(status int) bool { return status >= 500 || status == http.StatusTooManyRequests }
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// ScopeByAuthorization scopes keys by a hash of the Authorization header.
// A request without one has no scope ("") and is refused unless
// Config.AllowEmptyScope is set.
func ScopeByAuthorization(r *http.Request) string {
	a := r.Header.Get("Authorization")
	if a == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(a))
	return hex.EncodeToString(sum[:16])
}

// DefaultFingerprint hashes the method, path and query, and body.
func DefaultFingerprint(r *http.Request, body []byte) string {
	h := sha256.New()
	io.WriteString(h, r.Method+" "+r.URL.RequestURI()+"\n")
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// FingerprintJSON is DefaultFingerprint for JSON APIs: a body that is one
// JSON value is compared as JSON, as Stripe compares a request's
// parameters, so key order, whitespace and string escapes do not make a
// retry a different request. Numbers are compared as written (1.0 is not
// 1), and arrays in order. A body that is not JSON is hashed byte for byte.
// Set it as Config.Fingerprint.
func FingerprintJSON(r *http.Request, body []byte) string {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil || dec.Decode(new(json.RawMessage)) != io.EOF {
		return DefaultFingerprint(r, body)
	}
	canon, err := json.Marshal(v) // object keys sorted, no whitespace
	if err != nil {
		return DefaultFingerprint(r, body)
	}
	h := sha256.New()
	io.WriteString(h, r.Method+" "+r.URL.RequestURI()+"\njson\n")
	h.Write(canon)
	return hex.EncodeToString(h.Sum(nil))
}

// Middleware returns the Idempotency-Key middleware. It panics if cfg.Store
// is nil, a programming error.
func Middleware(cfg Config) func(http.Handler) http.Handler {
	if cfg.Store == nil {
		panic("idempotency: Config.Store is nil")
	}
	if cfg.Scope == nil && !cfg.AllowEmptyScope {
		panic("idempotency: Config.Scope is nil: set it to the authenticated client's identity " +
			"(or idempotency.ScopeByAuthorization), or set AllowEmptyScope to share one key space knowingly")
	}
	cfg = cfg.withDefaults()
	rel := &releaser{store: cfg.Store, logger: cfg.Logger, lease: cfg.Lease, pending: map[Key]string{}}
	return func(next http.Handler) http.Handler {
		return &middleware{cfg: cfg, next: next, replay: newHeaderFilter(cfg.ReplayHeaders), rel: rel}
	}
}

type middleware struct {
	cfg    Config
	next   http.Handler
	replay headerFilter
	rel    *releaser
}

func (m *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !slices.Contains(m.cfg.Methods, r.Method) {
		m.next.ServeHTTP(w, r)
		return
	}
	if m.cfg.OnOutcome == nil {
		m.serve(w, r, nil)
		return
	}
	ev := Event{Method: r.Method, Path: r.URL.Path}
	start := time.Now()
	defer func() { // also after a handler panic, reported as released
		ev.Duration = time.Since(start)
		m.cfg.OnOutcome(ev)
	}()
	m.serve(w, r, &ev)
}

func (m *middleware) serve(w http.ResponseWriter, r *http.Request, ev *Event) {
	values := r.Header.Values(HeaderKey)
	if len(values) == 0 {
		if m.cfg.Optional {
			m.runUnkeyed(w, r, ev)
			return
		}
		ev.set(OutcomeRejected, m.problem(w, r, http.StatusBadRequest, "Idempotency-Key is missing",
			"This operation is idempotent and requires an Idempotency-Key header."))
		return
	}
	keyValue, err := parseKey(values)
	if err != nil {
		ev.set(OutcomeRejected, m.problem(w, r, http.StatusBadRequest, "Invalid Idempotency-Key", err.Error()))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, m.cfg.MaxBodyBytes+1))
	if err != nil {
		ev.set(OutcomeRejected, m.problem(w, r, http.StatusBadRequest, "Unreadable request body", err.Error()))
		return
	}
	if int64(len(body)) > m.cfg.MaxBodyBytes {
		ev.set(OutcomeRejected, m.problem(w, r, http.StatusRequestEntityTooLarge, "Request body too large",
			"The body exceeds "+strconv.FormatInt(m.cfg.MaxBodyBytes, 10)+" bytes."))
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	key := Key{Scope: m.cfg.Scope(r), Key: keyValue}
	if ev != nil {
		ev.Key = key
	}
	if key.Scope == "" && !m.cfg.AllowEmptyScope {
		ev.set(OutcomeRejected, m.problem(w, r, http.StatusBadRequest, "No client identity for the Idempotency-Key",
			"Idempotency keys are scoped per client, and this request does not identify one (for instance, it has no credentials)."))
		return
	}
	fp := m.cfg.Fingerprint(r, body)

	// Store operations must not die with the client's connection: a client
	// that timed out will retry, and must find the result stored.
	sctx := context.WithoutCancel(r.Context())
	claim, err := m.cfg.Store.Claim(sctx, key, fp, m.cfg.Now(), m.cfg.Lease, m.cfg.Retention)
	if err == nil && claim.Status == InProgress && m.rel.retry(sctx, key) {
		// This server failed to release the key after a failed attempt
		// (the store was unreachable); now it could, so claim again.
		claim, err = m.cfg.Store.Claim(sctx, key, fp, m.cfg.Now(), m.cfg.Lease, m.cfg.Retention)
	}
	if err != nil {
		m.cfg.Logger.Error("idempotency: claim failed", "err", err)
		w.Header().Set("Retry-After", "1")
		ev.set(OutcomeStoreError, m.problem(w, r, http.StatusServiceUnavailable, "Idempotency store unavailable", "Retry the request with the same key."))
		if ev != nil {
			ev.Err = err
		}
		return
	}
	switch claim.Status {
	case Completed:
		ev.set(OutcomeReplayed, m.replayResponse(w, r, claim.Response))
	case Mismatch:
		ev.set(OutcomeMismatch, m.problem(w, r, http.StatusUnprocessableEntity, "Idempotency-Key reused",
			"This key was already used with a different request payload."))
	case InProgress:
		w.Header().Set("Retry-After", "1")
		ev.set(OutcomeConflict, m.problem(w, r, http.StatusConflict, "Request in progress",
			"A request with this Idempotency-Key is still being processed; retry later."))
	case Claimed:
		m.run(w, r, sctx, key, claim.Token, ev)
	}
}

// run executes the handler for a claimed key and stores or releases.
func (m *middleware) run(w http.ResponseWriter, r *http.Request, sctx context.Context, key Key, token string, ev *Event) {
	holder := &txHolder{store: m.cfg.Store, ctx: sctx}
	rec := &recorder{header: http.Header{}}
	stopHeartbeat := m.heartbeat(sctx, key, token)
	defer stopHeartbeat()
	completed := false
	defer func() {
		if completed {
			return
		}
		// The handler panicked: undo its writes and free the key.
		holder.rollback()
		m.rel.release(sctx, key, token)
		ev.set(OutcomeReleased, http.StatusInternalServerError)
	}()
	m.next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), txKey{}, holder)))
	completed = true
	stopHeartbeat()
	resp := rec.response()

	if m.cfg.ReleaseOn(resp.Status) {
		holder.rollback()
		m.rel.release(sctx, key, token)
		writeResponse(w, resp, false)
		ev.set(OutcomeReleased, resp.Status)
		return
	}
	stored := Response{Status: resp.Status, Header: m.replay.filter(resp.Header), Body: resp.Body}
	if m.cfg.MaxResponseBytes >= 0 && int64(len(resp.Body)) > m.cfg.MaxResponseBytes {
		stored.Body, stored.BodyOmitted = nil, true
	}
	tx, err := holder.get()
	if err == nil {
		err = m.cfg.Store.Complete(sctx, tx, key, token, stored)
		if err == nil {
			err = tx.Commit(sctx)
		}
	}
	if err != nil {
		holder.rollback()
		if errors.Is(err, ErrLeaseLost) {
			ev.set(OutcomeConflict, m.problem(w, r, http.StatusConflict, "Request superseded",
				"This request outlived its lease and a retry with the same key took over; its changes were rolled back."))
			return
		}
		m.cfg.Logger.Error("idempotency: storing the response failed", "err", err)
		// If the commit did happen after all, Release is a no-op (the key is
		// done) and a retry replays; otherwise the retry runs again.
		detail := "The response could not be stored, so the request's changes were rolled back and the key was released. Retry with the same key."
		if !m.rel.release(sctx, key, token) {
			detail = "The response could not be stored because the idempotency store is unreachable, so the request's changes were rolled back. " +
				"Retry with the same key: the key is released as soon as the store is reachable again, and a retry before then gets 409 Conflict."
		}
		w.Header().Set("Retry-After", "1")
		ev.set(OutcomeReleased, m.problem(w, r, http.StatusServiceUnavailable, "Could not store the response", detail))
		if ev != nil {
			ev.Err = err
		}
		return
	}
	writeResponse(w, resp, false)
	ev.set(OutcomeProcessed, resp.Status)
	if ev != nil {
		ev.BodyOmitted = stored.BodyOmitted
	}
}

// replayResponse answers with a stored response: only its replayable
// headers (rows stored by older versions may hold others), or, if its body
// was too large to store, 410 Gone with the original status.
func (m *middleware) replayResponse(w http.ResponseWriter, r *http.Request, resp Response) int {
	resp.Header = m.replay.filter(resp.Header)
	if resp.BodyOmitted {
		h := w.Header()
		for _, k := range []string{"Location", "Content-Location"} {
			if v := resp.Header.Values(k); len(v) > 0 {
				h[k] = slices.Clone(v)
			}
		}
		h.Set(HeaderReplayed, "true")
		h.Set(HeaderOriginalStatus, strconv.Itoa(resp.Status))
		return m.problem(w, r, http.StatusGone, "Response not stored",
			"The request with this Idempotency-Key was processed (status "+strconv.Itoa(resp.Status)+
				"), but its response was larger than this server stores, so it cannot be replayed. Do not resend it with a new key; fetch the result instead.")
	}
	writeResponse(w, resp, true)
	return resp.Status
}

// runUnkeyed serves a request without a key on an Optional route. It gets
// no replay protection, but the handler still finds its transaction in the
// context, so one handler serves keyed and unkeyed requests alike; the
// transaction commits before the response is sent unless ReleaseOn says the
// response is a failure.
func (m *middleware) runUnkeyed(w http.ResponseWriter, r *http.Request, ev *Event) {
	sctx := context.WithoutCancel(r.Context())
	holder := &txHolder{store: m.cfg.Store, ctx: sctx}
	defer holder.rollback() // after a commit a no-op; on a panic an undo
	rec := &recorder{header: http.Header{}}
	m.next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), txKey{}, holder)))
	resp := rec.response()
	if !m.cfg.ReleaseOn(resp.Status) {
		if err := holder.commit(); err != nil {
			m.cfg.Logger.Error("idempotency: commit failed", "err", err)
			ev.set(OutcomeUnkeyed, m.problem(w, r, http.StatusInternalServerError, "Could not commit", "The request's changes were rolled back."))
			return
		}
	}
	writeResponse(w, resp, false)
	ev.set(OutcomeUnkeyed, resp.Status)
}

// heartbeat renews the claim's lease every Lease/3 until stopped. stop is
// idempotent, cancels a renewal in flight (on SQLite one can be waiting for
// the writer connection that the handler's own transaction holds) and waits
// for it. A renewal that finds the lease lost stops; completing reports it.
func (m *middleware) heartbeat(parent context.Context, key Key, token string) (stop func()) {
	ctx, cancel := context.WithCancel(parent)
	done := ctx.Done()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(m.cfg.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				err := m.cfg.Store.Extend(ctx, key, token, m.cfg.Now().Add(m.cfg.Lease))
				if errors.Is(err, ErrLeaseLost) {
					return
				}
				if err != nil && ctx.Err() == nil {
					m.cfg.Logger.Warn("idempotency: lease renewal failed", "err", err)
				}
			}
		}
	}()
	return func() {
		cancel()
		wg.Wait()
	}
}

// parseKey accepts the draft's Structured Field string ("…") and, as Stripe
// clients send, a bare token. One header line only.
func parseKey(values []string) (string, error) {
	if len(values) != 1 {
		return "", errors.New("exactly one Idempotency-Key header is allowed")
	}
	v := strings.TrimSpace(values[0])
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		var b strings.Builder
		for i := 1; i < len(v)-1; i++ {
			c := v[i]
			if c == '\\' {
				i++
				if i >= len(v)-1 || (v[i] != '"' && v[i] != '\\') {
					return "", errors.New("bad escape in Idempotency-Key string")
				}
				c = v[i]
			} else if c == '"' {
				return "", errors.New("unescaped quote in Idempotency-Key string")
			}
			b.WriteByte(c)
		}
		v = b.String()
	}
	if v == "" {
		return "", errors.New("Idempotency-Key is empty")
	}
	if len(v) > MaxKeyLength {
		return "", errors.New("Idempotency-Key is longer than " + strconv.Itoa(MaxKeyLength) + " characters")
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return "", errors.New("Idempotency-Key must be printable ASCII")
		}
	}
	return v, nil
}

// problem answers with a problem (through Config.ErrorWriter) and returns
// its status.
func (m *middleware) problem(w http.ResponseWriter, r *http.Request, status int, title, detail string) int {
	typ := "about:blank"
	if m.cfg.DocsURL != "" {
		typ = m.cfg.DocsURL
		w.Header().Set("Link", "<"+m.cfg.DocsURL+`>; rel="describedby"; type="text/html"`)
	}
	p := Problem{Type: typ, Title: title, Status: status, Detail: detail}
	if m.cfg.ErrorWriter != nil {
		m.cfg.ErrorWriter(w, r, p)
		return status
	}
	WriteProblem(w, r, p)
	return status
}

// Problem is an error the middleware answers with (RFC 9457 problem
// details), for Config.ErrorWriter.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

// WriteProblem is the default Config.ErrorWriter: p as application/problem+json.
func WriteProblem(w http.ResponseWriter, _ *http.Request, p Problem) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(p.Status)
	json.NewEncoder(w).Encode(p)
}

func writeResponse(w http.ResponseWriter, resp Response, replayed bool) {
	h := w.Header()
	for k, v := range resp.Header {
		h[k] = slices.Clone(v)
	}
	if replayed {
		h.Set(HeaderReplayed, "true")
	}
	h.Set("Content-Length", strconv.Itoa(len(resp.Body)))
	w.WriteHeader(resp.Status)
	w.Write(resp.Body)
}

// recorder buffers the handler's response so it can be stored before any of
// it reaches the client.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}
func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(p)
}

func (r *recorder) response() Response {
	status := r.status
	if status == 0 {
		status = http.StatusOK
	}
	h := r.header.Clone()
	h.Del("Content-Length") // recomputed on every write
	return Response{Status: status, Header: h, Body: r.body.Bytes()}
}

// txHolder begins the request's transaction on first use, so a handler that
// never touches the database never holds a connection (for SQLite: the
// single writer) while it runs.
type txHolder struct {
	mu    sync.Mutex
	store Store
	ctx   context.Context
	tx    Tx
}

type txKey struct{}

func (h *txHolder) get() (Tx, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tx == nil {
		tx, err := h.store.Begin(h.ctx)
		if err != nil {
			return nil, err
		}
		h.tx = tx
	}
	return h.tx, nil
}

// commit commits the transaction if the handler began one.
func (h *txHolder) commit() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tx == nil {
		return nil
	}
	return h.tx.Commit(h.ctx)
}

func (h *txHolder) rollback() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tx != nil {
		h.tx.Rollback(h.ctx)
	}
}

// RequestTx returns the transaction of the request whose context is ctx,
// beginning it on first call: the transaction in which the stored response
// will commit. Store packages wrap it with a typed accessor (sqlitestore.Tx,
// pgstore.Tx); a third-party store's handlers can type-assert it.
func RequestTx(ctx context.Context) (Tx, error) {
	h, ok := ctx.Value(txKey{}).(*txHolder)
	if !ok {
		return nil, ErrNoTransaction
	}
	return h.get()
}
