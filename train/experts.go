package train

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/moe-llm/moe/checkpoint"
)

// ExpertRoles is per-source routing telemetry: how often each named
// source's tokens chose each expert, per MoE layer. Training records it
// for every step's tokens (it is saved in the checkpoint, so a resumed run
// keeps counting); evaluation can record it for held-out text.
type ExpertRoles struct {
	// Sources are the names of the data sources, in the data's order.
	Sources []string `json:"sources"`
	// Counts[l][s][e] is the number of routings of source s's tokens to
	// expert e in layer l (token choice: selections before capacity
	// dropping).
	Counts [][][]uint64 `json:"counts"`
}

// NewExpertRoles returns zero counts for layers × sources × experts.
func NewExpertRoles(sources []string, layers, experts int) *ExpertRoles {
	r := &ExpertRoles{Sources: append([]string(nil), sources...), Counts: make([][][]uint64, layers)}
	for l := range r.Counts {
		r.Counts[l] = make([][]uint64, len(sources))
		for s := range r.Counts[l] {
			r.Counts[l][s] = make([]uint64, experts)
		}
	}
	return r
}

// check reports counts whose shape does not match the source names.
func (r *ExpertRoles) check() error {
	if len(r.Counts) == 0 || len(r.Sources) == 0 {
		return errors.New("expert roles: no layers or no sources recorded")
	}
	E := -1
	for l, ls := range r.Counts {
		if len(ls) != len(r.Sources) {
			return fmt.Errorf("expert roles: layer %d has %d sources, %d named", l, len(ls), len(r.Sources))
		}
		for _, c := range ls {
			if E < 0 {
				E = len(c)
			}
			if len(c) != E || E == 0 {
				return fmt.Errorf("expert roles: layer %d has rows of %d and %d experts", l, len(c), E)
			}
		}
	}
	return nil
}

// Experts returns the number of experts per layer.
func (r *ExpertRoles) Experts() int { return len(r.Counts[0][0]) }

// Share returns, for layer l, share[e][s]: the fraction of expert e's load
// that came from source s (rows sum to 1; 0 for an expert never chosen).
func (r *ExpertRoles) Share(l int) [][]float64 {
	E, S := r.Experts(), len(r.Sources)
	out := make([][]float64, E)
	for e := range out {
		out[e] = make([]float64, S)
		var tot uint64
		for s := 0; s < S; s++ {
			tot += r.Counts[l][s][e]
		}
		for s := 0; s < S && tot > 0; s++ {
			out[e][s] = float64(r.Counts[l][s][e]) / float64(tot)
		}
	}
	return out
}

// Preference returns, for layer l, pref[e][s]: the fraction of source s's
// routings that went to expert e (columns sum to 1).
func (r *ExpertRoles) Preference(l int) [][]float64 {
	E, S := r.Experts(), len(r.Sources)
	out := make([][]float64, E)
	for e := range out {
		out[e] = make([]float64, S)
	}
	for s := 0; s < S; s++ {
		var tot uint64
		for _, c := range r.Counts[l][s] {
			tot += c
		}
		for e := 0; e < E && tot > 0; e++ {
			out[e][s] = float64(r.Counts[l][s][e]) / float64(tot)
		}
	}
	return out
}

// WriteTable prints, per layer, each expert's routings and the share of
// its load from each source, and each source's preference for it relative
// to a uniform router (1.00× = no preference).
func (r *ExpertRoles) WriteTable(w io.Writer) error {
	if err := r.check(); err != nil {
		return err
	}
	E, S := r.Experts(), len(r.Sources)
	var b bytes.Buffer
	for l := range r.Counts {
		fmt.Fprintf(&b, "layer %d\n", l)
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		head := "expert\troutings\t"
		for _, s := range r.Sources {
			head += "from " + s + "\t"
		}
		for _, s := range r.Sources {
			head += s + " pref\t"
		}
		fmt.Fprintln(tw, head)
		share, pref := r.Share(l), r.Preference(l)
		for e := 0; e < E; e++ {
			var tot uint64
			for s := 0; s < S; s++ {
				tot += r.Counts[l][s][e]
			}
			row := fmt.Sprintf("%d\t%d\t", e, tot)
			for s := 0; s < S; s++ {
				row += fmt.Sprintf("%.1f%%\t", 100*share[e][s])
			}
			for s := 0; s < S; s++ {
				row += fmt.Sprintf("%.2f×\t", pref[e][s]*float64(E))
			}
			fmt.Fprintln(tw, row)
		}
		tw.Flush()
		b.WriteString("\n")
	}
	_, err := w.Write(b.Bytes())
	return err
}

