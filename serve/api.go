package serve

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// apiError is an error with an HTTP status, rendered as an OpenAI-style
// JSON error object.
type apiError struct {
	status  int
	typ     string
	code    string
	param   string
	message string
}

func (e *apiError) Error() string { return e.message }

// errorBody is the OpenAI error object: {"error": {...}}.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (e *apiError) body() errorBody {
	d := errorDetail{Message: e.message, Type: e.typ}
	if e.param != "" {
		p := e.param
		d.Param = &p
	}
	if e.code != "" {
		c := e.code
		d.Code = &c
	}
	return errorBody{Error: d}
}

func badRequest(param, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: "invalid_request_error", param: param, message: fmt.Sprintf(format, args...)}
}

// decodeError turns a JSON decoding failure into a 400 (or 413) that names
// the problem.
func decodeError(err error) *apiError {
	var mbe *http.MaxBytesError
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &mbe):
		return &apiError{status: http.StatusRequestEntityTooLarge, typ: "invalid_request_error", code: "request_too_large",
			message: fmt.Sprintf("request body exceeds %d bytes", mbe.Limit)}
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			return badRequest("", "request body must be a JSON object, got %s", te.Value)
		}
		return badRequest(field, "invalid type for %q: expected %s, got %s", field, jsonTypeName(te.Type.Kind().String()), te.Value)
	case errors.As(err, &se):
		return badRequest("", "request body is not valid JSON: %v (at byte %d)", se, se.Offset)
	case errors.Is(err, errEmptyBody):
		return badRequest("", "request body is empty; expected a JSON object")
	default:
		return badRequest("", "could not parse request body: %v", err)
	}
}

var errEmptyBody = errors.New("empty body")

func jsonTypeName(kind string) string {
	switch {
	case strings.HasPrefix(kind, "int"), strings.HasPrefix(kind, "uint"), strings.HasPrefix(kind, "float"):
		return "a number"
	case kind == "string":
		return "a string"
	case kind == "bool":
		return "a boolean"
	case kind == "slice":
		return "an array"
	case kind == "struct", kind == "map", kind == "ptr":
		return "an object"
	}
	return kind
}

// streamOptions is the stream_options object.
type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// samplingFields are the request fields both endpoints share.
type samplingFields struct {
	Model         string          `json:"model"`
	MaxTokens     *int            `json:"max_tokens"`
	Temperature   *float64        `json:"temperature"`
	TopP          *float64        `json:"top_p"`
	TopK          *int            `json:"top_k"`
	Seed          *int64          `json:"seed"`
	N             *int            `json:"n"`
	Stop          json.RawMessage `json:"stop"`
	Stream        bool            `json:"stream"`
	StreamOptions *streamOptions  `json:"stream_options"`
	User          string          `json:"user"`

	PresencePenalty  *float64           `json:"presence_penalty"`
	FrequencyPenalty *float64           `json:"frequency_penalty"`
	LogitBias        map[string]float64 `json:"logit_bias"`

	// IgnoreEOS keeps generating past the model's end-of-text tokens, up
	// to the token limit (an extension llama-server and vLLM share, for
	// benchmarks that need a fixed number of tokens). Stop strings still
	// apply.
	IgnoreEOS bool `json:"ignore_eos"`
}

// completionRequest is the body of POST /v1/completions.
type completionRequest struct {
	samplingFields
	Prompt   json.RawMessage `json:"prompt"`
	Echo     bool            `json:"echo"`
	BestOf   *int            `json:"best_of"`
	Logprobs *int            `json:"logprobs"`
	Suffix   *string         `json:"suffix"`
}

