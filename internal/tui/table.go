package tui

import (
	"strings"

	"github.com/charmbracelet/x/ansi"
)

// column is one table column. Columns with a higher drop value go first when the terminal is
// too narrow; the flex column takes whatever width is left.
type column struct {
	title string
	width int
	right bool
	drop  int
	flex  bool
}

// fit chooses the columns that fit in width and returns their indexes and final widths.
func fit(cols []column, width int) ([]int, []int) {
	keep := make([]bool, len(cols))
	for i := range cols {
		keep[i] = true
	}
	need := func() int {
		n, k := 0, 0
		for i, c := range cols {
			if keep[i] {
				n += c.width
				k++
			}
		}
		return n + max(k-1, 0)
	}
	for need() > width {
		worst := -1
		for i, c := range cols {
			if keep[i] && c.drop > 0 && (worst < 0 || c.drop > cols[worst].drop) {
				worst = i
			}
		}
		if worst < 0 {
			break
		}
		keep[worst] = false
	}
	var idx, widths []int
	for i, c := range cols {
		if keep[i] {
			idx = append(idx, i)
			widths = append(widths, c.width)
		}
	}
	if spare := width - need(); spare > 0 {
		for j, i := range idx {
			if cols[i].flex {
				widths[j] += spare
				break
			}
		}
	}
	return idx, widths
}

// row renders cells into the chosen columns, one space apart, each cut or padded to its width.
func row(cols []column, idx, widths []int, cells []string) string {
	var b strings.Builder
	for j, i := range idx {
		if j > 0 {
			b.WriteByte(' ')
		}
		cell := ""
		if i < len(cells) {
			cell = cells[i]
		}
		b.WriteString(pad(cell, widths[j], cols[i].right))
	}
	return strings.TrimRight(b.String(), " ")
}

func header(cols []column, idx, widths []int) string {
	cells := make([]string, len(cols))
	for i, c := range cols {
		cells[i] = c.title
	}
	return row(cols, idx, widths, cells)
}

// pad cuts s to w cells (marking the cut with "…") or pads it with spaces.
func pad(s string, w int, right bool) string {
	if w <= 0 {
		return ""
	}
	n := ansi.StringWidth(s)
	if n > w {
		return ansi.Truncate(s, w, "…")
	}
	if right {
		return strings.Repeat(" ", w-n) + s
	}
	return s + strings.Repeat(" ", w-n)
}

// clip cuts a line to the terminal width.
func clip(s string, w int) string {
	if ansi.StringWidth(s) <= w {
		return s
	}
	return ansi.Truncate(s, w, "…")
}
