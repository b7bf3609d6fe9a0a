// Package txn is idem's transaction coordinator (KIP-98, and transaction
// version 2 of KIP-890 part 2): it owns every transactional id's producer id,
// epoch and transaction state, decides commit or abort durably, and drives
// the markers that make the decision visible in partitions (MarkerWriter)
// and in consumer-group offsets (OffsetCommitter).
//
// It speaks Go, not Kafka: the sentinels in errors.go are mapped to Kafka
// codes in internal/kafka/api.
//
// # States
//
// Per transactional id, as in Kafka's TransactionMetadata:
//
//	Empty ──Add*──▶ Ongoing ──EndTxn──▶ PrepareCommit ──markers──▶ CompleteCommit
//	  ▲               │   └──EndTxn────▶ PrepareAbort ───markers──▶ CompleteAbort
//	  │               └─InitProducerId / timeout─▶ PrepareEpochFence ─▶ PrepareAbort
//	  └──InitProducerId (epoch bump) from Empty, CompleteCommit, CompleteAbort
//	Empty/Complete* ──transactional.id.expiration──▶ Dead (removed)
//
// PrepareEpochFence is never written to the log: the fence is persisted as
// the PrepareAbort record that carries the bumped epoch, which is what makes
// the fence and the abort decision durable together (Kafka does the same).
//
// # Durability
//
// Every state change is a record in a logstore.Log under Config.Dir: Kafka's
// own __transaction_state key (TxnMetadataKey) and value (TxnMetadataValue
// v1, with two idem tags for the consumer groups of the transaction and the
// previous epoch) in v2 record batches. A request is answered only after the
// record it caused is fsynced. The commit or abort decision (PrepareCommit,
// PrepareAbort) is fsynced before the first marker is written; markers and
// offset completions are then written (each durable before it returns), and
// only then is CompleteCommit/CompleteAbort appended. The Complete record is
// not waited for: if it is lost in a crash, New finds the transaction
// prepared and writes its markers again, which partitions and the group
// coordinator accept idempotently; and anything the client does next (the
// next AddPartitions) is a later record whose fsync covers it.
//
// The log is an internal/statelog.Log. Memory always equals an in-order
// replay of the whole log, non-durable tail included: records are appended
// under Coordinator.mu in the same critical section that changes memory.
// That is what lets compaction write memory as a snapshot at the log end and
// delete the log below it. While a record is not yet durable its transaction
// is marked busy: every other state change of that id is answered
// ErrConcurrentTransactions (Kafka's pending state), and Describe and List
// show the state before it, so nothing a power loss could take back is ever
// shown. Once Describe shows PrepareCommit the decision is durable, and an
// EndTxn(abort) is ErrInvalidTxnState.
//
// # Concurrency and lock order
//
// Coordinator.mu (an RWMutex) guards every transaction; functions ending in
// Locked need it held (write lock unless they say otherwise). Lock order:
// Coordinator.mu → the log's internal locks (Append is called under mu).
// WaitDurable, MarkerWriter, OffsetCommitter and ProducerIDs.Next are never
// called with mu held. Goroutines: the timer loop (a statelog.Loop:
// timeouts, id expiry, compaction) and one completion goroutine per prepared
// transaction; Close stops and joins all of them. A completion interrupted
// by Close resumes when the coordinator is next opened on the same log.
//
// # Transaction versions
//
// Version 1 (KIP-98) is what every client speaks: AddPartitionsToTxn,
// AddOffsetsToTxn, and an EndTxn that keeps the epoch. Version 2 (KIP-890
// part 2, transaction.version=2, used by clients that see the feature in
// ApiVersions) is chosen per request: Produce v12 and TxnOffsetCommit v5 add
// their partition or group themselves (AddPartitionsImplicit,
// AddOffsetsImplicit), and EndTxn v5 (EndTxnV2) bumps the epoch at the end of
// every transaction, writes the markers at the bumped epoch and hands the
// client the new epoch (or a new producer id when the epoch is exhausted).
//
// Under version 1 the protocol has no transaction number: a request of one
// transaction that a network delays past the client's timeout can act on the
// next transaction of the same epoch; a late EndTxn ends whatever transaction
// is open when it arrives (KAFKA-17754). Late Produce batches are refused
// (Verify: not Ongoing, partition not added, or a stale epoch) or
// deduplicated by sequence, and clients that re-initialise the producer
// after an unconfirmed EndTxn (franz-go does) get a new epoch that fences
// the late request; but a version 1 client that does not cannot be
// protected. Under version 2 every transaction has its own epoch: a late
// EndTxn, Produce or TxnOffsetCommit carries an epoch below the current one
// and is fenced (or, for the EndTxn that ended the previous transaction, is
// recognised as its retry and changes nothing), so it can never end or join
// the next transaction; the partitions, having seen the marker at the bumped
// epoch, refuse such a batch too.
//
// # Deliberately not implemented (yet)
//
//   - Several coordinator epochs: one node is always the coordinator, so
//     markers carry coordinator epoch 0.
package txn
