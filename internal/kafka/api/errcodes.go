package api

// The one map from the broker's Go errors to Kafka error codes.
//
// Packages below api return Go sentinels (internal/group/errors.go,
// internal/txn/errors.go, …); this file is the only place they meet kerr.
// errorCodes holds one row per sentinel with the code Kafka sends for it, and
// the few places where Kafka answers the same condition differently on
// different APIs are columns of that row, chosen by the apiFamily a handler
// passes:
//
//   - Produce: a fenced producer is INVALID_PRODUCER_EPOCH, which KIP-588
//     made abortable there (PRODUCER_FENCED is fatal to the producer); and a
//     transaction coordinator that cannot verify the batch (shut down, log
//     failed, busy) is NOT_ENOUGH_REPLICAS, which every client retries
//     without a metadata refresh (Kafka's ReplicaManager translates the same
//     coordinator errors after its transaction verification, KIP-890).
//   - Coordinator API versions older than KIP-588 (InitProducerId < 4,
//     AddPartitionsToTxn, AddOffsetsToTxn and EndTxn < 2, TxnOffsetCommit <
//     3) know INVALID_PRODUCER_EPOCH but not PRODUCER_FENCED.
//   - A failure of a coordinator's own log (group.ErrStorage, txn.ErrStorage)
//     is answered on the coordinator APIs as Kafka's GroupMetadataManager and
//     TransactionStateManager answer a failed append to __consumer_offsets or
//     __transaction_state: the cause's code KAFKA_STORAGE_ERROR or
//     NOT_LEADER_OR_FOLLOWER becomes NOT_COORDINATOR, any other failure
//     COORDINATOR_NOT_AVAILABLE (both retriable; clients look the
//     coordinator up again). A request that times out or is cancelled under a
//     coordinator is COORDINATOR_NOT_AVAILABLE too, as Kafka's
//     CoordinatorOperationExceptionHelper turns REQUEST_TIMED_OUT into it.
//
// An error with no row becomes UNKNOWN_SERVER_ERROR, which librdkafka treats
// as fatal for the message; errcodes_test.go fails when an internal package
// exports a sentinel that has no row here.

import (
	"context"
	"errors"
	"syscall"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/idem-dev/idem/internal/catalog"
	"github.com/idem-dev/idem/internal/config"
	"github.com/idem-dev/idem/internal/group"
	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/partition"
	"github.com/idem-dev/idem/internal/security"
	"github.com/idem-dev/idem/internal/share"
	"github.com/idem-dev/idem/internal/topics"
	"github.com/idem-dev/idem/internal/txn"
)

// apiFamily is the group of APIs an error is answered on; see the file comment
// for where Kafka's answers differ between them.
type apiFamily uint8

const (
	// dataAPIs: Fetch, ListOffsets, Metadata, the topic admin APIs and
	// anything else that is neither Produce nor a coordinator API.
	dataAPIs apiFamily = iota
	// produceAPI: Produce.
	produceAPI
	// coordinatorAPIs: the group and transaction coordinator APIs at
	// versions that know PRODUCER_FENCED (and every group API).
	coordinatorAPIs
	// coordinatorAPIsBeforeKIP588: transaction coordinator API versions
	// older than PRODUCER_FENCED.
	coordinatorAPIsBeforeKIP588
)

// coordinatorFamily is the family of a coordinator request at version,
// whose API learned PRODUCER_FENCED at version kip588.
func coordinatorFamily(version, kip588 int16) apiFamily {
	if version < kip588 {
		return coordinatorAPIsBeforeKIP588
	}
	return coordinatorAPIs
}

// errorRow is one sentinel and its Kafka codes.
type errorRow struct {
	err error
	// matches, when set, replaces errors.Is(e, err) with a wider test.
	matches func(error) bool
	// code is the answer on every API without an override below.
	code *kerr.Error
	// produce, coordinator and beforeKIP588 override code on Produce, on
	// the coordinator APIs, and on coordinator versions older than
	// KIP-588 (which otherwise get the coordinator column).
	produce, coordinator, beforeKIP588 *kerr.Error
	// coordinatorLog marks the failure of a coordinator's own log: on the
	// coordinator APIs its code comes from the cause it wraps (see
	// coordinatorAppendCode).
	coordinatorLog bool
}