// chatRequest is the body of POST /v1/chat/completions.
type chatRequest struct {
	samplingFields
	Messages            []chatMessageIn `json:"messages"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Logprobs            bool            `json:"logprobs"`
	Tools               json.RawMessage `json:"tools"`
}

// chatMessageIn is one input message; content is a string or an array of
// content parts of which only text parts are accepted.
type chatMessageIn struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
	Name    string          `json:"name"`
}

// genParams are validated generation settings of one request.
type genParams struct {
	maxTokens    int // 0: not given
	maxField     string
	sample       SampleOptions
	seeded       bool
	n            int
	stop         []string
	stream       bool
	includeUsage bool
	pen          *penalties // nil: none
	ignoreEOS    bool
}

// penalties adjust one sequence's logits before sampling, as OpenAI
// defines them: logit[t] += bias[t] − presence·[count[t] > 0] −
// frequency·count[t], where count[t] is how often t was generated so far.
type penalties struct {
	presence, frequency float32
	bias                map[int32]float32
}

// apply adjusts logits in place for the tokens generated so far.
func (p *penalties) apply(logits []float32, counts map[int32]int) {
	for t, b := range p.bias {
		if int(t) < len(logits) {
			logits[t] += b
		}
	}
	for t, c := range counts {
		if int(t) < len(logits) && c > 0 {
			logits[t] -= p.presence + p.frequency*float32(c)
		}
	}
}

// maxN caps "n" (choices per prompt).
const maxN = 16

// maxStops caps the number of stop strings, as OpenAI does.
const maxStops = 4

// parsePenalties validates presence_penalty, frequency_penalty (each in
// [-2, 2]) and logit_bias (token id → [-100, 100]).
func (f *samplingFields) parsePenalties(vocab int) (*penalties, *apiError) {
	pen := &penalties{}
	any := false
	for _, c := range []struct {
		name string
		v    *float64
		dst  *float32
	}{{"presence_penalty", f.PresencePenalty, &pen.presence}, {"frequency_penalty", f.FrequencyPenalty, &pen.frequency}} {
		if c.v == nil {
			continue
		}
		if *c.v < -2 || *c.v > 2 || *c.v != *c.v {
			return nil, badRequest(c.name, "%s must be between -2 and 2, got %v", c.name, *c.v)
		}
		*c.dst = float32(*c.v)
		any = any || *c.v != 0
	}
	for k, v := range f.LogitBias {
		id, err := strconv.ParseInt(k, 10, 32)
		if err != nil || id < 0 || (vocab > 0 && id >= int64(vocab)) {
			return nil, badRequest("logit_bias", "logit_bias key %q is not a token id in [0, %d)", k, vocab)
		}
		if v < -100 || v > 100 || v != v {
			return nil, badRequest("logit_bias", "logit_bias[%s] must be between -100 and 100, got %v", k, v)
		}
		if v != 0 {
			if pen.bias == nil {
				pen.bias = map[int32]float32{}
			}
			pen.bias[int32(id)] = float32(v)
			any = true
		}
	}
	if !any {
		return nil, nil
	}
	return pen, nil
}

// params validates the sampling fields and the penalties (see
// parsePenalties; vocab bounds logit_bias's ids); maxTokens is the request's
// token limit, named maxField ("max_tokens" or "max_completion_tokens").
func (f *samplingFields) params(maxTokens *int, maxField string, vocab int) (genParams, *apiError) {
	p, e := f.sampling(maxTokens, maxField)
	if e == nil {
		p.pen, e = f.parsePenalties(vocab)
	}
	return p, e
}

// sampling validates the sampling fields other than the penalties.
func (f *samplingFields) sampling(maxTokens *int, maxField string) (genParams, *apiError) {
	p := genParams{n: 1, sample: SampleOptions{Temperature: 1, TopP: 1}, stream: f.Stream, maxField: maxField, ignoreEOS: f.IgnoreEOS}
	if maxTokens != nil {
		if *maxTokens < 1 {
			return p, badRequest(maxField, "%s must be at least 1, got %d", maxField, *maxTokens)
		}
		p.maxTokens = *maxTokens
	}
	if t := f.Temperature; t != nil {
		if *t < 0 || *t > 2 || *t != *t {
			return p, badRequest("temperature", "temperature must be between 0 and 2, got %v", *t)
		}
		p.sample.Temperature = *t
	}
	if t := f.TopP; t != nil {
		if *t <= 0 || *t > 1 || *t != *t {
			return p, badRequest("top_p", "top_p must be in (0, 1], got %v", *t)
		}
		p.sample.TopP = *t
	}
	if k := f.TopK; k != nil {
		if *k < 0 {
			return p, badRequest("top_k", "top_k must be >= 0, got %d", *k)
		}
		p.sample.TopK = *k
	}
	if s := f.Seed; s != nil {
		p.sample.Seed = uint64(*s)
		p.seeded = true
	}
	if n := f.N; n != nil {
		if *n < 1 || *n > maxN {
			return p, badRequest("n", "n must be between 1 and %d, got %d", maxN, *n)
		}
		p.n = *n
	}
	stops, err := parseStop(f.Stop)
	if err != nil {
		return p, err
	}
	p.stop = stops
	if f.StreamOptions != nil {
		if !f.Stream {
			return p, badRequest("stream_options", "stream_options is only allowed with stream: true")
		}
		p.includeUsage = f.StreamOptions.IncludeUsage
	}
	return p, nil
}

func isNull(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s == "" || s == "null"
}

// parseStop reads "stop": null, a string, or an array of up to four strings.
func parseStop(raw json.RawMessage) ([]string, *apiError) {
	if isNull(raw) {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		if one == "" {
			return nil, nil
		}
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, badRequest("stop", "stop must be a string or an array of strings")
	}
	if len(many) > maxStops {
		return nil, badRequest("stop", "stop takes at most %d sequences, got %d", maxStops, len(many))
	}
	var out []string
	for _, s := range many {
		if s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

// parsePrompt reads "prompt": a string, an array of strings, an array of
// token ids, or an array of arrays of token ids. Text is encoded with tok.
func parsePrompt(raw json.RawMessage, tok Tokenizer, vocab int) ([][]int32, *apiError) {
	if isNull(raw) {
		return nil, badRequest("prompt", "prompt is required")
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return [][]int32{tok.Encode(one)}, nil
	}
	var strs []string
	if err := json.Unmarshal(raw, &strs); err == nil {
		if len(strs) == 0 {
			return nil, badRequest("prompt", "prompt array is empty")
		}
		out := make([][]int32, len(strs))
		for i, s := range strs {
			out[i] = tok.Encode(s)
		}
		return out, nil
	}
	var ids []int64
	if err := json.Unmarshal(raw, &ids); err == nil {
		p, e := checkIDs(ids, vocab)
		if e != nil {
			return nil, e
		}
		return [][]int32{p}, nil
	}
	var idss [][]int64
	if err := json.Unmarshal(raw, &idss); err == nil {
		if len(idss) == 0 {
			return nil, badRequest("prompt", "prompt array is empty")
		}
		out := make([][]int32, len(idss))
		for i, ids := range idss {
			p, e := checkIDs(ids, vocab)
			if e != nil {
				return nil, e
			}
			out[i] = p
		}
		return out, nil
	}
	return nil, badRequest("prompt", "prompt must be a string, an array of strings, an array of token ids or an array of token id arrays")
}

func checkIDs(ids []int64, vocab int) ([]int32, *apiError) {
	out := make([]int32, len(ids))
	for i, id := range ids {
		if id < 0 || (vocab > 0 && id >= int64(vocab)) {
			return nil, badRequest("prompt", "token id %d at index %d is outside the vocabulary [0, %d)", id, i, vocab)
		}
		out[i] = int32(id)
	}
	return out, nil
}

// messageText reads a chat message's content: a string, null, or an array
// of {"type": "text", "text": ...} parts.
func messageText(raw json.RawMessage, i int) (string, *apiError) {
	param := fmt.Sprintf("messages[%d].content", i)
	if isNull(raw) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", badRequest(param, "%s must be a string or an array of content parts", param)
	}
	var b strings.Builder
	for j, p := range parts {
		if p.Type != "text" {
			return "", badRequest(param, "%s[%d] has type %q; only text parts are supported", param, j, p.Type)
		}
		b.WriteString(p.Text)
	}
	return b.String(), nil
}

// usage is the OpenAI usage object.
type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

type completionChoice struct {
	Text         string  `json:"text"`
	Index        int     `json:"index"`
	Logprobs     any     `json:"logprobs"`
	FinishReason *string `json:"finish_reason"`
}

// response is the OpenAI response object around choices of type C: a
// completion, a chat completion, or one chunk of a streamed chat.
type response[C any] struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []C    `json:"choices"`
	Usage   *usage `json:"usage,omitempty"`
}

// completionResponse is a /v1/completions response or stream event.
type completionResponse = response[completionChoice]

type chatMessageOut struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type chatChoice struct {
	Index        int            `json:"index"`
	Message      chatMessageOut `json:"message"`
	Logprobs     any            `json:"logprobs"`
	FinishReason string         `json:"finish_reason"`
}

// chatResponse is a non-streamed /v1/chat/completions response (Usage is
// always set).
type chatResponse = response[chatChoice]

type chatDelta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

type chatChunkChoice struct {
	Index        int       `json:"index"`
	Delta        chatDelta `json:"delta"`
	Logprobs     any       `json:"logprobs"`
	FinishReason *string   `json:"finish_reason"`
}

// chatChunk is one server-sent event of a streamed chat completion.
type chatChunk = response[chatChunkChoice]

type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

type modelList struct {
	Object string        `json:"object"`
	Data   []modelObject `json:"data"`
}