// PNG renders the heat map: one panel per layer, a row per expert and a
// column per source, each cell's brightness the source's preference for
// the expert (its share of the source's routings, scaled so the largest
// cell of the panel is white). Panels sit side by side, a dark gap between.
func (r *ExpertRoles) PNG() ([]byte, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	const cell, gap = 16, 8
	L, E, S := len(r.Counts), r.Experts(), len(r.Sources)
	img := image.NewRGBA(image.Rect(0, 0, L*S*cell+(L+1)*gap, E*cell+2*gap))
	for i := range img.Pix {
		img.Pix[i] = 0x20
		if i%4 == 3 {
			img.Pix[i] = 0xff
		}
	}
	for l := 0; l < L; l++ {
		pref := r.Preference(l)
		mx := 0.0
		for _, row := range pref {
			for _, v := range row {
				mx = max(mx, v)
			}
		}
		x0 := gap + l*(S*cell+gap)
		for e := 0; e < E; e++ {
			for s := 0; s < S; s++ {
				v := 0.0
				if mx > 0 {
					v = pref[e][s] / mx
				}
				// Dark blue (cold) to yellow-white (hot).
				c := color.RGBA{uint8(255 * v), uint8(255 * v * v), uint8(80 + 175*v*v*v), 255}
				for y := 0; y < cell-1; y++ {
					for x := 0; x < cell-1; x++ {
						img.SetRGBA(x0+s*cell+x, gap+e*cell+y, c)
					}
				}
			}
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		return nil, fmt.Errorf("expert roles: png: %w", err)
	}
	return b.Bytes(), nil
}

// ReadExpertRoles returns the routing telemetry saved in the newest
// checkpoint of a run directory.
func ReadExpertRoles(dir string) (*ExpertRoles, error) {
	path, err := checkpoint.Latest(dir)
	if err != nil {
		return nil, fmt.Errorf("expert roles: %w", err)
	}
	h, err := checkpoint.ReadHeader(path)
	if err != nil {
		return nil, fmt.Errorf("expert roles: %w", err)
	}
	var ts trainState
	if len(h.Train) > 0 {
		if err := json.Unmarshal(h.Train, &ts); err != nil {
			return nil, fmt.Errorf("expert roles: %s: train state: %w", path, err)
		}
	}
	if ts.Roles == nil {
		return nil, fmt.Errorf("expert roles: %s has no routing telemetry (a dense model, or a run from before moe recorded it)", path)
	}
	if err := ts.Roles.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ts.Roles, nil
}

// countingModel is a Model that adds the routing of every Forward's
// targeted tokens to roles under one source.
type countingModel struct {
	Model
	rc     RouteCounter
	roles  *ExpertRoles
	source int16
	src    []int16
}

func (c *countingModel) Forward(tok, tgt []int32, B, T int) (Stats, error) {
	st, err := c.Model.Forward(tok, tgt, B, T)
	if err != nil {
		return st, err
	}
	c.src = c.src[:0]
	for _, y := range tgt {
		s := c.source
		if y < 0 {
			s = -1 // padding of the last batch
		}
		c.src = append(c.src, s)
	}
	return st, c.rc.CountRoutes(c.src, c.roles.Counts)
}

// EvaluateRoles is Evaluate that also adds the routing of every evaluated
// token to roles under source (an index into roles.Sources). m must count
// routes (a model from NewModel).
func EvaluateRoles(ctx context.Context, m Model, roles *ExpertRoles, source int, ids []int32, B, T, maxTokens int, bytesOf func(int32) int) (EvalResult, error) {
	rc, ok := m.(RouteCounter)
	if !ok {
		return EvalResult{}, errors.New("eval: the model cannot count routes")
	}
	if source < 0 || source >= len(roles.Sources) {
		return EvalResult{}, fmt.Errorf("eval: source %d outside the %d named", source, len(roles.Sources))
	}
	return Evaluate(ctx, &countingModel{Model: m, rc: rc, roles: roles, source: int16(source)}, ids, B, T, maxTokens, bytesOf)
}

// sourceName is the display name of a data source spec's index i.
func sourceName(name string, i int) string {
	if strings.TrimSpace(name) == "" {
		return fmt.Sprintf("source%d", i)
	}
	return name
}
