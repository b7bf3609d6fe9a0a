package console_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
)

// get fetches a console page and returns its status and body.
func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestEveryPageIsDrawn: each page answers 200 with its content, unknown
// things answer the error page with the API's status, and the stylesheet
// is served from the binary.
func TestEveryPageIsDrawn(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("orders"), broker.WithProperty("num.partitions", "1"))
	cl := b.Client(t)
	if err := cl.ProduceSync(brokertest.Ctx(t), &kgo.Record{Topic: "orders", Key: []byte("k1"), Value: []byte(`{"total": 12}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	base := b.AdminURL()
	for path, want := range map[string]string{
		"/":                                      `id="topic-count">1<`,
		"/topics":                                `href="/topics/orders"`,
		"/topics/orders":                         `Browse partition 0`,
		"/topics/orders/partitions/0":            `href="/topics/orders/partitions/0/messages/0"`,
		"/topics/orders/partitions/0/messages/0": "&#34;total&#34;: 12",
		"/groups":                                "No consumer groups.",
		"/transactions":                          "No transactional ids.",
		"/share-groups":                          "No share groups.",
		"/delivery":                              `id="duplicates">0<`,
		"/static/style.css":                      "--accent",
	} {
		status, body := get(t, base+path)
		if status != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("%s: status %d, want 200 and %q in:\n%s", path, status, want, body)
		}
	}
	if _, body := get(t, base+"/"); !strings.Contains(body, `id="fsync">`) || !strings.Contains(body, `id="connections">`) {
		t.Errorf("the overview lacks fsync latency or connections:\n%s", body)
	}
	if _, body := get(t, base+"/delivery"); !strings.Contains(body, `id="txns-aborted">0<`) {
		t.Errorf("/delivery lacks the transaction counters:\n%s", body)
	}
	for path, want := range map[string]int{
		"/topics/missing":                        http.StatusNotFound,
		"/topics/orders/partitions/x":            http.StatusBadRequest,
		"/topics/orders/partitions/0/messages/9": http.StatusNotFound,
		"/groups/nobody":                         http.StatusNotFound,
		"/no/such/page":                          http.StatusNotFound,
	} {
		if status, body := get(t, base+path); status != want || !strings.Contains(body, "<h1>") {
			t.Errorf("%s: status %d, want %d with an error page", path, status, want)
		}
	}
}

// TestTheResetFormRedirectsOrShowsTheProblem: a reset of an empty group
// redirects to the group page with a notice; a malformed offset draws the
// group page again with 400; a cross-site POST is refused.
func TestTheResetFormRedirectsOrShowsTheProblem(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("orders"), broker.WithProperty("num.partitions", "1"))
	cl := b.Client(t)
	for range 3 {
		if err := cl.ProduceSync(brokertest.Ctx(t), &kgo.Record{Topic: "orders", Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	consumer := b.Client(t, kgo.ConsumerGroup("billing"), kgo.ConsumeTopics("orders"), kgo.FetchMaxWait(100*time.Millisecond))
	for n := 0; n < 3; {
		n += consumer.PollFetches(brokertest.Ctx(t)).NumRecords()
	}
	if err := consumer.CommitUncommittedOffsets(brokertest.Ctx(t)); err != nil {
		t.Fatal(err)
	}
	consumer.Close()

	noRedirect := &http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(form url.Values, header map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", b.AdminURL()+"/groups/billing/reset", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp := post(url.Values{"to": {"earliest"}}, nil)
		if resp.StatusCode == http.StatusSeeOther {
			if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, "/groups/billing?done=") {
				t.Fatalf("redirect to %q", loc)
			}
			break
		}
		// 409 until the coordinator has seen the member leave.
		if resp.StatusCode != http.StatusConflict || time.Now().After(deadline) {
			t.Fatalf("reset: status %d", resp.StatusCode)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if resp := post(url.Values{"to": {"offset"}, "offset": {"two"}}, nil); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("malformed offset: status %d, want 400", resp.StatusCode)
	}
	if resp := post(url.Values{"to": {"latest"}}, map[string]string{"Sec-Fetch-Site": "cross-site"}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site POST: status %d, want 403", resp.StatusCode)
	}
	_, body := get(t, b.AdminURL()+"/groups/billing")
	if !strings.Contains(body, `id="total-lag">3<`) {
		t.Fatalf("after the reset to earliest the lag is not 3:\n%s", body)
	}
}

// TestAnOpenTransactionIsAbortedFromTheConsole: the Abort button of an
// Ongoing transaction aborts it and redirects to the list; a second abort
// draws the list with 409.
func TestAnOpenTransactionIsAbortedFromTheConsole(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("ledger"), broker.WithProperty("num.partitions", "1"))
	producer := b.Client(t, kgo.TransactionalID("pay-1"), kgo.TransactionTimeout(time.Minute))
	if err := producer.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := producer.ProduceSync(brokertest.Ctx(t), &kgo.Record{Topic: "ledger", Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if _, body := get(t, b.AdminURL()+"/transactions"); !strings.Contains(body, `action="/transactions/pay-1/abort"`) {
		t.Fatalf("no Abort button for the open transaction:\n%s", body)
	}
	noRedirect := &http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Post(b.AdminURL()+"/transactions/pay-1/abort", "application/x-www-form-urlencoded", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/transactions?done=") {
		t.Fatalf("abort: status %d, location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if _, body := get(t, b.AdminURL()+"/transactions"); !strings.Contains(body, "CompleteAbort") || strings.Contains(body, `/abort"`) {
		t.Fatalf("after the abort:\n%s", body)
	}
	resp, err = noRedirect.Post(b.AdminURL()+"/transactions/pay-1/abort", "application/x-www-form-urlencoded", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("second abort: status %d, want 409", resp.StatusCode)
	}
}

// posted is a form post's answer: status, redirect target and page.
type posted struct {
	Status   int
	Location string
	Body     string
}

// postForm posts form to the console as a browser on the same origin
// would (header may make it cross-site), without following the redirect.
func postForm(t *testing.T, u string, form url.Values, header map[string]string) posted {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	noRedirect := &http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return posted{resp.StatusCode, resp.Header.Get("Location"), string(b)}
}

// crossSite are the two ways a browser says a post comes from another
// site; either must be refused with 403 before the form is handled.
var crossSite = []map[string]string{
	{"Sec-Fetch-Site": "cross-site"},
	{"Origin": "https://attacker.example"},
}

// topicExists asks Kafka, not the console, with a new client each time:
// a client's cached metadata could still show a deleted topic.
func topicExists(t *testing.T, b *brokertest.Broker, name string) bool {
	t.Helper()
	tds, err := kadm.NewClient(b.Client(t)).ListTopics(brokertest.Ctx(t), name)
	if err != nil {
		t.Fatal(err)
	}
	return tds.Has(name) && tds[name].Err == nil
}

// wantFieldError checks that a redrawn page names the field's error with
// aria-describedby and shows it.
func wantFieldError(t *testing.T, what string, p posted, status int, errorID, text string) {
	t.Helper()
	if p.Status != status {
		t.Errorf("%s: status %d, want %d\n%s", what, p.Status, status, p.Body)
		return
	}
	if !strings.Contains(p.Body, `aria-describedby="`) || !strings.Contains(p.Body, errorID+`"`) ||
		!strings.Contains(p.Body, `id="`+errorID+`"`) || !strings.Contains(p.Body, text) || !strings.Contains(p.Body, `role="alert"`) {
		t.Errorf("%s: the page lacks the field error %s (%q):\n%s", what, errorID, text, p.Body)
	}
}

// TestTheCreateTopicForm: a topic is created with its partitions and
// configs and the browser is sent to it; malformed fields, an invalid
// config and a taken name draw the form again with the typed values, the
// status and the error beside the field; a cross-site post creates nothing.
func TestTheCreateTopicForm(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("taken"))
	adm := kadm.NewClient(b.Client(t))
	base := b.AdminURL()

	good := url.Values{"name": {"invoices"}, "partitions": {"3"}, "configs": {"cleanup.policy=compact\r\nretention.ms=86400000\r\n\r\n"}}
	for _, h := range crossSite {
		if p := postForm(t, base+"/topics", good, h); p.Status != http.StatusForbidden {
			t.Errorf("cross-site %v: status %d, want 403", h, p.Status)
		}
	}
	if topicExists(t, b, "invoices") {
		t.Fatal("a cross-site post created the topic")
	}

	p := postForm(t, base+"/topics", good, map[string]string{"Sec-Fetch-Site": "same-origin"})
	if p.Status != http.StatusSeeOther || !strings.HasPrefix(p.Location, "/topics/invoices?done=") {
		t.Fatalf("create: status %d, location %q\n%s", p.Status, p.Location, p.Body)
	}
	tds, err := kadm.NewClient(b.Client(t)).ListTopics(brokertest.Ctx(t), "invoices")
	if err != nil || len(tds["invoices"].Partitions) != 3 {
		t.Fatalf("Kafka says invoices has %d partitions (%v), want 3", len(tds["invoices"].Partitions), err)
	}
	rcs, err := adm.DescribeTopicConfigs(brokertest.Ctx(t), "invoices")
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := rcs.On("invoices", nil)
	got := map[string]string{}
	for _, c := range rc.Configs {
		if c.Value != nil {
			got[c.Key] = *c.Value
		}
	}
	if got["cleanup.policy"] != "compact" || got["retention.ms"] != "86400000" {
		t.Errorf("configs after create: cleanup.policy=%q retention.ms=%q", got["cleanup.policy"], got["retention.ms"])
	}
	if _, body := get(t, base+p.Location); !strings.Contains(body, "Topic invoices created with 3 partitions.") {
		t.Errorf("no notice after the redirect:\n%s", body)
	}

	p = postForm(t, base+"/topics", url.Values{"name": {"bad-parts"}, "partitions": {"two"}}, nil)
	wantFieldError(t, "partitions=two", p, http.StatusBadRequest, "create-partitions-error", "partitions must be a whole number")
	if !strings.Contains(p.Body, `value="bad-parts"`) {
		t.Errorf("the typed name is not kept:\n%s", p.Body)
	}
	p = postForm(t, base+"/topics", url.Values{"name": {"bad-line"}, "configs": {"cleanup.policy compact"}}, nil)
	wantFieldError(t, "a config line without =", p, http.StatusBadRequest, "create-configs-error", "line 1 of the configs is not key=value")
	p = postForm(t, base+"/topics", url.Values{"name": {"bad-config"}, "configs": {"retention.ms=soon"}}, nil)
	wantFieldError(t, "retention.ms=soon", p, http.StatusBadRequest, "create-configs-error", "retention.ms")
	p = postForm(t, base+"/topics", url.Values{"name": {"taken"}}, nil)
	wantFieldError(t, "a taken name", p, http.StatusConflict, "create-name-error", "TOPIC_ALREADY_EXISTS")
	p = postForm(t, base+"/topics", url.Values{"name": {""}}, nil)
	wantFieldError(t, "no name", p, http.StatusBadRequest, "create-name-error", "name is required")
	for _, name := range []string{"bad-parts", "bad-line", "bad-config"} {
		if topicExists(t, b, name) {
			t.Errorf("refused form created %s", name)
		}
	}
}

