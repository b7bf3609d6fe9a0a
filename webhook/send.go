package webhook

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// DefaultRetries is the pause before each retry after the first,
// immediate attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (Svix's
// schedule: 8 attempts over about 27.6 hours).
var DefaultRetries = []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

// ParseRetries reads a schedule such as "1s,2s,4s" (the pauses before each
// retry; the first attempt is immediate).
func ParseRetries(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		d, err := time.ParseDuration(f)
		if err != nil {
			return nil, fmt.Errorf("webhook: retry schedule %q: %w", s, err)
		}
		if d < 0 {
			return nil, fmt.Errorf("webhook: retry schedule %q: negative pause %v", s, d)
		}
		out = append(out, d)
	}
	return out, nil
}

// webhookID turns the Kafka event id (the idempotency-key header, or
// topic/partition/offset) into a webhook-id. Standard Webhooks ids must not
// contain '.' (the signed content is id.timestamp.payload), and topic names
// may; such ids, and unprintable or very long ones, are replaced by a
// stable hash of themselves.
func webhookID(eventID string) string {
	ok := len(eventID) <= 200 && utf8.ValidString(eventID)
	for _, r := range eventID {
		if r == '.' || r <= ' ' || r == 0x7f {
			ok = false
			break
		}
	}
	if ok {
		return eventID
	}
	sum := sha256.Sum256([]byte(eventID))
	return "msg_" + base64.RawURLEncoding.EncodeToString(sum[:24])
}

// newHTTPClient is the default client: no redirects (a 3xx is a failure,
// as the spec says: following it could send the payload elsewhere) and
// enough idle connections per endpoint for MaxInFlight.
func newHTTPClient(maxInFlight int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = maxInFlight
	tr.MaxIdleConns = 0
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// parseKey is ParseKey with a cache: every request is signed with the
// endpoint's keys, and decoding them each time would be wasted work.
func (dp *Dispatcher) parseKey(secret string) (Key, error) {
	if k, ok := dp.keys.Load(secret); ok {
		return k.(Key), nil
	}
	k, err := ParseKey(secret)
	if err == nil {
		dp.keys.Store(secret, k)
	}
	return k, err
}

// attempt sends d to e once and says what happened and what comes next.
func (dp *Dispatcher) attempt(ctx context.Context, e *Endpoint, d *Delivery) AttemptResult {
	now := dp.cfg.Now()
	r := AttemptResult{DeliveryID: d.ID, MessageID: d.MessageID, EndpointID: d.EndpointID, Token: d.Token,
		Attempt: d.Attempts + 1, Started: now, Dispatcher: dp.cfg.Name}
	keys, err := e.activeKeys(now, dp.parseKey)
	if err != nil {
		r.Error = err.Error()
		return dp.decide(r, nil)
	}
	rctx, cancel := context.WithTimeout(ctx, dp.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, e.URL, bytes.NewReader(d.Payload))
	if err != nil {
		r.Error = err.Error()
		return dp.decide(r, nil)
	}
	if err := SetHeaders(req.Header, d.MessageID, now, d.Payload, keys...); err != nil {
		r.Error = err.Error()
		return dp.decide(r, nil)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "idem-webhooks/1")
	start := time.Now()
	resp, err := dp.cfg.Client.Do(req)
	if err != nil {
		r.Latency = time.Since(start)
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			r.Error = fmt.Sprintf("timeout: no answer within %v", dp.cfg.RequestTimeout)
		} else {
			r.Error = err.Error()
		}
		return dp.decide(r, nil)
	}
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, int64(dp.cfg.ResponseExcerpt)))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	resp.Body.Close()
	r.Latency = time.Since(start)
	r.StatusCode = resp.StatusCode
	r.Response = strings.ToValidUTF8(string(excerpt), "\uFFFD")
	return dp.decide(r, resp)
}

// decide fills in the outcome and the next attempt's time.
func (dp *Dispatcher) decide(r AttemptResult, resp *http.Response) AttemptResult {
	code := 0
	if resp != nil {
		code = resp.StatusCode
	}
	if code >= 200 && code < 300 {
		r.Outcome = OutcomeSucceeded
		return r
	}
	if resp != nil {
		r.Error = "HTTP " + strconv.Itoa(code)
	}
	retries := dp.cfg.Retries
	if r.Attempt > len(retries) {
		r.Outcome = OutcomeDead
		if code == http.StatusGone {
			r.Outcome = OutcomeGone // the endpoint is disabled; the delivery waits for it
			r.NextAttempt = r.Started
		}
		return r
	}
	pause := retries[r.Attempt-1]
	if dp.cfg.Jitter > 0 && pause > 0 {
		pause += time.Duration(rand.Float64() * dp.cfg.Jitter * float64(pause))
	}
	if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
		if ra, ok := parseRetryAfter(resp.Header.Get("Retry-After"), r.Started); ok {
			pause = max(pause, min(ra, dp.cfg.MaxRetryAfter))
		}
	}
	r.Outcome = OutcomeFailed
	if code == http.StatusGone {
		r.Outcome = OutcomeGone
	}
	r.NextAttempt = r.Started.Add(pause)
	return r
}

// parseRetryAfter reads delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 {
			return 0, false
		}
		return time.Duration(min(s, int64(365*24*3600))) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
