package lab

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteJSON writes the report for machines.
func WriteJSON(w io.Writer, rep *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// scenarioOf returns the spec of a report's scenario; a report of a
// scenario this binary does not know gets the generic words.
func scenarioOf(name string) *scenarioSpec {
	if sc, ok := lookupScenario(name); ok {
		return sc
	}
	return &scenarioSpec{name: name, effectColumn: "DUPLICATE EFFECTS"}
}

// WriteTable writes the comparison table and, under it, each mode's promise
// and whether this run kept it. Only measured numbers are printed: a mode
// that did not run shows dashes and says why.
func WriteTable(w io.Writer, rep *Report) error {
	faults := "none"
	if len(rep.Faults) > 0 {
		faults = joinFaults(rep.Faults)
	}
	fmt.Fprintf(w, "idem lab: scenario %s, %d events per mode, seed %d, faults: %s\n", rep.Scenario, rep.N, rep.Seed, faults)
	if len(rep.Skipped) > 0 {
		fmt.Fprintf(w, "skipped (the target is not a child process of the lab): %s\n", joinFaults(rep.Skipped))
	}
	fmt.Fprintf(w, "target: %s; %s in total\n\n", rep.Target, time.Duration(rep.Elapsed).Round(100*time.Millisecond))

	sc := scenarioOf(rep.Scenario)
	head := []string{"MODE", "SENT", "ACKED", "LOST", "DUP DELIVERIES", sc.effectColumn}
	for _, c := range sc.columns {
		head = append(head, c.head)
	}
	head = append(head, "THROUGHPUT", "P50 LATENCY", "P99 LATENCY")
	rows := [][]string{head}
	for _, m := range rep.Modes {
		row := []string{string(m.Mode)}
		if !m.Available {
			for range len(head) - 1 {
				row = append(row, "-")
			}
			rows = append(rows, row)
			continue
		}
		row = append(row, strconv.Itoa(m.Sent), strconv.Itoa(m.Acked), strconv.Itoa(m.Lost), strconv.Itoa(m.DupDeliveries), strconv.Itoa(m.DupEffects))
		for _, c := range sc.columns {
			row = append(row, c.value(m))
		}
		row = append(row, fmt.Sprintf("%.1f/s", m.Throughput), fmtLatency(time.Duration(m.P50)), fmtLatency(time.Duration(m.P99)))
		rows = append(rows, row)
	}
	writeAligned(w, rows)
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODE\tPROMISE\tVERDICT")
	for _, m := range rep.Modes {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", m.Mode, m.Promise, verdictLine(m))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, m := range rep.Modes {
		if !m.Available {
			continue
		}
		fmt.Fprintf(w, "%s: faults injected: %s; input topic: %s\n", m.Mode, faultCounts(m.Faults), m.Log)
	}
	fmt.Fprintln(w, "\nLOST = acknowledged events with no effect; DUP DELIVERIES = deliveries to the consumer beyond the first;")
	fmt.Fprintf(w, "%s = effects beyond the first per event, counted where they happen;\n", sc.effectColumn)
	fmt.Fprintln(w, "THROUGHPUT = distinct events effected per second from the first send to the last effect, faults included;")
	fmt.Fprintln(w, "LATENCY = from the send to the first effect (the charge, the applied total, the committed output record).")
	if rep.Artifacts != "" {
		fmt.Fprintf(w, "evidence (histories, deliveries, databases, logs) kept in %s\n", rep.Artifacts)
	}
	return nil
}

// writeAligned writes rows as columns: the first left-aligned, the numbers
// right-aligned.
func writeAligned(w io.Writer, rows [][]string) {
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], len(c))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		for i, c := range r {
			if i == 0 {
				fmt.Fprintf(&b, "%-*s", widths[i], c)
			} else {
				fmt.Fprintf(&b, "  %*s", widths[i], c)
			}
		}
		fmt.Fprintln(w, b.String())
	}
}

