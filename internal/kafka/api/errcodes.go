package api

import (
	"context"
	"errors"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/idem-dev/idem/internal/catalog"
	"github.com/idem-dev/idem/internal/config"
	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/partition"
	"github.com/idem-dev/idem/internal/topics"
	"github.com/idem-dev/idem/internal/txn"
)

// code maps the broker's Go errors to Kafka error codes. This is the only
// place the storage and catalog errors meet kerr; unknown errors become
// UNKNOWN_SERVER_ERROR, which clients treat as fatal for the request, so every
// expected error should be listed here.
func code(err error) int16 {
	switch {
	case err == nil:
		return 0
	case logstore.IsNoSpace(err):
		// A full disk: retriable (Kafka's code for log directory
		// failures; franz-go, librdkafka, kafkajs and the Java client
		// retry it), unlike UNKNOWN_SERVER_ERROR, which librdkafka treats
		// as fatal for the message.
		return kerr.KafkaStorageError.Code
	case errors.Is(err, topics.ErrOffline):
		// The partition's storage failed (corruption, a poisoned log, a
		// file that cannot be opened); the rest of the broker is served.
		return kerr.KafkaStorageError.Code
	case errors.Is(err, topics.ErrLoading):
		// Still opening after a start: retriable, and makes clients
		// refresh metadata and come back.
		return kerr.NotLeaderForPartition.Code
	case errors.Is(err, catalog.ErrTopicExists):
		return kerr.TopicAlreadyExists.Code
	case errors.Is(err, catalog.ErrUnknownTopic):
		return kerr.UnknownTopicOrPartition.Code
	case errors.Is(err, catalog.ErrInvalidTopic):
		return kerr.InvalidTopicException.Code
	case errors.Is(err, catalog.ErrInvalidPartitions):
		return kerr.InvalidPartitions.Code
	case errors.Is(err, catalog.ErrInvalidConfig), errors.Is(err, config.ErrInvalid), errors.Is(err, config.ErrUnknown):
		return kerr.InvalidConfig.Code
	case errors.Is(err, partition.ErrCorruptBatch):
		return kerr.CorruptMessage.Code
	case errors.Is(err, partition.ErrInvalidRecord), errors.Is(err, logstore.ErrInvalidBatch):
		return kerr.InvalidRecord.Code
	case errors.Is(err, partition.ErrOutOfOrderSequence):
		return kerr.OutOfOrderSequenceNumber.Code
	case errors.Is(err, partition.ErrInvalidProducerEpoch):
		return kerr.InvalidProducerEpoch.Code
	case errors.Is(err, partition.ErrInvalidTxnState), errors.Is(err, txn.ErrInvalidTxnState):
		return kerr.InvalidTxnState.Code
	case errors.Is(err, partition.ErrProducerFenced), errors.Is(err, txn.ErrProducerFenced), errors.Is(err, txn.ErrInvalidProducerEpoch):
		// On Produce a fenced producer gets INVALID_PRODUCER_EPOCH (KIP-588:
		// abortable there); PRODUCER_FENCED is for the coordinator APIs.
		return kerr.InvalidProducerEpoch.Code
	case errors.Is(err, txn.ErrInvalidProducerIDMapping):
		return kerr.InvalidProducerIDMapping.Code
	case errors.Is(err, txn.ErrClosed), errors.Is(err, txn.ErrStorage), errors.Is(err, txn.ErrConcurrentTransactions):
		return kerr.CoordinatorNotAvailable.Code
	case errors.Is(err, logstore.ErrOffsetOutOfRange):
		return kerr.OffsetOutOfRange.Code
	case errors.Is(err, logstore.ErrPoisoned), errors.Is(err, logstore.ErrCorrupt):
		// The partition's storage failed; clients retry elsewhere (there is no
		// elsewhere on one node, but the code tells operators where to look).
		return kerr.KafkaStorageError.Code
	case errors.Is(err, partition.ErrClosed), errors.Is(err, logstore.ErrClosed), errors.Is(err, topics.ErrManagerClosed):
		// Closing for shutdown or deletion: retriable, makes clients refresh metadata.
		return kerr.NotLeaderForPartition.Code
	case errors.Is(err, context.DeadlineExceeded):
		return kerr.RequestTimedOut.Code
	}
	return kerr.UnknownServerError.Code
}

// errMessage returns a pointer to err's text for the ErrorMessage fields of
// admin responses (nil when there is no error).
func errMessage(err error) *string {
	if err == nil {
		return nil
	}
	s := err.Error()
	return &s
}

// leaderEpochCode checks a request's CurrentLeaderEpoch (-1 skips the check).
// Our epoch is always 0, so a higher one is from the future (the client saw a
// newer leader: UNKNOWN_LEADER_EPOCH) and no lower one other than -1 exists.
func leaderEpochCode(current int32) int16 {
	switch {
	case current < 0, current == 0:
		return 0
	default:
		return kerr.UnknownLeaderEpoch.Code
	}
}

// parseInt parses a validated numeric config value, falling back to def.
func parseInt(s string, def int64) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return def
	}
	return n
}
