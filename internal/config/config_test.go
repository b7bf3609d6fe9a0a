package config

import (
	"errors"
	"strings"
	"testing"
)

func TestDefaultsAndSet(t *testing.T) {
	c := New()
	if c.Int("num.partitions") != 1 || !c.Bool("auto.create.topics.enable") || c.Int("message.max.bytes") != 1048588 {
		t.Fatal("defaults")
	}
	if c.RetentionMs() != 168*3600*1000 {
		t.Fatalf("retention %d", c.RetentionMs())
	}
	if err := c.Set("log.retention.minutes", "5"); err != nil {
		t.Fatal(err)
	}
	if c.RetentionMs() != 300000 {
		t.Fatalf("minutes: %d", c.RetentionMs())
	}
	if err := c.Set("log.retention.ms", "-1"); err != nil {
		t.Fatal(err)
	}
	if c.RetentionMs() != -1 {
		t.Fatalf("ms: %d", c.RetentionMs())
	}
	for _, tc := range []struct{ name, value string }{
		{"num.partitions", "0"},
		{"num.partitions", "many"},
		{"auto.create.topics.enable", "yes"},
		{"default.replication.factor", "3"},
		{"log.cleanup.policy", "compact,shred"},
		{"log.cleaner.min.cleanable.ratio", "1.5"},
		{"log.cleaner.io.buffer.load.factor", "most"},
		{"advertised.listeners", "0.0.0.0:9092"},
		{"listeners", "host"},
		{"listeners", "PLAINTEXT://a:1,PLAINTEXT://b:2"},
		{"listeners", "BAD NAME://a:1"},
		{"listener.security.protocol.map", "CLIENT:TLS"},
		{"ssl.enabled.protocols", "TLSv1.1"},
		{"sasl.enabled.mechanisms", "GSSAPI"},
		{"authorizer.class.name", "com.example.Mine"},
	} {
		err := c.Set(tc.name, tc.value)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("%s=%s: %v", tc.name, tc.value, err)
		}
	}
	if err := c.Set("no.such.property", "1"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("unknown: %v", err)
	}
	if err := c.Set("group.min.session.timeout.ms", "9999999"); err == nil {
		t.Fatal("min above max accepted")
	}
}

func TestRequiredPropertiesExist(t *testing.T) {
	for _, n := range []string{"log.dirs", "num.partitions", "auto.create.topics.enable", "default.replication.factor",
		"log.segment.bytes", "log.roll.ms", "log.retention.ms", "log.retention.bytes", "message.max.bytes",
		"socket.request.max.bytes", "group.initial.rebalance.delay.ms", "group.min.session.timeout.ms",
		"group.max.session.timeout.ms", "offsets.retention.minutes", "transaction.max.timeout.ms",
		"transactional.id.expiration.ms", "producer.id.expiration.ms", "advertised.listeners"} {
		p, ok := Lookup(n)
		if !ok || p.Doc == "" {
			t.Errorf("%s missing or undocumented", n)
		}
	}
	for _, p := range Properties() {
		if !p.Null {
			if err := p.Validate(p.Default); err != nil {
				t.Errorf("default of %s invalid: %v", p.Name, err)
			}
		}
	}
}

func TestTopicPropertiesAndFiles(t *testing.T) {
	if p, err := ValidateTopic("retention.ms", "1000"); err != nil || p.Name != "log.retention.ms" {
		t.Fatal(p, err)
	}
	if _, err := ValidateTopic("retention.ms", "x"); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
	kv, err := ParseProperties(strings.NewReader("# comment\nnum.partitions=3\n\n! also\nlog.dirs : /data\n"))
	if err != nil || len(kv) != 2 || kv[1] != [2]string{"log.dirs", "/data"} {
		t.Fatal(kv, err)
	}
	if _, err := ParseProperties(strings.NewReader("novalue\n")); err == nil {
		t.Fatal("bad line accepted")
	}
	h, p, err := HostPort("PLAINTEXT://example.com:9093")
	if err != nil || h != "example.com" || p != 9093 {
		t.Fatal(h, p, err)
	}
}

