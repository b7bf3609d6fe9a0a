// Package security decides who a client is and what it may do: TLS
// material for listeners (with reload), the server side of the SASL
// mechanisms PLAIN, SCRAM-SHA-256/512 and OAUTHBEARER, the principal of a
// client certificate (ssl.principal.mapping.rules), the ACL authorizer,
// client quotas and their throttling, and the one durable Store of users,
// ACLs and quotas. It knows no Kafka error codes: internal/kafka/api turns
// its sentinels into them, and internal/kafka runs the per-connection
// state machine that uses it.
//
// # The store
//
// Users (salted SCRAM keys only: a password is never stored, and PLAIN
// logins are checked by deriving the SCRAM key from the password given),
// ACL bindings and client quotas live in one statelog under
// <log.dirs>/__security, as the coordinators keep theirs
// (docs/architecture.md, "Where a new coordinator's durable state goes"):
// one record per credential, binding or quota value, JSON values, a nil
// value deleting its key; unknown record types are skipped on replay, so
// an older idem opens a newer store. A change appends its records and
// updates memory under Store.mu, then waits for the fsync outside it, and
// only then is it acknowledged. The compaction loop rewrites the live
// state once the log holds more than twice as many records.
//
// The request path takes no lock: credentials, the ACL index and the quota
// index are immutable copies swapped (atomic.Pointer) under Store.mu on
// every change, so a new ACL applies to the next request of every open
// connection.
//
// # Lock order and goroutines
//
// statelog.Log.compactMu → Store.mu → statelog.Log.mu. Throttler.mu and
// TLSSource.mu are leaves. The Store owns one goroutine (its statelog.Loop),
// joined by Close; an OAuthValidator with an http(s) JWKS URL owns
// keyfunc's refresh goroutine, stopped by Close.
//
// # Hostile input
//
// Every SASL message is capped before it is parsed (SCRAM 4 KiB, PLAIN
// 767 bytes, OAUTHBEARER 65 KiB), SCRAM checks that the client-final nonce
// is exactly the one the server sent (CVE-2024-56128), an unknown user
// runs the same exchange as a known one with a decoy credential, and every
// failure has the same message, so a client learns nothing about which
// users exist.
package security
