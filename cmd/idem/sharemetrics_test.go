package main

import (
	"strings"
	"testing"
)

// TestShareMetricsAreReadWithPrometheusParser: `idem share describe` reads
// the idem_share_ gauges and counters of a scrape, labels unescaped, and
// refuses what is not Prometheus' text format.
func TestShareMetricsAreReadWithPrometheusParser(t *testing.T) {
	in := `# HELP idem_share_partition_records Records of a share partition by state.
# TYPE idem_share_partition_records gauge
idem_share_partition_records{group="bill\"ing",partition="0",state="acquired",topic="orders"} 3
idem_share_partition_records{group="bill\"ing",partition="1",state="acquired",topic="orders"} 4
# TYPE idem_share_member_acquired_records gauge
idem_share_member_acquired_records{group="billing",member="m-1"} 2
# TYPE idem_kafka_requests_total counter
idem_kafka_requests_total{api="Fetch"} 7
`
	m, err := parseShareMetrics(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 3 {
		t.Fatalf("%d samples, want the 3 idem_share_ ones: %+v", len(m), m)
	}
	if got := m.get("idem_share_partition_records", map[string]string{"group": `bill"ing`, "state": "acquired"}); got != 7 {
		t.Errorf("acquired records of bill\"ing: %v, want 7", got)
	}
	if got := m.get("idem_share_member_acquired_records", map[string]string{"member": "m-1"}); got != 2 {
		t.Errorf("member m-1 holds %v, want 2", got)
	}
	if _, err := parseShareMetrics(strings.NewReader("idem_share_partition_records{group=\"x\" 1\n")); err == nil {
		t.Error("a malformed line was accepted")
	}
}
