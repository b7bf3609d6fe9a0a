package security

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Quota entity types and keys (KIP-546), by their wire names.
const (
	EntityUser     = "user"
	EntityClientID = "client-id"
	EntityIP       = "ip"

	QuotaProducerByteRate       = "producer_byte_rate"
	QuotaConsumerByteRate       = "consumer_byte_rate"
	QuotaRequestPercentage      = "request_percentage"
	QuotaConnectionCreationRate = "connection_creation_rate"
	QuotaControllerMutationRate = "controller_mutation_rate"
)

// ErrInvalidQuota is wrapped by errors for quota entities or keys Kafka
// refuses (INVALID_REQUEST).
var ErrInvalidQuota = errors.New("invalid quota")

// EntityPart is one component of a quota entity: a type and a name, nil
// for the default entity of that type.
type EntityPart struct {
	Type string  `json:"type"`
	Name *string `json:"name"`
}

// Entity is a quota entity: user, client-id, user+client-id, or ip.
type Entity []EntityPart

// Canonical sorts the parts (user before client-id) and validates them.
func (e Entity) Canonical() (Entity, error) {
	if len(e) == 0 || len(e) > 2 {
		return nil, fmt.Errorf("%w: an entity has one or two parts, not %d", ErrInvalidQuota, len(e))
	}
	out := slices.Clone(e)
	sort.Slice(out, func(i, j int) bool { return out[i].Type > out[j].Type }) // "user" > "client-id"
	seen := map[string]bool{}
	for _, p := range out {
		switch p.Type {
		case EntityUser, EntityClientID, EntityIP:
		default:
			return nil, fmt.Errorf("%w: unknown entity type %q", ErrInvalidQuota, p.Type)
		}
		if seen[p.Type] {
			return nil, fmt.Errorf("%w: entity type %q twice", ErrInvalidQuota, p.Type)
		}
		seen[p.Type] = true
	}
	if seen[EntityIP] && len(out) > 1 {
		return nil, fmt.Errorf("%w: an ip entity cannot be combined with another type", ErrInvalidQuota)
	}
	return out, nil
}

// key is the entity's store key; nil names are the default ("\x01").
func (e Entity) key() string {
	var b strings.Builder
	for _, p := range e {
		b.WriteString(p.Type)
		b.WriteByte('=')
		if p.Name == nil {
			b.WriteByte(1)
		} else {
			b.WriteString(*p.Name)
		}
		b.WriteByte(0)
	}
	return b.String()
}

// ValidateQuotaKey checks that key applies to entity e and value is sane.
func ValidateQuotaKey(e Entity, key string, value float64) error {
	ip := len(e) == 1 && e[0].Type == EntityIP
	switch key {
	case QuotaProducerByteRate, QuotaConsumerByteRate, QuotaRequestPercentage, QuotaControllerMutationRate:
		if ip {
			return fmt.Errorf("%w: %s does not apply to an ip entity", ErrInvalidQuota, key)
		}
	case QuotaConnectionCreationRate:
		if !ip {
			return fmt.Errorf("%w: %s applies only to an ip entity", ErrInvalidQuota, key)
		}
	default:
		return fmt.Errorf("%w: unknown quota key %q", ErrInvalidQuota, key)
	}
	if value <= 0 || math.IsNaN(value) || math.IsInf(value, 0) {
		return fmt.Errorf("%w: %s must be positive, not %v", ErrInvalidQuota, key, value)
	}
	return nil
}

// QuotaEntry is one entity's configured quotas.
type QuotaEntry struct {
	Entity Entity
	Values map[string]float64
}

// QuotaChange sets or removes one quota of an entity.
type QuotaChange struct {
	Entity Entity
	Key    string
	Value  float64
	Remove bool
}

// quotaIndex is an immutable copy of the configured quotas.
type quotaIndex struct {
	entries map[string]QuotaEntry
}

func (q *quotaIndex) value(e Entity, key string) (float64, bool) {
	v, ok := q.entries[e.key()].Values[key]
	return v, ok
}

// Throttler measures what each quota entity uses and says how long a
// client over its quota must wait (KIP-13, KIP-124, KIP-219): rates are
// measured over Windows windows of Window each, and a client above its
// quota is throttled for (rate − quota) / quota × the measured span.
type Throttler struct {
	store   *Store
	window  time.Duration
	windows int
	now     func() time.Time

	mu      sync.Mutex
	sensors map[string]*sensor // mu guards; by entity key + quota key
	lastGC  time.Time
}

// NewThrottler measures usage against the store's quotas
// (quota.window.num windows of quota.window.size.seconds).
func NewThrottler(store *Store, windows int, window time.Duration, now func() time.Time) *Throttler {
	if now == nil {
		now = time.Now
	}
	return &Throttler{store: store, windows: max(windows, 2), window: max(window, 10*time.Millisecond), now: now, sensors: map[string]*sensor{}}
}

// sensor is a rate over sliding windows.
type sensor struct {
	starts []time.Time
	sums   []float64
	last   time.Time
}

func (s *sensor) record(now time.Time, v float64, window time.Duration) {
	slot := now.Truncate(window)
	if n := len(s.starts); n > 0 && s.starts[n-1].Equal(slot) {
		s.sums[n-1] += v
	} else {
		s.starts = append(s.starts, slot)
		s.sums = append(s.sums, v)
	}
	s.last = now
}

