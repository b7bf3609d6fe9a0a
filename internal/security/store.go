package security

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/statelog"
)

// StoreConfig configures Open.
type StoreConfig struct {
	FS  logstore.FS
	Dir string // <log.dirs>/__security
	// Disk lets writes draw on the disk reserve: an operator must be able
	// to change credentials and ACLs on a full disk.
	Disk   *logstore.Disk
	Logger *slog.Logger
	Now    func() time.Time
}

// ErrNotFound is wrapped by errors for users or credentials that do not
// exist (RESOURCE_NOT_FOUND).
var ErrNotFound = errors.New("not found")

// ErrDuplicate is wrapped by errors for a request naming one resource twice
// (DUPLICATE_RESOURCE).
var ErrDuplicate = errors.New("duplicate resource")

// ErrStorage is wrapped by errors from the store's log: the change was not
// made (or not made durable) and must not be acknowledged.
var ErrStorage = errors.New("security store")

// ErrClosed is returned by changes after Close.
var ErrClosed = errors.New("security store closed")

// Store is the durable home of users (SCRAM credentials), ACLs and client
// quotas: a statelog under <log.dirs>/__security whose replay rebuilds
// them. Reads on the request path (credential lookups, ACL checks, quota
// lookups) take no lock: ACLs and quotas are immutable indexes swapped on
// each change. See doc.go for the contract.
type Store struct {
	log    *statelog.Log
	loop   *statelog.Loop
	logger *slog.Logger

	// mu orders changes: a change appends its records and updates memory
	// under mu, then waits for durability outside it.
	mu     sync.Mutex
	users  map[string]map[ScramMechanism]Credential // mu guards
	acls   atomic.Pointer[aclIndex]                 // written under mu
	quotas atomic.Pointer[quotaIndex]               // written under mu
	closed bool                                     // mu guards

	// creds is a read-only copy of users for lookups without mu.
	creds atomic.Pointer[map[string]map[ScramMechanism]Credential]
}

// Open opens (or creates) the store and replays it.
func Open(cfg StoreConfig) (*Store, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{users: map[string]map[ScramMechanism]Credential{}, logger: cfg.Logger}
	l, err := statelog.Open(statelog.Config{
		FS: cfg.FS, Dir: cfg.Dir, Name: "security log",
		SegmentBytes:   statelog.DefaultSegmentBytes,
		CompactRecords: 1000,
		Live:           s.liveLocked,
		Kick:           func() { s.loop.Kick() },
		Now:            cfg.Now,
		Logger:         cfg.Logger,
		Disk:           cfg.Disk,
	})
	if err != nil {
		return nil, err
	}
	s.log = l
	acls := map[string]Binding{}
	quotas := map[string]QuotaEntry{}
	err = l.Replay(func(_ statelog.Batch, _ int64, r statelog.Record) error {
		return s.apply(r, acls, quotas)
	})
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("security store: replay: %w", err)
	}
	s.publishLocked(acls, quotas)
	s.loop = statelog.StartLoop(func() time.Time { return cfg.Now().Add(time.Minute) }, s.compact, cfg.Now, false)
	return s, nil
}

// Close stops the compaction loop and closes the log.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.loop.Close()
	return s.log.Close()
}

func (s *Store) compact() {
	if _, err := s.log.Compact(&s.mu, s.snapshot); err != nil {
		s.logger.Warn("security store: compaction failed", "err", err)
	}
}

// Record keys start with a type byte; values are JSON, and a nil value
// removes the key (a tombstone).
const (
	recUser  = 'U' // U <mechanism> <name>       → Credential
	recACL   = 'A' // A <binding key>            → Binding
	recQuota = 'Q' // Q <entity key> \x02 <key>  → quotaRecord
)

type quotaRecord struct {
	Entity Entity  `json:"entity"`
	Key    string  `json:"key"`
	Value  float64 `json:"value"`
}

