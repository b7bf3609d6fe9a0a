package benchmark

import "fmt"

// Charts draws the throughput scenario (Run's report) for --chart, as the
// scale scenarios are drawn: records/s of each run, and latency quantiles
// of each fixed rate.
func (rep Report) Charts() []Chart {
	var charts []Chart
	if len(rep.Throughput) > 0 {
		var cats []string
		var mbs []float64
		for _, t := range rep.Throughput {
			cats = append(cats, t.Name)
			mbs = append(mbs, t.MBPerS)
		}
		charts = append(charts, Chart{File: "throughput.svg", Title: "Produce and consume throughput",
			XLabel: "run", YLabel: "MB/s", Categories: cats, ValueDecimals: 1, Series: []Series{{"MB/s", mbs}}})
	}
	if len(rep.Latency) > 0 {
		var cats []string
		var p50, p99 []float64
		for _, l := range rep.Latency {
			cats = append(cats, fmt.Sprintf("%d msg/s", l.RatePerS))
			p50 = append(p50, l.P50Ms)
			p99 = append(p99, l.P99Ms)
		}
		charts = append(charts, Chart{File: "latency.svg", Title: "End-to-end latency (acks=all) by produce rate",
			XLabel: "rate", YLabel: "milliseconds", Categories: cats, ValueDecimals: 1,
			Series: []Series{{"p50", p50}, {"p99", p99}}})
	}
	return charts
}
