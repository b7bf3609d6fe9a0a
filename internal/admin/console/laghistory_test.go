package console_test

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
)

// TestTheGroupPageChartsLagOverTime: the console samples each group's lag
// (here every 100 ms), and the group page draws the samples as a chart
// whose description names the figures: lag 7 after committing 3 of 10
// records, then 0 once the group commits all 10.
func TestTheGroupPageChartsLagOverTime(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("orders"), broker.WithProperty("num.partitions", "1"),
		broker.WithProperty("idem.console.lag.sample.ms", "100"))
	cl := b.Client(t)
	var recs []*kgo.Record
	for range 10 {
		recs = append(recs, &kgo.Record{Topic: "orders", Value: []byte("x")})
	}
	if err := cl.ProduceSync(brokertest.Ctx(t), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	commit := func(at int64) {
		t.Helper()
		offs := kadm.Offsets{}
		offs.Add(kadm.Offset{Topic: "orders", Partition: 0, At: at, LeaderEpoch: -1})
		resp, err := adm.CommitOffsets(brokertest.Ctx(t), "billing", offs)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	page := func() string {
		_, body := get(t, b.AdminURL()+"/groups/billing")
		return body
	}
	// waitFor polls the page until the chart's description says want.
	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			body := page()
			if strings.Contains(body, `id="lag-chart"`) && strings.Contains(body, want) {
				if !strings.Contains(body, `<polyline points="`) {
					t.Fatalf("the chart has no line:\n%s", body)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no chart saying %q after 10 s:\n%s", want, body)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	commit(3)
	waitFor("to 7 now, highest 7.")
	commit(10)
	waitFor("to 0 now, highest 7.")
}
