// Package serve is moe's OpenAI-compatible HTTP server: /v1/completions,
// /v1/chat/completions (plain JSON and server-sent events), /v1/models,
// /health and /metrics, in front of a continuous-batching scheduler that
// runs every active sequence through one batched forward pass per step.
//
// The server drives a model through the small Engine interface, so the HTTP
// layer and the scheduler are tested against a fake engine as well as the
// real infer.Model (modelEngine in model.go).
package serve

// Seq is one sequence's KV cache inside an Engine.
type Seq interface {
	// Len returns the number of tokens the cache holds.
	Len() int
	// Truncate drops cached positions from n on (used to roll back rejected
	// speculative tokens).
	Truncate(n int)
}

// Sampler picks the next token from one position's logits.
type Sampler interface {
	// Sample returns a token id drawn from logits ([vocab]).
	Sample(logits []float32) int32
}

// ProbSampler is a Sampler that also exposes the distribution it samples
// from; speculative decoding of sampled (temperature > 0) requests needs it
// from both the target's and the draft's samplers.
type ProbSampler interface {
	Sampler
	// Probs writes into dst the distribution Sample draws from, after
	// temperature, top-k and top-p.
	Probs(logits, dst []float32)
	// SampleProbs draws an id from the distribution p.
	SampleProbs(p []float32) int32
	// Float64 returns a uniform number in [0, 1) from the sampler's stream.
	Float64() float64
}

// SampleOptions configures one request's sampler.
type SampleOptions struct {
	// Temperature 0 means greedy (argmax).
	Temperature float64
	// TopP keeps the smallest set of tokens whose probability reaches TopP;
	// 0 or 1 disables it.
	TopP float64
	// TopK keeps the K most likely tokens; 0 disables it.
	TopK int
	// Seed makes sampling reproducible.
	Seed uint64
}

// Engine is a language model with a batched forward pass, as the scheduler
// sees it. An Engine is used by one goroutine at a time.
type Engine interface {
	// Context returns the longest sequence the model takes (positions).
	Context() int
	// NewSeq returns an empty sequence that can hold up to maxLen tokens.
	NewSeq(maxLen int) Seq
	// Forward appends tokens[i] to seqs[i] for every i in one batched pass
	// and returns, per sequence, the logits of its last new position ([vocab])
	// or, with allLogits, of all its new positions (len(tokens[i])×vocab).
	// The logits may be valid only until the next Forward that includes
	// the same sequence: the scheduler reads them before that.
	Forward(seqs []Seq, tokens [][]int32, allLogits bool) ([][]float32, error)
	// NewSampler returns a sampler for one request.
	NewSampler(o SampleOptions) Sampler
}

// ExpertCounter is implemented by engines that count how many tokens their
// router sent to each expert; /metrics exports the counts.
type ExpertCounter interface {
	// ExpertCounts returns cumulative counts indexed [layer][expert].
	ExpertCounts() [][]uint64
}

// Tokenizer turns text into token ids and ids back into bytes.
type Tokenizer interface {
	// Encode returns the token ids of text (no special tokens are parsed).
	Encode(text string) []int32
	// TokenBytes returns the bytes one token id adds to the text: nil for
	// a control token (end of text, role markers).
	TokenBytes(id int32) []byte
}
