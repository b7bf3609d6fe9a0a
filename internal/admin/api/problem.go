package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Problem is an RFC 9457 problem detail: the body of every error answer,
// served as application/problem+json. It is also the error the Service's
// methods return, so that the console shows the same status and words.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// KafkaError is the Kafka error code's name when the broker refused.
	KafkaError string `json:"kafka_error,omitempty"`
}

func (p *Problem) Error() string {
	if p.Detail == "" {
		return p.Title
	}
	return p.Title + ": " + p.Detail
}

// problemType is the base of the problem types' URIs; they name a section
// of docs/console.md.
const problemType = "https://github.com/idem-dev/idem/blob/main/docs/console.md#"

func problem(status int, detail string) *Problem {
	title := http.StatusText(status)
	return &Problem{
		Type:   problemType + strings.ToLower(strings.ReplaceAll(title, " ", "-")),
		Title:  title,
		Status: status,
		Detail: detail,
	}
}

// badRequest is a 400 for malformed input.
func badRequest(format string, args ...any) *Problem {
	return problem(http.StatusBadRequest, fmt.Sprintf(format, args...))
}

func notFound(format string, args ...any) *Problem {
	return problem(http.StatusNotFound, fmt.Sprintf(format, args...))
}

func conflict(format string, args ...any) *Problem {
	return problem(http.StatusConflict, fmt.Sprintf(format, args...))
}

// AsProblem turns any error of the Service into a Problem: Kafka error codes
// by their meaning (unknown → 404, not authorized → 403, already exists or
// wrong state → 409, invalid → 400), anything else 502 (the broker could
// not be reached or answered oddly) or 500.
func AsProblem(err error) *Problem {
	if p, ok := errors.AsType[*Problem](err); ok {
		return p
	}
	if ke, ok := errors.AsType[*kerr.Error](err); ok {
		p := problem(kafkaStatus(ke), err.Error())
		p.KafkaError = ke.Message
		return p
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return problem(http.StatusGatewayTimeout, err.Error())
	}
	if errors.Is(err, ErrClosed) {
		return problem(http.StatusServiceUnavailable, err.Error())
	}
	return problem(http.StatusBadGateway, err.Error())
}

func kafkaStatus(e *kerr.Error) int {
	switch e {
	case kerr.UnknownTopicOrPartition, kerr.UnknownTopicID, kerr.GroupIDNotFound, kerr.TransactionalIDNotFound:
		return http.StatusNotFound
	case kerr.TopicAuthorizationFailed, kerr.GroupAuthorizationFailed, kerr.ClusterAuthorizationFailed,
		kerr.TransactionalIDAuthorizationFailed, kerr.DelegationTokenAuthorizationFailed:
		return http.StatusForbidden
	case kerr.TopicAlreadyExists, kerr.NonEmptyGroup, kerr.ConcurrentTransactions, kerr.InvalidTxnState,
		kerr.RebalanceInProgress, kerr.UnknownMemberID, kerr.IllegalGeneration, kerr.ProducerFenced:
		return http.StatusConflict
	case kerr.InvalidTopicException, kerr.InvalidPartitions, kerr.InvalidReplicationFactor, kerr.InvalidConfig,
		kerr.InvalidRequest, kerr.PolicyViolation, kerr.InvalidTransactionTimeout, kerr.MessageTooLarge,
		kerr.RecordListTooLarge, kerr.InvalidRecord, kerr.InvalidTimestamp, kerr.InvalidGroupID, kerr.CorruptMessage,
		kerr.InvalidReplicaAssignment, kerr.UnsupportedCompressionType:
		return http.StatusBadRequest
	case kerr.SaslAuthenticationFailed, kerr.IllegalSaslState, kerr.UnsupportedSaslMechanism:
		return http.StatusUnauthorized
	case kerr.KafkaStorageError, kerr.NotEnoughReplicas, kerr.CoordinatorLoadInProgress, kerr.CoordinatorNotAvailable,
		kerr.NotCoordinator, kerr.LeaderNotAvailable, kerr.NotLeaderForPartition, kerr.RequestTimedOut:
		return http.StatusServiceUnavailable
	}
	return http.StatusBadGateway
}

// writeProblem answers with p as application/problem+json.
func writeProblem(w http.ResponseWriter, err error) {
	p := AsProblem(err)
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(p)
}
