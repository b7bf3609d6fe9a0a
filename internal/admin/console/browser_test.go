package console_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/dlq"
	"github.com/idem-dev/idem/internal/dlq/dlqtest"
	"github.com/idem-dev/idem/internal/testkit"
)

// browser starts headless Chromium for the test and returns a tab's
// context, and the JavaScript console's errors and the page's failed
// loads, collected as they happen. A missing Chromium skips the test on a
// developer's machine and fails it under CI (testkit.Unavailable).
func browser(t *testing.T) (context.Context, func() []string) {
	t.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		testkit.Unavailable(t, "no Chromium for the console's browser test (apt-get install chromium)")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	tctx, cancelT := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(cancelT)
	if err := chromedp.Do(tctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting Chromium (%s): %v", path, err)
	}
	// Console errors, uncaught exceptions and browser log errors (a failed
	// load, a Content-Security-Policy violation), collected until the end.
	var mu sync.Mutex
	var errs []string
	messages := chromedp.Console(tctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				mu.Lock()
				errs = append(errs, m.String()+" "+m.URL)
				mu.Unlock()
			}
		}
	}()
	return tctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), errs...)
	}
}

// artifacts is where screenshots go: $IDEM_ARTIFACTS, else a temporary
// directory of the test.
func artifacts(t *testing.T) string {
	dir := os.Getenv("IDEM_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestConsoleInABrowser walks the console as an operator would, in
// headless Chromium against a real broker: overview, topic, messages, one
// record, a group, and a reset of its offsets through the form, checked
// afterwards through Kafka itself. Any JavaScript error or failed load on
// any page fails the test.
func TestConsoleInABrowser(t *testing.T) {
	ctx, consoleErrors := browser(t)
	dir := artifacts(t)
	b := brokertest.Run(t, broker.WithTopics("orders"), broker.WithProperty("num.partitions", "2"))
	producer := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produce := func(p int32, n int) {
		for i := range n {
			r := &kgo.Record{Topic: "orders", Partition: p, Key: []byte(fmt.Sprintf("order-%d", i)),
				Value:   []byte(fmt.Sprintf(`{"id":%d,"lines":[{"sku":"A-%d","qty":2}]}`, i, i)),
				Headers: []kgo.RecordHeader{{Key: "source", Value: []byte("browser-test")}}}
			if err := producer.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	produce(0, 5)
	produce(1, 5)
	consumer := b.Client(t, kgo.ConsumerGroup("billing"), kgo.ConsumeTopics("orders"), kgo.FetchMaxWait(100*time.Millisecond))
	for n := 0; n < 10; {
		n += consumer.PollFetches(ctx).NumRecords()
	}
	if err := consumer.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	consumer.Close()
	produce(0, 2) // lag 2 on partition 0
	adm := kadm.NewClient(b.Client(t))
	for {
		gs, err := adm.DescribeGroups(ctx, "billing")
		if err != nil {
			t.Fatal(err)
		}
		if gs["billing"].State == "Empty" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	base := b.AdminURL()
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644)
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

	run("overview", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#topic-count")), shot("1-overview"))
	if got := text("#topic-count"); got != "1" {
		t.Errorf("overview shows %s topics, want 1", got)
	}
	if got := text("#health"); got != "ok" {
		t.Errorf("overview shows health %q", got)
	}
	if got := text("#group-count"); got != "1" {
		t.Errorf("overview shows %s groups, want 1", got)
	}

	run("topics → orders",
		chromedp.Click(chromedp.CSS(`header nav a[href="/topics"]`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/topics/orders"]`)),
		chromedp.Click(chromedp.CSS(`a[href="/topics/orders"]`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/topics/orders/partitions/0"]`)),
		shot("2-topic"))
	if got := text("h1"); got != "Topic orders" {
		t.Errorf("topic page heading %q", got)
	}

	run("partition 0's messages",
		chromedp.Click(chromedp.CSS(`a[href="/topics/orders/partitions/0"]`)),
		chromedp.WaitVisible(chromedp.CSS(`table.messages`)),
		shot("3-messages"))
	rows, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSSAll(`table.messages tbody tr`)))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 7 {
		t.Errorf("partition 0 shows %d rows, want 7", len(rows))
	}

	run("record 0",
		chromedp.Click(chromedp.CSS(`a[href="/topics/orders/partitions/0/messages/0"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#value pre`)),
		shot("4-message"))
	if got := text("#value pre"); !strings.Contains(got, "\"sku\": \"A-0\"") || !strings.Contains(got, "\n") {
		t.Errorf("record 0's value is not pretty JSON: %q", got)
	}

	run("group billing",
		chromedp.Click(chromedp.CSS(`header nav a[href="/groups"]`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/groups/billing"]`)),
		chromedp.Click(chromedp.CSS(`a[href="/groups/billing"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#total-lag`)),
		shot("5-group"))
	if got := text("#total-lag"); got != "2" {
		t.Errorf("group lag %s, want 2", got)
	}

	run("reset to offset 1",
		chromedp.Click(chromedp.CSS(`input[name="to"][value="offset"]`)),
		chromedp.SendKeys(chromedp.CSS(`#reset-offset`), "1"),
		chromedp.Click(chromedp.CSS(`#reset-submit`)),
		chromedp.WaitVisible(chromedp.CSS(`p.notice`)),
		shot("6-reset"))
	if got := text("p.notice"); !strings.Contains(got, "reset to offset") {
		t.Errorf("notice after the reset: %q", got)
	}
	if got := text("#total-lag"); got != "10" { // (7-1) + (5-1)
		t.Errorf("lag after the reset %s, want 10", got)
	}
	offsets, err := adm.FetchOffsets(ctx, "billing")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []int32{0, 1} {
		if o, _ := offsets.Lookup("orders", p); o.At != 1 {
			t.Errorf("Kafka says orders-%d is committed at %d after the reset, want 1", p, o.At)
		}
	}

	for _, pg := range []struct{ path, h1 string }{
		{"/transactions", "Transactions"}, {"/share-groups", "Share groups"}, {"/delivery", "Delivery contract"},
	} {
		run(pg.path, chromedp.Navigate(base+pg.path), chromedp.WaitVisible(chromedp.CSS("h1")), shot("7"+strings.ReplaceAll(pg.path, "/", "-")))
		if got := text("h1"); got != pg.h1 {
			t.Errorf("%s: heading %q", pg.path, got)
		}
	}

	if errs := consoleErrors(); len(errs) > 0 {
		t.Fatalf("the browser reported errors:\n%s", strings.Join(errs, "\n"))
	}
	t.Logf("screenshots in %s", dir)
}

// TestDeadLettersInABrowser: share group billing rejected keys 0..5 of
// orders into its dead-letter topic; an operator goes share groups →
// billing → dead letters → dlq.orders and presses Redrive, twice. Kafka
// then holds each of the six records back on orders exactly once.
func TestDeadLettersInABrowser(t *testing.T) {
	ctx, consoleErrors := browser(t)
	dir := artifacts(t)
	b := brokertest.Run(t, broker.WithProperty("errors.deadletterqueue.auto.create.topics.enable", "true"))
	dlqtest.Fill(t, b, "orders", "billing", "dlq.orders", 10, 6)
	base := b.AdminURL()
	run := func(step string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		actions = append(actions, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, "dlq-"+strings.ReplaceAll(step, " ", "-")+".png"), png, 0o644)
		}))
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	count := func(sel string) int {
		t.Helper()
		nodes, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSSAll(sel)))
		if err != nil {
			t.Fatal(err)
		}
		return len(nodes)
	}
	// onOrders counts, per key, the records of orders a redrive put there.
	onOrders := func() map[string]int {
		t.Helper()
		ends, err := kadm.NewClient(b.Client(t)).ListEndOffsets(ctx, "orders")
		if err != nil {
			t.Fatal(err)
		}
		left := map[int32]int64{}
		from := map[int32]kgo.Offset{}
		ends.Each(func(o kadm.ListedOffset) { left[o.Partition], from[o.Partition] = o.Offset, kgo.NewOffset().AtStart() })
		rd := b.Client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"orders": from}))
		defer rd.Close()
		out := map[string]int{}
		for len(left) > 0 {
			fs := rd.PollFetches(ctx)
			if err := fs.Err0(); err != nil {
				t.Fatal(err)
			}
			fs.EachRecord(func(r *kgo.Record) {
				for _, h := range r.Headers {
					if h.Key == dlq.RedriveHeader {
						out[string(r.Key)]++
					}
				}
				if r.Offset+1 >= left[r.Partition] {
					delete(left, r.Partition)
				}
			})
		}
		return out
	}

	run("share groups",
		chromedp.Navigate(base+"/share-groups"),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/share-groups/billing"]`)),
		chromedp.Click(chromedp.CSS(`a[href="/share-groups/billing"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#share-partitions`)))
	if got := text("#share-state"); got != "Empty" {
		t.Errorf("billing's state %q, want Empty", got)
	}
	if n := count(`#share-partitions tbody tr`); n != 2 {
		t.Errorf("billing shows %d share partitions, want 2", n)
	}

	run("dead letters",
		chromedp.Click(chromedp.CSS(`#to-dead-letters`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/dead-letters/dlq.orders"]`)),
		chromedp.Click(chromedp.CSS(`a[href="/dead-letters/dlq.orders"]`)),
		chromedp.WaitVisible(chromedp.CSS(`table.dead-letters`)))
	if got := text("h1"); got != "Dead letters of dlq.orders" {
		t.Errorf("records page heading %q", got)
	}
	if n := count(`table.dead-letters tbody tr`); n != 6 {
		t.Errorf("dlq.orders shows %d records, want 6", n)
	}
	if got := onOrders(); len(got) != 0 {
		t.Fatalf("records redriven before the button was pressed: %v", got)
	}

	run("redrive",
		chromedp.Click(chromedp.CSS(`#redrive-submit`)),
		chromedp.WaitVisible(chromedp.CSS(`p.notice`)))
	if got := text("p.notice"); !strings.Contains(got, "6 moved") {
		t.Errorf("notice after the redrive: %q", got)
	}
	if n := count(`td.redriven`); n != 6 || strings.Count(text("table.dead-letters tbody"), "yes") != 6 {
		t.Errorf("after the redrive the records page does not mark the six records redriven")
	}
	run("redrive again",
		chromedp.Click(chromedp.CSS(`#redrive-submit`)),
		chromedp.WaitVisible(chromedp.CSS(`p.notice`)))
	if got := text("p.notice"); !strings.Contains(got, "0 moved, 6 already moved") {
		t.Errorf("notice after the second redrive: %q", got)
	}

	got := onOrders()
	for k := range 6 {
		if n := got[strconv.Itoa(k)]; n != 1 {
			t.Errorf("key %d is on orders %d times after the redrives, want once", k, n)
		}
	}
	if len(got) != 6 {
		t.Errorf("redriven keys on orders: %v", got)
	}
	if errs := consoleErrors(); len(errs) > 0 {
		t.Fatalf("the browser reported errors:\n%s", strings.Join(errs, "\n"))
	}
}

// TestALabRunFromTheConsoleInABrowser: the Lab page's form starts a small
// run against the broker; its page follows the run by reloading itself
// (no script) until the report shows each mode's lost and duplicate
// figures and the chart, which the delivery page then shows as well.
func TestALabRunFromTheConsoleInABrowser(t *testing.T) {
	ctx, consoleErrors := browser(t)
	dir := artifacts(t)
	b := brokertest.Run(t)
	base := b.AdminURL()
	run := func(step string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644)
		})
	}
	modes := []string{"at-most-once", "at-least-once", "idempotent-consumer"}
	run("the lab's form",
		chromedp.Navigate(base+"/delivery"), chromedp.WaitVisible(chromedp.CSS("#lab-none")),
		chromedp.Click(chromedp.CSS(`header nav a[href="/lab"]`)), chromedp.WaitVisible(chromedp.CSS("#lab-form")),
		chromedp.SetValue(chromedp.CSS("#lab-modes"), strings.Join(modes, ",")),
		chromedp.SetValue(chromedp.CSS("#lab-faults"), "lost-ack,consumer-crash"),
		chromedp.SetValue(chromedp.CSS("#lab-events"), "20"),
		chromedp.SetValue(chromedp.CSS("#lab-duration"), "45s"),
		chromedp.SetValue(chromedp.CSS("#lab-seed"), "1"),
		shot("8-lab-form"),
		chromedp.Click(chromedp.CSS("#lab-submit")),
		chromedp.WaitVisible(chromedp.CSS("#lab-status")))
	// The page reloads itself every second while the run goes on; a read
	// that meets a reload is tried again.
	status := ""
	for deadline := time.Now().Add(40 * time.Second); status != "done"; time.Sleep(300 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the run's page still says %q", status)
		}
		if s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#lab-status"))); err == nil {
			status = strings.TrimSpace(s)
		}
		if status == "failed" || status == "cancelled" {
			body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
			t.Fatalf("the run is %s:\n%s", status, body)
		}
	}
	run("the report", chromedp.WaitVisible(chromedp.CSS("img.lab-chart")), shot("9-lab-report"))
	figures := func(page string) {
		t.Helper()
		for _, m := range modes {
			var got []string
			for _, col := range []string{"lost", "dups"} {
				s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`table.lab-report tr[data-mode="`+m+`"] td.`+col)))
				if err != nil {
					t.Fatalf("%s: %s's %s: %v", page, m, col, err)
				}
				if _, err := strconv.Atoi(strings.TrimSpace(s)); err != nil {
					t.Errorf("%s: %s's %s is %q, not a count", page, m, col, s)
				}
				got = append(got, strings.TrimSpace(s))
			}
			t.Logf("%s: %s lost %s, duplicate effects %s", page, m, got[0], got[1])
			if m == "idempotent-consumer" && got[1] != "0" {
				t.Errorf("%s: the idempotent consumer shows %s duplicate effects", page, got[1])
			}
		}
		loaded, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector("img.lab-chart").naturalWidth > 0`))
		if err != nil || !loaded {
			t.Errorf("%s: the chart did not load (%v)", page, err)
		}
	}
	figures("run page")
	run("the delivery page", chromedp.Navigate(base+"/delivery"), chromedp.WaitVisible(chromedp.CSS("img.lab-chart")), shot("10-delivery-lab"))
	figures("delivery page")
	if errs := consoleErrors(); len(errs) > 0 {
		t.Fatalf("the browser reported errors:\n%s", strings.Join(errs, "\n"))
	}
	t.Logf("screenshots in %s", dir)
}
