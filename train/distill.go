package train

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/moe-llm/moe/checkpoint"
	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/infer"
	"github.com/moe-llm/moe/model"
	"github.com/moe-llm/moe/tokenizer"
)

// DistillOptions configure Distill.
type DistillOptions struct {
	// Target is the model the draft will draft for: a run directory, a
	// checkpoint file or a .gguf file (anything infer.Load takes).
	Target string
	// Draft is a draft to start from (a run directory or checkpoint file);
	// empty starts from Config with random weights.
	Draft string
	// Config is the draft's architecture when Draft is empty: a preset name
	// or a config path. Its vocabulary size is set to the target's.
	Config string
	// Data is a UTF-8 text file, tokenized with the target's tokenizer. Its
	// last 5% is held out: the acceptance prompts come from there.
	Data string
	// Out is the run directory the distilled draft is written to (its
	// checkpoint and the target's tokenizer).
	Out string
	// Steps bounds the optimizer steps; MaxTime (if > 0) the wall time.
	Steps   int
	MaxTime time.Duration
	// Batch sequences of SeqLen tokens per step (SeqLen 0: 128, at most
	// both models' contexts).
	Batch, SeqLen int
	// LR is the peak learning rate (cosine decay to LR/10 over Steps after
	// Warmup steps).
	LR     float64
	Warmup int
	// Generate, when > 0, trains on the target's own text: each sequence
	// is SeqLen−Generate corpus tokens followed by Generate tokens the
	// target sampled (temperature 1). 0 trains on corpus windows.
	Generate int
	// GenerateGreedy makes those continuations the target's greedy ones
	// (what a greedy decoder will ask the draft to predict) instead of
	// samples.
	GenerateGreedy bool
	// Seed seeds the draft's initialisation, the data order and sampling.
	Seed uint64
	// Threads is the compute threads (0 = all cores).
	Threads int
	// EvalPrompts held-out prompts of 32 tokens, each continued greedily
	// for EvalTokens tokens with the draft proposing K = 4, measure the
	// acceptance rate before and after (defaults 8 and 64).
	EvalPrompts, EvalTokens int
}

// DistillSummary is what Distill did and measured.
type DistillSummary struct {
	// Steps is the optimizer steps taken; Tokens the draft's training
	// positions; Seconds the training wall time.
	Steps   int     `json:"steps"`
	Tokens  int64   `json:"tokens"`
	Seconds float64 `json:"seconds"`
	// KL is the mean KL(target ‖ draft) per position over the last steps
	// (nats); KLFirst over the first.
	KL      float64 `json:"kl"`
	KLFirst float64 `json:"kl_first"`
	// AcceptBefore and AcceptAfter are the greedy acceptance rates of the
	// draft before and after distillation on the held-out prompts.
	AcceptBefore float64 `json:"acceptance_before"`
	AcceptAfter  float64 `json:"acceptance_after"`
	// Checkpoint is the written checkpoint file.
	Checkpoint string `json:"checkpoint"`
}

// maxDistillFloats bounds the teacher's distributions kept for one step
// (Batch·SeqLen·vocabulary floats): 2 GiB.
const maxDistillFloats = 1 << 29

