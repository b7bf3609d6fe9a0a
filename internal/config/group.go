package config

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Group-level configs: what IncrementalAlterConfigs and AlterConfigs set on a
// GROUP resource (type 32) and DescribeConfigs reads back. Kafka names them
// without the "group." prefix of their broker synonyms (share.delivery.count.limit
// overrides group.share.delivery.count.limit); a group that sets nothing uses
// the broker's value. idem's own extensions carry the idem. prefix.

// GroupProperty is one group-level config.
type GroupProperty struct {
	Property
	// Broker is the broker property that gives the default, or "" when
	// Property.Default is the default.
	Broker string
	// MinBroker and MaxBroker name broker properties that bound the value
	// (group.share.min.record.lock.duration.ms), if any.
	MinBroker, MaxBroker string
}

var groupRegistry = []*GroupProperty{
	{Property: Property{Name: "share.auto.offset.reset", Type: String, Default: "latest", check: checkAutoOffsetReset,
		Doc: "Where a share group starts reading a partition it has no state for: latest (the high watermark), earliest (the log start) or by_duration:<ISO-8601 duration> (the first record at most that old)."}},
	{Property: Property{Name: "share.isolation.level", Type: String, Default: "read_uncommitted", Enum: []string{"read_uncommitted", "read_committed"},
		Doc: "read_committed delivers only records below the last stable offset and archives aborted transactional records."}},
	{Property: Property{Name: "share.record.lock.duration.ms", Type: Int, Min: 1000, Max: 3600000,
		Doc: "Acquisition lock of this group's records; within the broker's group.share.min/max.record.lock.duration.ms."},
		Broker: "group.share.record.lock.duration.ms", MinBroker: "group.share.min.record.lock.duration.ms", MaxBroker: "group.share.max.record.lock.duration.ms"},
	{Property: Property{Name: "share.delivery.count.limit", Type: Int, Min: 2, Max: 10,
		Doc: "Deliveries after which a released or expired record is archived (and dead-lettered) instead of redelivered; within the broker's group.share.min/max.delivery.count.limit."},
		Broker: "group.share.delivery.count.limit", MinBroker: "group.share.min.delivery.count.limit", MaxBroker: "group.share.max.delivery.count.limit"},
	{Property: Property{Name: "share.partition.max.record.locks", Type: Int, Min: 100, Max: 10000,
		Doc: "Largest in-flight window of each share partition of this group."},
		Broker: "group.share.partition.max.record.locks"},
	{Property: Property{Name: "share.session.timeout.ms", Type: Int, Min: 1000, Max: maxInt32,
		Doc: "A member that sends no heartbeat for this long is removed and its records are released."},
		Broker: "group.share.session.timeout.ms"},
	{Property: Property{Name: "share.heartbeat.interval.ms", Type: Int, Min: 1000, Max: maxInt32,
		Doc: "How often members are told to heartbeat."},
		Broker: "group.share.heartbeat.interval.ms"},
	{Property: Property{Name: "share.renew.acknowledge.enable", Type: Bool, Default: "true",
		Doc: "Accept RENEW acknowledgements (KIP-1222), which extend a record's acquisition lock."}},
	{Property: Property{Name: "errors.deadletterqueue.topic.name", Type: String, Default: "", check: checkDLQName,
		Doc: "Dead-letter topic (KIP-1191): rejected records and records over the delivery count limit are written there with __dlq.errors.* headers. Empty: none. It must carry errors.deadletterqueue.topic.name.prefix and, if it exists, have errors.deadletterqueue.group.enable=true."}},
	{Property: Property{Name: "errors.deadletterqueue.copy.record.enable", Type: Bool, Default: "false",
		Doc: "Copy the source record's key, value and headers into the dead-letter record; otherwise it carries only the __dlq.errors.* headers."}},
	{Property: Property{Name: "idem.share.release.backoff.ms", Type: Long, Default: "0", Min: 0, Max: 24 * 3600 * 1000,
		Doc: "idem's delayed retry: a record released or whose lock expired becomes available again only after this backoff, multiplied by idem.share.release.backoff.multiplier for each earlier delivery, capped by idem.share.release.backoff.max.ms, with ± idem.share.release.backoff.jitter. 0 redelivers at once (Kafka's behaviour)."}},
	{Property: Property{Name: "idem.share.release.backoff.max.ms", Type: Long, Default: "300000", Min: 0, Max: 24 * 3600 * 1000,
		Doc: "Largest delayed-retry backoff."}},
	{Property: Property{Name: "idem.share.release.backoff.multiplier", Type: Double, Default: "2", Min: 1, Max: 100,
		Doc: "Growth of the delayed-retry backoff per earlier delivery."}},
	{Property: Property{Name: "idem.share.release.backoff.jitter", Type: Double, Default: "0.2", Min: 0, Max: 1,
		Doc: "Fraction of the delayed-retry backoff added or taken away at random, so that records released together do not all return at once."}},
}