// TestTheDeleteTopicFormAsksForTheName: a wrong or missing name, or a
// cross-site post, deletes nothing (Kafka still has the topic); the typed
// name deletes it and sends the browser to the list.
func TestTheDeleteTopicFormAsksForTheName(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("orders"))
	u := b.AdminURL() + "/topics/orders/delete"

	for _, confirm := range []string{"", "order", "ORDERS", " orders"} {
		p := postForm(t, u, url.Values{"confirm": {confirm}}, nil)
		wantFieldError(t, "confirm "+strconv.Quote(confirm), p, http.StatusBadRequest, "delete-confirm-error", "type the topic&#39;s name, orders, to delete it")
	}
	for _, h := range crossSite {
		if p := postForm(t, u, url.Values{"confirm": {"orders"}}, h); p.Status != http.StatusForbidden {
			t.Errorf("cross-site %v: status %d, want 403", h, p.Status)
		}
	}
	if !topicExists(t, b, "orders") {
		t.Fatal("a refused delete deleted the topic")
	}
	p := postForm(t, u, url.Values{"confirm": {"orders"}}, nil)
	if p.Status != http.StatusSeeOther || !strings.HasPrefix(p.Location, "/topics?done=") {
		t.Fatalf("delete: status %d, location %q\n%s", p.Status, p.Location, p.Body)
	}
	if topicExists(t, b, "orders") {
		t.Error("Kafka still has orders after the delete")
	}
	if p := postForm(t, u, url.Values{"confirm": {"orders"}}, nil); p.Status != http.StatusNotFound {
		t.Errorf("deleting it again: status %d, want 404", p.Status)
	}
}

