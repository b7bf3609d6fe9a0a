package idempotency

import (
	"strconv"
	"time"
)

// Outcome is what the middleware did with a request, for Config.OnOutcome.
type Outcome int

const (
	// OutcomeProcessed: the handler ran and its response was stored (or,
	// over MaxResponseBytes, the key completed without it: BodyOmitted).
	OutcomeProcessed Outcome = iota + 1
	// OutcomeReplayed: a stored response was replayed (or the 410 for one
	// whose body was not stored).
	OutcomeReplayed
	// OutcomeConflict: 409, the key is in flight, or this request lost its
	// lease to a retry.
	OutcomeConflict
	// OutcomeMismatch: 422, the key was used with another request.
	OutcomeMismatch
	// OutcomeRejected: 400 or 413, a missing or malformed key, an
	// unreadable or too large body, or no client identity (Scope "").
	OutcomeRejected
	// OutcomeReleased: the attempt failed (ReleaseOn, a panic, or its
	// response could not be stored) and the key was released for a retry.
	OutcomeReleased
	// OutcomeUnkeyed: a request without a key on an Optional route.
	OutcomeUnkeyed
	// OutcomeStoreError: the key could not be looked up (503).
	OutcomeStoreError
)

func (o Outcome) String() string {
	switch o {
	case OutcomeProcessed:
		return "processed"
	case OutcomeReplayed:
		return "replayed"
	case OutcomeConflict:
		return "conflict"
	case OutcomeMismatch:
		return "mismatch"
	case OutcomeRejected:
		return "rejected"
	case OutcomeReleased:
		return "released"
	case OutcomeUnkeyed:
		return "unkeyed"
	case OutcomeStoreError:
		return "store_error"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Event reports one request that the middleware handled (one of
// Config.Methods), after its response was written.
type Event struct {
	Outcome Outcome
	Key     Key // zero if the request had no valid key
	Method  string
	Path    string
	// Status is the status sent (500 for a handler panic, which the
	// middleware lets through).
	Status int
	// BodyOmitted: the response was over MaxResponseBytes and not stored.
	BodyOmitted bool
	// Err is the store's error (OutcomeStoreError, or a response that
	// could not be stored).
	Err      error
	Duration time.Duration
}

// set records an outcome; ev may be nil (no hook configured).
func (ev *Event) set(o Outcome, status int) {
	if ev != nil {
		ev.Outcome, ev.Status = o, status
	}
}