// Distill trains a draft model for speculative decoding on the target's
// own next-token distributions: at every position of each training
// sequence the loss is KL(p_target ‖ p_draft) over the whole vocabulary
// (soft labels, not only the next token of the text), so the draft learns
// what the target would say, which is what verification accepts. The draft
// shares the target's tokenizer. The sequences are corpus windows or, with
// Generate, corpus prompts continued by the target itself.
func Distill(ctx context.Context, o DistillOptions, progress io.Writer, log *slog.Logger) (*DistillSummary, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	pool := compute.NewPool(o.Threads)
	defer pool.Close()
	target, err := infer.Load(o.Target, pool)
	if err != nil {
		return nil, fmt.Errorf("distill: target: %w", err)
	}
	tok := target.Tok
	if tok == nil {
		return nil, fmt.Errorf("distill: target %s has no tokenizer", o.Target)
	}
	m, cfg, err := distillDraft(o, target, pool)
	if err != nil {
		return nil, err
	}
	T := o.SeqLen
	if T == 0 {
		T = 128
	}
	T = min(T, cfg.MaxPositionEmbeddings, target.Context())
	if o.Generate >= T {
		return nil, fmt.Errorf("distill: --generate %d must be below the sequence length %d", o.Generate, T)
	}
	B, V := o.Batch, cfg.VocabSize
	if B*T*V > maxDistillFloats {
		return nil, fmt.Errorf("distill: batch %d × seq-len %d × vocabulary %d floats of teacher distributions exceed %d", B, T, V, maxDistillFloats)
	}
	text, err := os.ReadFile(o.Data)
	if err != nil {
		return nil, fmt.Errorf("distill: data: %w", err)
	}
	ids := tok.Encode(text)
	split := len(ids) * 95 / 100
	if split <= T || len(ids)-split < 32 {
		return nil, fmt.Errorf("distill: data %s has %d tokens; need more than %d (sequence length %d plus a 5%% held-out part)", o.Data, len(ids), (T+1)*100/95+32, T)
	}
	prompts := heldOutPrompts(ids[split:], o.EvalPrompts, 32)
	before, err := draftAcceptance(ctx, target, cfg, m.W, prompts, o.EvalTokens, pool)
	if err != nil {
		return nil, err
	}
	log.Info("distill", "target", o.Target, "draft_params", len(m.W.Flat), "seq_len", T, "batch", B, "acceptance_before", before)

	opt := NewAdamW(len(m.W.Flat), pool.Threads())
	sched := Schedule{LR: o.LR, MinLR: o.LR / 10, Warmup: o.Warmup, Total: o.Steps}
	rng := rand.New(rand.NewPCG(o.Seed, 0x64697374))
	seqs := make([]*infer.Seq, B)
	for b := range seqs {
		seqs[b] = target.NewSeq(T)
	}
	tokens := make([]int32, B*T)
	probs := make([]float32, B*T*V)
	windows := make([][]int32, B)
	sum := &DistillSummary{AcceptBefore: before}
	var recent []float64
	start := time.Now()
	bar := NewProgress(progress, o.Steps)
	for step := 1; step <= o.Steps; step++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if o.MaxTime > 0 && time.Since(start) >= o.MaxTime {
			break
		}
		for b := range windows {
			windows[b] = ids[rng.IntN(split-T):][:T]
		}
		if o.Generate > 0 {
			if err := continueBatch(ctx, target, seqs, windows, T-o.Generate, o.GenerateGreedy, rng); err != nil {
				return nil, err
			}
		}
		for b, w := range windows {
			copy(tokens[b*T:], w)
			seqs[b].Reset()
		}
		// The target's distributions at every position (one batched pass).
		lg, err := target.Forward(seqs, windows, true)
		if err != nil {
			return nil, fmt.Errorf("distill: target forward: %w", err)
		}
		var negH float64
		for b := range lg {
			negH += softmaxRows(probs[b*T*V:(b+1)*T*V], lg[b], V, pool.Threads())
		}
		m.ZeroGrad()
		if _, err := m.ForwardWith(tokens, nil, B, T, model.ForwardOptions{}); err != nil {
			return nil, fmt.Errorf("distill: draft forward: %w", err)
		}
		var kl float64
		if err := m.BackwardLogits(func(logits []float32) error {
			kl = klGrad(logits, probs, V, 1/float32(B*T), pool.Threads()) + negH
			return nil
		}); err != nil {
			return nil, fmt.Errorf("distill: draft backward: %w", err)
		}
		opt.Update(m.W.Flat, m.G.Flat, m.W.NoDecay, sched.At(step), 1)
		kl /= float64(B * T)
		if math.IsNaN(kl) || math.IsInf(kl, 0) {
			return nil, fmt.Errorf("distill: KL is %v at step %d; lower --lr", kl, step)
		}
		if step == 1 {
			sum.KLFirst = kl
		}
		recent = append(recent, kl)
		if len(recent) > 10 {
			recent = recent[1:]
		}
		sum.Steps, sum.Tokens = step, sum.Tokens+int64(B*T)
		el := time.Since(start)
		bar.Update(step, kl, float64(sum.Tokens)/el.Seconds(), time.Duration(float64(el)/float64(step)*float64(o.Steps-step)), "loss: KL(target ‖ draft)", step == 1)
	}
	bar.Done()
	sum.Seconds = time.Since(start).Seconds()
	for _, v := range recent {
		sum.KL += v / float64(len(recent))
	}
	if sum.Steps == 0 {
		return nil, errors.New("distill: no step ran (--max-time too short?)")
	}
	if sum.AcceptAfter, err = draftAcceptance(ctx, target, cfg, m.W, prompts, o.EvalTokens, pool); err != nil {
		return nil, err
	}
	if sum.Checkpoint, err = saveDistilled(o, cfg, m, opt, sched, sum, tok); err != nil {
		return nil, err
	}
	log.Info("distilled", "steps", sum.Steps, "kl", sum.KL, "acceptance_before", sum.AcceptBefore, "acceptance_after", sum.AcceptAfter, "checkpoint", sum.Checkpoint)
	return sum, nil
}

