package console_test

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/idem-dev/idem/broker/brokertest"
)

// TestTheLabPagesStartARunAndShowItsReport: /delivery says no run yet; the
// form refuses a fault the lab does not know with 400 and the lab's words;
// a small run started from the form redirects to its page, which refreshes
// itself while the run goes on and then shows each mode's lost and
// duplicate figures and the chart, as /delivery then does too.
func TestTheLabPagesStartARunAndShowItsReport(t *testing.T) {
	b := brokertest.Run(t)
	base := b.AdminURL()
	if _, body := get(t, base+"/delivery"); !strings.Contains(body, `id="lab-none"`) || !strings.Contains(body, `href="/lab"`) {
		t.Fatalf("/delivery before any run:\n%s", body)
	}
	if status, body := get(t, base+"/lab"); status != http.StatusOK || !strings.Contains(body, `id="lab-form"`) || !strings.Contains(body, "No runs yet.") {
		t.Fatalf("/lab: %d\n%s", status, body)
	}

	noRedirect := &http.Client{Timeout: 60 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	start := func(form url.Values) (*http.Response, string) {
		t.Helper()
		resp, err := noRedirect.PostForm(base+"/lab/runs", form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	resp, body := start(url.Values{"scenario": {"charge"}, "modes": {"all"}, "faults": {"meteor"}, "events": {"20"}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `unknown fault &#34;meteor&#34;`) || !strings.Contains(body, `id="lab-form"`) {
		t.Fatalf("unknown fault: %d\n%s", resp.StatusCode, body)
	}

	resp, _ = start(url.Values{"scenario": {"charge"}, "modes": {"at-most-once,at-least-once,idempotent-consumer"},
		"faults": {"lost-ack,consumer-crash"}, "events": {"20"}, "duration": {"60s"}, "seed": {"1"}})
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !regexp.MustCompile(`^/lab/runs/[0-9]{8}T[0-9]{6}-[0-9a-f]{6}$`).MatchString(loc) {
		t.Fatalf("start: %d to %q", resp.StatusCode, loc)
	}
	var page string
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		_, page = get(t, base+loc)
		running := strings.Contains(page, `id="lab-status">running<`)
		if refresh := strings.Contains(page, `http-equiv="refresh"`); refresh != running {
			t.Fatalf("the page refreshes itself: %t, while the run is running: %t", refresh, running)
		}
		if !running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still running after 2 minutes:\n%s", page)
		}
	}
	if !strings.Contains(page, `id="lab-status">done<`) {
		t.Fatalf("run over but not done:\n%s", page)
	}
	row := regexp.MustCompile(`(?s)<tr data-mode="([a-z-]+)"[^>]*>.*?class="num lost">(\d+)<.*?class="num dups">(\d+)<`)
	for _, p := range []string{page, func() string { _, d := get(t, base+"/delivery"); return d }()} {
		rows := row.FindAllStringSubmatch(p, -1)
		if len(rows) != 3 || rows[0][1] != "at-most-once" || rows[2][1] != "idempotent-consumer" || rows[2][3] != "0" {
			t.Errorf("report rows %q in:\n%s", rows, p)
		}
		if !strings.Contains(p, `src="`+loc+`/chart.svg"`) {
			t.Errorf("no chart in:\n%s", p)
		}
	}
	if status, svg := get(t, base+loc+"/chart.svg"); status != http.StatusOK || !strings.HasPrefix(svg, "<svg") {
		t.Errorf("chart: %d %.100s", status, svg)
	}
}
