// Package redisstore keeps idempotency keys in Redis (github.com/redis/go-redis/v9),
// for services whose responses need not commit together with a database.
//
// # The weaker guarantee
//
// With the SQL stores, a handler's database writes and its stored response
// commit in one transaction (atomic phases). Redis is not the handler's
// database, so here they are two steps: the handler commits its own writes
// (or calls its services), then the middleware stores the response in
// Redis. A crash, or a lost Redis connection, between the two leaves the
// writes done and the key unfinished: after its lease (or at once, if the
// middleware could still release it) a retry runs the handler again. So
// the handler's effects must themselves be idempotent (a unique constraint,
// an upsert, an idempotency key passed downstream), or be acceptable twice.
// What Redis does give: one run at a time per key (the lease), replay of the
// stored response, 409/422 as with the SQL stores, and keys that expire on
// their own.
//
// Redis must be durable enough for your retention: a Redis without
// persistence forgets every key when it restarts (a retry then runs the
// handler again), and with asynchronous replication a failover can lose the
// latest claims and responses.
//
// Every operation is one Lua script on one key, so it is atomic, also in a
// Redis Cluster. Times are the middleware's clock (the Store API takes
// them), stored in the hash; Redis's own expiry (PEXPIRE, set to the
// retention when a key is claimed) only collects keys nobody asks for, so
// Cleanup usually finds nothing to do.
package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/idem-dev/idem/idempotency"
	"github.com/redis/go-redis/v9"
)

// Config configures the store. The zero value is usable.
type Config struct {
	// Prefix starts every key the store writes (default "idem:key:").
	Prefix string
	// CleanupBatch is the SCAN count of one Cleanup round (default 1000).
	CleanupBatch int
}

// Store is an idempotency.Store on Redis.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	batch  int
}

var _ idempotency.Store = (*Store)(nil)

// New returns a store on rdb (owned by the caller, who closes it).
func New(rdb redis.UniversalClient, cfg Config) *Store {
	if cfg.Prefix == "" {
		cfg.Prefix = "idem:key:"
	}
	if cfg.CleanupBatch <= 0 {
		cfg.CleanupBatch = 1000
	}
	return &Store{rdb: rdb, prefix: cfg.Prefix, batch: cfg.CleanupBatch}
}

// redisKey is unambiguous: the scope's length comes first.
func (s *Store) redisKey(k idempotency.Key) string {
	return s.prefix + strconv.Itoa(len(k.Scope)) + ":" + k.Scope + ":" + k.Key
}

func micros(t time.Time) int64 { return t.UnixMicro() }

var claimScript = redis.NewScript(`
local k, now = KEYS[1], tonumber(ARGV[3])
local e = redis.call('HMGET', k, 'fp', 'done', 'locked', 'expires', 'status', 'header', 'body')
if e[1] and tonumber(e[4]) > now then
  if e[1] ~= ARGV[1] then return {'mismatch'} end
  if e[2] ~= '0' then return {'completed', e[2], e[5], e[6], e[7] or ''} end
  if tonumber(e[3]) > now then return {'inprogress'} end
end
redis.call('DEL', k)
redis.call('HSET', k, 'fp', ARGV[1], 'token', ARGV[2], 'done', '0', 'locked', ARGV[4], 'created', ARGV[3], 'expires', ARGV[5])
redis.call('PEXPIRE', k, ARGV[6])
return {'claimed'}`)

// Claim implements idempotency.Store.
func (s *Store) Claim(ctx context.Context, key idempotency.Key, fingerprint string, now time.Time, lease, retention time.Duration) (idempotency.Claim, error) {
	token := newToken()
	res, err := claimScript.Run(ctx, s.rdb, []string{s.redisKey(key)}, fingerprint, token, micros(now),
		micros(now.Add(lease)), micros(now.Add(retention)), max(retention.Milliseconds(), 1)).StringSlice()
	if err != nil {
		return idempotency.Claim{}, fmt.Errorf("idempotency: redis claim: %w", err)
	}
	switch res[0] {
	case "claimed":
		return idempotency.Claim{Status: idempotency.Claimed, Token: token}, nil
	case "mismatch":
		return idempotency.Claim{Status: idempotency.Mismatch}, nil
	case "inprogress":
		return idempotency.Claim{Status: idempotency.InProgress}, nil
	}
	resp, err := response(res[1], res[2], res[3], res[4])
	if err != nil {
		return idempotency.Claim{}, err
	}
	return idempotency.Claim{Status: idempotency.Completed, Response: resp}, nil
}

func response(done, status, header, body string) (idempotency.Response, error) {
	st, err := strconv.Atoi(status)
	if err != nil {
		return idempotency.Response{}, fmt.Errorf("idempotency: redis: bad status %q", status)
	}
	h := http.Header{}
	if header != "" {
		if err := json.Unmarshal([]byte(header), &h); err != nil {
			return idempotency.Response{}, fmt.Errorf("idempotency: redis: bad header: %w", err)
		}
	}
	return idempotency.Response{Status: st, Header: h, Body: []byte(body), BodyOmitted: done == "2"}, nil
}

// Begin returns a transaction that does nothing: Redis is not the
// handler's database (see the package documentation).
func (s *Store) Begin(context.Context) (idempotency.Tx, error) { return noTx{}, nil }

