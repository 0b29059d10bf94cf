package train

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Progress draws a one-line progress bar (step, loss, tokens/s, ETA). On a
// terminal it redraws in place; otherwise it prints a line every Every.
type Progress struct {
	w        io.Writer
	tty      bool
	total    int
	last     time.Time
	every    time.Duration
	lastLine int
}

// NewProgress returns a progress display of total steps on w.
func NewProgress(w io.Writer, total int) *Progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	every := 10 * time.Second
	if tty {
		every = 200 * time.Millisecond
	}
	return &Progress{w: w, tty: tty, total: total, every: every}
}

// Update shows the state after step; force draws even if one was drawn recently.
func (p *Progress) Update(step int, loss, tokPerSec float64, eta time.Duration, note string, force bool) {
	if p == nil || p.w == nil {
		return
	}
	now := time.Now()
	if !force && now.Sub(p.last) < p.every {
		return
	}
	p.last = now
	const width = 24
	frac := 0.0
	if p.total > 0 {
		frac = min(1, float64(step)/float64(p.total))
	}
	fill := int(frac * width)
	bar := strings.Repeat("█", fill) + strings.Repeat("░", width-fill)
	line := fmt.Sprintf("step %d/%d %s %3.0f%% | loss %.4f | %s tok/s | ETA %s", step, p.total, bar, 100*frac,
		loss, humanCount(tokPerSec), eta.Round(time.Second))
	if note != "" {
		line += " | " + note
	}
	if p.tty {
		pad := ""
		if n := len(line); n < p.lastLine {
			pad = strings.Repeat(" ", p.lastLine-n)
		}
		fmt.Fprintf(p.w, "\r%s%s", line, pad)
		p.lastLine = len(line)
	} else {
		fmt.Fprintln(p.w, line)
	}
}

// Done ends the in-place line.
func (p *Progress) Done() {
	if p != nil && p.tty && p.lastLine > 0 {
		fmt.Fprintln(p.w)
		p.lastLine = 0
	}
}
