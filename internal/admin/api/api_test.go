package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/admin/api"
)

// client is the HTTP side of a test: requests against a real broker's
// admin address.
type client struct {
	t    *testing.T
	base string
	user string
	pass string
}

func newClient(t *testing.T, b *brokertest.Broker) *client {
	return &client{t: t, base: b.AdminURL()}
}

// do sends a request and decodes a JSON answer into out (when not nil).
// It returns the status; a problem answer is decoded into a *api.Problem
// returned as well.
func (c *client) do(method, path string, body any, out any) (int, *api.Problem) {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 {
		if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
			c.t.Fatalf("%s %s: status %d with Content-Type %q, want application/problem+json: %s", method, path, resp.StatusCode, ct, raw)
		}
		var p api.Problem
		if err := json.Unmarshal(raw, &p); err != nil {
			c.t.Fatalf("%s %s: problem body: %v: %s", method, path, err, raw)
		}
		if p.Status != resp.StatusCode || p.Title == "" || p.Type == "" {
			c.t.Fatalf("%s %s: problem %+v does not match status %d", method, path, p, resp.StatusCode)
		}
		return resp.StatusCode, &p
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			c.t.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	}
	return resp.StatusCode, nil
}

// must is do that fails the test unless the status is want.
func (c *client) must(want int, method, path string, body any, out any) {
	c.t.Helper()
	if got, p := c.do(method, path, body, out); got != want {
		c.t.Fatalf("%s %s: status %d (%+v), want %d", method, path, got, p, want)
	}
}

// refused checks that a request is refused with status want.
func (c *client) refused(want int, method, path string, body any) *api.Problem {
	c.t.Helper()
	got, p := c.do(method, path, body, nil)
	if got != want {
		c.t.Fatalf("%s %s: status %d, want %d (%+v)", method, path, got, want, p)
	}
	return p
}

func ctx(t *testing.T) context.Context { return brokertest.Ctx(t) }

func TestTheOpenAPIDocumentListsExactlyTheServedRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(api.OpenAPI(), &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi = %q, want 3.x", doc.OpenAPI)
	}
	var documented, served []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	served = append(served, "GET /v1/openapi.json")
	for _, r := range api.Routes() {
		served = append(served, r.Method+" "+r.Path)
	}
	slices.Sort(documented)
	slices.Sort(served)
	if !slices.Equal(documented, served) {
		t.Fatalf("documented routes differ from served ones\ndocumented: %q\nserved:     %q", documented, served)
	}

	// And the broker really serves them: every route answers something
	// other than the mux's "no such route" (a problem of type not found
	// whose detail says no such API path).
	b := brokertest.Run(t, broker.WithTopics("t"))
	c := newClient(t, b)
	for _, r := range served {
		method, path, _ := strings.Cut(r, " ")
		path = strings.NewReplacer("{name}", "t", "{partition}", "0", "{id}", "x", "{topic}", "t").Replace(path)
		if _, p := c.do(method, path, "{}", nil); p != nil && strings.Contains(p.Detail, "no such API path") {
			t.Errorf("%s: not served", r)
		}
	}
	if p := c.refused(http.StatusNotFound, "GET", "/v1/nothing", nil); !strings.Contains(p.Detail, "no such API path") {
		t.Errorf("unknown path: %+v", p)
	}
	c.refused(http.StatusMethodNotAllowed, "PUT", "/v1/topics", nil)
}

func TestClusterDescribesTheBroker(t *testing.T) {
	b := brokertest.Run(t)
	var info api.ClusterInfo
	newClient(t, b).must(http.StatusOK, "GET", "/v1/cluster", nil, &info)
	if info.ClusterID == "" || info.Version == "" || info.Health.Status != "ok" {
		t.Fatalf("cluster: %+v", info)
	}
	if len(info.Listeners) != 1 || info.Listeners[0].Name != "PLAINTEXT" || info.Listeners[0].Address != b.Addr() {
		t.Fatalf("listeners %+v, want PLAINTEXT at %s", info.Listeners, b.Addr())
	}
}

