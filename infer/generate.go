package infer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/moe-llm/moe/tokenizer/detok"
)

// Stop reasons reported in Result.StopReason.
const (
	StopLength  = "length"  // MaxTokens reached
	StopString  = "stop"    // a stop sequence appeared
	StopToken   = "eot"     // a stop token (end of text or of a turn) was generated
	StopContext = "context" // the sequence is full
)

// GenerateOptions control Generate.
type GenerateOptions struct {
	// MaxTokens bounds the generated tokens; 0 means until a stop or the
	// context is full.
	MaxTokens int
	// Stop ends generation when the generated text contains one of these
	// strings; the text is cut before it. Needs the model's tokenizer.
	Stop []string
	// StopTokens end generation when generated (the token is kept in
	// Result.Tokens but not in Result.Text). Nil means the model's
	// StopTokens: end-of-text, the end of a turn (<|end|>, the file's
	// eot/eom ids, the chat template's end markers), the
	// end-of-generation set llama.cpp stops at.
	StopTokens []int32
	// IgnoreEOT disables the default stop tokens (benchmarks, --ignore-eos).
	IgnoreEOT bool
	// Text, if set, is called with the generated text as it becomes final
	// (whole UTF-8 characters, control tokens dropped, nothing that may
	// begin a stop string); together the pieces are Result.Text.
	Text func(text string) error
	// KeepSpecial keeps the strings of special tokens (other than the stop
	// tokens) in the text, as llama.cpp's llama-simple prints them; chat
	// and the server drop them.
	KeepSpecial bool
	// TokenText, if set, is how generated tokens become text instead (chat
	// passes ReplyText, which keeps only a harmony reply's final channel).
	TokenText detok.TokenText
	// Sampling options; the draft samples with the same options.
	Sampling SampleOptions

	// Draft, if set, proposes tokens for speculative decoding. It must share
	// the target's tokenizer (vocabulary).
	Draft *Model
	// Drafter, if set, proposes tokens instead of Draft (e.g. an
	// NgramDrafter: prompt lookup, no model).
	Drafter Drafter
	// DraftTokens is the initial number K of tokens the draft proposes per
	// step (default 4); K adapts at run time unless FixedDraftTokens.
	DraftTokens int
	// MaxDraftTokens bounds the adapted K (default max(2·DraftTokens, 8)).
	MaxDraftTokens int
	// FixedDraftTokens keeps K fixed.
	FixedDraftTokens bool

	// Seq, if set, is the target sequence to use: its cached tokens that
	// match the start of the prompt are reused (chat turns, prefix reuse) and
	// the rest is recomputed. The prompt is then the WHOLE context. On return
	// the sequence holds a prefix of prompt+Result.Tokens.
	Seq *Seq
	// DraftSeq is the same for the draft model.
	DraftSeq *Seq
}

// Result is what Generate produced and measured.
type Result struct {
	// Tokens are the generated tokens, a final stop token included.
	Tokens []int32
	// Text is the generated text: stop tokens and (unless KeepSpecial)
	// other control tokens dropped, cut before a stop sequence (empty
	// without a tokenizer).
	Text string
	// StopReason says why generation ended (StopLength, ...).
	StopReason string
	// PromptTokens is the prompt's length; CachedTokens of them were reused
	// from opts.Seq.
	PromptTokens, CachedTokens int
	// Proposed and Accepted count draft tokens in speculative decoding;
	// Rounds counts draft-and-verify steps; FinalDraftTokens is K at the end.
	Proposed, Accepted, Rounds, FinalDraftTokens int
	// Seconds is the wall time of the whole call; PrefillSeconds of the
	// first forward pass (the prompt), DecodeSeconds of the rest.
	Seconds, PrefillSeconds, DecodeSeconds float64
	// PrefillTokens counts the generated tokens the first forward pass
	// produced: 1 in plain decoding, the accepted drafts plus one in
	// speculative decoding (all of them when the output fits in the first
	// round). The other len(Tokens)-PrefillTokens took DecodeSeconds.
	PrefillTokens int
	// TargetTouched sums, over verification passes, the routed experts each
	// pass touched (all layers): the cost speculative decoding paid.
	TargetTouched int
	// DraftSeconds and VerifySeconds split a speculative run's time between
	// the draft's forward passes and the target's verification passes.
	DraftSeconds, VerifySeconds float64
}

// AcceptanceRate is Accepted/Proposed (0 when nothing was proposed).
func (r *Result) AcceptanceRate() float64 {
	if r.Proposed == 0 {
		return 0
	}
	return float64(r.Accepted) / float64(r.Proposed)
}

