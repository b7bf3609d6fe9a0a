// Package storeutil holds what the dedupe stores share: defaults, SQL of the
// offsets and dead-letter tables, and identifier checks.
package storeutil

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/idem-dev/idem/dedupe"
)

// Defaults fills in the zero fields of c.
func Defaults(c dedupe.Config) (dedupe.Config, error) {
	if c.Table == "" {
		c.Table = "idem_processed"
	}
	if c.Consumer == "" {
		c.Consumer = defaultConsumer()
	}
	if c.Retention == 0 {
		c.Retention = 7 * 24 * time.Hour
	}
	if c.CleanupBatch <= 0 {
		c.CleanupBatch = 1000
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, ValidIdent(c.Table)
}

func defaultConsumer() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return host + "/" + strconv.Itoa(os.Getpid())
}

// Forever is stored as the expiry of records kept forever, so that the
// "expired" predicate stays a single comparison (and uses the index).
var Forever = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// Expiry is when a record processed at now expires.
func Expiry(c dedupe.Config, now time.Time) time.Time {
	if c.Retention < 0 {
		return Forever
	}
	return now.Add(c.Retention)
}

// Now reads the clock at the microsecond precision both databases keep, so
// a value written and read back compares equal.
func Now(c dedupe.Config) time.Time { return c.Now().UTC().Truncate(time.Microsecond) }

// Micro truncates t as Now does.
func Micro(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// ValidIdent keeps table names safe to splice into SQL: identifiers cannot
// be bound as parameters.
func ValidIdent(s string) error {
	if s == "" || len(s) > 50 {
		return fmt.Errorf("dedupe: invalid table name %q", s)
	}
	for i, r := range s {
		ok := r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9')
		if !ok {
			return fmt.Errorf("dedupe: invalid table name %q (letters, digits, _)", s)
		}
	}
	return nil
}

// OffsetsDDL creates the offsets table, which sits next to the
// processed-ids table. Offsets only move forward, so a zombie consumer that
// lost its partition in a rebalance and commits late cannot rewind its
// successor.
func OffsetsDDL(t string) string {
	return `CREATE TABLE IF NOT EXISTS ` + t + `_offsets (
		consumer_group TEXT NOT NULL,
		topic          TEXT NOT NULL,
		partition_id   INTEGER NOT NULL,
		next_offset    BIGINT NOT NULL,
		PRIMARY KEY (consumer_group, topic, partition_id)
	)`
}

// StoreOffsetSQL upserts a partition's next offset, only forward.
func StoreOffsetSQL(t string) string {
	return `INSERT INTO ` + t + `_offsets (consumer_group, topic, partition_id, next_offset) VALUES ($1, $2, $3, $4)
		ON CONFLICT (consumer_group, topic, partition_id) DO UPDATE SET next_offset = excluded.next_offset
		WHERE ` + t + `_offsets.next_offset < excluded.next_offset`
}

// LoadOffsetsSQL reads a group's offsets.
func LoadOffsetsSQL(t string) string {
	return `SELECT topic, partition_id, next_offset FROM ` + t + `_offsets WHERE consumer_group = $1`
}

// DeadLettersDDL creates the dead-letter outbox: records written in the
// transaction that dead-letters them, deleted once produced. id, blob and
// time are the dialect's types.
func DeadLettersDDL(t, id, blob, ts string) string {
	return `CREATE TABLE IF NOT EXISTS ` + t + `_deadletters (
		id             ` + id + `,
		consumer_group TEXT NOT NULL,
		event_id       TEXT NOT NULL,
		topic          TEXT NOT NULL,
		record_key     ` + blob + `,
		record_value   ` + blob + `,
		headers        TEXT NOT NULL,
		created_at     ` + ts + ` NOT NULL
	)`
}

// InsertDeadLetterSQL adds one dead letter.
func InsertDeadLetterSQL(t string) string {
	return `INSERT INTO ` + t + `_deadletters (consumer_group, event_id, topic, record_key, record_value, headers, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`
}

// PendingDeadLettersSQL lists a group's dead letters, oldest first.
func PendingDeadLettersSQL(t string) string {
	return `SELECT id, consumer_group, event_id, topic, record_key, record_value, headers FROM ` + t + `_deadletters
		WHERE consumer_group = $1 ORDER BY id LIMIT $2`
}

// DeleteDeadLetterSQL forgets a produced dead letter.
func DeleteDeadLetterSQL(t string) string {
	return `DELETE FROM ` + t + `_deadletters WHERE id = $1`
}

// EncodeHeaders and DecodeHeaders keep a dead letter's headers as JSON.
func EncodeHeaders(h []dedupe.Header) string {
	if h == nil {
		h = []dedupe.Header{}
	}
	b, _ := json.Marshal(h)
	return string(b)
}

// DecodeHeaders is the inverse of EncodeHeaders.
func DecodeHeaders(s string) ([]dedupe.Header, error) {
	var h []dedupe.Header
	err := json.Unmarshal([]byte(s), &h)
	return h, err
}

// RejectedOutcome is the audit outcome of a Permanent handler error.
func RejectedOutcome(err error) string {
	msg := err.Error()
	if len(msg) > 500 {
		msg = msg[:500]
	}
	return "rejected: " + msg
}