var groupByName = func() map[string]*GroupProperty {
	m := map[string]*GroupProperty{}
	for _, p := range groupRegistry {
		m[p.Name] = p
	}
	return m
}()

// GroupProperties returns every group-level config, sorted by name.
func GroupProperties() []*GroupProperty {
	out := append([]*GroupProperty(nil), groupRegistry...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// LookupGroup returns the group-level config called name.
func LookupGroup(name string) (*GroupProperty, bool) {
	p, ok := groupByName[name]
	return p, ok
}

// GroupDefault is the value a group that does not set name uses: its broker
// synonym's current value, or the built-in default.
func (c *Config) GroupDefault(p *GroupProperty) string {
	if p.Broker != "" {
		return c.String(p.Broker)
	}
	return p.Default
}

// ValidateGroup checks a group-level config value, including the broker's
// current bounds for it.
func (c *Config) ValidateGroup(name, value string) error {
	p, ok := groupByName[name]
	if !ok {
		return fmt.Errorf("%w %q for a group", ErrUnknown, name)
	}
	if err := p.validate(name, value); err != nil {
		return err
	}
	if name == "errors.deadletterqueue.topic.name" && value != "" {
		if prefix := c.String("errors.deadletterqueue.topic.name.prefix"); !strings.HasPrefix(value, prefix) {
			return fmt.Errorf("%w for %s=%q: a dead-letter topic must start with %q (errors.deadletterqueue.topic.name.prefix)", ErrInvalid, name, value, prefix)
		}
	}
	if p.MinBroker == "" && p.MaxBroker == "" {
		return nil
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
	lo, hi := c.Int(p.MinBroker), c.Int(p.MaxBroker)
	if n < lo || n > hi {
		return fmt.Errorf("%w for %s=%q: want a value in [%d, %d] (%s, %s)", ErrInvalid, name, value, lo, hi, p.MinBroker, p.MaxBroker)
	}
	return nil
}

// isoDuration matches the ISO-8601 durations by_duration accepts
// (PnDTnHnMnS, each part optional, seconds may be fractional).
var isoDuration = regexp.MustCompile(`^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$`)

// ParseByDuration parses the part after "by_duration:" into milliseconds.
func ParseByDuration(v string) (int64, error) {
	m := isoDuration.FindStringSubmatch(strings.ToUpper(strings.TrimSpace(v)))
	if m == nil || v == "P" || strings.HasSuffix(strings.ToUpper(v), "T") {
		return 0, fmt.Errorf("want an ISO-8601 duration such as PT1H or P1DT30M, got %q", v)
	}
	var ms float64
	for i, unit := range []float64{86400e3, 3600e3, 60e3, 1e3} {
		if m[i+1] == "" {
			continue
		}
		f, err := strconv.ParseFloat(m[i+1], 64)
		if err != nil {
			return 0, err
		}
		ms += f * unit
	}
	return int64(ms), nil
}

func checkAutoOffsetReset(v string) error {
	switch {
	case v == "latest", v == "earliest":
		return nil
	case strings.HasPrefix(v, "by_duration:"):
		_, err := ParseByDuration(strings.TrimPrefix(v, "by_duration:"))
		return err
	}
	return fmt.Errorf("want latest, earliest or by_duration:<ISO-8601 duration>")
}

func checkDLQName(v string) error {
	if v == "" {
		return nil
	}
	if strings.HasPrefix(v, "__") {
		return fmt.Errorf("a dead-letter topic may not be an internal topic (starting with __)")
	}
	if len(v) > 249 {
		return fmt.Errorf("topic names are at most 249 characters")
	}
	for _, r := range v {
		if !(r == '.' || r == '_' || r == '-' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')) {
			return fmt.Errorf("topic name contains %q", r)
		}
	}
	return nil
}
