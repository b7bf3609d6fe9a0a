package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/idem-dev/idem/dedupe"
	"github.com/idem-dev/idem/idempotency"
)

// DefaultMaxBodyBytes bounds the body a receiver reads (1 MiB); the spec
// recommends payloads well under 20 KB.
const DefaultMaxBodyBytes = 1 << 20

// HeaderDuplicate is set to "true" on the answer to a redelivery that the
// Receiver suppressed, so the sender's attempt log tells the two apart.
const HeaderDuplicate = "Idem-Duplicate"

// Message is a verified webhook as a receiver's handler gets it.
type Message struct {
	ID        string    // webhook-id
	Timestamp time.Time // webhook-timestamp of this attempt
	// Type is the payload's "type" field if the payload is a JSON object
	// that has one (Standard Webhooks payloads are {type, timestamp, data}).
	Type    string
	Payload []byte // the exact bytes that were signed
}

type messageKey struct{}

// MessageFrom returns the verified message of a request that went through
// Verify.
func MessageFrom(ctx context.Context) (Message, bool) {
	m, ok := ctx.Value(messageKey{}).(Message)
	return m, ok
}

// eventType reads the "type" field of a JSON payload ("" if there is none).
func eventType(payload []byte) string {
	var p struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(payload, &p) != nil {
		return ""
	}
	return p.Type
}

// readVerified reads the body (up to limit) and verifies it. On failure it
// has answered the request and returns false.
func readVerified(w http.ResponseWriter, r *http.Request, v *Verifier, limit int64) (Message, bool) {
	if limit <= 0 {
		limit = DefaultMaxBodyBytes
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		writeProblem(w, r, http.StatusBadRequest, "Unreadable request body", err.Error())
		return Message{}, false
	}
	if int64(len(body)) > limit {
		writeProblem(w, r, http.StatusRequestEntityTooLarge, "Webhook payload too large", fmt.Sprintf("The limit is %d bytes.", limit))
		return Message{}, false
	}
	ok, err := v.Verify(r.Header, body)
	if err != nil {
		title := "Invalid webhook signature"
		if StatusOf(err) == http.StatusBadRequest {
			title = "Not a Standard Webhooks request"
		}
		writeProblem(w, r, StatusOf(err), title, err.Error())
		return Message{}, false
	}
	return Message{ID: ok.ID, Timestamp: ok.Timestamp, Type: eventType(body), Payload: body}, true
}

func writeProblem(w http.ResponseWriter, r *http.Request, status int, title, detail string) {
	idempotency.WriteProblem(w, r, idempotency.Problem{Type: "about:blank", Title: title, Status: status, Detail: detail})
}

// Verify returns middleware that lets through only requests with a valid
// Standard Webhooks signature, within the verifier's tolerance. Others get
// 400 (not a webhook: headers missing or malformed) or 401 (signature or
// timestamp wrong) with an application/problem+json body saying which.
// The handler finds the verified message with MessageFrom; the request body
// is consumed. maxBody bounds the body (0: DefaultMaxBodyBytes; over it 413).
//
// Verify does not deduplicate: use Receiver for that.
func Verify(v *Verifier, maxBody int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			m, ok := readVerified(w, r, v, maxBody)
			if !ok {
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), messageKey{}, m)))
		})
	}
}

// ReceiverConfig configures a Receiver. Verifier, Store and Handle are
// required.
type ReceiverConfig[Tx any] struct {
	Verifier *Verifier
	// Store records processed webhook-ids in the handler's transaction
	// (dedupe/sqlitestore or dedupe/pgstore; use a table of its own, e.g.
	// Config.Table "webhooks_received").
	Store dedupe.Store[Tx]
	// Handle applies a verified webhook inside tx. Its writes commit
	// together with the record of m.ID, so a redelivery changes nothing.
	// Return dedupe.Permanent(err) for a webhook that must not be retried
	// (it is recorded as rejected and answered 200, which stops the
	// sender); any other error rolls back and answers 500, so the sender
	// retries.
	Handle func(ctx context.Context, tx Tx, m Message) error
	// MaxBodyBytes bounds the body (default 1 MiB; over it 413).
	MaxBodyBytes int64
	// OnResult, if set, is called after each verified delivery with what
	// the store did (err is the handler's or the store's error).
	OnResult func(m Message, res dedupe.Result, err error)
}

// Receiver is the receiving end of the channel: an http.Handler that
// verifies each webhook (400/401 problem+json otherwise), then runs Handle
// and records the webhook-id in one database transaction. A redelivered
// webhook (same webhook-id, any attempt, any timestamp) does not run Handle
// again and is answered 200 with Idem-Duplicate: true, so the sender stops
// retrying it: the world changes once.
//
// Answers: 200 {"status":"processed"|"duplicate"|"rejected"}; 400, 401, 413
// for requests that fail verification; 500 when Handle fails (the sender
// retries); 503 with Retry-After when the store is unavailable.
func Receiver[Tx any](cfg ReceiverConfig[Tx]) (http.Handler, error) {
	if cfg.Verifier == nil || cfg.Store == nil || cfg.Handle == nil {
		return nil, errors.New("webhook: ReceiverConfig needs Verifier, Store and Handle")
	}
	if len(cfg.Verifier.Keys) == 0 {
		return nil, errors.New("webhook: the receiver's verifier has no key")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m, ok := readVerified(w, r, cfg.Verifier, cfg.MaxBodyBytes)
		if !ok {
			return
		}
		var handlerErr error
		res, err := cfg.Store.Process(r.Context(), m.ID, func(ctx context.Context, tx Tx) error {
			handlerErr = cfg.Handle(context.WithValue(ctx, messageKey{}, m), tx, m)
			return handlerErr
		})
		if cfg.OnResult != nil {
			cfg.OnResult(m, res, err)
		}
		switch {
		case err == nil || res.Status == dedupe.Rejected:
			status := res.Status.String()
			if res.Status == dedupe.Duplicate {
				w.Header().Set(HeaderDuplicate, "true")
			}
			w.Header().Set("Content-Type", "application/json")
			body := map[string]string{"status": status, "webhook_id": m.ID}
			if res.Status == dedupe.Rejected && err != nil {
				body["detail"] = err.Error()
			}
			json.NewEncoder(w).Encode(body)
		case handlerErr != nil && errors.Is(err, handlerErr):
			writeProblem(w, r, http.StatusInternalServerError, "Webhook handler failed",
				"The handler's changes were rolled back; a retry of this webhook will run it again.")
		default:
			w.Header().Set("Retry-After", "1")
			writeProblem(w, r, http.StatusServiceUnavailable, "Webhook store unavailable", "Retry the delivery.")
		}
	}), nil
}