// TestTheConfigForms: a row's Set overrides the value, its Delete
// override returns to the default; a value Kafka refuses draws the page
// with 400 and the error beside that row's input.
func TestTheConfigForms(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("orders"))
	adm := kadm.NewClient(b.Client(t))
	u := b.AdminURL() + "/topics/orders/configs"
	retention := func() (string, string) {
		t.Helper()
		rcs, err := adm.DescribeTopicConfigs(brokertest.Ctx(t), "orders")
		if err != nil {
			t.Fatal(err)
		}
		rc, _ := rcs.On("orders", nil)
		for _, c := range rc.Configs {
			if c.Key == "retention.ms" {
				return *c.Value, c.Source.String()
			}
		}
		t.Fatal("no retention.ms")
		return "", ""
	}
	_, defaultSource := retention()

	for _, h := range crossSite {
		if p := postForm(t, u, url.Values{"name": {"retention.ms"}, "value": {"1000"}, "op": {"set"}}, h); p.Status != http.StatusForbidden {
			t.Errorf("cross-site %v: status %d, want 403", h, p.Status)
		}
	}
	p := postForm(t, u, url.Values{"name": {"retention.ms"}, "value": {"3600000"}, "op": {"set"}}, nil)
	if p.Status != http.StatusSeeOther || !strings.HasPrefix(p.Location, "/topics/orders?done=") {
		t.Fatalf("set: status %d, location %q\n%s", p.Status, p.Location, p.Body)
	}
	if v, src := retention(); v != "3600000" || src != "DYNAMIC_TOPIC_CONFIG" {
		t.Errorf("Kafka says retention.ms=%s (%s) after the set", v, src)
	}
	if _, body := get(t, b.AdminURL()+"/topics/orders"); !strings.Contains(body, "Delete the override of retention.ms") {
		t.Errorf("no Delete override button for the override:\n%s", body)
	}

	p = postForm(t, u, url.Values{"name": {"retention.ms"}, "value": {"a week"}, "op": {"set"}}, nil)
	wantFieldError(t, "retention.ms=a week", p, http.StatusBadRequest, "cfg-retention.ms-error", "retention.ms")
	if !strings.Contains(p.Body, `value="a week"`) {
		t.Errorf("the refused value is not kept in its input:\n%s", p.Body)
	}
	p = postForm(t, u, url.Values{"name": {"retention.ms"}, "op": {"drop"}}, nil)
	wantFieldError(t, "op=drop", p, http.StatusBadRequest, "cfg-retention.ms-error", "op must be set or delete")
	if v, _ := retention(); v != "3600000" {
		t.Errorf("a refused change changed retention.ms to %s", v)
	}

	p = postForm(t, u, url.Values{"name": {"retention.ms"}, "op": {"delete"}}, nil)
	if p.Status != http.StatusSeeOther {
		t.Fatalf("delete override: status %d\n%s", p.Status, p.Body)
	}
	if _, src := retention(); src != defaultSource {
		t.Errorf("after deleting the override retention.ms comes from %s, want %s", src, defaultSource)
	}
	if p := postForm(t, b.AdminURL()+"/topics/missing/configs", url.Values{"name": {"retention.ms"}, "value": {"1"}, "op": {"set"}}, nil); p.Status != http.StatusNotFound {
		t.Errorf("a missing topic: status %d, want 404", p.Status)
	}
}