// TokensPerSecond is the decode speed: the tokens generated after the first
// forward pass over the time they took (DecodeSeconds). When the first pass
// produced every token (one token, or a speculative run whose output fit in
// its first round) there is no decode time to speak of, and it is all the
// generated tokens over the whole call (Seconds, prefill included).
func (r *Result) TokensPerSecond() float64 {
	if n := len(r.Tokens) - r.PrefillTokens; n > 0 && r.DecodeSeconds > 0 {
		return float64(n) / r.DecodeSeconds
	}
	if r.Seconds > 0 {
		return float64(len(r.Tokens)) / r.Seconds
	}
	return 0
}

// CheckDraft reports whether draft can propose tokens for target: both need
// the same vocabulary (size and the bytes of every token).
func CheckDraft(target, draft *Model) error {
	if target.Cfg.VocabSize != draft.Cfg.VocabSize {
		return fmt.Errorf("draft model has vocab_size %d but the target has %d: they must share a tokenizer", draft.Cfg.VocabSize, target.Cfg.VocabSize)
	}
	tt, dt := target.Tok, draft.Tok
	if tt == nil || dt == nil {
		return nil
	}
	if tt.VocabSize() != dt.VocabSize() {
		return fmt.Errorf("draft tokenizer has %d tokens but the target's has %d: they must share a tokenizer", dt.VocabSize(), tt.VocabSize())
	}
	for id := int32(0); int(id) < tt.VocabSize(); id++ {
		if !bytes.Equal(tt.TokenBytes(id), dt.TokenBytes(id)) {
			return fmt.Errorf("draft tokenizer differs from the target's at token %d (%q vs %q): they must share a tokenizer", id, dt.TokenBytes(id), tt.TokenBytes(id))
		}
	}
	return nil
}

// output tracks generated tokens: it feeds them to the detokenizer (the one
// path from tokens to text: stop tokens, stop strings, control tokens,
// incomplete UTF-8) and emits each token once all its text is final (a
// token that might begin a stop string is held back until it cannot).
type output struct {
	m         *Model
	emit      func(int32) error
	onText    func(string) error
	ds        *detok.Stream
	maxTokens int

	// rounds, if set, counts speculative rounds; firstRound counts the
	// tokens pushed while it is at most 1 (the prefill pass's tokens).
	rounds     *int
	firstRound int

	tokens  []int32
	ends    []int  // token-text bytes pushed up to and including each token
	text    []byte // the released text
	emitted int
	reason  string
}

// newOutput returns the tracker for one Generate call.
func newOutput(m *Model, emit func(int32) error, opts GenerateOptions) *output {
	o := &output{m: m, emit: emit, onText: opts.Text, maxTokens: opts.MaxTokens}
	stopTokens := opts.StopTokens
	if stopTokens == nil && !opts.IgnoreEOT {
		stopTokens = m.StopTokens()
	}
	text := detok.TokenText(func(int32) []byte { return nil })
	if m.Tok != nil {
		text = detok.Text(m.Tok)
		if opts.KeepSpecial {
			text = m.Tok.TokenBytes
		}
	}
	if opts.TokenText != nil {
		text = opts.TokenText
	}
	o.ds = detok.New(text, detok.Options{Stops: opts.Stop, StopTokens: stopTokens})
	return o
}

// push adds a generated token; it returns true when generation must stop.
func (o *output) push(tok int32) (bool, error) {
	o.tokens = append(o.tokens, tok)
	if o.rounds != nil && *o.rounds <= 1 {
		o.firstRound = len(o.tokens)
	}
	if err := o.release(o.ds.Push(tok)); err != nil {
		return true, err
	}
	o.ends = append(o.ends, o.ds.Pushed())
	switch o.ds.Stopped() {
	case detok.Token:
		o.reason = StopToken
		return true, o.emitTo(len(o.tokens) - 1)
	case detok.String:
		o.reason = StopString
	}
	// Emit the tokens whose text has all been released.
	n := o.emitted
	for n < len(o.tokens) && o.ends[n] <= o.ds.Released() {
		n++
	}
	if err := o.emitTo(n); err != nil || o.reason != "" {
		return true, err
	}
	if o.maxTokens > 0 && len(o.tokens) >= o.maxTokens {
		return true, o.stop(StopLength)
	}
	return false, nil
}