// apply replays one record into the maps being built.
func (s *Store) apply(r statelog.Record, acls map[string]Binding, quotas map[string]QuotaEntry) error {
	if len(r.Key) < 2 {
		return fmt.Errorf("%w: key of %d bytes", statelog.ErrUnknownRecord, len(r.Key))
	}
	switch r.Key[0] {
	case recUser:
		m, name := ScramMechanism(r.Key[1]), string(r.Key[2:])
		if r.Value == nil {
			delete(s.users[name], m)
			if len(s.users[name]) == 0 {
				delete(s.users, name)
			}
			return nil
		}
		var c Credential
		if err := json.Unmarshal(r.Value, &c); err != nil {
			return fmt.Errorf("user %q: %w", name, err)
		}
		if s.users[name] == nil {
			s.users[name] = map[ScramMechanism]Credential{}
		}
		s.users[name][m] = c
	case recACL:
		k := string(r.Key[1:])
		if r.Value == nil {
			delete(acls, k)
			return nil
		}
		var b Binding
		if err := json.Unmarshal(r.Value, &b); err != nil {
			return fmt.Errorf("ACL: %w", err)
		}
		acls[k] = b
	case recQuota:
		var q quotaRecord
		if r.Value == nil {
			// The tombstone's key names the entity and quota key.
			ek, key, ok := splitQuotaKey(string(r.Key[1:]))
			if ok {
				delete(quotas[ek].Values, key)
				if len(quotas[ek].Values) == 0 {
					delete(quotas, ek)
				}
			}
			return nil
		}
		if err := json.Unmarshal(r.Value, &q); err != nil {
			return fmt.Errorf("quota: %w", err)
		}
		ek := q.Entity.key()
		e, ok := quotas[ek]
		if !ok {
			e = QuotaEntry{Entity: q.Entity, Values: map[string]float64{}}
		}
		e.Values[q.Key] = q.Value
		quotas[ek] = e
	default:
		return fmt.Errorf("%w: type %q", statelog.ErrUnknownRecord, r.Key[0])
	}
	return nil
}

func splitQuotaKey(k string) (entity, key string, ok bool) {
	for i := len(k) - 1; i >= 0; i-- {
		if k[i] == 2 {
			return k[:i], k[i+1:], true
		}
	}
	return "", "", false
}

func userKey(name string, m ScramMechanism) []byte {
	return append([]byte{recUser, byte(m)}, name...)
}

// publishLocked installs new read-only copies for the request path.
func (s *Store) publishLocked(acls map[string]Binding, quotas map[string]QuotaEntry) {
	if acls != nil {
		bs := slices.Collect(maps.Values(acls))
		sort.Slice(bs, func(i, j int) bool { return bs[i].key() < bs[j].key() })
		s.acls.Store(newACLIndex(bs))
	}
	if quotas != nil {
		s.quotas.Store(&quotaIndex{entries: quotas})
	}
	creds := make(map[string]map[ScramMechanism]Credential, len(s.users))
	for n, m := range s.users {
		creds[n] = maps.Clone(m)
	}
	s.creds.Store(&creds)
}

func (s *Store) aclMapLocked() map[string]Binding {
	out := map[string]Binding{}
	for _, b := range s.acls.Load().all {
		out[b.key()] = b
	}
	return out
}

func (s *Store) quotaMapLocked() map[string]QuotaEntry {
	out := map[string]QuotaEntry{}
	for k, e := range s.quotas.Load().entries {
		out[k] = QuotaEntry{Entity: e.Entity, Values: maps.Clone(e.Values)}
	}
	return out
}

// liveLocked counts the records a snapshot writes (statelog.Config.Live).
func (s *Store) liveLocked() int {
	n := len(s.acls.Load().all)
	for _, m := range s.users {
		n += len(m)
	}
	for _, e := range s.quotas.Load().entries {
		n += len(e.Values)
	}
	return n
}