// verdictLine is the verdict under the table: why a promise broke, or, for a
// kept promise, the loss or duplicates it allows if they happened.
func verdictLine(m ModeResult) string {
	if m.Kept == nil {
		return m.Verdict
	}
	dups := fmt.Sprintf("%d duplicate effects", m.DupEffects)
	if m.Overcharged > 0 {
		dups = fmt.Sprintf("%d double charges, %d customers overcharged", m.DupEffects, m.Overcharged)
	}
	if !*m.Kept {
		var why []string
		if m.Lost > 0 {
			why = append(why, fmt.Sprintf("%d acknowledged events lost", m.Lost))
		}
		if m.DupEffects > 0 {
			why = append(why, dups)
		}
		if m.Drift != 0 {
			why = append(why, fmt.Sprintf("drift %+d", m.Drift))
		}
		if m.OutOfOrder != 0 {
			why = append(why, fmt.Sprintf("%d events out of order", m.OutOfOrder))
		}
		return "BROKEN: " + strings.Join(why, ", ")
	}
	var allows promiseSpec
	if spec, ok := lookupMode(m.Mode); ok {
		allows = spec.promise
	}
	switch {
	case allows.mayDuplicate && m.DupEffects > 0:
		return fmt.Sprintf("kept (%s: allowed, and what this mode costs)", dups)
	case allows.mayLose && m.Lost > 0:
		return fmt.Sprintf("kept (%d events lost: allowed, and what this mode costs)", m.Lost)
	}
	return "kept"
}

func faultCounts(f map[string]int) string {
	if len(f) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(f)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, f[k]))
	}
	return strings.Join(parts, ", ")
}

func fmtLatency(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// WriteSVG draws the table's anomaly columns as a grouped bar chart, one
// group per mode: lost, duplicate deliveries, duplicate effects. Written by
// hand so the lab needs no charting dependency.
func WriteSVG(w io.Writer, rep *Report) error {
	series := []struct {
		name  string
		color string
		get   func(ModeResult) int
	}{
		{"lost (acknowledged, no effect)", "#d62728", func(m ModeResult) int { return m.Lost }},
		{"duplicate deliveries", "#ff7f0e", func(m ModeResult) int { return m.DupDeliveries }},
		{strings.ToLower(scenarioOf(rep.Scenario).effectColumn), "#9467bd", func(m ModeResult) int { return m.DupEffects }},
	}
	maxV := 1
	for _, m := range rep.Modes {
		for _, s := range series {
			maxV = max(maxV, s.get(m))
		}
	}
	maxV = (maxV + 3) / 4 * 4 // four grid steps of whole numbers: no repeated labels
	const (
		left, top, plotH = 60, 50, 260
		groupW, barW     = 150, 34
	)
	width := max(left+groupW*len(rep.Modes)+20, 560) // room for the title
	height := top + plotH + 110
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	faults := "none"
	if len(rep.Faults) > 0 {
		faults = joinFaults(rep.Faults)
	}
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="15" font-weight="bold">%s</text>`+"\n", left,
		html.EscapeString(fmt.Sprintf("idem lab: %s, %d events per mode, seed %d", rep.Scenario, rep.N, rep.Seed)))
	fmt.Fprintf(&b, `<text x="%d" y="38" font-size="11">%s</text>`+"\n", left, html.EscapeString("faults: "+faults))
	// Axis and grid.
	for i := 0; i <= 4; i++ {
		v := float64(maxV) * float64(i) / 4
		y := top + plotH - int(float64(plotH)*float64(i)/4)
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#ddd"/>`+"\n", left, y, width-20, y)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%.0f</text>`+"\n", left-6, y+4, v)
	}
	for gi, m := range rep.Modes {
		x0 := left + gi*groupW + (groupW-barW*len(series))/2
		for si, s := range series {
			v := s.get(m)
			h := int(float64(plotH) * float64(v) / float64(maxV))
			x := x0 + si*barW
			if m.Available {
				fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"><title>%s: %d</title></rect>`+"\n",
					x, top+plotH-h, barW-4, h, s.color, html.EscapeString(s.name), v)
				fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" font-size="11">%d</text>`+"\n", x+(barW-4)/2, top+plotH-h-4, v)
			}
		}
		cx := left + gi*groupW + groupW/2
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", cx, top+plotH+18, html.EscapeString(string(m.Mode)))
		verdict := "unavailable"
		color := "#888"
		if m.Available {
			verdict, color = "not measured", "#888"
			if m.Kept != nil && *m.Kept {
				verdict, color = "promise kept", "#2ca02c"
			} else if m.Kept != nil {
				verdict, color = "PROMISE BROKEN", "#d62728"
			}
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="%s" font-weight="bold">%s</text>`+"\n", cx, top+plotH+34, color, verdict)
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", left, top+plotH, width-20, top+plotH)
	for si, s := range series {
		y := top + plotH + 58 + si*16
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n", left, y-10, s.color, left+18, y, html.EscapeString(s.name))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