// errorCodes is tried in order and the first matching row wins, so a
// sentinel that wraps others comes before them.
var errorCodes = []errorRow{
	// A coordinator's log failed. They wrap the logstore error, which means
	// something else on a partition, so they come first.
	{err: group.ErrStorage, code: kerr.CoordinatorNotAvailable, coordinatorLog: true},
	{err: txn.ErrStorage, code: kerr.CoordinatorNotAvailable, produce: kerr.NotEnoughReplicas, coordinatorLog: true},
	{err: share.ErrStorage, code: kerr.CoordinatorNotAvailable, coordinatorLog: true},
	{err: share.ErrClosed, code: kerr.CoordinatorNotAvailable},
	// The security store's log failed: the change was not made durable.
	// It wraps the logstore error too, so it comes before those rows.
	{err: security.ErrStorage, code: kerr.KafkaStorageError},
	// Shutting down under an admin request of the "controller": retriable.
	{err: security.ErrClosed, code: kerr.NotController},

	// Shutdown and timeouts.
	{err: group.ErrClosed, code: kerr.CoordinatorNotAvailable},
	{err: txn.ErrClosed, code: kerr.CoordinatorNotAvailable, produce: kerr.NotEnoughReplicas},
	// Closing for shutdown or deletion: retriable, and it makes clients
	// refresh metadata.
	{err: partition.ErrClosed, code: kerr.NotLeaderForPartition},
	{err: logstore.ErrClosed, code: kerr.NotLeaderForPartition},
	{err: topics.ErrManagerClosed, code: kerr.NotLeaderForPartition},
	// context.Canceled: the connection went away or the broker is shutting
	// down under a waiting request (a JoinGroup, an EndTxn).
	{err: context.Canceled, code: kerr.NotLeaderForPartition, coordinator: kerr.CoordinatorNotAvailable},
	{err: context.DeadlineExceeded, code: kerr.RequestTimedOut, coordinator: kerr.CoordinatorNotAvailable},

	// Storage of partitions.
	// A full disk: retriable (Kafka's code for log directory failures;
	// franz-go, librdkafka, kafkajs and the Java client retry it), unlike
	// UNKNOWN_SERVER_ERROR, which librdkafka treats as fatal for the message.
	{err: logstore.ErrNoSpace, matches: logstore.IsNoSpace, code: kerr.KafkaStorageError},
	// The partition's storage failed (corruption, a poisoned log, a file
	// that cannot be opened); the rest of the broker is served. Clients
	// retry; on one node there is nowhere else to go, but the code tells
	// operators where to look.
	{err: topics.ErrOffline, code: kerr.KafkaStorageError},
	{err: logstore.ErrPoisoned, code: kerr.KafkaStorageError},
	{err: logstore.ErrCorrupt, code: kerr.KafkaStorageError},
	// Still opening after a start: retriable, and makes clients refresh
	// metadata and come back.
	{err: topics.ErrLoading, code: kerr.NotLeaderForPartition},
	{err: logstore.ErrOffsetOutOfRange, code: kerr.OffsetOutOfRange},

	// Topics and their configs.
	{err: catalog.ErrTopicExists, code: kerr.TopicAlreadyExists},
	{err: topics.ErrUnknownPartition, code: kerr.UnknownTopicOrPartition},
	{err: catalog.ErrUnknownTopic, code: kerr.UnknownTopicOrPartition},
	{err: txn.ErrUnknownPartition, code: kerr.UnknownTopicOrPartition},
	{err: catalog.ErrInvalidTopic, code: kerr.InvalidTopicException},
	{err: errInternalTopic, code: kerr.InvalidTopicException},
	{err: catalog.ErrInvalidPartitions, code: kerr.InvalidPartitions},
	{err: catalog.ErrInvalidConfig, code: kerr.InvalidConfig},
	{err: config.ErrInvalid, code: kerr.InvalidConfig},
	{err: config.ErrUnknown, code: kerr.InvalidConfig},
	// Kafka: "Cannot update these configs dynamically" (INVALID_REQUEST).
	{err: config.ErrReadOnly, code: kerr.InvalidRequest},

	// Record batches and producers.
	{err: partition.ErrCorruptBatch, code: kerr.CorruptMessage},
	{err: partition.ErrInvalidRecord, code: kerr.InvalidRecord},
	{err: logstore.ErrInvalidBatch, code: kerr.InvalidRecord},
	{err: partition.ErrOutOfOrderSequence, code: kerr.OutOfOrderSequenceNumber},
	{err: partition.ErrInvalidProducerEpoch, code: kerr.InvalidProducerEpoch},
	{err: txn.ErrInvalidProducerEpoch, code: kerr.InvalidProducerEpoch},
	{err: txn.ErrProducerFenced, code: kerr.ProducerFenced, produce: kerr.InvalidProducerEpoch, beforeKIP588: kerr.InvalidProducerEpoch},
	// A marker older than the producer's epoch; only the transaction
	// coordinator sees it (it skips the marker), listed for completeness.
	{err: partition.ErrProducerFenced, code: kerr.ProducerFenced, produce: kerr.InvalidProducerEpoch, beforeKIP588: kerr.InvalidProducerEpoch},
	{err: partition.ErrInvalidTxnState, code: kerr.InvalidTxnState},

	// Transactions.
	{err: txn.ErrInvalidTxnState, code: kerr.InvalidTxnState},
	{err: txn.ErrConcurrentTransactions, code: kerr.ConcurrentTransactions, produce: kerr.NotEnoughReplicas},
	{err: txn.ErrInvalidProducerIDMapping, code: kerr.InvalidProducerIDMapping},
	{err: txn.ErrInvalidTransactionTimeout, code: kerr.InvalidTransactionTimeout},
	{err: txn.ErrTransactionalIDNotFound, code: kerr.TransactionalIDNotFound},
	{err: txn.ErrInvalidRequest, code: kerr.InvalidRequest},
	{err: errReservedTopic, code: kerr.InvalidRequest},

	// Consumer groups.
	{err: group.ErrInvalidGroupID, code: kerr.InvalidGroupID},
	{err: group.ErrInvalidSessionTimeout, code: kerr.InvalidSessionTimeout},
	{err: group.ErrInconsistentProtocol, code: kerr.InconsistentGroupProtocol},
	{err: group.ErrMemberIDRequired, code: kerr.MemberIDRequired},
	{err: group.ErrUnknownMember, code: kerr.UnknownMemberID},
	{err: group.ErrIllegalGeneration, code: kerr.IllegalGeneration},
	{err: group.ErrRebalanceInProgress, code: kerr.RebalanceInProgress},
	{err: group.ErrFencedInstanceID, code: kerr.FencedInstanceID},
	{err: group.ErrGroupNotFound, code: kerr.GroupIDNotFound},
	{err: group.ErrNonEmptyGroup, code: kerr.NonEmptyGroup},
	{err: group.ErrSubscribedToTopic, code: kerr.GroupSubscribedToTopic},
	{err: group.ErrOffsetMetadataTooLarge, code: kerr.OffsetMetadataTooLarge},
	// KIP-848 consumer groups. A stale member epoch is ILLEGAL_GENERATION on
	// TxnOffsetCommit, whose versions predate STALE_MEMBER_EPOCH
	// (28_txn_offset_commit.go).
	{err: group.ErrFencedMemberEpoch, code: kerr.FencedMemberEpoch},
	{err: group.ErrStaleMemberEpoch, code: kerr.StaleMemberEpoch},
	{err: group.ErrUnreleasedInstanceID, code: kerr.UnreleasedInstanceID},
	{err: group.ErrUnsupportedAssignor, code: kerr.UnsupportedAssignor},
	{err: group.ErrInvalidRegularExpression, code: kerr.InvalidRegularExpression},
	{err: group.ErrGroupMaxSize, code: kerr.GroupMaxSizeReached},
	{err: group.ErrInvalidRequest, code: kerr.InvalidRequest},
	{err: group.ErrUnsupportedVersion, code: kerr.UnsupportedVersion},

	// Share groups (KIP-932).
	{err: share.ErrInvalidRequest, code: kerr.InvalidRequest},
	{err: share.ErrInvalidGroupID, code: kerr.InvalidGroupID},
	{err: share.ErrGroupNotFound, code: kerr.GroupIDNotFound},
	{err: share.ErrNonEmptyGroup, code: kerr.NonEmptyGroup},
	{err: share.ErrGroupMaxSize, code: kerr.GroupMaxSizeReached},
	{err: share.ErrUnknownMember, code: kerr.UnknownMemberID},
	{err: share.ErrFencedMemberEpoch, code: kerr.FencedMemberEpoch},
	{err: share.ErrSessionNotFound, code: kerr.ShareSessionNotFound},
	{err: share.ErrInvalidSessionEpoch, code: kerr.InvalidShareSessionEpoch},
	{err: share.ErrSessionLimit, code: kerr.ShareSessionLimitReached},
	{err: share.ErrInvalidRecordState, code: kerr.InvalidRecordState},
	{err: share.ErrUnknownTopic, code: kerr.UnknownTopicID},
	{err: share.ErrInvalidConfig, code: kerr.InvalidConfig},
	{err: share.ErrInvalidOffset, code: kerr.InvalidRequest},

	// Users, SASL, ACLs and quotas.
	{err: security.ErrNotFound, code: kerr.ResourceNotFound},
	{err: security.ErrDuplicate, code: kerr.DuplicateResource},
	{err: security.ErrUnacceptableCredential, code: kerr.UnacceptableCredential},
	{err: security.ErrUnsupportedMechanism, code: kerr.UnsupportedSaslMechanism},
	{err: security.ErrBadSASL, code: kerr.SaslAuthenticationFailed},
	{err: security.ErrAuthentication, code: kerr.SaslAuthenticationFailed},
	{err: security.ErrInvalidACL, code: kerr.InvalidRequest},
	{err: security.ErrInvalidQuota, code: kerr.InvalidRequest},

	// Last: an operating-system error from the disk that no sentinel above
	// names (a failed write(2) is taken back and the log stays healthy).
	// Kafka wraps every I/O failure of a log in KAFKA_STORAGE_ERROR, which
	// clients retry.
	{err: syscall.Errno(0), matches: isErrno, code: kerr.KafkaStorageError},
}

