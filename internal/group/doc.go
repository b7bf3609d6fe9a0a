// Package group is idem's consumer-group coordinator, for one node: classic
// groups (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), KIP-848 consumer
// groups (ConsumerGroupHeartbeat, server-side assignors; consumer.go) and
// the store of committed offsets (OffsetCommit, OffsetFetch, OffsetDelete,
// DeleteGroups) of both.
//
// It speaks Go, not Kafka: requests and results are plain structs and errors
// are the sentinels in errors.go; internal/kafka/api translates both ways.
//
// # States
//
// A group is Empty, PreparingRebalance, CompletingRebalance or Stable (Dead
// only as it is deleted). A join moves it to PreparingRebalance; the join
// phase completes when every member has rejoined (and no KIP-394 member id
// handed out is still outstanding), or at the rebalance timeout, after which
// it waits in CompletingRebalance for the leader's SyncGroup and becomes
// Stable. A new group first waits Config.InitialRebalanceDelay. Sessions
// expire members that stop heartbeating; members that never SyncGroup are
// removed at the sync deadline (the rebalance timeout).
//
// # Durability
//
// Committed offsets and a little group metadata (generation, protocol type,
// when the group became Empty) are records in a statelog.Log under
// Config.Dir, in Kafka's own __consumer_offsets record format. CommitOffsets
// returns only after the fsync that covers its records; FetchOffsets waits
// until everything it returns is fsynced, so no consumer starts from an
// offset a power loss could take back. NewCoordinator replays the log. When
// the log holds many more records than live state it is rewritten as a
// snapshot and the log below the snapshot is deleted. When a group becomes
// Stable its members (ids, instance ids, subscriptions, assignments) are
// written too, so after a restart they keep heartbeating and committing in
// the same generation without a rebalance; a group caught mid-rebalance comes
// back as its last Stable generation (or Empty) and its members rejoin.
//
// Transactional offset commits (txn.go) are pending until the transaction
// coordinator's CompleteTxnOffsets writes a COMMIT or ABORT marker; both are
// records in the same log, in Kafka's transactional batch format.
//
// # Consumer groups (KIP-848)
//
// A group whose first member came with ConsumerGroupHeartbeat is a consumer
// group (group.consumer): the coordinator owns the assignment. See
// consumer.go for the epochs and the reconciliation, assignor.go,
// assign_uniform.go and assign_range.go for the sticky assignors, and
// consumer_records.go for the records; the timer loop expires sessions and
// rebalance timeouts. Offsets, transactional offsets and retention are
// shared with classic groups.
//
// # Concurrency
//
// One mutex, Coordinator.mu, guards all group state; functions ending in
// Locked need it held. Lock order: Coordinator.mu → the offsets log's locks.
// JoinGroup and SyncGroup block on per-member buffered channels outside the
// lock; WaitDurable is always called outside it. The only goroutine is the
// timer loop (a statelog.Loop: sessions, rebalance deadlines, offset expiry,
// compaction) started by NewCoordinator and joined by Close.
//
// # Deliberately not implemented (yet)
//
//   - group.max.size for classic groups (GROUP_MAX_SIZE_REACHED);
//     group.consumer.max.size is applied to consumer groups.
//   - Share groups; the online migration of a classic group that has
//     members to the consumer protocol (and back): only empty groups are
//     converted.
//   - Rack-aware assignment and client-side assignors for consumer groups.
//
// Callers must: check that committed partitions exist (the coordinator does
// not know topics), pass the request's client id and host, and pass
// RebalanceTimeout = SessionTimeout for JoinGroup v0.
package group
