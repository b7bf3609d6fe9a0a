package console

import (
	"context"
	"fmt"
	"html/template"
	"strings"
	"sync"
	"time"
)

// Lag over time: Kafka keeps no history of a group's lag, and a console
// that shows only the lag of this instant cannot tell a consumer catching
// up from one falling behind. The console samples every group's total lag
// from the broker's registry (idem_consumer_group_lag, computed at gather
// time) every LagSampleEvery and keeps the last lagHistoryPoints samples
// per group in memory; the group page draws them. A restart forgets them,
// as Prometheus would not: for longer history scrape /metrics.

// lagHistoryPoints is how many samples a group keeps: an hour at the
// default 10 s.
const lagHistoryPoints = 360

type lagPoint struct {
	At  time.Time
	Lag int64
}

// lagHistory is each group's samples, oldest first.
type lagHistory struct {
	mu     sync.Mutex
	groups map[string][]lagPoint
}

// record adds one sample per group of lags. A group without a sample this
// time (no committed offsets any more, or deleted) keeps its history until
// its last point falls out of the window.
func (h *lagHistory) record(at time.Time, lags map[string]int64, window time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.groups == nil {
		h.groups = map[string][]lagPoint{}
	}
	for g, lag := range lags {
		pts := append(h.groups[g], lagPoint{At: at, Lag: lag})
		if len(pts) > lagHistoryPoints {
			pts = append(pts[:0], pts[len(pts)-lagHistoryPoints:]...)
		}
		h.groups[g] = pts
	}
	for g, pts := range h.groups {
		if at.Sub(pts[len(pts)-1].At) > window {
			delete(h.groups, g)
		}
	}
}

// of returns a copy of group's samples.
func (h *lagHistory) of(group string) []lagPoint {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]lagPoint(nil), h.groups[group]...)
}

// sampleLag records every group's total lag each interval until ctx is done.
func (c *Console) sampleLag(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.lag.record(now, c.groupLags(), every*lagHistoryPoints)
		}
	}
}

// groupLags sums idem_consumer_group_lag by group.
func (c *Console) groupLags() map[string]int64 {
	lags := map[string]int64{}
	mf := c.gather()["idem_consumer_group_lag"]
	for _, m := range mf.GetMetric() {
		lags[label(m, "group")] += int64(m.GetGauge().GetValue())
	}
	return lags
}

// lagChart draws samples as an SVG line chart with its figures in words
// (role="img" and aria-label), or nothing when there are fewer than two.
func lagChart(group string, pts []lagPoint) template.HTML {
	if len(pts) < 2 {
		return ""
	}
	const w, h, left, right, top, bottom = 640, 180, 56, 12, 12, 28
	maxLag := int64(1)
	for _, p := range pts {
		maxLag = max(maxLag, p.Lag)
	}
	first, last := pts[0].At, pts[len(pts)-1].At
	span := max(last.Sub(first), time.Second)
	x := func(t time.Time) float64 {
		return left + float64(w-left-right)*float64(t.Sub(first))/float64(span)
	}
	y := func(lag int64) float64 {
		return top + float64(h-top-bottom)*(1-float64(lag)/float64(maxLag))
	}
	var line strings.Builder
	for i, p := range pts {
		if i > 0 {
			line.WriteByte(' ')
		}
		fmt.Fprintf(&line, "%.1f,%.1f", x(p.At), y(p.Lag))
	}
	desc := fmt.Sprintf("Total lag of group %s over the last %s: %d samples, from %d to %d now, highest %d.",
		group, span.Round(time.Second), len(pts), pts[0].Lag, pts[len(pts)-1].Lag, maxLag)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" id="lag-chart" role="img" aria-label="%s" viewBox="0 0 %d %d" width="%d" height="%d">`,
		template.HTMLEscapeString(desc), w, h, w, h)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" class="axis"/>`, left, h-bottom, w-right, h-bottom)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" class="axis"/>`, left, top, left, h-bottom)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" class="tick">%d</text>`, left-6, top+4, maxLag)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" class="tick">0</text>`, left-6, h-bottom+4)
	fmt.Fprintf(&b, `<text x="%d" y="%d" class="tick">%s</text>`, left, h-8, template.HTMLEscapeString("−"+span.Round(time.Second).String()))
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" class="tick">now</text>`, w-right, h-8)
	fmt.Fprintf(&b, `<polyline points="%s" class="series"/>`, line.String())
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // every interpolated string above is escaped or numeric
}
