package plan

import (
	"fmt"
	"math"
	"strings"
)

// sig3 formats v (in [1, 1000) after scaling) with three significant digits.
func sig3(v float64) string {
	switch a := math.Abs(v); {
	case a >= 99.95:
		return fmt.Sprintf("%.0f", v)
	case a >= 9.995:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// HumanCount formats a count with K, M, B, T suffixes: 1.83T, 55.5B, 4096.
func HumanCount(n float64) string {
	for _, s := range []struct {
		div    float64
		suffix string
	}{{1e12, "T"}, {1e9, "B"}, {1e6, "M"}, {1e3, "K"}} {
		if math.Abs(n) >= s.div*0.9995 {
			v := n / s.div
			if s.suffix == "T" && math.Abs(v) >= 1000 {
				return fmt.Sprintf("%.3gT", v)
			}
			return sig3(v) + s.suffix
		}
	}
	if n == math.Trunc(n) {
		return fmt.Sprintf("%.0f", n)
	}
	return sig3(n)
}

// SI formats v with an SI prefix before unit: 601 GFLOP, 3.67 TB, 312 TFLOP/s.
// Values beyond the largest prefix use an exponent: 2.26e25 FLOP.
func SI(v float64, unit string) string {
	prefixes := []struct {
		mul float64
		p   string
	}{{1e24, "Y"}, {1e21, "Z"}, {1e18, "E"}, {1e15, "P"}, {1e12, "T"}, {1e9, "G"}, {1e6, "M"}, {1e3, "k"}}
	a := math.Abs(v)
	if a >= 1e27 || (a > 0 && a < 1) {
		return fmt.Sprintf("%.3g %s", v, unit)
	}
	for _, p := range prefixes {
		if a >= p.mul*0.9995 {
			return sig3(v/p.mul) + " " + p.p + unit
		}
	}
	return sig3(v) + " " + unit
}

// Sci formats v as 2.26e25.
func Sci(v float64) string {
	s := fmt.Sprintf("%.3g", v)
	return strings.Replace(s, "e+", "e", 1)
}

// money formats dollars: $56.3M, $1.20K.
func money(v float64) string {
	if math.Abs(v) < 1000 {
		return fmt.Sprintf("$%.2f", v)
	}
	return "$" + HumanCount(v)
}

// thousands formats an integer with comma separators: 25,000.
func thousands(n int64) string {
	s := fmt.Sprintf("%d", n)
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

// table writes rows with columns padded to a common width.
type table struct {
	rows   [][]string
	indent string
	// left turns off right-alignment of numeric columns.
	left bool
	// wrap, when positive, wraps the last column at that many characters,
	// continuation lines aligned under it.
	wrap int
}

func (t *table) add(cols ...string) { t.rows = append(t.rows, cols) }

func (t *table) write(b *strings.Builder) {
	var w []int
	for _, r := range t.rows {
		for i, c := range r {
			if i >= len(w) {
				w = append(w, 0)
			}
			if n := width(c); n > w[i] {
				w[i] = n
			}
		}
	}
	for _, r := range t.rows {
		var more []string
		if t.wrap > 0 && len(r) > 0 {
			parts := wrapText(r[len(r)-1], t.wrap)
			r = append(append([]string(nil), r[:len(r)-1]...), parts[0])
			more = parts[1:]
		}
		line := t.indent
		for i, c := range r {
			pad := w[i] - width(c)
			if i == len(r)-1 {
				pad = 0
			}
			// Right-align numeric columns (all but the first).
			if i > 0 && !t.left && looksNumeric(c) {
				line += strings.Repeat(" ", pad) + c
			} else {
				line += c + strings.Repeat(" ", pad)
			}
			if i < len(r)-1 {
				line += "  "
			}
		}
		b.WriteString(strings.TrimRight(line, " ") + "\n")
		if len(more) > 0 {
			lead := len(t.indent)
			for _, x := range w[:len(r)-1] {
				lead += x + 2
			}
			for _, m := range more {
				b.WriteString(strings.Repeat(" ", lead) + m + "\n")
			}
		}
	}
}

// wrapText splits s into lines of at most maxWidth columns at spaces (a
// longer word stands alone on its line).
func wrapText(s string, maxWidth int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		switch {
		case line == "":
			line = word
		case width(line)+1+width(word) <= maxWidth:
			line += " " + word
		default:
			lines = append(lines, line)
			line = word
		}
	}
	return append(lines, line)
}

// width returns the terminal columns s takes: two for each East Asian wide
// character (CJK ideographs, kana, Hangul, full-width forms), one for
// every other rune.
func width(s string) int {
	n := 0
	for _, r := range s {
		switch {
		case r >= 0x1100 && r <= 0x115f, r >= 0x2e80 && r <= 0xa4cf, r >= 0xac00 && r <= 0xd7a3,
			r >= 0xf900 && r <= 0xfaff, r >= 0xfe30 && r <= 0xfe4f, r >= 0xff00 && r <= 0xff60, r >= 0xffe0 && r <= 0xffe6:
			n += 2
		default:
			n++
		}
	}
	return n
}

// duration formats seconds as days, hours or minutes.
func duration(sec float64) string {
	switch {
	case sec >= 86400:
		return fmt.Sprintf("%.1f days", sec/86400)
	case sec >= 3600:
		return fmt.Sprintf("%.1f hours", sec/3600)
	case sec >= 60:
		return fmt.Sprintf("%.1f minutes", sec/60)
	default:
		return fmt.Sprintf("%.2g seconds", sec)
	}
}

func looksNumeric(s string) bool {
	if s == "" || s == "-" {
		return true
	}
	c := s[0]
	return c >= '0' && c <= '9' || c == '$'
}

// pct formats a fraction as a percentage.
func pct(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }
