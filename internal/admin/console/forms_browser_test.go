package console_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
)

// TestFormsInABrowser runs the console's forms in headless Chromium as an
// operator would, with the keyboard where a person would use it: page
// through 250 topics with the filter box, create a topic with configs,
// produce a message and see it, change a config, then delete the topic,
// first with a mistyped name (refused, shown beside the field) and then
// with its name. Each change is checked through Kafka itself. Any
// JavaScript error or failed load fails the test (the pages have no
// script; the forms work without one).
func TestFormsInABrowser(t *testing.T) {
	var bulk []string
	for i := range 250 {
		bulk = append(bulk, fmt.Sprintf("bulk-%03d", i))
	}
	// The broker and its 250 topics first: the browser's 60 s are for the
	// browser.
	b := brokertest.Run(t, broker.WithProperty("num.partitions", "1"), broker.WithTopics(bulk...))
	ctx, consoleErrors := browser(t)
	dir := artifacts(t)
	base := b.AdminURL()
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, "forms-"+name+".png"), png, 0o644)
		})
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	run := func(step string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	fresh := func() *kadm.Client { return kadm.NewClient(b.Client(t)) } // no cached metadata

	run("filter the topics",
		chromedp.Navigate(base+"/topics"),
		chromedp.SendKeys(chromedp.CSS(`#filter`), "bulk-"+kb.Enter),
		chromedp.WaitVisible(chromedp.CSS(`a[rel="next"]`)),
		shot("1-topics-page-1"))
	if got := text("#page-status"); got != "1–50 of 250, page 1 of 5" {
		t.Errorf("first page: %q", got)
	}
	run("next page",
		chromedp.Click(chromedp.CSS(`a[rel="next"]`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/topics/bulk-050"]`)))
	if got := text("#page-status"); got != "51–100 of 250, page 2 of 5" {
		t.Errorf("second page: %q", got)
	}
	run("last page",
		chromedp.Click(chromedp.CSS(`a[aria-label="Page 5"]`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/topics/bulk-249"]`)),
		shot("2-topics-page-5"))
	if got := text("#page-status"); got != "201–250 of 250, page 5 of 5" {
		t.Errorf("last page: %q", got)
	}

	run("create invoices",
		chromedp.SendKeys(chromedp.CSS(`#create-name`), "invoices"),
		chromedp.SendKeys(chromedp.CSS(`#create-partitions`), "2"),
		chromedp.SendKeys(chromedp.CSS(`#create-configs`), "cleanup.policy=compact"+kb.Enter+"retention.ms=86400000"),
		shot("3-create-form"),
		chromedp.Click(chromedp.CSS(`#create-submit`)),
		chromedp.WaitVisible(chromedp.CSS(`p.notice`)),
		shot("4-created"))
	if got := text("h1"); got != "Topic invoices" {
		t.Fatalf("after create, heading %q", got)
	}
	tds, err := fresh().ListTopics(ctx, "invoices")
	if err != nil || len(tds["invoices"].Partitions) != 2 {
		t.Fatalf("Kafka says invoices has %d partitions (%v), want 2", len(tds["invoices"].Partitions), err)
	}

	run("produce to partition 1",
		chromedp.Click(chromedp.CSS(`a[href="/topics/invoices/partitions/1"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#produce`)),
		chromedp.SendKeys(chromedp.CSS(`#produce-key`), "inv-1"),
		chromedp.SendKeys(chromedp.CSS(`#produce-value`), `{"total": 12}`),
		chromedp.SendKeys(chromedp.CSS(`#produce-headers`), "source=browser"),
		chromedp.Click(chromedp.CSS(`#produce-submit`)),
		chromedp.WaitVisible(chromedp.CSS(`p.notice`)),
		shot("5-produced"))
	if got := text("p.notice"); got != "Produced to partition 1 at offset 0." {
		t.Errorf("notice after produce: %q", got)
	}
	if got := text("table.messages tbody"); !strings.Contains(got, "inv-1") || !strings.Contains(got, `"total": 12`) {
		t.Errorf("the produced record is not shown: %q", got)
	}
	consumer := b.Client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"invoices": {1: kgo.NewOffset().AtStart()}}))
	recs := consumer.PollFetches(ctx).Records()
	if len(recs) != 1 || string(recs[0].Key) != "inv-1" || len(recs[0].Headers) != 1 || string(recs[0].Headers[0].Value) != "browser" {
		t.Errorf("Kafka has %+v in invoices-1", recs)
	}

	// Enter in a config's input submits its row's Set.
	run("set retention.ms",
		chromedp.Navigate(base+"/topics/invoices"),
		chromedp.WaitVisible(chromedp.CSS(`#configs`)),
		chromedp.Clear(chromedp.CSS(`input[id="cfg-retention.ms"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[id="cfg-retention.ms"]`), "3600000"+kb.Enter),
		chromedp.WaitVisible(chromedp.CSS(`p.notice`)),
		shot("6-config-set"))
	if got := text("p.notice"); !strings.Contains(got, "retention.ms set to") {
		t.Errorf("notice after the config change: %q", got)
	}
	rcs, err := fresh().DescribeTopicConfigs(ctx, "invoices")
	if err != nil {
		t.Fatal(err)
	}
	if rc, _ := rcs.On("invoices", nil); configValue(rc, "retention.ms") != "3600000" {
		t.Errorf("Kafka says retention.ms=%s", configValue(rc, "retention.ms"))
	}

	run("delete with a mistyped name",
		chromedp.Navigate(base+"/topics/invoices"),
		chromedp.WaitVisible(chromedp.CSS(`#delete-topic`)),
		chromedp.SendKeys(chromedp.CSS(`#delete-confirm`), "invoice"),
		chromedp.Click(chromedp.CSS(`#delete-submit`)),
		chromedp.WaitVisible(chromedp.CSS(`#delete-confirm-error`)),
		shot("7-delete-refused"))
	if described, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`#delete-confirm`), "aria-describedby")); err != nil || described.Value != "delete-confirm-error" {
		t.Errorf("the confirm input is not described by its error: %+v %v", described, err)
	}
	if tds, err := fresh().ListTopics(ctx, "invoices"); err != nil || !tds.Has("invoices") {
		t.Fatalf("a mistyped name deleted the topic (%v)", err)
	}
	run("delete",
		chromedp.Clear(chromedp.CSS(`#delete-confirm`)),
		chromedp.SendKeys(chromedp.CSS(`#delete-confirm`), "invoices"),
		chromedp.Click(chromedp.CSS(`#delete-submit`)),
		chromedp.WaitVisible(chromedp.CSS(`p.notice`)),
		shot("8-deleted"))
	if got := text("p.notice"); got != "Topic invoices deleted." {
		t.Errorf("notice after delete: %q", got)
	}
	if tds, err := fresh().ListTopics(ctx, "invoices"); err != nil || tds.Has("invoices") {
		t.Errorf("Kafka still has invoices (%v)", err)
	}

	// The mistyped delete is answered 400 on purpose; Chromium logs that
	// as a failed load. Any other error fails the test.
	var errs []string
	for _, e := range consoleErrors() {
		if !strings.Contains(e, "status of 400") || !strings.HasSuffix(e, "/topics/invoices/delete") {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		t.Fatalf("the browser reported errors:\n%s", strings.Join(errs, "\n"))
	}
	t.Logf("screenshots in %s", dir)
}

// configValue is a described config's value, "" when absent.
func configValue(rc kadm.ResourceConfig, key string) string {
	for _, c := range rc.Configs {
		if c.Key == key && c.Value != nil {
			return *c.Value
		}
	}
	return ""
}