func TestTopicsAreCreatedDescribedAlteredAndDeleted(t *testing.T) {
	b := brokertest.Run(t)
	c := newClient(t, b)

	var created api.TopicDetail
	c.must(http.StatusCreated, "POST", "/v1/topics", map[string]any{"name": "orders", "partitions": 3, "configs": map[string]string{"retention.ms": "3600000"}}, &created)
	if created.Name != "orders" || len(created.Partitions) != 3 {
		t.Fatalf("created: %+v", created)
	}
	if v := config(created.Configs, "retention.ms"); v != "3600000" {
		t.Errorf("retention.ms = %q after create", v)
	}
	c.refused(http.StatusConflict, "POST", "/v1/topics", map[string]any{"name": "orders"})
	c.refused(http.StatusBadRequest, "POST", "/v1/topics", `{"name": "x", `)
	c.refused(http.StatusBadRequest, "POST", "/v1/topics", `{"name": "x", "replicas": 3}`)
	c.refused(http.StatusBadRequest, "POST", "/v1/topics", `{}`)
	c.refused(http.StatusBadRequest, "POST", "/v1/topics", map[string]any{"name": "bad/name"})
	c.refused(http.StatusBadRequest, "POST", "/v1/topics", `{"name": "x"} {"name": "y"}`)
	c.refused(http.StatusBadRequest, "POST", "/v1/topics", `{"name": "`+strings.Repeat("x", 2<<20)+`"}`) // over the 1 MiB body bound
	req, _ := http.NewRequest("POST", c.base+"/v1/topics", strings.NewReader("name=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("a form body: %v %v, want 415", resp, err)
	} else {
		resp.Body.Close()
	}
	c.refused(http.StatusBadRequest, "POST", "/v1/topics", map[string]any{"name": "y", "configs": map[string]string{"retention.ms": "soon"}})

	// Records show in the partitions' offsets and the topic's count.
	cl := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for i := range 5 {
		if err := cl.ProduceSync(ctx(t), &kgo.Record{Topic: "orders", Partition: 1, Value: []byte{byte(i)}}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	var topics []api.TopicSummary
	c.must(http.StatusOK, "GET", "/v1/topics", nil, &topics)
	i := slices.IndexFunc(topics, func(s api.TopicSummary) bool { return s.Name == "orders" })
	if i < 0 || topics[i].Partitions != 3 || topics[i].Records < 5 || topics[i].SizeBytes <= 0 {
		t.Fatalf("topics: %+v", topics)
	}
	var d api.TopicDetail
	c.must(http.StatusOK, "GET", "/v1/topics/orders", nil, &d)
	p1 := d.Partitions[1]
	if p1.Partition != 1 || p1.LogStartOffset != 0 || p1.HighWatermark != 5 || p1.LastStableOffset != 5 || p1.SizeBytes <= 0 {
		t.Fatalf("partition 1: %+v", p1)
	}
	c.refused(http.StatusNotFound, "GET", "/v1/topics/missing", nil)

	// Configs: set, then delete back to the default.
	var cfgs []api.ConfigEntry
	c.must(http.StatusOK, "PATCH", "/v1/topics/orders/configs", map[string]any{"set": map[string]string{"cleanup.policy": "compact"}, "delete": []string{"retention.ms"}}, &cfgs)
	if v := config(cfgs, "cleanup.policy"); v != "compact" {
		t.Errorf("cleanup.policy = %q after PATCH", v)
	}
	if v := config(cfgs, "retention.ms"); v == "3600000" {
		t.Errorf("retention.ms still %q after delete", v)
	}
	c.refused(http.StatusBadRequest, "PATCH", "/v1/topics/orders/configs", map[string]any{"set": map[string]string{"retention.ms": "soon"}})
	c.refused(http.StatusBadRequest, "PATCH", "/v1/topics/orders/configs", map[string]any{})
	c.refused(http.StatusNotFound, "PATCH", "/v1/topics/missing/configs", map[string]any{"set": map[string]string{"retention.ms": "1"}})

	c.must(http.StatusNoContent, "DELETE", "/v1/topics/orders", nil, nil)
	c.refused(http.StatusNotFound, "GET", "/v1/topics/orders", nil)
	c.refused(http.StatusNotFound, "DELETE", "/v1/topics/orders", nil)
}

func config(cfgs []api.ConfigEntry, name string) string {
	for _, c := range cfgs {
		if c.Name == name && c.Value != nil {
			return *c.Value
		}
	}
	return ""
}

func TestMessagesAreProducedAndBrowsedByOffsetAndTime(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("events"), broker.WithProperty("num.partitions", "2"))
	c := newClient(t, b)

	var first api.Produced
	c.must(http.StatusCreated, "POST", "/v1/topics/events/messages", map[string]any{
		"partition": 0, "key": "order-1", "value": `{"id":1,"items":["a"]}`,
		"headers": []map[string]string{{"key": "trace", "value": "abc"}},
	}, &first)
	if first.Partition != 0 || first.Offset != 0 {
		t.Fatalf("first produce: %+v", first)
	}
	c.must(http.StatusCreated, "POST", "/v1/topics/events/messages", map[string]any{"partition": 0, "value": "plain text"}, nil)
	c.must(http.StatusCreated, "POST", "/v1/topics/events/messages", map[string]any{"partition": 0, "value": "//79", "value_base64": true}, nil) // ff fe fd
	c.refused(http.StatusBadRequest, "POST", "/v1/topics/events/messages", map[string]any{"partition": 7, "value": "x"})
	c.refused(http.StatusBadRequest, "POST", "/v1/topics/events/messages", map[string]any{"value": "%%", "value_base64": true})
	c.refused(http.StatusBadRequest, "POST", "/v1/topics/events/messages", `not json`)
	c.refused(http.StatusNotFound, "POST", "/v1/topics/missing/messages", map[string]any{"value": "x"})
	time.Sleep(5 * time.Millisecond)
	later := time.Now()
	time.Sleep(5 * time.Millisecond)
	cl := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for i := range 20 {
		if err := cl.ProduceSync(ctx(t), &kgo.Record{Topic: "events", Partition: 0, Value: []byte{'v', byte('a' + i)}}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	var page api.MessagesPage
	c.must(http.StatusOK, "GET", "/v1/topics/events/partitions/0/messages?offset=0&limit=3", nil, &page)
	if len(page.Messages) != 3 || page.NextOffset != 3 || page.HighWatermark != 23 || page.LogStartOffset != 0 {
		t.Fatalf("page: next %d hwm %d, %d messages", page.NextOffset, page.HighWatermark, len(page.Messages))
	}
	m0, m1, m2 := page.Messages[0], page.Messages[1], page.Messages[2]
	if m0.Key != (api.Data{Format: "text", Data: "order-1", Size: 7}) || m0.Value.Format != "json" ||
		m0.Value.Data != "{\n  \"id\": 1,\n  \"items\": [\n    \"a\"\n  ]\n}" {
		t.Errorf("JSON message shown as key %+v value %+v", m0.Key, m0.Value)
	}
	if len(m0.Headers) != 1 || m0.Headers[0].Key != "trace" || m0.Headers[0].Value.Data != "abc" {
		t.Errorf("headers %+v", m0.Headers)
	}
	if m1.Value != (api.Data{Format: "text", Data: "plain text", Size: 10}) || m1.Key.Format != "null" {
		t.Errorf("text message shown as key %+v value %+v", m1.Key, m1.Value)
	}
	if m2.Value != (api.Data{Format: "base64", Data: "//79", Size: 3}) {
		t.Errorf("binary message shown as %+v", m2.Value)
	}

	// The next page starts where this one ended.
	c.must(http.StatusOK, "GET", "/v1/topics/events/partitions/0/messages?offset=3&limit=5", nil, &page)
	if len(page.Messages) != 5 || page.Messages[0].Offset != 3 || page.NextOffset != 8 {
		t.Fatalf("second page: %d messages from %d, next %d", len(page.Messages), page.Messages[0].Offset, page.NextOffset)
	}
	// By time: the first record at or after it.
	c.must(http.StatusOK, "GET", "/v1/topics/events/partitions/0/messages?limit=1&timestamp="+itoa(later.UnixMilli()), nil, &page)
	if len(page.Messages) != 1 || page.Messages[0].Value.Data != "va" {
		t.Fatalf("by time: %+v", page.Messages)
	}
	// The end of the log: an empty page that says where to wait.
	c.must(http.StatusOK, "GET", "/v1/topics/events/partitions/0/messages?offset=100", nil, &page)
	if len(page.Messages) != 0 || page.NextOffset != 100 {
		t.Fatalf("past the end: %+v", page)
	}
	// An oversize limit is lowered to the bound.
	c.must(http.StatusOK, "GET", "/v1/topics/events/partitions/0/messages?limit=1000000", nil, &page)
	if page.Limit != api.MaxLimit || len(page.Messages) != 23 {
		t.Fatalf("limit=1000000: limit %d, %d messages", page.Limit, len(page.Messages))
	}

	// Without a partition, a record is placed by its key's hash, as by
	// Kafka's producers; a record without a value is a tombstone (null).
	var k1, k2 api.Produced
	c.must(http.StatusCreated, "POST", "/v1/topics/events/messages", map[string]any{"key": "customer-7"}, &k1)
	c.must(http.StatusCreated, "POST", "/v1/topics/events/messages", map[string]any{"key": "customer-7"}, &k2)
	if k1.Partition != k2.Partition || k2.Offset != k1.Offset+1 {
		t.Fatalf("same key, different places: %+v %+v", k1, k2)
	}
	c.must(http.StatusOK, "GET", "/v1/topics/events/partitions/"+itoa(int64(k1.Partition))+"/messages?offset="+itoa(k1.Offset)+"&limit=1", nil, &page)
	if len(page.Messages) != 1 || page.Messages[0].Value.Format != "null" || page.Messages[0].Key.Data != "customer-7" {
		t.Fatalf("tombstone: %+v", page.Messages)
	}

	for q, want := range map[string]int{
		"/v1/topics/events/partitions/0/messages?offset=abc":            http.StatusBadRequest,
		"/v1/topics/events/partitions/0/messages?offset=-1":             http.StatusBadRequest,
		"/v1/topics/events/partitions/0/messages?limit=0":               http.StatusBadRequest,
		"/v1/topics/events/partitions/0/messages?offset=1&timestamp=2":  http.StatusBadRequest,
		"/v1/topics/events/partitions/0/messages?isolation=dirty":       http.StatusBadRequest,
		"/v1/topics/events/partitions/x/messages":                       http.StatusBadRequest,
		"/v1/topics/events/partitions/-1/messages":                      http.StatusBadRequest,
		"/v1/topics/events/partitions/9/messages":                       http.StatusNotFound,
		"/v1/topics/missing/partitions/0/messages":                      http.StatusNotFound,
		"/v1/topics/events/partitions/99999999999999999999999/messages": http.StatusBadRequest,
	} {
		c.refused(want, "GET", q, nil)
	}
}

func TestMessagePagesAreBoundedInBytes(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("big"), broker.WithProperty("num.partitions", "1"))
	cl := b.Client(t, kgo.ProducerBatchMaxBytes(2<<20))
	value := bytes.Repeat([]byte("x"), 900<<10)
	for range 6 {
		if err := cl.ProduceSync(ctx(t), &kgo.Record{Topic: "big", Value: value}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	var page api.MessagesPage
	newClient(t, b).must(http.StatusOK, "GET", "/v1/topics/big/partitions/0/messages?limit=500", nil, &page)
	// 4 MiB of values ends the page after the record that crosses it.
	if n := len(page.Messages); n != 5 || page.NextOffset != 5 {
		t.Fatalf("%d messages, next %d; want 5 (the page ends past %d bytes)", n, page.NextOffset, api.MaxPageBytes)
	}
}

func itoa(n int64) string { return strings.TrimSpace(string(must(json.Marshal(n)))) }

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
