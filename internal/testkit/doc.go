// Package testkit is the one kit idem's tests share, so that each piece of
// test infrastructure is written once: a fake clock, the rule for tests that
// need an external tool or service, polling instead of sleeping, a test
// binary that doubles as a child process, and building the idem binary.
//
// It imports nothing of idem, so that any package's own tests can use it
// without an import cycle. The kits that need idem live beside it:
// testkit/brokerkit (brokers as child processes or on a crashable file
// system, and Kafka client helpers), testkit/pgkit (PostgreSQL schemas) and
// testkit/txnkit (transactional workloads and their checkers).
//
// Only tests import these packages; the idem binary never links them
// (internal/archtest checks that).
package testkit
