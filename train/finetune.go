package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/infer"
	"github.com/moe-llm/moe/model"
	"github.com/moe-llm/moe/tokenizer"
	"github.com/moe-llm/moe/tokenizer/chattmpl"
)

// ChatExample is one tokenized conversation in the model's chat template
// (see infer.EncodeChat): Targets[i] says whether token i is trained on,
// i.e. is part of an assistant reply (its content and what closes it, such
// as <|end|> or <|im_end|>; not the role header before it).
type ChatExample struct {
	IDs     []int32
	Targets []bool
}

// chatLine is one line of a chat JSONL file.
type chatLine struct {
	Messages []infer.Message `json:"messages"`
}

// LoadChat reads a chat JSONL file: one {"messages": [{"role", "content"}]}
// object per line (blank lines are skipped), rendered with tmpl (nil:
// moe's own template). Conversations without an assistant turn are an
// error, as are roles the template refuses and malformed lines.
func LoadChat(path string, tok *tokenizer.Tokenizer, tmpl *chattmpl.Template) ([]ChatExample, error) {
	if tmpl == nil {
		var err error
		if tmpl, err = infer.MoeTemplate(tok); err != nil {
			return nil, fmt.Errorf("chat data: %w", err)
		}
	}
	var out []ChatExample
	err := readJSONL(path, "chat data", 256<<20, func(cl chatLine) error {
		if len(cl.Messages) == 0 {
			return errors.New(`no "messages"`)
		}
		ex, err := chatExample(tok, tmpl, cl.Messages)
		if err != nil {
			return err
		}
		out = append(out, ex)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("chat data %s: no conversations", path)
	}
	return out, nil
}

// chatExample tokenizes one conversation as inference would (the whole
// rendered text) and marks each assistant reply: the tokens between the
// conversation up to it with the generation prompt (what the model is
// given) and the conversation up to and including it (what it must write).
// Both renders must be prefixes of the whole one, up to a token merged
// across the boundary (which is then learned); a template that renders
// history differently from the finished conversation cannot be masked and
// is refused.
func chatExample(tok *tokenizer.Tokenizer, tmpl *chattmpl.Template, msgs []infer.Message) (ChatExample, error) {
	ids, err := infer.EncodeChat(tok, tmpl, msgs, false)
	if err != nil {
		return ChatExample{}, err
	}
	ex := ChatExample{IDs: ids, Targets: make([]bool, len(ids))}
	assistant := false
	for k, m := range msgs {
		if m.Role != "assistant" {
			continue
		}
		assistant = true
		given, err := infer.EncodeChat(tok, tmpl, msgs[:k], true)
		if err != nil {
			return ChatExample{}, err
		}
		written, err := infer.EncodeChat(tok, tmpl, msgs[:k+1], false)
		if err != nil {
			return ChatExample{}, err
		}
		from, to := commonPrefix(given, ids), commonPrefix(written, ids)
		if from < len(given)-1 || to < len(written)-1 {
			return ChatExample{}, fmt.Errorf("chat template %s renders the conversation before message %d differently from the whole conversation, so its reply cannot be masked", tmpl.Name(), k)
		}
		if to <= from {
			return ChatExample{}, fmt.Errorf("message %d (assistant) adds no tokens under chat template %s", k, tmpl.Name())
		}
		for i := from; i < to; i++ {
			ex.Targets[i] = true
		}
	}
	if !assistant {
		return ChatExample{}, errors.New("conversation has no assistant message to learn")
	}
	return ex, nil
}

// commonPrefix returns the length of the common prefix of a and b.
func commonPrefix(a, b []int32) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// fillRow writes conversation ex as one row of T inputs and T targets:
// targets are the next tokens where they are trained on, -1 elsewhere;
// the row is cut at T+1 tokens and padded with pad (ignored).
func fillRow(ex ChatExample, tok, tgt []int32, pad int32) int {
	n := 0
	for i := range tok {
		tok[i], tgt[i] = pad, -1
		if i < len(ex.IDs) {
			tok[i] = ex.IDs[i]
		}
		if i+1 < len(ex.IDs) && ex.Targets[i+1] {
			tgt[i] = ex.IDs[i+1]
			n++
		}
	}
	return n
}

// usableChat drops the conversations whose first T+1 tokens (what a row
// of a T-token batch trains on) hold no assistant token: cut there, they
// would train nothing (a loss-0 step). It returns the rest, how many of
// them are cut, and how many were dropped.
func usableChat(all []ChatExample, T int) (kept []ChatExample, cut, dropped int) {
	for _, ex := range all {
		trained := false
		for j := 1; j < min(len(ex.IDs), T+1) && !trained; j++ {
			trained = ex.Targets[j]
		}
		switch {
		case !trained:
			dropped++
			continue
		case len(ex.IDs) > T+1:
			cut++
		}
		kept = append(kept, ex)
	}
	return kept, cut, dropped
}

// chatBatches serves conversations, one per row, in a fresh seeded
// permutation every epoch.
type chatBatches struct {
	ex       []ChatExample
	B, T     int
	seed     uint64
	pad      int32
	Epoch    int `json:"epoch"`
	Index    int `json:"index"`
	perm     []int
	permOfEp int
}

func (c *chatBatches) order() []int {
	if c.perm == nil || c.permOfEp != c.Epoch {
		r := rand.New(rand.NewPCG(c.seed, uint64(c.Epoch)))
		c.perm, c.permOfEp = r.Perm(len(c.ex)), c.Epoch
	}
	return c.perm
}

// Next fills B rows with the next conversations.
func (c *chatBatches) Next(tok, tgt []int32) error {
	for r := 0; r < c.B; r++ {
		ex := c.ex[c.order()[c.Index]]
		fillRow(ex, tok[r*c.T:(r+1)*c.T], tgt[r*c.T:(r+1)*c.T], c.pad)
		if c.Index++; c.Index == len(c.ex) {
			c.Epoch, c.Index = c.Epoch+1, 0
		}
	}
	return nil
}

// State serialises the position (epoch and index in its permutation).
func (c *chatBatches) State() (json.RawMessage, error) {
	return json.Marshal(struct {
		Epoch int `json:"epoch"`
		Index int `json:"index"`
	}{c.Epoch, c.Index})
}

// Restore sets the position.
func (c *chatBatches) Restore(s json.RawMessage) error {
	var st struct {
		Epoch int `json:"epoch"`
		Index int `json:"index"`
	}
	if err := json.Unmarshal(s, &st); err != nil {
		return fmt.Errorf("chat data position: %w", err)
	}
	if st.Epoch < 0 || st.Index < 0 || st.Index >= len(c.ex) {
		return fmt.Errorf("chat data position %+v does not fit %d conversations", st, len(c.ex))
	}
	c.Epoch, c.Index = st.Epoch, st.Index
	return nil
}

// EvaluateChat returns the mean loss over the trained (assistant) tokens
// of the conversations, one per row, B rows per forward pass.
func EvaluateChat(ctx context.Context, m Model, ex []ChatExample, B, T int, bytesOf func(int32) int, pad int32) (EvalResult, error) {
	var r EvalResult
	tok := make([]int32, B*T)
	tgt := make([]int32, B*T)
	for i := 0; i < len(ex); i += B {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		count := 0
		for b := 0; b < B; b++ {
			if i+b < len(ex) {
				count += fillRow(ex[i+b], tok[b*T:(b+1)*T], tgt[b*T:(b+1)*T], pad)
			} else {
				fillRow(ChatExample{}, tok[b*T:(b+1)*T], tgt[b*T:(b+1)*T], pad)
			}
		}
		if count == 0 {
			continue
		}
		for _, t := range tgt {
			if t >= 0 {
				r.Bytes += bytesOf(t)
			}
		}
		st, err := m.Forward(tok, tgt, B, T)
		if err != nil {
			return r, fmt.Errorf("eval: %w", err)
		}
		r.SumLoss += st.Loss * float64(count)
		r.Tokens += count
	}
	r.Loss = math.NaN()
	if r.Tokens > 0 {
		r.Loss = r.SumLoss / float64(r.Tokens)
	}
	return r, nil
}

// Finetune fine-tunes the model in opts.Config (a run directory, a
// checkpoint file or a GGUF file the training model can hold) on the chat JSONL file opts.Data[0], with the loss on
// assistant tokens only, writing a new run directory opts.Out that is a
// model like any other. Every 20th conversation is held out for validation
// when there are at least 20.
func Finetune(ctx context.Context, opts Options, progress io.Writer, log *slog.Logger) (*Summary, error) {
	start := time.Now()
	if log == nil {
		log = slog.Default()
	}
	if opts.KeepCheckpoints <= 0 {
		opts.KeepCheckpoints = 2
	}
	if opts.ValFraction == 0 {
		opts.ValFraction = 0.05
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if len(opts.Data) != 1 {
		return nil, fmt.Errorf("finetune takes one chat JSONL file, got %d", len(opts.Data))
	}
	if err := os.MkdirAll(opts.Out, 0o755); err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	// A fresh fine-tune must not land on another run's checkpoints (the base
	// model's own directory, say): their newer steps would win.
	ck, err := resumePoint(opts, "fine-tune", log)
	if err != nil {
		return nil, err
	}
	// A resume without --precision continues in the checkpoint's.
	if ck != nil && opts.Precision == "" {
		if opts.Precision, err = checkpointPrecision(ck); err != nil {
			return nil, err
		}
	}
	// The base model and its tokenizer.
	var cfg *config.Config
	var base *model.Weights
	var baseTok *tokenizer.Tokenizer
	if ck != nil {
		cfg = ck.Header.Config
	} else {
		if cfg, base, baseTok, err = loadBase(ctx, opts.Config, opts.Threads); err != nil {
			return nil, fmt.Errorf("base model: %w", err)
		}
	}
	if cfg == nil {
		return nil, errors.New("checkpoint has no model config")
	}
	tokPath := filepath.Join(opts.Out, tokenizer.FileName)
	if !fileExists(tokPath) && baseTok != nil {
		if err := baseTok.Save(tokPath); err != nil {
			return nil, err
		}
	}
	if !fileExists(tokPath) {
		dir := opts.Config
		if st, err := os.Stat(dir); err == nil && !st.IsDir() {
			dir = filepath.Dir(dir)
		}
		t, err := tokenizer.Load(filepath.Join(dir, tokenizer.FileName))
		if err != nil {
			return nil, fmt.Errorf("base model tokenizer: %w", err)
		}
		if err := t.Save(tokPath); err != nil {
			return nil, err
		}
	}
	tok, err := tokenizer.Load(tokPath)
	if err != nil {
		return nil, err
	}
	if err := cfg.Save(filepath.Join(opts.Out, ConfigFile)); err != nil {
		return nil, err
	}
	accum, err := resolveSeqLen(&opts, cfg)
	if err != nil {
		return nil, err
	}
	T := opts.SeqLen
	if err := checkMemory(cfg, opts, "fine-tuning"); err != nil {
		return nil, err
	}
	if err := writeJSONAtomic(filepath.Join(opts.Out, RunFile), opts); err != nil {
		return nil, fmt.Errorf("saving run options: %w", err)
	}

	// The base model's chat template (moe's own when it has none), which
	// the fine-tuned model keeps.
	tmpl, _, err := infer.ReadChat(opts.Config, tok)
	if err != nil {
		return nil, fmt.Errorf("base model: %w", err)
	}
	if tmpl != nil {
		if err := chattmpl.SaveConfig(opts.Out, tmpl); err != nil {
			return nil, err
		}
	}
	// The conversations.
	all, err := LoadChat(opts.Data[0], tok, tmpl)
	if err != nil {
		return nil, err
	}
	all, truncated, skipped := usableChat(all, T)
	if skipped > 0 {
		log.Warn("conversations cut at seq-len+1 tokens before any assistant token are skipped", "count", skipped, "seq_len", T)
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("%s: no conversation has an assistant token within the first %d tokens (raise --seq-len)", opts.Data[0], T+1)
	}
	var trainEx, valEx []ChatExample
	for i, ex := range all {
		if len(all) >= 20 && i%20 == 19 {
			valEx = append(valEx, ex)
		} else {
			trainEx = append(trainEx, ex)
		}
	}
	if truncated > 0 {
		log.Warn("conversations longer than seq-len+1 tokens are cut", "count", truncated, "seq_len", T)
	}
	pad := tok.EOT()
	batches := &chatBatches{ex: trainEx, B: opts.Batch, T: T, seed: opts.Seed, pad: pad}

	pool := compute.NewPool(opts.Threads)
	defer pool.Close()
	m, opt, tr, rng, err := newRunTrainer(cfg, opts, pool, batches, accum, log)
	if err != nil {
		return nil, err
	}
	if ck != nil {
		if err := restore(ck, m, opt, tr, batches, rng); err != nil {
			return nil, err
		}
	} else {
		copy(m.W.Flat, base.Flat)
	}
	log.Info("fine-tuning", "base", opts.Config, "params", len(m.W.Flat), "conversations", len(trainEx), "val_conversations", len(valEx),
		"batch", opts.Batch, "seq_len", T, "steps", opts.Steps, "threads", pool.Threads())
	bytesOf := TextBytes(tok)
	evaluate := func() (EvalResult, error) {
		if len(valEx) == 0 {
			return EvalResult{Loss: math.NaN()}, nil
		}
		return EvaluateChat(ctx, modelAdapter{m, true}, valEx, opts.Batch, T, bytesOf, pad)
	}
	sess := &session{opts: opts, cfg: cfg, m: m, opt: opt, tr: tr, batches: batches, rng: rng, threads: pool.Threads(),
		evaluate: evaluate, log: log, progress: progress, start: start}
	return sess.loop(ctx, ck)
}
