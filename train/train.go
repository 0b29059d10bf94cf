// Package train is moe's training loop: AdamW with warmup and cosine
// decay, gradient clipping and accumulation, periodic evaluation,
// checkpoints that resume bit-exactly, metrics.jsonl and a loss-curve SVG.
//
// The loop (Trainer) talks to the model and the data through two small
// interfaces, so it is tested on a toy model; Run wires it to moe's model,
// tokenizer and data packages for `moe train`.
package train

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// Stats is what one forward pass reports.
type Stats struct {
	// Loss is the mean cross-entropy over the non-ignored targets.
	Loss float64
	// Targets is the number of non-ignored targets.
	Targets int
	// AuxLoss and ZLoss are the router losses (already scaled by their
	// coefficients) that were added to the objective.
	AuxLoss, ZLoss float64
	// ExpertLoad is, per MoE layer, the fraction of routed assignments each
	// expert received; nil for dense models.
	ExpertLoad [][]float64
	// RoutedLoad is, per MoE layer, the fraction of token-choice
	// selections (before capacity dropping) each expert received.
	RoutedLoad [][]float64
	// DroppedFrac is the fraction of routed assignments dropped by capacity.
	DroppedFrac float64
}

// SourcedBatches is Batches that know which data source each token of the
// last Next came from (an index into the run's source names).
type SourcedBatches interface {
	TokenSources() []int16
}

// RouteCounter is a Model that can add the routing of its last Forward to
// per-source counts [layers][sources][experts] (see model.CountRoutes).
type RouteCounter interface {
	CountRoutes(src []int16, counts [][][]uint64) error
}

// LoadBalancer is a Model with router selection biases (loss-free
// balancing): after each optimizer step the loop hands it the step's mean
// RoutedLoad.
type LoadBalancer interface {
	BalanceLoad(load [][]float64) error
}

// Model is what the loop needs of a model: a flat parameter vector and a
// gradient vector of the same layout, forward (storing activations) and
// backward (accumulating into the gradient).
type Model interface {
	// Params and Grads return the flat parameter and gradient vectors.
	Params() []float32
	Grads() []float32
	// NoDecay returns the [start,end) ranges of Params exempt from weight decay.
	NoDecay() [][2]int
	// ZeroGrad clears the gradient.
	ZeroGrad()
	// Forward runs B sequences of T tokens; targets < 0 are ignored.
	Forward(tokens, targets []int32, B, T int) (Stats, error)
	// Backward adds the gradient of the last Forward's objective to Grads.
	Backward() error
}

// Batches yields training micro-batches and can save and restore its position.
type Batches interface {
	// Next fills tokens and targets (B·T each; targets are the next tokens).
	Next(tokens, targets []int32) error
	// State serialises the position.
	State() (json.RawMessage, error)
	// Restore goes back to a position from State.
	Restore(json.RawMessage) error
}

// StepResult describes one optimizer step.
type StepResult struct {
	Step       int
	Tokens     int64 // total training tokens so far
	Loss       float64
	AuxLoss    float64
	ZLoss      float64
	LR         float64
	GradNorm   float64
	ExpertLoad [][]float64
	RoutedLoad [][]float64 // mean over the step's micro-batches
	Dropped    float64
}

// Trainer runs optimizer steps of Accum micro-batches of B×T tokens, or of
// Ramp.Accum(Tokens) micro-batches when Ramp is set.
type Trainer struct {
	Model    Model
	Opt      *AdamW
	Schedule Schedule
	Data     Batches
	B, T     int
	Accum    int
	// Roles, when not nil, collects per-source routing telemetry (when the
	// data knows its sources and the model counts routes).
	Roles *ExpertRoles
	// Ramp, when not nil, sets each step's micro-batches from the tokens
	// consumed so far (batch-size ramp-up); Accum is then its final value.
	Ramp *BatchRamp
	// Step is the number of optimizer steps done; Tokens the tokens consumed.
	Step   int
	Tokens int64
	// LastUpdateSeconds is the wall time of the last optimizer update
	// (gradient norm, clipping, AdamW).
	LastUpdateSeconds float64

	tok, tgt []int32
	step     *ExpertRoles // this step's routings, added to Roles when it completes
}

// StepAccum returns the micro-batches of the next step.
func (t *Trainer) StepAccum() int {
	if t.Ramp != nil {
		return t.Ramp.Accum(t.Tokens)
	}
	return max(1, t.Accum)
}

