package main

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestFormatUsesKcatCodes(t *testing.T) {
	r := &kgo.Record{
		Topic: "orders", Partition: 2, Offset: 41, Key: []byte("k1"), Value: []byte("hello"),
		Timestamp: time.UnixMilli(1700000000123),
		Headers:   []kgo.RecordHeader{{Key: "a", Value: []byte("1")}, {Key: "b", Value: []byte("2")}},
	}
	for _, c := range []struct{ format, want string }{
		{`%s\n`, "hello\n"},
		{`%t/%p@%o %k=%s (%K,%S) %T [%h] 100%%\t.`, "orders/2@41 k1=hello (2,5) 1700000000123 [a=1,b=2] 100%\t."},
		{`no codes`, "no codes"},
	} {
		f, err := parseFormat(c.format)
		if err != nil {
			t.Fatalf("parseFormat(%q): %v", c.format, err)
		}
		if got := string(f.write(nil, r)); got != c.want {
			t.Errorf("format %q: got %q, want %q", c.format, got, c.want)
		}
	}
}

func TestFormatRejectsUnknownCodesAndEscapes(t *testing.T) {
	for _, f := range []string{"%x", `\q`, "value %", `\`} {
		if _, err := parseFormat(f); err == nil {
			t.Errorf("parseFormat(%q) accepted", f)
		}
	}
}

func TestStartOffsetAcceptsRpkAndKcatSpellings(t *testing.T) {
	for _, c := range []struct {
		o, at string
		want  startOffset
	}{
		{"beginning", "", startOffset{kind: 's'}},
		{"start", "", startOffset{kind: 's'}},
		{"end", "", startOffset{kind: 'e'}},
		{"47", "", startOffset{'=', 47}},
		{"+2", "", startOffset{'+', 2}},
		{"-3", "", startOffset{'-', 3}},
		{"s@1700000000000", "", startOffset{'t', 1700000000000}},
		{"start", "1700000000000", startOffset{'t', 1700000000000}},
		{"start", "2023-11-14T22:13:20Z", startOffset{'t', 1700000000000}},
	} {
		got, err := parseStartOffset(c.o, c.at)
		if err != nil || got != c.want {
			t.Errorf("parseStartOffset(%q, %q) = %+v, %v; want %+v", c.o, c.at, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "middle", "+", "-x", "s@", "1.5"} {
		if _, err := parseStartOffset(bad, ""); err == nil {
			t.Errorf("parseStartOffset(%q) accepted", bad)
		}
	}
	if _, err := parseStartOffset("start", "yesterday"); err == nil {
		t.Error("--time yesterday accepted")
	}
}

func TestProduceLinesSplitsKeysAtTheFirstDelimiter(t *testing.T) {
	type kv struct{ k, v string }
	var got []kv
	in := "a:1\nb:2:3\nno-key\n\nlast:x" // no final newline
	n, err := produceLines(context.Background(), strings.NewReader(in), ":", func(k, v []byte) {
		got = append(got, kv{string(k), string(v)})
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []kv{{"a", "1"}, {"b", "2:3"}, {"", "no-key"}, {"", ""}, {"last", "x"}}
	if n != len(want) || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %d %v, want %v", n, got, want)
	}
}

func TestProduceLinesHandlesLinesLongerThanTheBuffer(t *testing.T) {
	long := strings.Repeat("x", 200_000)
	var got []string
	if _, err := produceLines(context.Background(), strings.NewReader(long+"\nshort\n"), "", func(_, v []byte) {
		got = append(got, string(v))
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != long || got[1] != "short" {
		t.Fatalf("got %d lines (first %d bytes)", len(got), len(got[0]))
	}
}

func TestProduceFlagsRejectBadAcksAndHeaders(t *testing.T) {
	if _, _, err := parseAcks("2"); err == nil {
		t.Error("--acks 2 accepted")
	}
	if _, idem, err := parseAcks("all"); err != nil || !idem {
		t.Errorf("--acks all: idempotent=%t err=%v; want idempotent", idem, err)
	}
	if _, idem, _ := parseAcks("1"); idem {
		t.Error("--acks 1 left idempotence on; franz-go requires acks=all for it")
	}
	if _, err := parseHeaders([]string{"novalue"}); err == nil {
		t.Error("-H novalue accepted")
	}
	hs, err := parseHeaders([]string{"trace=a=b"})
	if err != nil || len(hs) != 1 || hs[0].Key != "trace" || string(hs[0].Value) != "a=b" {
		t.Errorf("-H trace=a=b parsed as %v, %v", hs, err)
	}
}

func TestClientPropertiesRejectUnknownNames(t *testing.T) {
	f := clientFlags{brokers: []string{"127.0.0.1:9092"}, props: []string{"brokers=a:1,b:2", "client.id=me"}}
	if opts, err := f.opts(); err != nil || len(opts) == 0 {
		t.Fatalf("opts: %v", err)
	}
	for _, bad := range []string{"bootstrap", "bootstrap.servers=a:1"} {
		f := clientFlags{props: []string{bad}}
		if _, err := f.opts(); err == nil {
			t.Errorf("-X %s accepted", bad)
		}
	}
}

func TestPropertiesFileFollowsJavaPropertiesRules(t *testing.T) {
	in := `# Kafka server.properties style
! also a comment
num.partitions=3
auto.create.topics.enable : false
log.dirs /var/lib/idem
log.retention.ms = \
    3600000
message.max.bytes: 1048588
weird\=key=tab\tvalue
empty=
`
	got, err := parseProperties(strings.NewReader(in), "server.properties")
	if err != nil {
		t.Fatal(err)
	}
	want := []property{
		{"num.partitions", "3", "server.properties:3"},
		{"auto.create.topics.enable", "false", "server.properties:4"},
		{"log.dirs", "/var/lib/idem", "server.properties:5"},
		{"log.retention.ms", "3600000", "server.properties:6"},
		{"message.max.bytes", "1048588", "server.properties:8"},
		{"weird=key", "tab\tvalue", "server.properties:9"},
		{"empty", "", "server.properties:10"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}

func TestSetFlagsNeedNameAndValue(t *testing.T) {
	ps, err := parseSetFlags([]string{"num.partitions=3", "x.y="})
	if err != nil || len(ps) != 2 || ps[1].value != "" {
		t.Fatalf("got %v, %v", ps, err)
	}
	for _, bad := range []string{"num.partitions", "=3"} {
		if _, err := parseSetFlags([]string{bad}); err == nil || !strings.Contains(err.Error(), "name=value") {
			t.Errorf("-X %q: got %v, want a name=value error", bad, err)
		}
	}
}
