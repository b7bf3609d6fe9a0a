// Package logstore is idem's partition log: Kafka v2 record batches kept
// byte-for-byte as received, in segment files with sparse offset and time
// indexes, made durable by a group-commit fsync and recovered on open.
//
// # Durability contract
//
// Append returns after write(2): the batch survives a process crash (kill -9)
// but not a power loss. WaitDurable (or AppendDurable) returns only once an
// fsync covers the batch; concurrent callers share one fsync. A background
// syncer fsyncs every appended byte shortly after it is written, so
// DurableOffset — the broker's high watermark — always advances. A failed
// fsync poisons the log: Linux may drop the dirty pages and report the error
// once (PostgreSQL's "fsyncgate"), so a retried fsync could falsely succeed.
// Every later Append and WaitDurable fails with ErrPoisoned.
//
// # Recovery
//
// Open validates batches (length, magic, CRC-32C, offset continuity: a
// batch starts where the one before ended, or carries the gap mark of a
// batch the cleaner left after a gap, compact_offsets.go). Every
// segment but the last was fsynced when it was rolled and is below the durable
// point; the last segment is scanned completely. Damage at or above the
// recovery point recorded in the checkpoint file is a torn tail: it is
// truncated, and the truncation is logged. Damage below the recovery point is
// acknowledged data gone bad: Open fails with ErrCorrupt and the partition
// refuses to serve rather than silently dropping it. Index files are trusted
// only when their checksum and recorded segment size match; otherwise they are
// rebuilt from the segment.
//
// The recovery point advances every CheckpointInterval while a log is
// written. Logs of a data directory (a Disk) record those advances in one
// shared file that a single write per interval covers, instead of each log
// rewriting its own checkpoint (two fsyncs and a rename per log per
// interval, a fifth of the broker's CPU at a thousand busy partitions).
// Changes that must be durable at once (log start, truncation, clean close,
// repair) still go to the log's own checkpoint, each with a new generation;
// a shared entry applies only to the generation it names
// (recoverypoints.go).
//
// # Compaction
//
// Cleaner rewrites the sealed segments of a compacted topic's log, keeping
// the latest record per key with Kafka's semantics (docs/compaction.md):
// offsets, batch bounds, producer fields and codecs survive; gaps between
// batches are covered by gap marks; a group of segments is replaced by one
// new segment through a swap committed in the cleaner file, which recovery
// finishes or rolls back before it reads any segment (compact_swap.go), so a
// power loss leaves the old segments or the new one, never a mix.
//
// # Open files
//
// Segment files are opened on demand and closed when idle through a
// FileCache that every log of a data directory shares (Disk.Files), so a
// broker's open files are bounded by one limit (idem.log.open.files.max),
// not by its partition count. A file is never closed while a read, write or
// fsync uses it, nor before the writes made through it were fsynced, and a
// removed or replaced segment's file is never reopened (filecache.go). A
// start opens only the segments it must read: sealed segments with a valid
// index are not opened, and after a clean stop that indexed the active
// segment, no segment file is.
//
// # Layout
//
//	<dir>/00000000000000000000.log      record batches, base offsets in the name
//	<dir>/00000000000000000000.index    sparse offset and time index of a sealed segment
//	<dir>/checkpoint                    recovery point and log start offset, with its generation
//	<data>/recovery-points              later recovery points of every log of the data directory
//	<dir>/cleaner                       first dirty offset, next delete horizon, a pending swap
//	<dir>/00000000000000000000.cleaned  a cleaned segment before it is swapped in
//
// All file access goes through the FS interface; the package never calls os
// directly, so tests can run it on MemFS, which simulates power loss.
package logstore
