package console_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

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