// isErrno reports whether err carries an operating-system error number.
func isErrno(err error) bool {
	var errno syscall.Errno
	return errors.As(err, &errno)
}

// errorCode is the Kafka code for err when answered on an API of family fam.
func errorCode(err error, fam apiFamily) int16 {
	if err == nil {
		return 0
	}
	row, ok := findErrorRow(err, false)
	if !ok {
		return kerr.UnknownServerError.Code
	}
	coordinator := fam == coordinatorAPIs || fam == coordinatorAPIsBeforeKIP588
	switch {
	case row.coordinatorLog && coordinator:
		return coordinatorAppendCode(err)
	case fam == produceAPI && row.produce != nil:
		return row.produce.Code
	case fam == coordinatorAPIsBeforeKIP588 && row.beforeKIP588 != nil:
		return row.beforeKIP588.Code
	case coordinator && row.coordinator != nil:
		return row.coordinator.Code
	}
	return row.code.Code
}

// findErrorRow returns the first row matching err; skipCoordinatorLog looks
// past the coordinator-log rows to the cause they wrap.
func findErrorRow(err error, skipCoordinatorLog bool) (errorRow, bool) {
	for _, row := range errorCodes {
		if skipCoordinatorLog && row.coordinatorLog {
			continue
		}
		if row.matches != nil && row.matches(err) || row.matches == nil && errors.Is(err, row.err) {
			return row, true
		}
	}
	return errorRow{}, false
}

// coordinatorAppendCode answers a failure of a coordinator's own log as
// Kafka answers a failed append to its coordinator topics
// (GroupMetadataManager.storeOffsets and storeGroup,
// TransactionStateManager.appendTransactionToLog,
// CoordinatorOperationExceptionHelper): a storage error or a lost leadership
// of the log becomes NOT_COORDINATOR, anything else COORDINATOR_NOT_AVAILABLE.
func coordinatorAppendCode(err error) int16 {
	if cause, ok := findErrorRow(err, true); ok {
		switch cause.code {
		case kerr.KafkaStorageError, kerr.NotLeaderForPartition:
			return kerr.NotCoordinator.Code
		}
	}
	return kerr.CoordinatorNotAvailable.Code
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
