package console_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/dlq/dlqtest"
)

// TestDeadLetterPagesAndTheRedriveForm: with share group billing having
// rejected six records of orders into dlq.orders, the share-group page,
// the dead-letter list and records draw them; the Redrive form refuses a
// malformed limit (400) and a cross-site post (403), moves records with a
// redirect carrying the counts, and the records show as redriven.
func TestDeadLetterPagesAndTheRedriveForm(t *testing.T) {
	b := brokertest.Run(t, broker.WithProperty("errors.deadletterqueue.auto.create.topics.enable", "true"))
	dlqtest.Fill(t, b, "orders", "billing", "dlq.orders", 10, 6)
	base := b.AdminURL()
	for path, want := range map[string]string{
		"/share-groups":                    `href="/share-groups/billing"`,
		"/share-groups/billing":            `id="share-state">Empty<`,
		"/dead-letters":                    `href="/dead-letters/dlq.orders"`,
		"/dead-letters/dlq.orders":         "rejected by the consumer",
		"/dead-letters/dlq.orders?limit=2": `id="next-page"`,
	} {
		status, body := get(t, base+path)
		if status != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("%s: status %d, want 200 and %q in:\n%s", path, status, want, body)
		}
	}
	if _, body := get(t, base+"/dead-letters"); !strings.Contains(body, `<td class="num">6</td>`) {
		t.Errorf("/dead-letters lacks the count 6:\n%s", body)
	}
	if status, _ := get(t, base+"/dead-letters/orders"); status != http.StatusNotFound {
		t.Errorf("a plain topic's dead letters: %d, want 404", status)
	}
	if status, _ := get(t, base+"/share-groups/nobody"); status != http.StatusNotFound {
		t.Errorf("an unknown share group: %d, want 404", status)
	}

	noRedirect := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(form url.Values, header map[string]string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", base+"/dead-letters/dlq.orders/redrive", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	if resp, body := post(url.Values{"limit": {"two"}}, nil); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "whole number") {
		t.Errorf("malformed limit: status %d, want 400:\n%s", resp.StatusCode, body)
	}
	if resp, _ := post(url.Values{}, map[string]string{"Sec-Fetch-Site": "cross-site"}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST: status %d, want 403", resp.StatusCode)
	}
	if _, body := get(t, base+"/dead-letters/dlq.orders"); strings.Contains(body, `class="redriven">yes`) {
		t.Fatalf("refused redrives moved records:\n%s", body)
	}
	resp, _ := post(url.Values{"limit": {"4"}}, nil)
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/dead-letters/dlq.orders?done=") ||
		!strings.Contains(loc, url.QueryEscape("4 moved")) {
		t.Fatalf("redrive: status %d, redirect to %q", resp.StatusCode, loc)
	}
	if _, body := get(t, base+"/dead-letters/dlq.orders"); strings.Count(body, `class="redriven">yes`) != 4 {
		t.Errorf("after redriving 4, %d rows say redriven:\n%s", strings.Count(body, `class="redriven">yes`), body)
	}
}

// TestTheShareGroupPageShowsTheInFlightWindow: a member that holds three
// records it has not acknowledged shows on the group's page as acquired
// records, delivered once, held by that member.
func TestTheShareGroupPageShowsTheInFlightWindow(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("jobs"), broker.WithProperty("num.partitions", "1"))
	cl := b.Client(t)
	dlqtest.SetGroupConfigs(t, cl, "workers", map[string]string{"share.auto.offset.reset": "earliest"})
	for i := range 3 {
		if err := cl.ProduceSync(brokertest.Ctx(t), &kgo.Record{Topic: "jobs", Value: []byte{byte(i)}}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	worker := b.Client(t, kgo.ShareGroup("workers"), kgo.ConsumeTopics("jobs"), kgo.FetchMaxWait(100*time.Millisecond))
	deadline := time.Now().Add(20 * time.Second)
	for held := 0; held < 3; {
		if time.Now().After(deadline) {
			t.Fatalf("the worker got %d of 3 records", held)
		}
		pctx, cancel := context.WithTimeout(brokertest.Ctx(t), time.Second)
		held += worker.PollFetches(pctx).NumRecords() // not acknowledged: held until the lock expires
		cancel()
	}
	_, body := get(t, b.AdminURL()+"/share-groups/workers")
	for _, want := range []string{
		`<a href="/topics/jobs">jobs</a></th><td class="num">0</td><td class="num">0</td><td class="num">3</td>`, // partition 0, start offset 0, lag 3
		`<td class="num">3</td><td class="num">0</td><td class="num">0</td><td class="num">0</td><td>1:3`,        // 3 acquired, delivered once
		`<td class="num">3</td></tr>`, // the member holds 3
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the share-group page lacks %q:\n%s", want, body)
		}
	}
}