// stop ends generation for reason: the text held back is final and every
// token is emitted.
func (o *output) stop(reason string) error {
	o.reason = reason
	if err := o.release(o.ds.Flush()); err != nil {
		return err
	}
	return o.emitTo(len(o.tokens))
}

// release appends final text and hands it to the text callback.
func (o *output) release(s string) error {
	if s == "" {
		return nil
	}
	o.text = append(o.text, s...)
	if o.onText != nil {
		if err := o.onText(s); err != nil {
			return fmt.Errorf("infer: text: %w", err)
		}
	}
	return nil
}

// emitTo emits tokens up to index n.
func (o *output) emitTo(n int) error {
	for ; o.emitted < n; o.emitted++ {
		if o.emit != nil {
			if err := o.emit(o.tokens[o.emitted]); err != nil {
				return fmt.Errorf("infer: emit: %w", err)
			}
		}
	}
	return nil
}

// syncSeq makes s hold a prefix of ctx, at most len(ctx)-1 tokens, and returns
// the tokens still to feed.
func syncSeq(s *Seq, ctx []int32) []int32 {
	toks := s.Tokens()
	c := 0
	for c < len(toks) && c < len(ctx)-1 && toks[c] == ctx[c] {
		c++
	}
	s.Truncate(c)
	return ctx[c:]
}

// Generate continues prompt with the model, calling emit (if non-nil) with
// each token as soon as it is final, and returns what it generated. With
// opts.Draft it decodes speculatively; the output distribution is the
// target's exactly, and at temperature 0 the tokens are identical to plain
// decoding.
func (m *Model) Generate(ctx context.Context, prompt []int32, opts GenerateOptions, emit func(tok int32) error) (Result, error) {
	start := time.Now()
	res := Result{PromptTokens: len(prompt)}
	if err := opts.Sampling.Validate(); err != nil {
		return res, fmt.Errorf("infer: %w", err)
	}
	if len(prompt) == 0 {
		return res, errors.New("infer: empty prompt: give at least one token")
	}
	if opts.MaxTokens < 0 {
		return res, fmt.Errorf("infer: max tokens %d must be >= 0", opts.MaxTokens)
	}
	seq := opts.Seq
	if seq == nil {
		seq = m.NewSeq(0)
	} else if seq.m != m {
		return res, errors.New("infer: opts.Seq belongs to another model")
	}
	// Each step's logits are read before the next step: one buffer serves.
	defer seq.reusingLogits()()
	if len(prompt) > seq.maxLen {
		return res, fmt.Errorf("infer: prompt of %d tokens is longer than the context of %d tokens", len(prompt), seq.maxLen)
	}
	for _, t := range prompt {
		if t < 0 || int(t) >= m.Cfg.VocabSize {
			return res, fmt.Errorf("infer: prompt token %d out of range [0,%d)", t, m.Cfg.VocabSize)
		}
	}
	for _, st := range opts.Stop {
		if st != "" && m.Tok == nil {
			return res, errors.New("infer: stop sequences need a tokenizer")
		}
	}
	o := newOutput(m, emit, opts)
	pending := syncSeq(seq, prompt)
	res.CachedTokens = len(prompt) - len(pending)

	var err error
	if opts.Draft != nil || opts.Drafter != nil {
		o.rounds = &res.Rounds
		err = m.speculate(ctx, seq, prompt, pending, opts, o, &res, start)
		res.PrefillTokens = o.firstRound
	} else {
		err = m.plain(ctx, seq, pending, opts, o, &res, start)
		res.PrefillTokens = min(1, len(o.tokens))
	}
	res.Tokens = o.tokens
	res.StopReason = o.reason
	res.Text = string(o.text)
	res.Seconds = time.Since(start).Seconds()
	res.DecodeSeconds = res.Seconds - res.PrefillSeconds
	return res, err
}

// plain is decoding without a draft: one forward pass per token.
func (m *Model) plain(ctx context.Context, seq *Seq, pending []int32, opts GenerateOptions, o *output, res *Result, start time.Time) error {
	smp := NewSampler(opts.Sampling)
	logits, err := m.Forward([]*Seq{seq}, [][]int32{pending}, false)
	if err != nil {
		return err
	}
	res.PrefillSeconds = time.Since(start).Seconds()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		tok := smp.Sample(logits[0])
		done, err := o.push(tok)
		if err != nil || done {
			return err
		}
		if seq.Len() >= seq.maxLen {
			return o.stop(StopContext)
		}
		logits, err = m.Forward([]*Seq{seq}, [][]int32{{tok}}, false)
		if err != nil {
			return err
		}
	}
}