// rate drops expired windows and returns the rate per second and the span
// it was measured over.
func (s *sensor) rate(now time.Time, windows int, window time.Duration) (float64, time.Duration) {
	oldest := now.Add(-time.Duration(windows) * window)
	i := 0
	for i < len(s.starts) && !s.starts[i].After(oldest) {
		i++
	}
	s.starts, s.sums = s.starts[i:], s.sums[i:]
	var total float64
	for _, v := range s.sums {
		total += v
	}
	// As Kafka's Rate: the span is at least windows−1 full windows, so a
	// first burst is not measured over a few milliseconds.
	span := max(now.Sub(now.Truncate(window))+time.Duration(windows-1)*window, window)
	return total / span.Seconds(), span
}

// Record adds value (bytes, or request handling time in percent-seconds)
// to the quota key of the entity that applies to user and clientID, and
// returns how long the client must now be throttled (0: not at all).
func (t *Throttler) Record(user, clientID, key string, value float64) time.Duration {
	if t == nil {
		return 0
	}
	e, quota, ok := t.resolve(user, clientID, key)
	if !ok {
		return 0
	}
	return t.observe(e.key()+"\x02"+key, quota, value)
}

// ConnectionDelay records a new connection from ip and returns how long its
// creation must be throttled under connection_creation_rate.
func (t *Throttler) ConnectionDelay(ip string) time.Duration {
	if t == nil {
		return 0
	}
	q := t.store.quotas.Load()
	e := Entity{{Type: EntityIP, Name: &ip}}
	quota, ok := q.value(e, QuotaConnectionCreationRate)
	if !ok {
		e = Entity{{Type: EntityIP}}
		if quota, ok = q.value(e, QuotaConnectionCreationRate); !ok {
			return 0
		}
		e = Entity{{Type: EntityIP, Name: &ip}} // the default applies per ip
	}
	return t.observe(e.key()+"\x02"+QuotaConnectionCreationRate, quota, 1)
}

func (t *Throttler) observe(id string, quota, value float64) time.Duration {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gcLocked(now)
	s := t.sensors[id]
	if s == nil {
		s = &sensor{}
		t.sensors[id] = s
	}
	s.record(now, value, t.window)
	r, span := s.rate(now, t.windows, t.window)
	if r <= quota {
		return 0
	}
	return time.Duration((r - quota) / quota * float64(span))
}

// gcLocked forgets sensors idle for longer than the measured span, so
// that many short-lived client ids do not grow the map forever.
func (t *Throttler) gcLocked(now time.Time) {
	span := time.Duration(t.windows) * t.window
	if now.Sub(t.lastGC) < span {
		return
	}
	t.lastGC = now
	for k, s := range t.sensors {
		if now.Sub(s.last) > span {
			delete(t.sensors, k)
		}
	}
}

// resolve finds the quota for key that applies to (user, clientID), in
// Kafka's order of precedence (most specific first).
func (t *Throttler) resolve(user, clientID, key string) (Entity, float64, bool) {
	q := t.store.quotas.Load()
	if len(q.entries) == 0 {
		return nil, 0, false
	}
	u, c := &user, &clientID
	candidates := []Entity{
		{{Type: EntityUser, Name: u}, {Type: EntityClientID, Name: c}},
		{{Type: EntityUser, Name: u}, {Type: EntityClientID}},
		{{Type: EntityUser, Name: u}},
		{{Type: EntityUser}, {Type: EntityClientID, Name: c}},
		{{Type: EntityUser}, {Type: EntityClientID}},
		{{Type: EntityUser}},
		{{Type: EntityClientID, Name: c}},
		{{Type: EntityClientID}},
	}
	for _, e := range candidates {
		if v, ok := q.value(e, key); ok {
			// A default entity's quota is shared per concrete entity, as
			// in Kafka: each user (or client id) gets the default rate.
			for i := range e {
				if e[i].Name == nil {
					if e[i].Type == EntityUser {
						e[i].Name = u
					} else {
						e[i].Name = c
					}
				}
			}
			return e, v, true
		}
	}
	return nil, 0, false
}

// QuotaFilterComponent is one component of a DescribeClientQuotas filter.
type QuotaFilterComponent struct {
	Type string
	// Match: 0 = the entity named Name (nil: the default entity), 1 = the
	// default entity, 2 = any named (non-default) entity.
	Match int8
	Name  *string
}

// Matches reports whether the entry's entity is selected by the filter
// components; strict also refuses entities with types the filter does not
// name.
func (e QuotaEntry) Matches(components []QuotaFilterComponent, strict bool) bool {
	for _, c := range components {
		var part *EntityPart
		for i := range e.Entity {
			if e.Entity[i].Type == c.Type {
				part = &e.Entity[i]
			}
		}
		if part == nil {
			return false
		}
		switch c.Match {
		case 0:
			if (c.Name == nil) != (part.Name == nil) || c.Name != nil && *c.Name != *part.Name {
				return false
			}
		case 1:
			if part.Name != nil {
				return false
			}
		case 2:
			if part.Name == nil {
				return false
			}
		}
	}
	return !strict || len(e.Entity) == len(components)
}

// ValidateQuotaFilter refuses unknown entity types, unknown match types and
// a type named twice.
func ValidateQuotaFilter(components []QuotaFilterComponent) error {
	seen := map[string]bool{}
	for _, c := range components {
		switch c.Type {
		case EntityUser, EntityClientID, EntityIP:
		default:
			return fmt.Errorf("%w: unknown entity type %q", ErrInvalidQuota, c.Type)
		}
		if c.Match < 0 || c.Match > 2 {
			return fmt.Errorf("%w: match type %d", ErrInvalidQuota, c.Match)
		}
		if seen[c.Type] {
			return fmt.Errorf("%w: entity type %q twice", ErrInvalidQuota, c.Type)
		}
		seen[c.Type] = true
	}
	return nil
}
