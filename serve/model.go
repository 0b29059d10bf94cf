package serve

import (
	"fmt"

	"github.com/moe-llm/moe/infer"
	"github.com/moe-llm/moe/tokenizer"
)

// modelEngine adapts an *infer.Model to Engine.
type modelEngine struct {
	m       *infer.Model
	touched int // routed experts the last pass touched
}

// NewModelEngine returns an Engine that runs m.
func NewModelEngine(m *infer.Model) Engine { return &modelEngine{m: m} }

func (e *modelEngine) Context() int { return e.m.Context() }

// NewSeq returns a sequence whose logits are returned in a buffer it
// reuses: the scheduler reads a step's logits before the next step.
func (e *modelEngine) NewSeq(maxLen int) Seq {
	s := e.m.NewSeq(maxLen)
	s.ReuseLogits(true)
	return s
}

func (e *modelEngine) Forward(seqs []Seq, tokens [][]int32, allLogits bool) ([][]float32, error) {
	ss := make([]*infer.Seq, len(seqs))
	for i, s := range seqs {
		is, ok := s.(*infer.Seq)
		if !ok {
			return nil, fmt.Errorf("serve: sequence %d is a %T, not an *infer.Seq", i, s)
		}
		ss[i] = is
	}
	logits, st, err := e.m.ForwardStats(ss, tokens, allLogits)
	e.touched = st.TouchedTotal()
	return logits, err
}

// LastTouched returns the routed experts (all layers) the last Forward
// touched: the speculation policy prices verification with it.
func (e *modelEngine) LastTouched() int { return e.touched }

// VerifyCost returns the model's cost model for the speculation policy.
func (e *modelEngine) VerifyCost() infer.CostModel { return e.m.VerifyCost() }

func (e *modelEngine) NewSampler(o SampleOptions) Sampler {
	return infer.NewSampler(infer.SampleOptions{Temperature: o.Temperature, TopP: o.TopP, TopK: o.TopK, Seed: o.Seed})
}

// ExpertCounts returns the model's per-layer, per-expert routing counts.
func (e *modelEngine) ExpertCounts() [][]uint64 {
	c, _ := e.m.RoutingCounts()
	return c
}

// textTokenizer adapts *tokenizer.Tokenizer to Tokenizer. Special tokens
// are control tokens and decode to no text.
type textTokenizer struct {
	t *tokenizer.Tokenizer
}

// Encode tokenizes a prompt as llama.cpp's server does: BOS (EOS) where
// the vocabulary asks for it, special token strings as their ids.
func (t textTokenizer) Encode(s string) []int32 { return t.t.Tokenize([]byte(s), true, true) }

func (t textTokenizer) TokenBytes(id int32) []byte {
	if t.t.IsSpecial(id) {
		return nil
	}
	return t.t.TokenBytes(id)
}

// NewFromModel returns a server for an infer.Model with a tokenizer,
// filling in from it what opt leaves unset: the vocabulary size, EOT as the
// stop token and empty-prompt start, and the model's chat template
// (m.ChatTemplate: the file's own, or moe's) with the tokens and strings
// that end a reply (infer's ChatStops, and moe's role markers, which can
// only mean the model has moved on to another turn). draft, if non-nil,
// must share m's tokenizer; it speculates for greedy requests.
func NewFromModel(m, draft *infer.Model, opt Options) (*Server, error) {
	if m == nil {
		return nil, fmt.Errorf("serve: nil model")
	}
	if m.Tok == nil {
		return nil, fmt.Errorf("serve: model has no tokenizer")
	}
	tok := m.Tok
	if opt.Vocab == 0 {
		opt.Vocab = m.Cfg.VocabSize
	}
	if opt.StopTokens == nil {
		opt.StopTokens = m.StopTokens()
	}
	if opt.EmptyPrompt == 0 {
		opt.EmptyPrompt = tok.EOT()
	}
	if tmpl, err := m.ChatTemplate(); err == nil {
		ids, strs := m.ChatStops(tmpl)
		if opt.ChatStopTokens == nil {
			opt.ChatStopTokens = ids
			for _, name := range []string{tokenizer.System, tokenizer.User, tokenizer.Assistant} {
				if id, ok := tok.Special(name); ok {
					opt.ChatStopTokens = append(opt.ChatStopTokens, id)
				}
			}
		}
		if opt.ChatStops == nil {
			opt.ChatStops = strs
		}
		if opt.ChatText == nil {
			opt.ChatText = func() func(int32) []byte { return m.ReplyText(tmpl) }
		}
		if opt.ChatTemplate == nil {
			opt.ChatTemplate = func(msgs []Message) ([]int32, error) {
				return infer.EncodeChat(tok, tmpl, inferMessages(msgs), true)
			}
		}
		if opt.ChatPromptText == nil {
			opt.ChatPromptText = func(msgs []Message) (string, error) {
				return infer.ChatPrompt(tok, tmpl, inferMessages(msgs), true)
			}
		}
	} else if opt.ChatStopTokens == nil {
		opt.ChatStopTokens = m.StopTokens()
	}
	if draft != nil {
		if err := infer.CheckDraft(m, draft); err != nil {
			return nil, fmt.Errorf("serve: %w", err)
		}
		opt.Draft = NewModelEngine(draft)
	}
	return New(NewModelEngine(m), textTokenizer{tok}, opt)
}

// inferMessages converts chat messages to infer's.
func inferMessages(msgs []Message) []infer.Message {
	im := make([]infer.Message, len(msgs))
	for i, x := range msgs {
		im[i] = infer.Message{Role: x.Role, Content: x.Content}
	}
	return im
}