// continueBatch replaces each window's tokens from position keep on by the
// target's own continuation of windows[b][:keep], sampled at temperature 1
// (greedy: its argmax), all sequences advancing together (one batched pass
// per token).
func continueBatch(ctx context.Context, target *infer.Model, seqs []*infer.Seq, windows [][]int32, keep int, greedy bool, rng *rand.Rand) error {
	temp := 1.0
	if greedy {
		temp = 0
	}
	in := make([][]int32, len(windows))
	smp := make([]*infer.Sampler, len(windows))
	for b, w := range windows {
		windows[b] = append(make([]int32, 0, len(w)), w[:keep]...)
		in[b] = windows[b]
		seqs[b].Reset()
		smp[b] = infer.NewSampler(infer.SampleOptions{Temperature: temp, Seed: rng.Uint64()})
	}
	T := cap(windows[0])
	for len(windows[0]) < T {
		if err := ctx.Err(); err != nil {
			return err
		}
		lg, err := target.Forward(seqs, in, false)
		if err != nil {
			return fmt.Errorf("distill: target generation: %w", err)
		}
		for b := range windows {
			t := smp[b].Sample(lg[b])
			windows[b] = append(windows[b], t)
			in[b] = windows[b][len(windows[b])-1:]
		}
	}
	return nil
}

func (o *DistillOptions) validate() error {
	switch {
	case o.Target == "":
		return errors.New("distill: the target model is required")
	case (o.Draft == "") == (o.Config == ""):
		return errors.New("distill: give exactly one of a draft to start from and a draft config")
	case o.Data == "":
		return errors.New("distill: a text file (data) is required")
	case o.Out == "":
		return errors.New("distill: the output run directory is required")
	case o.Steps < 1 || o.Batch < 1 || o.SeqLen < 0 || o.Generate < 0 || o.Warmup < 0 || o.MaxTime < 0:
		return fmt.Errorf("distill: steps %d and batch %d must be positive; seq-len %d, generate %d, warmup %d, max-time %v not negative",
			o.Steps, o.Batch, o.SeqLen, o.Generate, o.Warmup, o.MaxTime)
	case o.GenerateGreedy && o.Generate == 0:
		return errors.New("distill: --generate-greedy needs --generate N (the continuations it makes greedy)")
	case !(o.LR > 0) || math.IsInf(o.LR, 0):
		return fmt.Errorf("distill: learning rate %v must be positive", o.LR)
	}
	if o.EvalPrompts <= 0 {
		o.EvalPrompts = 8
	}
	if o.EvalTokens <= 0 {
		o.EvalTokens = 64
	}
	return nil
}

// distillDraft builds the draft to train: Draft's weights, or Config with
// random weights and the target's vocabulary.
func distillDraft(o DistillOptions, target *infer.Model, pool *compute.Pool) (*model.Model, *config.Config, error) {
	var cfg *config.Config
	var init []float32
	if o.Draft != "" {
		d, err := infer.Load(o.Draft, pool)
		if err != nil {
			return nil, nil, fmt.Errorf("distill: draft: %w", err)
		}
		if err := infer.CheckDraft(target, d); err != nil {
			return nil, nil, fmt.Errorf("distill: draft %s cannot draft for %s: %w", o.Draft, o.Target, err)
		}
		c := *d.Cfg
		cfg, init = &c, d.W.Flat
	} else {
		c, err := config.Resolve(o.Config)
		if err != nil {
			return nil, nil, fmt.Errorf("distill: draft config: %w", err)
		}
		cc := *c
		cc.VocabSize = target.Cfg.VocabSize
		cfg = &cc
	}
	seqLen := o.SeqLen
	if seqLen == 0 {
		seqLen = min(128, cfg.MaxPositionEmbeddings)
	}
	if err := checkMemory(cfg, Options{Batch: o.Batch, SeqLen: seqLen, Threads: pool.Threads()}, "distillation"); err != nil {
		return nil, nil, fmt.Errorf("distill: %w", err)
	}
	m, err := model.New(cfg, pool)
	if err != nil {
		return nil, nil, fmt.Errorf("distill: draft: %w", err)
	}
	if init != nil {
		copy(m.W.Flat, init)
	} else {
		m.Init(o.Seed)
	}
	return m, cfg, nil
}

