package train

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"

	"github.com/moe-llm/moe/checkpoint"
	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/infer"
	"github.com/moe-llm/moe/model"
	"github.com/moe-llm/moe/tokenizer"
)

// modelAdapter presents a *model.Model as a Model for the loop. Stats.Loss
// is the cross-entropy alone (the router losses are reported apart). With
// causal set, Forward uses the generation routing (dropless token choice;
// the causal rule for expert-choice models): evaluation measures what
// generation will see.
type modelAdapter struct {
	m      *model.Model
	causal bool
}

func (a modelAdapter) Params() []float32 { return a.m.W.Flat }
func (a modelAdapter) Grads() []float32  { return a.m.G.Flat }
func (a modelAdapter) NoDecay() [][2]int { return a.m.W.NoDecay }
func (a modelAdapter) ZeroGrad()         { a.m.ZeroGrad() }
func (a modelAdapter) Backward() error   { return a.m.Backward() }
func (a modelAdapter) Forward(tok, tgt []int32, B, T int) (Stats, error) {
	st, err := a.m.ForwardWith(tok, tgt, B, T, model.ForwardOptions{Causal: a.causal})
	if err != nil {
		return Stats{}, err
	}
	return Stats{Loss: st.CELoss, Targets: st.Targets, AuxLoss: st.AuxLoss, ZLoss: st.ZLoss,
		ExpertLoad: st.ExpertLoad, RoutedLoad: st.RoutedLoad, DroppedFrac: st.DroppedFrac}, nil
}

// BalanceLoad moves the routers' selection biases (topk_method noaux_tc)
// by the config's moe_router_bias_update_rate; see model.BalanceRouters.
func (a modelAdapter) BalanceLoad(load [][]float64) error {
	return a.m.BalanceRouters(load, a.m.Cfg.BiasUpdateRate())
}

// CountRoutes adds the last forward's routing to per-source counts.
func (a modelAdapter) CountRoutes(src []int16, counts [][][]uint64) error {
	return a.m.CountRoutes(src, counts)
}

// NewModel wraps a *model.Model as a Model for Trainer and Evaluate. causal
// selects the generation routing for Forward (see model.ForwardOptions);
// training uses causal = false.
func NewModel(m *model.Model, causal bool) Model { return modelAdapter{m, causal} }

// trainState is what the checkpoint's free-form "train" field holds.
type trainState struct {
	Accum int `json:"accum"`
	B     int `json:"batch"`
	T     int `json:"seq_len"`
	// The batch-size ramp, when the run has one.
	RampStart  int   `json:"batch_tokens_start,omitempty"`
	RampTokens int64 `json:"batch_ramp_tokens,omitempty"`
	// Roles is the per-source routing telemetry so far.
	Roles *ExpertRoles `json:"expert_roles,omitempty"`
	// Precision is the matmul arithmetic ("bf16"; empty: float32).
	Precision string `json:"precision,omitempty"`
}

// shape is the part of a trainState a resumed run must match.
type shape struct {
	Accum, B, T int
	RampStart   int
	RampTokens  int64
}

func (ts trainState) shape() shape {
	return shape{ts.Accum, ts.B, ts.T, ts.RampStart, ts.RampTokens}
}

// state returns the trainer's state as the checkpoint records it.
func (t *Trainer) state() trainState {
	ts := trainState{Accum: t.Accum, B: t.B, T: t.T, Roles: t.Roles}
	if t.Ramp != nil {
		ts.RampStart, ts.RampTokens = t.Ramp.Start, t.Ramp.Tokens
	}
	return ts
}

// saveCheckpoint writes the run's state as RUNDIR/checkpoint-STEP.moeckpt.
func saveCheckpoint(opts Options, cfg *config.Config, m *model.Model, opt *AdamW, tr *Trainer, b Batches, rng *rand.PCG, threads int) (string, error) {
	ls, err := b.State()
	if err != nil {
		return "", fmt.Errorf("checkpoint: data position: %w", err)
	}
	rs, err := rng.MarshalBinary()
	if err != nil {
		return "", fmt.Errorf("checkpoint: rng: %w", err)
	}
	st := tr.state()
	if m.Precision() != model.F32 {
		st.Precision = m.Precision().String()
	}
	ts, _ := json.Marshal(st)
	h := checkpoint.Header{
		Step: tr.Step, Tokens: tr.Tokens, Seed: opts.Seed, Threads: threads, Config: cfg,
		Loader: ls, RNG: rs, Train: ts,
	}
	return saveModelState(opts.Out, h, m, opt, tr.Schedule, opts.KeepCheckpoints)
}

