// Package share is idem's share-group coordinator (KIP-932, "queues for
// Kafka"): membership and assignment (ShareGroupHeartbeat), share sessions,
// per-record acquisition and acknowledgement (ShareFetch,
// ShareAcknowledge), delivery counts and their limit, the dead-letter
// topic (KIP-1191), idem's delayed retry, the offsets admin APIs, and the
// dynamic configs of groups and of the broker.
//
// It speaks Go, not Kafka: requests and results are plain structs and errors
// are the sentinels in errors.go; internal/kafka/api translates both ways.
//
// # States
//
// Per group and topic partition (a share partition) the coordinator keeps
// the share-partition start offset (SPSO) and the in-flight window
// [SPSO, end): every offset below SPSO is done, every offset at or past
// end is Available and was never delivered. A record in the window is
//
//	Available ──acquired by a fetch (delivery count + 1)──▶ Acquired
//	Acquired ──ACCEPT──▶ Acknowledged
//	Acquired ──REJECT, or at the delivery limit──▶ Archived (Archiving until
//	           its dead-letter copy is durable, if the group has a dead-letter topic)
//	Acquired ──GAP──▶ Archived
//	Acquired ──RELEASE, lock expiry, session or member end──▶ Available
//	           (after idem.share.release.backoff if set; Archived at the limit)
//	Acquired ──RENEW──▶ Acquired (a new lock deadline)
//
// Acknowledged and Archived are terminal; SPSO moves past terminal records
// (and Archiving ones: the dead-letter copy is tracked apart, so a broken
// dead-letter topic never stalls the queue). The window grows to at most
// share.partition.max.record.locks, except that batch-optimized fetches
// (KIP-1206 mode 0) take a batch begun below the limit whole, as Kafka
// checks the limit per batch. Markers and aborted transactional
// records (share.isolation.level=read_committed) are archived when a fetch
// comes to them, never delivered. A session or member that ends gracefully
// (epoch -1, leave) takes back the delivery of what it still held, as
// Kafka does; a connection that drops, a session timeout or a lock expiry
// keeps it counted, so a record that kills its consumers still reaches the
// delivery limit (Kafka decrements there too; idem deliberately does not).
//
// Locks are per acquisition: each fetch's records share one deadline,
// a timer in one heap for the whole coordinator, fired by the statelog.Loop
// at that deadline (not a periodic sweep). Renewing or releasing records
// only changes the records' acquisition id; a stale timer finds no record
// with its id and does nothing.
//
// # Durability
//
// The share log is a statelog.Log under Config.Dir (records.go): configs,
// groups and their members, share-partition state (a full record when a share partition
// starts and in snapshots, a delta of the changed offsets otherwise),
// dead-letter entries and the dead-letter producer and sequences. Memory
// always equals an in-order replay of the whole log: every change is
// appended under Coordinator.mu in the critical section that makes it.
//
// ACCEPT, RELEASE, REJECT and GAP are answered only after the fsync that
// covers them (WaitDurable outside mu; concurrent acks share fsyncs).
// Expiries and other releases are fsynced by the timer goroutine before it
// goes on, and a record made Available again is handed out only once the
// record that made it so is durable (inflight.pos), so a crash never goes
// back on a delivery count a consumer saw. The first start offset of a
// share partition (from share.auto.offset.reset) is durable before its first
// record is handed out. Acquisitions are volatile, as in Kafka: after a
// crash an acquired record is Available again with the delivery count the
// log knows (snapshots count acquired records as delivered). Members and
// group epochs are written best effort (not waited for) when they change,
// so that after a restart members keep heartbeating at their epoch and
// their next ShareFetch opens a session at once; a member whose record was
// lost gets UNKNOWN_MEMBER_ID and rejoins.
//
// Dead letters are written exactly once, by the argument in dlq.go: an
// intent in the same batch as the archiving acknowledgement, a durable
// assignment of the target partition and of a sequence number of a
// broker-owned producer id, the append, and after a restart a scan of the
// target partition for that producer id and sequence before appending
// again. crash_test.go checks this, and that accepted records are never
// redelivered and no record is lost, at every sync point.
//
// Dynamic configs (group configs, and the broker's dynamic values) are
// records of the share log too, written before the change is answered and
// applied at once; the broker's are put back into its config.Config when
// the coordinator opens.
//
// # Concurrency and lock order
//
// One mutex, Coordinator.mu, guards all groups, members, sessions, share
// partitions, timers, configs and dead-letter state; functions ending in
// Locked need it held. Lock order: Coordinator.mu → the share log's locks →
// the topic manager's and partitions' locks (partition offsets are read
// under mu). Partition reads and appends, topic creation, producer-id
// allocation and WaitDurable happen outside mu. statelog.Log.Compact takes
// mu itself (it is the owner lock).
//
// # Goroutines
//
// The statelog.Loop timer goroutine (lock expiries, delayed retries,
// member session timeouts, compaction) and the dead-letter writer (dlqLoop),
// both started by New and joined by Close before the log closes; the share
// log's syncer, joined by its Close; and, per connection with a share
// session, a context.AfterFunc that closes its sessions when the
// connection ends (it does nothing once the coordinator is closed).
//
// # Deliberately not implemented (yet)
//
//   - Topic-config alteration (errors.deadletterqueue.group.enable on an
//     existing topic): set it when creating the topic; altering topic
//     configs needs the topic manager to update its cached topics.
//   - ACLs (idem has none), rack-aware assignment (RackID is kept and shown).
//   - The KIP-1206 BatchSize split of acquired ranges (ranges are merged by
//     delivery count instead; clients handle either).
package share