// heldOutPrompts returns n prompts of l tokens spread evenly over ids.
func heldOutPrompts(ids []int32, n, l int) [][]int32 {
	var out [][]int32
	step := max(1, (len(ids)-l)/n)
	for off := 0; off+l <= len(ids) && len(out) < n; off += step {
		out = append(out, ids[off:off+l])
	}
	return out
}

// draftAcceptance is the share of proposals the target accepts when the
// draft (cfg, w) drafts greedily with K = 4 for each prompt.
func draftAcceptance(ctx context.Context, target *infer.Model, cfg *config.Config, w *model.Weights, prompts [][]int32, gen int, pool *compute.Pool) (float64, error) {
	d, err := infer.New(cfg, w, target.Tok, pool)
	if err != nil {
		return 0, fmt.Errorf("distill: draft: %w", err)
	}
	var prop, acc int
	for _, p := range prompts {
		res, err := target.Generate(ctx, p, infer.GenerateOptions{MaxTokens: min(gen, target.Context()-len(p)), IgnoreEOT: true,
			Draft: d, DraftTokens: 4, FixedDraftTokens: true}, nil)
		if err != nil {
			return 0, fmt.Errorf("distill: acceptance: %w", err)
		}
		prop += res.Proposed
		acc += res.Accepted
	}
	if prop == 0 {
		return 0, nil
	}
	return float64(acc) / float64(prop), nil
}

// rowsParallel runs f over the row ranges [r0, r1) of n rows on up to
// workers goroutines, returning the sum of f's results in range order
// (deterministic whatever the scheduling).
func rowsParallel(n, workers int, f func(r0, r1 int) float64) float64 {
	workers = max(1, min(workers, n))
	parts := make([]float64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() { parts[w] = f(n*w/workers, n*(w+1)/workers) })
	}
	wg.Wait()
	var s float64
	for _, p := range parts {
		s += p
	}
	return s
}

// softmaxRows writes softmax(logits) row by row (rows of v) into dst and
// returns Σ_rows Σ p·log p (minus the rows' entropies), in nats.
func softmaxRows(dst, logits []float32, v, workers int) float64 {
	return rowsParallel(len(logits)/v, workers, func(r0, r1 int) float64 {
		var negH float64
		for r := r0; r < r1; r++ {
			row, out := logits[r*v:(r+1)*v], dst[r*v:(r+1)*v]
			mx := slices.Max(row)
			sum := compute.ExpScale(out, row, mx, 1)
			inv := 1 / sum
			lse := mx + float32(math.Log(float64(sum)))
			for i, x := range row {
				out[i] *= inv
				negH += float64(out[i]) * float64(x-lse)
			}
		}
		return negH
	})
}

// klGrad turns each row of the draft's logits (rows of v) into the
// gradient of scale·KL(p ‖ softmax(logits)), which is
// scale·(softmax(logits) − p), and returns the cross-entropy
// −Σ_rows Σ p·log softmax(logits) in nats (KL is that minus the entropies
// softmaxRows returned).
func klGrad(logits, p []float32, v int, scale float32, workers int) float64 {
	return rowsParallel(len(logits)/v, workers, func(r0, r1 int) float64 {
		var ce float64
		for r := r0; r < r1; r++ {
			row, pr := logits[r*v:(r+1)*v], p[r*v:(r+1)*v]
			mx := slices.Max(row)
			lse := mx + float32(math.Log(float64(compute.ExpScale(nil, row, mx, 1))))
			for i, x := range row {
				if pr[i] > 0 {
					ce -= float64(pr[i]) * float64(x-lse)
				}
			}
			// row ← scale·q, then minus scale·p.
			compute.ExpScale(row, row, lse, scale)
			for i := range row {
				row[i] -= scale * pr[i]
			}
		}
		return ce
	})
}

// saveDistilled writes the draft's checkpoint and the target's tokenizer
// into o.Out, making it a run directory that moe generate --draft loads.
func saveDistilled(o DistillOptions, cfg *config.Config, m *model.Model, opt *AdamW, sched Schedule, sum *DistillSummary, tok *tokenizer.Tokenizer) (string, error) {
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return "", fmt.Errorf("distill: %w", err)
	}
	if err := tok.Save(filepath.Join(o.Out, tokenizer.FileName)); err != nil {
		return "", fmt.Errorf("distill: %w", err)
	}
	path, err := saveModelState(o.Out, checkpoint.Header{Step: sum.Steps, Tokens: sum.Tokens, Seed: o.Seed, Config: cfg}, m, opt, sched, 0)
	if err != nil {
		return "", fmt.Errorf("distill: %w", err)
	}
	return path, nil
}