// TrainStep runs one optimizer step: StepAccum() forward/backward passes
// (counting each pass's routing per source when Roles is set), gradient
// averaging and clipping, the AdamW update, and for a LoadBalancer model
// the loss-free balancing update with the step's mean routed load.
func (t *Trainer) TrainStep(ctx context.Context) (StepResult, error) {
	if t.B <= 0 || t.T <= 0 {
		return StepResult{}, fmt.Errorf("train: bad micro-batch %d×%d", t.B, t.T)
	}
	accum := t.StepAccum()
	if len(t.tok) != t.B*t.T {
		t.tok = make([]int32, t.B*t.T)
		t.tgt = make([]int32, t.B*t.T)
	}
	// The data position before the step: an interrupted step is undone.
	before, err := t.Data.State()
	if err != nil {
		return StepResult{}, fmt.Errorf("train: data position: %w", err)
	}
	t.Model.ZeroGrad()
	res := StepResult{Step: t.Step + 1}
	sb, _ := t.Data.(SourcedBatches)
	rc, _ := t.Model.(RouteCounter)
	counting := t.Roles != nil && sb != nil && rc != nil
	if counting {
		if t.step == nil {
			t.step = NewExpertRoles(t.Roles.Sources, len(t.Roles.Counts), len(t.Roles.Counts[0][0]))
		}
		for _, ls := range t.step.Counts {
			for _, c := range ls {
				clear(c)
			}
		}
	}
	for a := 0; a < accum; a++ {
		if err := ctx.Err(); err != nil {
			if rerr := t.Data.Restore(before); rerr != nil {
				return res, fmt.Errorf("train: undoing an interrupted step: %w", rerr)
			}
			return res, err
		}
		if err := t.Data.Next(t.tok, t.tgt); err != nil {
			return res, fmt.Errorf("train: reading batch: %w", err)
		}
		st, err := t.Model.Forward(t.tok, t.tgt, t.B, t.T)
		if err != nil {
			return res, fmt.Errorf("train: forward: %w", err)
		}
		if math.IsNaN(st.Loss) || math.IsInf(st.Loss, 0) {
			return res, fmt.Errorf("train: loss is %v at step %d (lower --lr?)", st.Loss, t.Step+1)
		}
		if counting {
			if err := rc.CountRoutes(sb.TokenSources(), t.step.Counts); err != nil {
				return res, fmt.Errorf("train: routing telemetry: %w", err)
			}
		}
		if err := t.Model.Backward(); err != nil {
			return res, fmt.Errorf("train: backward: %w", err)
		}
		res.Loss += st.Loss / float64(accum)
		res.AuxLoss += st.AuxLoss / float64(accum)
		res.ZLoss += st.ZLoss / float64(accum)
		res.Dropped += st.DroppedFrac / float64(accum)
		res.ExpertLoad = addLoad(res.ExpertLoad, st.ExpertLoad, 1/float64(accum))
		res.RoutedLoad = addLoad(res.RoutedLoad, st.RoutedLoad, 1/float64(accum))
	}
	res.LR = t.Schedule.At(t.Step + 1)
	u0 := time.Now()
	res.GradNorm = t.Opt.Update(t.Model.Params(), t.Model.Grads(), t.Model.NoDecay(), res.LR, 1/float64(accum))
	if lb, ok := t.Model.(LoadBalancer); ok && res.RoutedLoad != nil {
		if err := lb.BalanceLoad(res.RoutedLoad); err != nil {
			return res, fmt.Errorf("train: balancing the routers: %w", err)
		}
	}
	t.LastUpdateSeconds = time.Since(u0).Seconds()
	t.Step++
	t.Tokens += int64(accum * t.B * t.T)
	if counting {
		for l, ls := range t.step.Counts {
			for s, c := range ls {
				for e, v := range c {
					t.Roles.Counts[l][s][e] += v
				}
			}
		}
	}
	res.Tokens = t.Tokens
	return res, nil
}

// addLoad adds w·l to the per-layer loads acc (allocated on first use, in
// l's shape) and returns acc.
func addLoad(acc, l [][]float64, w float64) [][]float64 {
	if l == nil {
		return acc
	}
	if acc == nil {
		acc = make([][]float64, len(l))
		for i, r := range l {
			acc[i] = make([]float64, len(r))
		}
	}
	for i, r := range l {
		for e, f := range r {
			if i < len(acc) && e < len(acc[i]) {
				acc[i][e] += w * f
			}
		}
	}
	return acc
}

// EvalResult is a model's loss on some text.
type EvalResult struct {
	Loss    float64 `json:"loss"`   // mean cross-entropy per token, nats
	Tokens  int     `json:"tokens"` // predicted tokens
	Bytes   int     `json:"bytes"`  // bytes of text those tokens decode to
	SumLoss float64 `json:"-"`      // total nats
}

// Perplexity returns exp(Loss).
func (r EvalResult) Perplexity() float64 { return math.Exp(r.Loss) }

// BitsPerByte returns the total loss in bits divided by the bytes of text.
func (r EvalResult) BitsPerByte() float64 {
	if r.Bytes == 0 {
		return math.NaN()
	}
	return r.SumLoss / math.Ln2 / float64(r.Bytes)
}

// Evaluate computes the model's loss on ids: windows of T+1 tokens that
// overlap by one (so every token but the first is predicted once), in
// batches of B, up to maxTokens predicted tokens (0: all). bytesOf gives the
// text length of a token for bits per byte (nil counts 1 byte per token).
// The model's gradient is not touched.
func Evaluate(ctx context.Context, m Model, ids []int32, B, T, maxTokens int, bytesOf func(int32) int) (EvalResult, error) {
	var r EvalResult
	if len(ids) < 2 {
		return r, fmt.Errorf("eval: need at least 2 tokens, have %d", len(ids))
	}
	n := len(ids) - 1 // predictable tokens
	if maxTokens > 0 && maxTokens < n {
		n = maxTokens
	}
	tok := make([]int32, B*T)
	tgt := make([]int32, B*T)
	for pos := 0; pos < n; {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		for i := range tgt {
			tok[i], tgt[i] = 0, -1
		}
		count := 0
		for b := 0; b < B && pos < n; b++ {
			w := min(T, n-pos)
			for j := 0; j < w; j++ {
				tok[b*T+j] = ids[pos+j]
				tgt[b*T+j] = ids[pos+j+1]
				if bytesOf != nil {
					r.Bytes += bytesOf(ids[pos+j+1])
				} else {
					r.Bytes++
				}
			}
			count += w
			pos += w
		}
		st, err := m.Forward(tok, tgt, B, T)
		if err != nil {
			return r, fmt.Errorf("eval: forward: %w", err)
		}
		r.SumLoss += st.Loss * float64(count)
		r.Tokens += count
	}
	r.Loss = r.SumLoss / float64(r.Tokens)
	return r, nil
}
