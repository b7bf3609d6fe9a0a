package benchmark

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
	"strings"
)

// A small SVG writer for the README's scale charts: grouped bars, one group
// per category (a partition count, a codec…), one bar per series, each bar
// labelled with its value. There is no charting library in go.mod and a bar
// chart needs none; the file is plain, accessible SVG (role="img", a title
// and a description that lists every value for screen readers).

// Chart is one bar chart.
type Chart struct {
	File          string // file name in the --chart directory, e.g. "partitions-throughput.svg"
	Title         string
	XLabel        string
	YLabel        string
	Categories    []string
	Series        []Series
	ValueDecimals int // decimals printed on the bars
}

// Series is one bar per category; Values has one value per category.
type Series struct {
	Name   string
	Values []float64
}

// palette is colour-blind-safe (Okabe–Ito).
var palette = []string{"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00"}

const (
	chartW, chartH                       = 720, 420
	padLeft, padRight, padTop, padBottom = 80, 20, 50, 80
)

// WriteSVG writes the chart.
func (c Chart) WriteSVG(w io.Writer) error {
	bw := bufio.NewWriter(w)
	esc := html.EscapeString
	top := 0.0
	for _, s := range c.Series {
		for _, v := range s.Values {
			top = max(top, v)
		}
	}
	step := niceStep(top / 5)
	top = math.Max(step, math.Ceil(top/step)*step)
	plotW := float64(chartW - padLeft - padRight)
	plotH := float64(chartH - padTop - padBottom)
	y := func(v float64) float64 { return padTop + plotH - v/top*plotH }
	groupW := plotW / float64(max(1, len(c.Categories)))
	barW := groupW * 0.8 / float64(max(1, len(c.Series)))
	// Category labels too long for their group wrap at spaces (about 7 px
	// a character at this size) instead of running into their neighbours.
	maxChars := max(4, int(groupW/7))
	xLabelY := chartH - 30

	fmt.Fprintf(bw, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-labelledby="title desc" font-family="sans-serif" font-size="12">`+"\n", chartW, chartH, chartW, chartH)
	fmt.Fprintf(bw, "<title id=\"title\">%s</title>\n<desc id=\"desc\">%s</desc>\n", esc(c.Title), esc(c.description()))
	fmt.Fprintf(bw, `<rect width="%d" height="%d" fill="#fff"/>`+"\n", chartW, chartH)
	fmt.Fprintf(bw, `<text x="%d" y="24" text-anchor="middle" font-size="16" font-weight="bold">%s</text>`+"\n", chartW/2, esc(c.Title))
	// Y axis: gridlines and tick labels.
	// Ticks print with the step's decimals: 3 × 0.1 is 0.30000000000000004.
	tickDecimals := max(0, int(-math.Floor(math.Log10(step))))
	for i := 0; float64(i)*step <= top+step/2; i++ {
		v := float64(i) * step
		fmt.Fprintf(bw, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", padLeft, chartW-padRight, y(v), y(v))
		fmt.Fprintf(bw, `<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", padLeft-6, y(v), formatValue(v, tickDecimals))
	}
	fmt.Fprintf(bw, `<line x1="%d" x2="%d" y1="%d" y2="%.1f" stroke="#333"/>`+"\n", padLeft, padLeft, padTop, padTop+plotH)
	fmt.Fprintf(bw, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#333"/>`+"\n", padLeft, chartW-padRight, padTop+plotH, padTop+plotH)
	fmt.Fprintf(bw, `<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", padTop+plotH/2, esc(c.YLabel))
	fmt.Fprintf(bw, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", padLeft+plotW/2, xLabelY, esc(c.XLabel))
	// Bars.
	for i, cat := range c.Categories {
		gx := padLeft + float64(i)*groupW
		fmt.Fprintf(bw, `<text x="%.1f" y="%.1f" text-anchor="middle">`, gx+groupW/2, padTop+plotH+4)
		for _, line := range wrapWords(cat, maxChars) {
			fmt.Fprintf(bw, `<tspan x="%.1f" dy="14">%s</tspan>`, gx+groupW/2, esc(line))
		}
		fmt.Fprintln(bw, "</text>")
		for j, s := range c.Series {
			if i >= len(s.Values) {
				continue
			}
			v := s.Values[i]
			x := gx + groupW*0.1 + float64(j)*barW
			fmt.Fprintf(bw, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s, %s: %s</title></rect>`+"\n",
				x, y(v), barW*0.9, padTop+plotH-y(v), palette[j%len(palette)], esc(s.Name), esc(cat), formatValue(v, c.ValueDecimals))
			fmt.Fprintf(bw, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="11">%s</text>`+"\n", x+barW*0.45, y(v)-4, formatValue(v, c.ValueDecimals))
		}
	}
	// Legend, when there is more than one series.
	if len(c.Series) > 1 {
		lx := float64(padLeft)
		for j, s := range c.Series {
			fmt.Fprintf(bw, `<rect x="%.1f" y="%d" width="12" height="12" fill="%s"/>`+"\n", lx, chartH-22, palette[j%len(palette)])
			fmt.Fprintf(bw, `<text x="%.1f" y="%d">%s</text>`+"\n", lx+16, chartH-12, esc(s.Name))
			lx += 16 + 7*float64(len(s.Name)) + 24
		}
	}
	fmt.Fprintln(bw, "</svg>")
	return bw.Flush()
}

// description lists every value, for readers who cannot see the bars.
func (c Chart) description() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s by %s.", c.YLabel, c.XLabel)
	for _, s := range c.Series {
		fmt.Fprintf(&b, " %s:", s.Name)
		for i, v := range s.Values {
			if i < len(c.Categories) {
				fmt.Fprintf(&b, " %s %s;", c.Categories[i], formatValue(v, c.ValueDecimals))
			}
		}
	}
	return b.String()
}

// wrapWords splits s at spaces into lines of at most width characters (a
// longer word gets a line of its own).
func wrapWords(s string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		switch {
		case line == "":
			line = w
		case len(line)+1+len(w) <= width:
			line += " " + w
		default:
			lines = append(lines, line)
			line = w
		}
	}
	return append(lines, line)
}

// niceStep rounds a raw tick step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) || math.IsInf(raw, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// formatValue prints v with decimals places.
func formatValue(v float64, decimals int) string {
	return strconv.FormatFloat(v, 'f', decimals, 64)
}