type noTx struct{}

func (noTx) Commit(context.Context) error   { return nil }
func (noTx) Rollback(context.Context) error { return nil }

var completeScript = redis.NewScript(`
local k = KEYS[1]
if redis.call('HGET', k, 'token') ~= ARGV[1] or redis.call('HGET', k, 'done') ~= '0' then return 0 end
redis.call('HSET', k, 'done', ARGV[2], 'token', '', 'locked', '0', 'status', ARGV[3], 'header', ARGV[4], 'body', ARGV[5])
return 1`)

// Complete stores resp at once: tx is ignored, and rolling it back does not
// undo the completion.
func (s *Store) Complete(ctx context.Context, _ idempotency.Tx, key idempotency.Key, token string, resp idempotency.Response) error {
	h := resp.Header
	if h == nil {
		h = http.Header{}
	}
	header, err := json.Marshal(h)
	if err != nil {
		return err
	}
	done, body := "1", resp.Body
	if resp.BodyOmitted {
		done, body = "2", nil
	}
	n, err := completeScript.Run(ctx, s.rdb, []string{s.redisKey(key)}, token, done, resp.Status, header, body).Int()
	if err != nil {
		return fmt.Errorf("idempotency: redis complete: %w", err)
	}
	if n == 0 {
		return idempotency.ErrLeaseLost
	}
	return nil
}

var releaseScript = redis.NewScript(`
local k = KEYS[1]
if redis.call('HGET', k, 'token') == ARGV[1] and redis.call('HGET', k, 'done') == '0' then redis.call('DEL', k) end
return 0`)

// Release implements idempotency.Store.
func (s *Store) Release(ctx context.Context, key idempotency.Key, token string) error {
	if err := releaseScript.Run(ctx, s.rdb, []string{s.redisKey(key)}, token).Err(); err != nil {
		return fmt.Errorf("idempotency: redis release: %w", err)
	}
	return nil
}

var extendScript = redis.NewScript(`
local k = KEYS[1]
if redis.call('HGET', k, 'token') ~= ARGV[1] or redis.call('HGET', k, 'done') ~= '0' then return 0 end
redis.call('HSET', k, 'locked', ARGV[2])
return 1`)

// Extend implements idempotency.Store.
func (s *Store) Extend(ctx context.Context, key idempotency.Key, token string, until time.Time) error {
	n, err := extendScript.Run(ctx, s.rdb, []string{s.redisKey(key)}, token, micros(until)).Int()
	if err != nil {
		return fmt.Errorf("idempotency: redis extend: %w", err)
	}
	if n == 0 {
		return idempotency.ErrLeaseLost
	}
	return nil
}

// Get implements idempotency.Store.
func (s *Store) Get(ctx context.Context, key idempotency.Key, now time.Time) (idempotency.Entry, error) {
	v, err := s.rdb.HMGet(ctx, s.redisKey(key), "fp", "done", "locked", "created", "expires", "status", "header", "body").Result()
	if err != nil {
		return idempotency.Entry{}, fmt.Errorf("idempotency: redis get: %w", err)
	}
	str := func(i int) string {
		if s, ok := v[i].(string); ok {
			return s
		}
		return ""
	}
	num := func(i int) int64 { n, _ := strconv.ParseInt(str(i), 10, 64); return n }
	if v[0] == nil || num(4) <= micros(now) {
		return idempotency.Entry{}, idempotency.ErrNotFound
	}
	e := idempotency.Entry{Fingerprint: str(0), Done: str(1) != "0",
		CreatedAt: time.UnixMicro(num(3)).UTC(), ExpiresAt: time.UnixMicro(num(4)).UTC()}
	if e.Done {
		if e.Response, err = response(str(1), str(5), str(6), str(7)); err != nil {
			return idempotency.Entry{}, err
		}
	} else {
		e.LockedUntil = time.UnixMicro(num(2)).UTC()
	}
	return e, nil
}

var cleanupScript = redis.NewScript(`
local n = 0
for _, k in ipairs(KEYS) do
  local exp = redis.call('HGET', k, 'expires')
  if exp and tonumber(exp) <= tonumber(ARGV[1]) then redis.call('DEL', k); n = n + 1 end
end
return n`)

// Cleanup deletes the keys expired at now, scanning the prefix in rounds of
// CleanupBatch. Redis expires keys itself after their retention (real
// time), so this matters only for a clock that runs ahead of Redis's. On a
// Redis Cluster it scans the node the client routes SCAN to.
func (s *Store) Cleanup(ctx context.Context, now time.Time) (int64, error) {
	var total int64
	var cursor uint64
	pattern := escapeGlob(s.prefix) + "*"
	for {
		keys, next, err := s.rdb.Scan(ctx, cursor, pattern, int64(s.batch)).Result()
		if err != nil {
			return total, fmt.Errorf("idempotency: redis cleanup: %w", err)
		}
		for _, k := range keys { // one key per script: atomic, and cluster-safe
			n, err := cleanupScript.Run(ctx, s.rdb, []string{k}, micros(now)).Int64()
			if err != nil {
				return total, fmt.Errorf("idempotency: redis cleanup: %w", err)
			}
			total += n
		}
		if cursor = next; cursor == 0 {
			return total, nil
		}
	}
}

func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func newToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