// TestTheProduceForm: the record is written where the form says, with its
// key, value and headers, and the browser is sent to the page starting at
// it; a malformed partition or header line, or a partition the topic does
// not have, draws the page again with the error beside the field.
func TestTheProduceForm(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("orders"), broker.WithProperty("num.partitions", "2"))
	base := b.AdminURL()
	u := base + "/topics/orders/partitions/0/produce"
	for _, h := range crossSite {
		if p := postForm(t, u, url.Values{"value": {"x"}}, h); p.Status != http.StatusForbidden {
			t.Errorf("cross-site %v: status %d, want 403", h, p.Status)
		}
	}
	p := postForm(t, u, url.Values{"partition": {"1"}, "key": {"order-7"}, "value": {`{"total": 7}`}, "headers": {"source=console\r\ntrace=a=b"}}, nil)
	if p.Status != http.StatusSeeOther || !strings.HasPrefix(p.Location, "/topics/orders/partitions/1?offset=0&done=") {
		t.Fatalf("produce: status %d, location %q\n%s", p.Status, p.Location, p.Body)
	}
	if _, body := get(t, base+p.Location); !strings.Contains(body, "Produced to partition 1 at offset 0.") || !strings.Contains(body, "order-7") {
		t.Errorf("the redirect's page lacks the notice or the record:\n%s", body)
	}
	cl := b.Client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"orders": {1: kgo.NewOffset().AtStart()}}))
	fs := cl.PollFetches(brokertest.Ctx(t))
	if err := fs.Err0(); err != nil {
		t.Fatal(err)
	}
	recs := fs.Records()
	if len(recs) != 1 || string(recs[0].Key) != "order-7" || string(recs[0].Value) != `{"total": 7}` || len(recs[0].Headers) != 2 ||
		recs[0].Headers[0].Key != "source" || string(recs[0].Headers[0].Value) != "console" ||
		recs[0].Headers[1].Key != "trace" || string(recs[0].Headers[1].Value) != "a=b" {
		t.Fatalf("Kafka has %+v in orders-1", recs)
	}
	if p := postForm(t, u, url.Values{"partition": {""}, "value": {"anywhere"}}, nil); p.Status != http.StatusSeeOther {
		t.Errorf("a blank partition: status %d, want 303\n%s", p.Status, p.Body)
	}

	p = postForm(t, u, url.Values{"partition": {"one"}, "value": {"v"}}, nil)
	wantFieldError(t, "partition=one", p, http.StatusBadRequest, "produce-partition-error", "partition must be a whole number")
	p = postForm(t, u, url.Values{"partition": {"9"}, "value": {"kept value"}}, nil)
	wantFieldError(t, "partition 9", p, http.StatusBadRequest, "produce-partition-error", "no partition 9")
	if !strings.Contains(p.Body, "kept value</textarea>") {
		t.Errorf("the typed value is not kept:\n%s", p.Body)
	}
	p = postForm(t, u, url.Values{"value": {"v"}, "headers": {"=nokey"}}, nil)
	wantFieldError(t, "a header without a key", p, http.StatusBadRequest, "produce-headers-error", "line 1 of the headers")
}

