// Package statelog is the durable state log of idem's coordinators: a
// logstore.Log of key/value records that, replayed in order from its start,
// rebuilds its owner's state, and that is compacted by writing that state
// as a snapshot and deleting the log below it. The group coordinator keeps
// committed offsets and group metadata in one (__consumer_offsets), the
// transaction coordinator transaction state (__transaction_state); each
// keeps only its record codec and its state machine. A share-group
// coordinator's acknowledgement state fits the same mould.
//
// # Contract
//
// The owner keeps one invariant: its memory equals an in-order replay of the
// whole log, the tail that is not yet durable included. It gets there by
// replaying the log once after Open (Replay; records it does not know are
// skipped with a warning, so a newer idem's records do not stop an older one
// from starting) and then by calling Append in the same critical section
// that changes memory, so that log order is memory order. Append returns
// after write(2); the owner acknowledges a change only after WaitDurable
// covers it, called outside its lock so that concurrent changes share one
// fsync (group commit). A failed fsync poisons the log (Err): nothing more
// becomes durable, and an owner whose memory is then ahead of the disk must
// refuse work rather than acknowledge it.
//
// Because memory equals the replay, memory is a valid snapshot at any log
// position its lock excludes appends from. Compact, called from the owner's
// timer, writes one at the log end once the log holds more than
// max(2 × live records, CompactRecords) records since the last one, waits
// until it is durable and only then deletes the log below it, a segment at a
// time so that a power loss cannot keep an older segment and lose a newer
// one (logstore.Open would refuse the gap). A crash at any point leaves a
// log whose replay gives the same state: before the snapshot is durable the
// old records are all there, and a partial snapshot only repeats what they
// say. crash_test.go checks this at every sync point.
//
// Loop is the owner's timer goroutine: it calls the owner's tick at the
// earliest deadline the owner reports, when kicked, and at least every
// second, so that a jumping or fake clock is noticed.
//
// # A third owner
//
// The API is shaped for a share-group coordinator too: durable per-record
// acknowledgement state, many small records, a high write rate. Append is
// safe from many goroutines at once and their WaitDurable calls share
// fsyncs; the owner may order its appends with per-key locks instead of one
// mutex, as long as each key's append and memory change happen under that
// key's lock and a new key is visible to write before its first record is
// appended (Compact's owner lock then only serialises compactions, and
// write takes each key's lock while it adds that key; a key write missed
// would lose its records below the snapshot). Live should then be
// a counter the owner keeps, not a walk; Append consults it only every
// CompactRecords/8 records anyway. Record types are the owner's business:
// Replay hands every record to one callback, which tells them apart by key
// (Kafka's key version) and answers ErrUnknownRecord for those it does not
// know.
//
// # What was unified
//
// group and txn had grown this skeleton separately and it had drifted:
//
//   - Log access: group went through a private interface (for a fake log
//     no test used), txn used *logstore.Log. Log wraps *logstore.Log; the
//     crash tests need no fake, they run on logstore.MemFS.
//   - Compaction check: group asked how much state is live only every
//     CompactRecords/8 appends, because counting walks every group; txn on
//     every append, because its count is a map length. Append now asks every
//     CompactRecords/8 records for every owner: counting may cost a walk, a
//     high write rate (share groups) must not pay it per record, and
//     compacting a few hundred records late costs nothing. Compact checks
//     exactly.
//   - Snapshot batch size: 1000 records in group, 500 in txn. Now at most
//     1000 records and at most 1 MiB, since a transaction record grows with
//     its partitions and a count alone does not bound a batch.
//   - Shutdown: a closed channel in group, a cancelled context in txn. Loop
//     stops on a channel closed by Close, which joins it; txn keeps its
//     context only for what it passes down (markers in flight).
//   - Defaults: "0 means default" (== 0 in group, <= 0 in txn). Config here
//     has no defaults at all; Open refuses a zero knob. DefaultSegmentBytes
//     and DefaultCompactRecords are the values the coordinators' own
//     DefaultConfig and the broker use.
//
// # Concurrency and lock order
//
// Log.compactMu (compactions take turns) → the owner's lock → Log.mu
// (counters only; a leaf, no callback runs under it) → the logstore.Log's
// locks. Append is called with the owner's lock
// held; Config.Live and Config.Kick are then called with it held too, so
// Live must not take it and Kick must not block. Compact takes the owner's
// lock itself (the caller must not hold it) and calls write and Live under
// it; it waits for the fsync and deletes after releasing it. WaitDurable is
// never called under the owner's lock.
//
// # Goroutines
//
// The logstore.Log's syncer (joined by Close) and, if the owner starts one,
// the Loop goroutine, joined by Loop.Close. An owner closes its Loop (and
// any goroutines of its own) before the Log, so that no tick or compaction
// runs on a closed log.
package statelog