// saveModelState writes a checkpoint of h.Step into dir with the
// optimizer's hyper-parameters and moments, the schedule and the weights
// (checkpoint.Save keeps the newest keep).
func saveModelState(dir string, h checkpoint.Header, m *model.Model, opt *AdamW, sched Schedule, keep int) (string, error) {
	h.Optimizer = checkpoint.Optimizer{Beta1: opt.Beta1, Beta2: opt.Beta2, Eps: opt.Eps, WeightDecay: opt.WeightDecay,
		GradClip: opt.GradClip, Step: opt.Step}
	h.Schedule = checkpoint.Schedule{LR: sched.LR, MinLR: sched.MinLR, WarmupSteps: sched.Warmup, TotalSteps: sched.Total}
	return checkpoint.Save(dir, h, []checkpoint.Tensor{
		{Name: checkpoint.SectionWeights, Data: m.W.Flat},
		{Name: checkpoint.SectionAdamM, Data: opt.M},
		{Name: checkpoint.SectionAdamV, Data: opt.V},
	}, keep)
}

// checkpointPrecision returns the --precision spelling ("float32", "bf16")
// that the run which wrote ck trained with.
func checkpointPrecision(ck *checkpoint.Checkpoint) (string, error) {
	var ts trainState
	if len(ck.Header.Train) > 0 {
		if err := json.Unmarshal(ck.Header.Train, &ts); err != nil {
			return "", fmt.Errorf("checkpoint %s: train state: %w", ck.Path, err)
		}
	}
	p, err := model.ParsePrecision(ts.Precision)
	if err != nil {
		return "", fmt.Errorf("checkpoint %s: %w", ck.Path, err)
	}
	return p.String(), nil
}

// restore loads a checkpoint's state into the model, optimizer, trainer,
// data position and RNG.
func restore(ck *checkpoint.Checkpoint, m *model.Model, opt *AdamW, tr *Trainer, b Batches, rng *rand.PCG) error {
	h := &ck.Header
	w, mm, vv := ck.Section(checkpoint.SectionWeights), ck.Section(checkpoint.SectionAdamM), ck.Section(checkpoint.SectionAdamV)
	n := len(m.W.Flat)
	if len(w) != n || len(mm) != n || len(vv) != n {
		return fmt.Errorf("checkpoint %s: sections hold %d/%d/%d values, the model needs %d (weights, adam_m, adam_v)", ck.Path, len(w), len(mm), len(vv), n)
	}
	copy(m.W.Flat, w)
	copy(opt.M, mm)
	copy(opt.V, vv)
	opt.Step = h.Optimizer.Step
	tr.Step, tr.Tokens = h.Step, h.Tokens
	var ts trainState
	if len(h.Train) > 0 {
		if err := json.Unmarshal(h.Train, &ts); err != nil {
			return fmt.Errorf("checkpoint %s: train state: %w", ck.Path, err)
		}
		if want := tr.state(); ts.shape() != want.shape() {
			return fmt.Errorf("checkpoint %s was written with batch %d × seq-len %d × %d micro-batches (ramp from %d tokens over %d); this run has %d × %d × %d (ramp from %d over %d)",
				ck.Path, ts.B, ts.T, ts.Accum, ts.RampStart, ts.RampTokens, want.B, want.T, want.Accum, want.RampStart, want.RampTokens)
		}
	}
	if got, _ := model.ParsePrecision(ts.Precision); got != m.Precision() {
		return fmt.Errorf("checkpoint %s was trained with --precision %s; this run has --precision %s (resume with the checkpoint's)", ck.Path, got, m.Precision())
	}
	if tr.Roles != nil && ts.Roles != nil {
		if err := ts.Roles.check(); err != nil || len(ts.Roles.Counts) != len(tr.Roles.Counts) ||
			len(ts.Roles.Sources) != len(tr.Roles.Sources) || ts.Roles.Experts() != tr.Roles.Experts() {
			if err == nil {
				err = fmt.Errorf("%d layers × %d sources × %d experts", len(ts.Roles.Counts), len(ts.Roles.Sources), ts.Roles.Experts())
			}
			return fmt.Errorf("checkpoint %s: routing telemetry does not fit this run: %w", ck.Path, err)
		}
		tr.Roles = ts.Roles
	}
	if err := b.Restore(h.Loader); err != nil {
		return fmt.Errorf("checkpoint %s: data position: %w", ck.Path, err)
	}
	if len(h.RNG) > 0 {
		if err := rng.UnmarshalBinary(h.RNG); err != nil {
			return fmt.Errorf("checkpoint %s: rng state: %w", ck.Path, err)
		}
	}
	return nil
}

// sample generates text from the trained weights.
func sample(ctx context.Context, cfg *config.Config, m *model.Model, tok *tokenizer.Tokenizer, pool *compute.Pool, prompt string, n int, seed uint64) (string, error) {
	im, err := infer.New(cfg, m.W, tok, pool)
	if err != nil {
		return "", err
	}
	ids := tok.Encode([]byte(prompt))
	if len(ids) == 0 {
		ids = []int32{tok.EOT()}
	}
	res, err := im.Generate(ctx, ids, infer.GenerateOptions{MaxTokens: n,
		Sampling: infer.SampleOptions{Temperature: 0.8, TopK: 40, Seed: seed}}, nil)
	if err != nil {
		return "", err
	}
	return prompt + res.Text, nil
}