// snapshot writes the whole state (statelog.Compact, under mu).
func (s *Store) snapshot(snap *statelog.Snapshot) {
	for name, m := range s.users {
		for mech, c := range m {
			v, _ := json.Marshal(c)
			snap.Add(statelog.Batch{}, statelog.Record{Key: userKey(name, mech), Value: v}, nil)
		}
	}
	for _, b := range s.acls.Load().all {
		v, _ := json.Marshal(b)
		snap.Add(statelog.Batch{}, statelog.Record{Key: append([]byte{recACL}, b.key()...), Value: v}, nil)
	}
	for ek, e := range s.quotas.Load().entries {
		for k, val := range e.Values {
			v, _ := json.Marshal(quotaRecord{Entity: e.Entity, Key: k, Value: val})
			snap.Add(statelog.Batch{}, statelog.Record{Key: append([]byte{recQuota}, ek+"\x02"+k...), Value: v}, nil)
		}
	}
}

// commitLocked appends recs and, only if that worked, applies them to
// memory. It returns the offset to wait for.
func (s *Store) commitLocked(recs []statelog.Record) (int64, error) {
	if s.closed {
		return 0, ErrClosed
	}
	if len(recs) == 0 {
		return s.log.End(), nil
	}
	end, err := s.log.Append(statelog.Batch{}, recs)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	acls, quotas := s.aclMapLocked(), s.quotaMapLocked()
	for _, r := range recs {
		if err := s.apply(r, acls, quotas); err != nil {
			return 0, fmt.Errorf("%w: %w", ErrStorage, err)
		}
	}
	s.publishLocked(acls, quotas)
	return end, nil
}

