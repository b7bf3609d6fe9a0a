// Package webhook is both ends of the webhook channel, the everyday
// at-least-once channel: the sender retries until it gets a 2xx, so a
// receiver sees duplicates and must dedupe on the event id.
//
// The receiving end:
//
//   - Standard Webhooks v1 signing and verification ([Sign], [Verifier]):
//     webhook-id, webhook-timestamp and webhook-signature headers,
//     HMAC-SHA256 over id.timestamp.payload with whsec_ secrets (v1) or
//     ed25519 (v1a), several signatures at once for key rotation, constant-time
//     comparison and a 5-minute timestamp tolerance in both directions.
//   - [Verify], middleware that lets through only verified requests, and
//     [Receiver], which also records the webhook-id through a dedupe store in
//     the handler's own database transaction, so a redelivered webhook changes
//     the world once.
//
// The sending end is the [Dispatcher] (idem webhooks serve): a Kafka consumer
// group member that turns each record of a topic into one delivery per
// subscribed endpoint, recorded in the same database transaction as the
// consumer's offsets, and sends them with retries, leases, dead-lettering,
// per-endpoint limits and optional per-key ordering. Its stores live in
// webhook/sqlitestore and webhook/pgstore. docs/webhooks.md is the guide.
package webhook
