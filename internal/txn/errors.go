package txn

import "errors"

// Sentinel errors. internal/kafka/api maps each to the Kafka code named in its
// comment; callers match them with errors.Is.
var (
	// ErrConcurrentTransactions: another state change of this transactional
	// id is in flight, or the previous transaction is still being completed
	// (CONCURRENT_TRANSACTIONS; clients retry).
	ErrConcurrentTransactions = errors.New("txn: concurrent transactions")
	// ErrProducerFenced: the request's epoch is not the current one; a newer
	// producer instance (or a timeout abort) bumped it (PRODUCER_FENCED, or
	// INVALID_PRODUCER_EPOCH for request versions that predate KIP-588). A
	// MarkerWriter wraps it when the partition has seen a newer epoch.
	ErrProducerFenced = errors.New("txn: producer fenced by a newer epoch")
	// ErrInvalidProducerEpoch: kept for the Produce path's mapping
	// (INVALID_PRODUCER_EPOCH).
	ErrInvalidProducerEpoch = errors.New("txn: invalid producer epoch")
	// ErrInvalidTxnState: the request does not fit the transaction's state,
	// e.g. EndTxn(commit) after an abort, or a transactional write to a
	// partition never added (INVALID_TXN_STATE).
	ErrInvalidTxnState = errors.New("txn: invalid transaction state")
	// ErrInvalidProducerIDMapping: the transactional id is unknown or owned by
	// another producer id (INVALID_PRODUCER_ID_MAPPING).
	ErrInvalidProducerIDMapping = errors.New("txn: producer id does not match the transactional id")
	// ErrInvalidTransactionTimeout: the timeout is not in (0, MaxTimeout]
	// (INVALID_TRANSACTION_TIMEOUT).
	ErrInvalidTransactionTimeout = errors.New("txn: invalid transaction timeout")
	// ErrTransactionalIDNotFound: DescribeTransactions of an unknown id
	// (TRANSACTIONAL_ID_NOT_FOUND).
	ErrTransactionalIDNotFound = errors.New("txn: transactional id not found")
	// ErrInvalidRequest: an empty transactional id (INVALID_REQUEST).
	ErrInvalidRequest = errors.New("txn: invalid request")
	// ErrClosed: the coordinator is shutting down (COORDINATOR_NOT_AVAILABLE).
	ErrClosed = errors.New("txn: coordinator closed")
	// ErrStorage: the transaction log failed; nothing more can be made
	// durable. It wraps the logstore error; the API layer answers
	// NOT_COORDINATOR for a storage cause, COORDINATOR_NOT_AVAILABLE
	// otherwise.
	ErrStorage = errors.New("txn: transaction log failed")
	// ErrUnknownPartition is what a MarkerWriter wraps when the partition no
	// longer exists (its topic was deleted): the coordinator then skips that
	// marker, as Kafka does, instead of retrying it forever.
	ErrUnknownPartition = errors.New("txn: partition does not exist")
)
