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
		ExpertLoad: st.ExpertLoad, DroppedFrac: st.DroppedFrac}, nil
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
	ts, _ := json.Marshal(trainState{Accum: tr.Accum, B: tr.B, T: tr.T})
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
		if ts.B != tr.B || ts.T != tr.T || ts.Accum != tr.Accum {
			return fmt.Errorf("checkpoint %s was written with batch %d × seq-len %d × %d micro-batches; this run has %d × %d × %d",
				ck.Path, ts.B, ts.T, ts.Accum, tr.B, tr.T, tr.Accum)
		}
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
