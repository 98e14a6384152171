package main

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// benchRow is one line of the suite's table: a figure, its latencies when it has them,
// and the ceiling it is compared with when it has one.
type benchRow struct {
	measure     string
	value       float64 // in unit; NaN when the measure has no single figure
	unit        string
	p50, p99    time.Duration // 0: not applicable
	ceilingName string        // "" when the row has no ceiling
	ceiling     float64       // in the ceiling row's unit
	note        string
}

// ratio is value/ceiling, or false when there is no ceiling (or no figure).
func (r benchRow) ratio() (float64, bool) {
	if r.ceilingName == "" || r.ceiling <= 0 || math.IsNaN(r.value) || r.value < 0 {
		return 0, false
	}
	return r.value / r.ceiling, true
}

// writeBenchTable prints rows as one Markdown table.
func writeBenchTable(w io.Writer, rows []benchRow) {
	header := []string{"measure", "figure", "p50", "p99", "ceiling", "ratio", "note"}
	cells := [][]string{header}
	for _, r := range rows {
		fig := "—"
		if !math.IsNaN(r.value) {
			fig = formatCount(r.value) + " " + r.unit
		}
		ceil, rat := "—", "—"
		if v, ok := r.ratio(); ok {
			ceil = r.ceilingName + " (" + formatCount(r.ceiling) + ")"
			rat = formatRatio(v)
		}
		note := r.note
		if note == "" {
			note = " "
		}
		cells = append(cells, []string{r.measure, fig, latencyCell(r.p50), latencyCell(r.p99), ceil, rat, note})
	}
	widths := make([]int, len(header))
	for _, row := range cells {
		for i, c := range row {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	line := func(row []string) {
		var b strings.Builder
		b.WriteString("|")
		for i, c := range row {
			b.WriteString(" " + c + strings.Repeat(" ", widths[i]-len([]rune(c))) + " |")
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line(cells[0])
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = strings.Repeat("-", widths[i])
	}
	line(sep)
	for _, row := range cells[1:] {
		line(row)
	}
}

func latencyCell(d time.Duration) string {
	if d <= 0 {
		return "—"
	}
	return formatMillis(d)
}

// formatMillis renders d in milliseconds with three significant-ish decimals: 0.412 ms,
// 13.1 ms, 250 ms.
func formatMillis(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms < 10:
		return strconv.FormatFloat(ms, 'f', 3, 64) + " ms"
	case ms < 100:
		return strconv.FormatFloat(ms, 'f', 1, 64) + " ms"
	default:
		return strconv.FormatFloat(ms, 'f', 0, 64) + " ms"
	}
}

// formatRatio renders a ratio with two decimals, three below 0.1 (0.16, 0.042, 1.05).
func formatRatio(v float64) string {
	if v < 0.1 {
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// formatCount renders v rounded to a whole number with thousands separators (15,139);
// below 10 with one decimal (2.5).
func formatCount(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	if math.Abs(v) < 10 && v != math.Trunc(v) {
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
