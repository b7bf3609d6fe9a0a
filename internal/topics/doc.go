// Package topics owns the broker's storage-wide state: which topics exist
// (backed by internal/catalog), their open partitions (internal/partition),
// retention and producer-state snapshot scheduling, and the broker-wide
// producer-id allocator.
//
// It sits between the Kafka API layer and internal/partition, so that a
// partition is only a log plus its producer state and depends on nothing but
// internal/logstore.
//
// Lock order: Manager.mu → partition.Partition locks → logstore.Log locks.
// Manager.mu is never held across an fsync of a partition append.
package topics