func (s *Store) wait(ctx context.Context, end int64) error {
	if err := s.log.WaitDurable(ctx, end); err != nil {
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	return nil
}

// Credential returns user's credential for m (for SASL; no lock).
func (s *Store) Credential(user string, m ScramMechanism) (Credential, bool) {
	c, ok := (*s.creds.Load())[user][m]
	return c, ok
}

// UserInfo is one user's mechanisms and iterations, never the keys.
type UserInfo struct {
	Name        string
	Credentials []CredentialInfo
}

// CredentialInfo describes one stored credential.
type CredentialInfo struct {
	Mechanism  ScramMechanism
	Iterations int
}

// Users lists every user with credentials, sorted by name.
func (s *Store) Users() []UserInfo {
	creds := *s.creds.Load()
	out := make([]UserInfo, 0, len(creds))
	for name, m := range creds {
		u := UserInfo{Name: name}
		for mech, c := range m {
			u.Credentials = append(u.Credentials, CredentialInfo{Mechanism: mech, Iterations: c.Iterations})
		}
		sort.Slice(u.Credentials, func(i, j int) bool { return u.Credentials[i].Mechanism < u.Credentials[j].Mechanism })
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// User returns one user's credential infos.
func (s *Store) User(name string) (UserInfo, bool) {
	m, ok := (*s.creds.Load())[name]
	if !ok {
		return UserInfo{}, false
	}
	u := UserInfo{Name: name}
	for mech, c := range m {
		u.Credentials = append(u.Credentials, CredentialInfo{Mechanism: mech, Iterations: c.Iterations})
	}
	sort.Slice(u.Credentials, func(i, j int) bool { return u.Credentials[i].Mechanism < u.Credentials[j].Mechanism })
	return u, true
}

// CredentialChange upserts (Credential set) or deletes (Delete) the
// credential of User for Mechanism.
type CredentialChange struct {
	User       string
	Mechanism  ScramMechanism
	Credential *Credential
	Delete     bool
}

// AlterCredentials applies changes and returns one error per change (nil:
// done and durable). A deletion of a credential that does not exist is
// ErrNotFound; the others still apply.
func (s *Store) AlterCredentials(ctx context.Context, changes []CredentialChange) []error {
	errs := make([]error, len(changes))
	s.mu.Lock()
	var recs []statelog.Record
	var at []int
	for i, c := range changes {
		switch {
		case c.User == "":
			errs[i] = fmt.Errorf("%w: empty user name", ErrUnacceptableCredential)
		case !c.Mechanism.Valid():
			errs[i] = fmt.Errorf("%w: mechanism %d", ErrUnsupportedMechanism, c.Mechanism)
		case c.Delete:
			if _, ok := s.users[c.User][c.Mechanism]; !ok {
				errs[i] = fmt.Errorf("%w: user %q has no %s credential", ErrNotFound, c.User, c.Mechanism)
				continue
			}
			recs = append(recs, statelog.Record{Key: userKey(c.User, c.Mechanism)})
			at = append(at, i)
		case c.Credential == nil:
			errs[i] = fmt.Errorf("%w: no credential", ErrUnacceptableCredential)
		default:
			v, _ := json.Marshal(c.Credential)
			recs = append(recs, statelog.Record{Key: userKey(c.User, c.Mechanism), Value: v})
			at = append(at, i)
		}
	}
	end, err := s.commitLocked(recs)
	s.mu.Unlock()
	if err == nil {
		err = s.wait(ctx, end)
	}
	if err != nil {
		for _, i := range at {
			errs[i] = err
		}
	}
	return errs
}

// ACLs returns every binding filter selects.
func (s *Store) ACLs(f Filter) []Binding {
	var out []Binding
	for _, b := range s.acls.Load().all {
		if f.Matches(b) {
			out = append(out, b)
		}
	}
	return out
}

// ACLCount is the number of bindings.
func (s *Store) ACLCount() int { return len(s.acls.Load().all) }

// CreateACLs adds bindings (an existing one is not an error) and returns
// one error per binding.
func (s *Store) CreateACLs(ctx context.Context, bindings []Binding) []error {
	errs := make([]error, len(bindings))
	s.mu.Lock()
	var recs []statelog.Record
	var at []int
	for i, b := range bindings {
		if err := b.Validate(); err != nil {
			errs[i] = err
			continue
		}
		v, _ := json.Marshal(b)
		recs = append(recs, statelog.Record{Key: append([]byte{recACL}, b.key()...), Value: v})
		at = append(at, i)
	}
	end, err := s.commitLocked(recs)
	s.mu.Unlock()
	if err == nil {
		err = s.wait(ctx, end)
	}
	if err != nil {
		for _, i := range at {
			errs[i] = err
		}
	}
	return errs
}

// DeleteACLs removes the bindings each filter selects and returns them per
// filter (a binding selected by two filters is reported by both).
func (s *Store) DeleteACLs(ctx context.Context, filters []Filter) ([][]Binding, error) {
	out := make([][]Binding, len(filters))
	s.mu.Lock()
	seen := map[string]bool{}
	var recs []statelog.Record
	for i, f := range filters {
		for _, b := range s.acls.Load().all {
			if !f.Matches(b) {
				continue
			}
			out[i] = append(out[i], b)
			if k := b.key(); !seen[k] {
				seen[k] = true
				recs = append(recs, statelog.Record{Key: append([]byte{recACL}, k...)})
			}
		}
	}
	end, err := s.commitLocked(recs)
	s.mu.Unlock()
	if err == nil {
		err = s.wait(ctx, end)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Quotas returns every configured quota entry.
func (s *Store) Quotas() []QuotaEntry {
	q := s.quotas.Load()
	out := make([]QuotaEntry, 0, len(q.entries))
	for _, e := range q.entries {
		out = append(out, QuotaEntry{Entity: e.Entity, Values: maps.Clone(e.Values)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Entity.key() < out[j].Entity.key() })
	return out
}

// AlterQuotas applies changes (validated first; all or nothing).
func (s *Store) AlterQuotas(ctx context.Context, changes []QuotaChange, validateOnly bool) error {
	var recs []statelog.Record
	for _, c := range changes {
		e, err := c.Entity.Canonical()
		if err != nil {
			return err
		}
		if c.Remove {
			if err := ValidateQuotaKey(e, c.Key, 1); err != nil {
				return err
			}
			recs = append(recs, statelog.Record{Key: append([]byte{recQuota}, e.key()+"\x02"+c.Key...)})
			continue
		}
		if err := ValidateQuotaKey(e, c.Key, c.Value); err != nil {
			return err
		}
		v, _ := json.Marshal(quotaRecord{Entity: e, Key: c.Key, Value: c.Value})
		recs = append(recs, statelog.Record{Key: append([]byte{recQuota}, e.key()+"\x02"+c.Key...), Value: v})
	}
	if validateOnly {
		return nil
	}
	s.mu.Lock()
	end, err := s.commitLocked(recs)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.wait(ctx, end)
}
