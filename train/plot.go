package train

import (
	"fmt"
	"math"
	"strings"
)

// LossSVG draws the training loss (and validation loss where logged)
// against tokens as a self-contained SVG image. Training loss is smoothed
// with an exponential moving average; the raw values are drawn faintly.
func LossSVG(recs []Record, title string) []byte {
	const W, H = 720.0, 420.0
	const l, r, t, b = 70.0, 20.0, 40.0, 50.0
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" viewBox="0 0 %g %g" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&sb, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&sb, `<text x="%g" y="22" font-size="15">%s</text>`+"\n", l, xmlEscape(title))
	if len(recs) == 0 {
		sb.WriteString(`<text x="300" y="210">no data yet</text></svg>` + "\n")
		return []byte(sb.String())
	}
	xmax := float64(recs[len(recs)-1].Tokens)
	ymin, ymax := math.Inf(1), math.Inf(-1)
	see := func(y float64) {
		if !math.IsNaN(y) && !math.IsInf(y, 0) && y >= 0 {
			ymin, ymax = math.Min(ymin, y), math.Max(ymax, y)
		}
	}
	for _, rc := range recs {
		see(rc.TrainLoss)
		if rc.ValLoss != nil {
			see(*rc.ValLoss)
		}
		xmax = math.Max(xmax, float64(rc.Tokens))
	}
	if math.IsInf(ymin, 0) {
		ymin, ymax = 0, 1
	}
	// Clip the y range so that the first few huge losses do not flatten the curve.
	if len(recs) > 20 {
		ymax = math.Min(ymax, recs[len(recs)/20].TrainLoss*1.1)
	}
	ymin = math.Max(0, math.Floor(ymin*2)/2)
	ymax = math.Ceil(ymax*2) / 2
	if ymax <= ymin {
		ymax = ymin + 1
	}
	if xmax <= 0 {
		xmax = 1
	}
	px := func(x float64) float64 { return l + (W-l-r)*x/xmax }
	py := func(y float64) float64 {
		y = math.Max(ymin, math.Min(ymax, y))
		return H - b - (H-t-b)*(y-ymin)/(ymax-ymin)
	}
	// Axes and grid.
	fmt.Fprintf(&sb, `<g stroke="#ccc">`)
	for i := 0; i <= 5; i++ {
		y := ymin + (ymax-ymin)*float64(i)/5
		fmt.Fprintf(&sb, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f"/>`, l, py(y), W-r, py(y))
	}
	sb.WriteString("</g>\n")
	for i := 0; i <= 5; i++ {
		y := ymin + (ymax-ymin)*float64(i)/5
		fmt.Fprintf(&sb, `<text x="%g" y="%.1f" text-anchor="end">%.2f</text>`+"\n", l-6, py(y)+4, y)
		x := xmax * float64(i) / 5
		fmt.Fprintf(&sb, `<text x="%.1f" y="%g" text-anchor="middle">%s</text>`+"\n", px(x), H-b+18, humanCount(x))
	}
	fmt.Fprintf(&sb, `<text x="%g" y="%g" text-anchor="middle">training tokens</text>`+"\n", (l+W-r)/2, H-10)
	fmt.Fprintf(&sb, `<text x="16" y="%g" transform="rotate(-90 16 %g)" text-anchor="middle">loss (nats/token)</text>`+"\n", (t+H-b)/2, (t+H-b)/2)
	fmt.Fprintf(&sb, `<rect x="%g" y="%g" width="%g" height="%g" fill="none" stroke="#444"/>`+"\n", l, t, W-l-r, H-t-b)
	// Curves.
	poly := func(pts []string, color string, width float64, opacity float64) {
		if len(pts) > 0 {
			fmt.Fprintf(&sb, `<polyline fill="none" stroke="%s" stroke-width="%g" stroke-opacity="%g" points="%s"/>`+"\n",
				color, width, opacity, strings.Join(pts, " "))
		}
	}
	var raw, smooth, val []string
	ema, alpha := math.NaN(), 0.1
	for _, rc := range recs {
		x := px(float64(rc.Tokens))
		if !math.IsNaN(rc.TrainLoss) && rc.TrainLoss >= 0 {
			raw = append(raw, fmt.Sprintf("%.1f,%.1f", x, py(rc.TrainLoss)))
			if math.IsNaN(ema) {
				ema = rc.TrainLoss
			} else {
				ema = alpha*rc.TrainLoss + (1-alpha)*ema
			}
			smooth = append(smooth, fmt.Sprintf("%.1f,%.1f", x, py(ema)))
		}
		if rc.ValLoss != nil && *rc.ValLoss >= 0 {
			val = append(val, fmt.Sprintf("%.1f,%.1f", x, py(*rc.ValLoss)))
		}
	}
	poly(raw, "#1f77b4", 1, 0.25)
	poly(smooth, "#1f77b4", 2, 1)
	poly(val, "#d62728", 2, 1)
	for _, p := range val {
		xy := strings.Split(p, ",")
		fmt.Fprintf(&sb, `<circle cx="%s" cy="%s" r="3" fill="#d62728"/>`, xy[0], xy[1])
	}
	// Legend.
	lx := W - r - 170
	fmt.Fprintf(&sb, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#1f77b4" stroke-width="2"/><text x="%g" y="%g">train (EMA)</text>`+"\n", lx, t+15, lx+25, t+15, lx+30, t+19)
	fmt.Fprintf(&sb, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#d62728" stroke-width="2"/><text x="%g" y="%g">validation</text>`+"\n", lx, t+33, lx+25, t+33, lx+30, t+37)
	sb.WriteString("</svg>\n")
	return []byte(sb.String())
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}

// humanCount formats n as 1.2k, 3.4M, ...
func humanCount(n float64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.3gG", n/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.3gM", n/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.3gk", n/1e3)
	}
	return fmt.Sprintf("%.0f", n)
}