func TestGroupPropertiesAndDynamic(t *testing.T) {
	c := New()
	p, ok := LookupGroup("share.record.lock.duration.ms")
	if !ok || c.GroupDefault(p) != "30000" {
		t.Fatal("lock duration default")
	}
	for _, bad := range [][2]string{
		{"share.record.lock.duration.ms", "1000"}, // below group.share.min.record.lock.duration.ms
		{"share.delivery.count.limit", "1"},
		{"share.auto.offset.reset", "by_duration:1h"},
		{"share.isolation.level", "committed"},
		{"errors.deadletterqueue.topic.name", "orders-dlq"}, // missing the dlq. prefix
		{"errors.deadletterqueue.topic.name", "__dlq.x"},
		{"idem.share.release.backoff.multiplier", "0.5"},
		{"no.such.group.config", "1"},
	} {
		if err := c.ValidateGroup(bad[0], bad[1]); err == nil {
			t.Errorf("%s=%s accepted", bad[0], bad[1])
		}
	}
	for _, good := range [][2]string{
		{"share.record.lock.duration.ms", "15000"},
		{"share.auto.offset.reset", "by_duration:PT1H30M"},
		{"share.auto.offset.reset", "earliest"},
		{"errors.deadletterqueue.topic.name", "dlq.orders"},
		{"idem.share.release.backoff.multiplier", "1.5"},
	} {
		if err := c.ValidateGroup(good[0], good[1]); err != nil {
			t.Errorf("%s=%s: %v", good[0], good[1], err)
		}
	}
	if ms, err := ParseByDuration("P1DT2H3M4.5S"); err != nil || ms != 86400e3+2*3600e3+3*60e3+4500 {
		t.Fatal(ms, err)
	}
	// Dynamic values win over static ones and can be removed again.
	v := "1000"
	if err := c.SetDynamic("group.share.min.record.lock.duration.ms", &v); err != nil {
		t.Fatal(err)
	}
	if err := c.ValidateGroup("share.record.lock.duration.ms", "1000"); err != nil {
		t.Fatal(err)
	}
	if _, src := c.ValueSource("group.share.min.record.lock.duration.ms"); src != SourceDynamic {
		t.Fatal(src)
	}
	if err := c.SetDynamic("group.share.min.record.lock.duration.ms", nil); err != nil || c.Int("group.share.min.record.lock.duration.ms") != 15000 {
		t.Fatal(err)
	}
	if err := c.SetDynamic("log.dirs", &v); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("read-only property set dynamically: %v", err)
	}
	// A topic-only property is a topic config, not a broker one.
	if _, err := ValidateTopic("errors.deadletterqueue.group.enable", "true"); err != nil {
		t.Fatal(err)
	}
	if err := c.Set("errors.deadletterqueue.group.enable", "true"); !errors.Is(err, ErrUnknown) {
		t.Fatal(err)
	}
}

func TestListeners(t *testing.T) {
	c := New()
	for _, kv := range [][2]string{
		{"listeners", "PLAINTEXT://127.0.0.1:9092,SASL_SSL://0.0.0.0:9093,CLIENT://:9094"},
		{"listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CLIENT:SSL"},
		{"advertised.listeners", "SASL_SSL://broker.example.com:9093"},
	} {
		if err := c.Set(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	ls, err := c.Listeners()
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 3 || ls[1].Protocol != SASLSSL || !ls[1].TLS() || !ls[1].SASL() || ls[1].AdvertisedHost != "broker.example.com" ||
		ls[2].Protocol != SSL || ls[2].Host != "" || ls[0].AdvertisedHost != "" {
		t.Fatalf("%+v", ls)
	}
	if !c.Unauthenticated(ls[2]) || c.Unauthenticated(ls[1]) {
		t.Error("SSL without required client certificates is unauthenticated; SASL_SSL is not")
	}
	// A name the protocol map does not know is refused, with the fix.
	c.Set("listeners", "INTERNAL://127.0.0.1:9092")
	if _, err := c.Listeners(); err == nil || !strings.Contains(err.Error(), "listener.security.protocol.map") {
		t.Errorf("unmapped listener: %v", err)
	}
	c.Set("listeners", "127.0.0.1:9092")
	c.Set("advertised.listeners", "OTHER://h:1")
	if _, err := c.Listeners(); err == nil {
		t.Error("an advertised listener that is not a listener was accepted")
	}
}