// TestTheDeleteGroupForm: a group with a member is refused by Kafka (409,
// drawn on the group page); a wrong id deletes nothing; once empty, the
// typed id deletes the group.
func TestTheDeleteGroupForm(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("orders"), broker.WithProperty("num.partitions", "1"))
	if err := b.Client(t).ProduceSync(brokertest.Ctx(t), &kgo.Record{Topic: "orders", Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	consumer := b.Client(t, kgo.ConsumerGroup("billing"), kgo.ConsumeTopics("orders"), kgo.FetchMaxWait(100*time.Millisecond))
	for n := 0; n < 1; {
		n += consumer.PollFetches(brokertest.Ctx(t)).NumRecords()
	}
	if err := consumer.CommitUncommittedOffsets(brokertest.Ctx(t)); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(b.Client(t))
	groupExists := func() bool {
		t.Helper()
		gs, err := adm.ListGroups(brokertest.Ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		_, ok := gs["billing"]
		return ok
	}
	u := b.AdminURL() + "/groups/billing/delete"
	p := postForm(t, u, url.Values{"confirm": {"billing"}}, nil)
	if p.Status != http.StatusConflict || !strings.Contains(p.Body, "has members") || !strings.Contains(p.Body, `id="total-lag"`) {
		t.Errorf("deleting a group with a member: status %d, want 409 on the group page\n%s", p.Status, p.Body)
	}
	consumer.Close()
	p = postForm(t, u, url.Values{"confirm": {"Billing"}}, nil)
	wantFieldError(t, "confirm Billing", p, http.StatusBadRequest, "delete-confirm-error", "type the group&#39;s id, billing, to delete it")
	for _, h := range crossSite {
		if p := postForm(t, u, url.Values{"confirm": {"billing"}}, h); p.Status != http.StatusForbidden {
			t.Errorf("cross-site %v: status %d, want 403", h, p.Status)
		}
	}
	if !groupExists() {
		t.Fatal("a refused delete deleted the group")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		p = postForm(t, u, url.Values{"confirm": {"billing"}}, nil)
		if p.Status == http.StatusSeeOther {
			break
		}
		// 409 until the coordinator has seen the member leave.
		if p.Status != http.StatusConflict || time.Now().After(deadline) {
			t.Fatalf("delete: status %d\n%s", p.Status, p.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.HasPrefix(p.Location, "/groups?done=") {
		t.Errorf("redirect to %q", p.Location)
	}
	if groupExists() {
		t.Error("Kafka still lists billing after the delete")
	}
}

// TestListsArePagedAndFiltered: the topics list shows limit rows a page
// with numbered links, the filter keeps the names containing its text and
// stays in the links, a topic's partitions are paged, and a malformed page
// or limit is a 400 while an oversized limit is lowered to the bound.
func TestListsArePagedAndFiltered(t *testing.T) {
	b := brokertest.Run(t, broker.WithProperty("num.partitions", "1"))
	adm := kadm.NewClient(b.Client(t))
	var names []string
	for i := range 120 {
		names = append(names, fmt.Sprintf("load-%03d", i))
	}
	if _, err := adm.CreateTopics(brokertest.Ctx(t), 1, -1, nil, append(names, "wide")...); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreatePartitions(brokertest.Ctx(t), 119, "wide"); err != nil { // 120 partitions
		t.Fatal(err)
	}
	base := b.AdminURL()
	rows := func(body string) int { return strings.Count(body, `<tr><th scope="row"><a href="/topics/`) }

	status, body := get(t, base+"/topics?contains=LOAD-&limit=50&page=3")
	if status != http.StatusOK || rows(body) != 20 || !strings.Contains(body, `href="/topics/load-100"`) || strings.Contains(body, `href="/topics/load-099"`) {
		t.Errorf("page 3 of 50: status %d, %d rows\n%s", status, rows(body), body)
	}
	for _, want := range []string{"101–120 of 120, page 3 of 3", `<a rel="prev" href="?contains=LOAD-&amp;page=2">`,
		`<a href="?contains=LOAD-&amp;page=1" aria-label="Page 1">1</a>`, `aria-current="page">3<`, `value="LOAD-"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page 3 lacks %s", want)
		}
	}
	if _, body := get(t, base+"/topics?contains=load-11"); rows(body) != 10 || strings.Contains(body, `rel="next"`) {
		t.Errorf("contains load-11: %d rows, want 10 on one page", rows(body))
	}
	if _, body := get(t, base+"/topics?contains=nothing-like-this"); !strings.Contains(body, "No topic names contain") {
		t.Errorf("an empty filter result says nothing:\n%s", body)
	}
	if _, body := get(t, base+"/topics?limit=100000"); rows(body) < 121 || !strings.Contains(body, `name="limit" type="number" min="1" max="500" value="500"`) {
		t.Errorf("limit=100000: %d rows, or the limit is not lowered to 500", rows(body))
	}
	if _, body := get(t, base+"/topics?page=9"); !strings.Contains(body, "Page 9 is past the end: there are 3 pages.") || !strings.Contains(body, `aria-label="Page 3"`) {
		t.Errorf("a page past the end:\n%s", body)
	}
	for _, g := range []string{"team-a", "team-b", "solo"} {
		offsets := kadm.Offsets{}
		offsets.Add(kadm.Offset{Topic: "wide", Partition: 0, At: 0, LeaderEpoch: -1})
		if resp, err := adm.CommitOffsets(brokertest.Ctx(t), g, offsets); err != nil || resp.Error() != nil {
			t.Fatalf("commit for %s: %v %v", g, err, resp.Error())
		}
	}
	groupRows := func(body string) int { return strings.Count(body, `<tr><th scope="row"><a href="/groups/`) }
	if _, body := get(t, base+"/groups?contains=TEAM"); groupRows(body) != 2 || strings.Contains(body, `href="/groups/solo"`) || !strings.Contains(body, "1–2 of 2, page 1 of 1") {
		t.Errorf("groups containing TEAM: %d rows\n%s", groupRows(body), body)
	}
	if _, body := get(t, base+"/groups?limit=1&page=2"); groupRows(body) != 1 || !strings.Contains(body, `href="/groups/team-a"`) {
		t.Errorf("groups, page 2 of 1 a page: %d rows\n%s", groupRows(body), body)
	}
	for _, q := range []string{"page=0", "page=x", "limit=0", "limit=-5"} {
		if status, _ := get(t, base+"/topics?"+q); status != http.StatusBadRequest {
			t.Errorf("/topics?%s: status %d, want 400", q, status)
		}
		if status, _ := get(t, base+"/groups?"+q); status != http.StatusBadRequest {
			t.Errorf("/groups?%s: status %d, want 400", q, status)
		}
	}
	_, body = get(t, base+"/topics/wide?page=2")
	if strings.Count(body, "Browse partition ") != 50 || !strings.Contains(body, "Browse partition 50<") || strings.Contains(body, "Browse partition 49<") {
		t.Errorf("partitions, page 2: %d links\n%s", strings.Count(body, "Browse partition "), body)
	}
	if _, body := get(t, base+"/topics/wide"); !strings.Contains(body, "1–50 of 120, page 1 of 3") {
		t.Errorf("the partitions' pager is missing")
	}
}

// TestTransactionsAndShareGroupsArePaged: like the topics and groups, the
// transactions and share-group lists show one page at a time with the
// filter kept in the page links, and refuse a malformed page with 400.
func TestTransactionsAndShareGroupsArePaged(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("ledger"), broker.WithProperty("num.partitions", "1"))
	for _, id := range []string{"pay-a", "pay-b", "refund-c"} {
		producer := b.Client(t, kgo.TransactionalID(id))
		if err := producer.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := producer.ProduceSync(brokertest.Ctx(t), &kgo.Record{Topic: "ledger", Value: []byte(id)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := producer.EndTransaction(brokertest.Ctx(t), kgo.TryCommit); err != nil {
			t.Fatal(err)
		}
	}
	open := b.Client(t, kgo.TransactionalID("open-d"), kgo.TransactionTimeout(time.Minute))
	if err := open.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := open.ProduceSync(brokertest.Ctx(t), &kgo.Record{Topic: "ledger", Value: []byte("open")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"workers-a", "workers-b", "audit"} {
		member := b.Client(t, kgo.ShareGroup(g), kgo.ConsumeTopics("ledger"), kgo.FetchMaxWait(100*time.Millisecond))
		pctx, cancel := context.WithTimeout(brokertest.Ctx(t), 500*time.Millisecond)
		member.PollRecords(pctx, 1) // joining creates the group
		cancel()
	}
	base := b.AdminURL()
	txnRows := func(body string) int { return strings.Count(body, `<th scope="row"><code>`) }
	if _, body := get(t, base+"/transactions?contains=PAY&limit=1&page=2"); txnRows(body) != 1 || !strings.Contains(body, "<code>pay-b</code>") ||
		!strings.Contains(body, "2–2 of 2, page 2 of 2") || !strings.Contains(body, `<a rel="prev" href="?contains=PAY&amp;limit=1&amp;page=1">`) {
		t.Errorf("transactions containing PAY, page 2 of 1 a page: %d rows\n%s", txnRows(body), body)
	}
	if _, body := get(t, base+"/transactions"); txnRows(body) != 4 || !strings.Contains(body, "1–4 of 4") {
		t.Errorf("all transactions: %d rows\n%s", txnRows(body), body)
	}
	// The delivery page counts every id by state, describing only the open.
	_, body := get(t, base+"/delivery")
	for _, want := range []string{`id="txn-ids-committed">3<`, `id="txn-ids-open">1<`, `id="txn-ids-hanging">0<`} {
		if !strings.Contains(body, want) {
			t.Errorf("/delivery lacks %s", want)
		}
	}
	if _, body := get(t, base+"/transactions?contains=nothing"); !strings.Contains(body, "No transactional ids contain") {
		t.Errorf("an empty filter result says nothing:\n%s", body)
	}
	shareRows := func(body string) int { return strings.Count(body, `<tr><th scope="row"><a href="/share-groups/`) }
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, body := get(t, base+"/share-groups?contains=workers&limit=1")
		if shareRows(body) == 1 && strings.Contains(body, `href="/share-groups/workers-a"`) && strings.Contains(body, "1–1 of 2, page 1 of 2") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("share groups containing workers, 1 a page: %d rows\n%s", shareRows(body), body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, path := range []string{"/transactions", "/share-groups"} {
		if status, _ := get(t, base+path+"?page=0"); status != http.StatusBadRequest {
			t.Errorf("%s?page=0: status %d, want 400", path, status)
		}
	}
}
