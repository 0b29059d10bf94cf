package safetensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moe-llm/moe/gguf"
	"github.com/moe-llm/moe/tokenizer"
)

// hfTokenizerJSON is the part of a Hugging Face tokenizer.json that a
// byte-level BPE needs.
type hfTokenizerJSON struct {
	Model struct {
		Type   string           `json:"type"`
		Vocab  map[string]int32 `json:"vocab"`
		Merges json.RawMessage  `json:"merges"`
	} `json:"model"`
	AddedTokens []struct {
		ID      int32  `json:"id"`
		Content string `json:"content"`
		Special bool   `json:"special"`
	} `json:"added_tokens"`
}

// LoadHFTokenizer reads a Hugging Face byte-level BPE tokenizer.json (GPT-2,
// Llama 3, Qwen, ... style: GPT-2's byte-to-unicode token texts) as a moe
// tokenizer. moe's BPE merges by token rank (id), as tiktoken does, which
// reproduces a merge-list BPE when ids follow the merge order; mismatches
// is the number of merges whose order disagrees with the ids (0 means the
// two tokenize alike). Added tokens become special tokens; when none is
// <|endoftext|>, the token named by eos (e.g. "<|end_of_text|>") is used
// as moe's end-of-text.
func LoadHFTokenizer(path, eos string) (tok *tokenizer.Tokenizer, mismatches int, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, fmt.Errorf("tokenizer.json: %w", err)
	}
	var hf hfTokenizerJSON
	if err := json.Unmarshal(data, &hf); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	if hf.Model.Type != "BPE" {
		return nil, 0, fmt.Errorf("%s: tokenizer model %q is not supported (moe reads byte-level BPE)", path, hf.Model.Type)
	}
	specials := map[string]int32{}
	specialIDs := map[int32]bool{}
	for _, a := range hf.AddedTokens {
		if a.ID < 0 || a.ID >= tokenizer.MaxVocabSize {
			return nil, 0, fmt.Errorf("%s: added token %q has id %d out of range", path, a.Content, a.ID)
		}
		specials[a.Content] = a.ID
		specialIDs[a.ID] = true
	}
	var vocab [][]byte
	for text, id := range hf.Model.Vocab {
		if specialIDs[id] {
			continue
		}
		if id < 0 || id >= tokenizer.MaxVocabSize {
			return nil, 0, fmt.Errorf("%s: token %q has id %d out of range", path, text, id)
		}
		b, err := gguf.TokenToBytes(text)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w (not a byte-level BPE vocabulary)", path, err)
		}
		for int(id) >= len(vocab) {
			vocab = append(vocab, nil)
		}
		vocab[id] = b
	}
	if _, ok := specials[tokenizer.EndOfText]; !ok {
		id, ok := specials[eos]
		if eos == "" || !ok {
			return nil, 0, fmt.Errorf("%s: no %s token and no end-of-sequence token among the added tokens (eos %q)", path, tokenizer.EndOfText, eos)
		}
		delete(specials, eos)
		specials[tokenizer.EndOfText] = id
	}
	tok, err = tokenizer.New(vocab, specials)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	merges, err := parseMerges(hf.Model.Merges)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	// Compare the file's merge order with the ranks: merge i must make a
	// token whose id grows with i.
	last := int32(-1)
	for _, m := range merges {
		id, ok := hf.Model.Vocab[m[0]+m[1]]
		if !ok || id <= last {
			mismatches++
			continue
		}
		last = id
	}
	return tok, mismatches, nil
}

// parseMerges accepts both merge encodings: "a b" strings and [a, b] pairs.
func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var strs []string
	if err := json.Unmarshal(raw, &strs); err == nil {
		out := make([][2]string, 0, len(strs))
		for _, s := range strs {
			a, b, ok := strings.Cut(s, " ")
			if !ok {
				return nil, fmt.Errorf("merge %q is not two tokens", s)
			}
			out = append(out, [2]string{a, b})
		}
		return out, nil
	}
	var pairs [][2]string
	if err := json.Unmarshal(raw, &pairs); err != nil {
		return nil, errors.New("model.merges is neither strings nor pairs")
	}
	return pairs, nil
}

// SaveHFTokenizer writes tok as a Hugging Face tokenizer.json (byte-level
// BPE with GPT-2's byte-to-unicode texts, the merge list derived from the
// ranks, the specials as added tokens, and a split regex equal to moe's
// cl100k pre-tokenizer) into dir, with a tokenizer_config.json naming the
// end-of-text token.
func SaveHFTokenizer(dir string, tok *tokenizer.Tokenizer) error {
	if spec := tok.Spec(); spec != nil {
		return saveHFSpec(dir, spec)
	}
	vocab := map[string]int32{}
	var adds []hfAdded
	for id := int32(0); id < int32(tok.VocabSize()); id++ {
		b := tok.TokenBytes(id)
		switch {
		case b == nil:
		case tok.IsSpecial(id):
			vocab[string(b)] = id
			adds = append(adds, hfAdded{ID: id, Content: string(b), Special: true})
		default:
			vocab[gguf.BytesToToken(b)] = id
		}
	}
	sort.Slice(adds, func(i, j int) bool { return adds[i].ID < adds[j].ID })
	var merges [][2]string
	for _, m := range tok.Merges() {
		merges = append(merges, [2]string{gguf.BytesToToken(tok.TokenBytes(m[0])), gguf.BytesToToken(tok.TokenBytes(m[1]))})
	}
	const split = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	doc := map[string]any{
		"version":      "1.0",
		"truncation":   nil,
		"padding":      nil,
		"added_tokens": adds,
		"normalizer":   nil,
		"pre_tokenizer": map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]string{"Regex": split}, "behavior": "Isolated", "invert": false},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
		}},
		"post_processor": map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
		"decoder":        map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
		"model": map[string]any{
			"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": nil, "end_of_word_suffix": nil,
			"fuse_unk": false, "byte_fallback": false, "ignore_merges": true, "vocab": vocab, "merges": merges,
		},
	}
	data, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("tokenizer.json: %w", err)
	}
	if err := tokenizer.WriteFileAtomic(filepath.Join(dir, "tokenizer.json"), data); err != nil {
		return err
	}
	tc := map[string]any{
		"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": tokenizer.EndOfText, "bos_token": tokenizer.EndOfText,
		"model_max_length": 1 << 30, "clean_up_tokenization_spaces": false,
	}
	if gguf.HasChatTokens(tok) {
		tc["chat_template"] = gguf.ChatTemplate
	}
	cfgDoc, _ := json.MarshalIndent(tc, "", "  ")
	return tokenizer.WriteFileAtomic(filepath.Join(dir, "tokenizer_config.json"), cfgDoc)
}

// hfVocabJSON is the part of a Hugging Face tokenizer.json that NewFromSpec
// needs.
type hfVocabJSON struct {
	Model struct {
		Type         string           `json:"type"`
		Vocab        map[string]int32 `json:"vocab"`
		Merges       json.RawMessage  `json:"merges"`
		ByteFallback bool             `json:"byte_fallback"`
		IgnoreMerges bool             `json:"ignore_merges"`
		UnkToken     *string          `json:"unk_token"`
	} `json:"model"`
	Normalizer  json.RawMessage `json:"normalizer"`
	AddedTokens []struct {
		ID      int32  `json:"id"`
		Content string `json:"content"`
		Special bool   `json:"special"`
		LStrip  bool   `json:"lstrip"`
		RStrip  bool   `json:"rstrip"`
	} `json:"added_tokens"`
	PreTokenizer json.RawMessage `json:"pre_tokenizer"`
}

// hfPreTokenizer is one Hugging Face pre-tokenizer (possibly a Sequence).
type hfPreTokenizer struct {
	Type          string           `json:"type"`
	Pretokenizers []hfPreTokenizer `json:"pretokenizers"`
	Pattern       struct {
		Regex string `json:"Regex"`
	} `json:"pattern"`
	UseRegex *bool `json:"use_regex"`
}

// hfSplitPres maps the Split regexes of Hugging Face byte-level tokenizers
// to the llama.cpp pre-tokenizer that implements them.
var hfSplitPres = map[string]string{
	`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`:                                                                                                                                                                "llama-bpe",
	`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`:                                                                                                                                                                     "qwen2",
	`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`: "o200k",
}

// hfPreName returns the llama.cpp pre-tokenizer name for a byte-level
// tokenizer.json pre_tokenizer.
func hfPreName(raw json.RawMessage) (string, error) {
	var p hfPreTokenizer
	if len(raw) == 0 || string(raw) == "null" || json.Unmarshal(raw, &p) != nil {
		return "", errors.New("pre_tokenizer is missing or not an object")
	}
	steps := []hfPreTokenizer{p}
	if p.Type == "Sequence" {
		steps = p.Pretokenizers
	}
	var split string
	byteLevel, byteLevelRegex := false, false
	for _, s := range steps {
		switch s.Type {
		case "Split":
			if split != "" {
				return "", errors.New("pre_tokenizer has more than one Split; moe does not know this pre-tokenizer")
			}
			split = s.Pattern.Regex
		case "ByteLevel":
			byteLevel = true
			byteLevelRegex = s.UseRegex == nil || *s.UseRegex
		default:
			return "", fmt.Errorf("pre_tokenizer step %q is not supported", s.Type)
		}
	}
	switch {
	case !byteLevel:
		return "", errors.New("pre_tokenizer has no ByteLevel step (moe reads byte-level BPE tokenizer.json)")
	case split == "" && byteLevelRegex:
		return "gpt-2", nil
	case split != "" && !byteLevelRegex:
		if name, ok := hfSplitPres[split]; ok {
			return name, nil
		}
		return "", fmt.Errorf("pre_tokenizer Split regex %q is not one moe knows", split)
	}
	return "", errors.New("pre_tokenizer combination of Split and ByteLevel is not one moe knows")
}

// hfNormalizer is one Hugging Face normalizer (possibly a Sequence).
type hfNormalizer struct {
	Type        string         `json:"type"`
	Normalizers []hfNormalizer `json:"normalizers"`
	Prepend     string         `json:"prepend"`
	Pattern     struct {
		String string `json:"String"`
	} `json:"pattern"`
	Content string `json:"content"`
}

// hfSpaceMarks checks that a byte_fallback BPE turns spaces into U+2581
// (a Replace normalizer or a Metaspace pre-tokenizer) and reports whether
// it prefixes the text with one.
func hfSpaceMarks(normRaw, preRaw json.RawMessage) (prefix bool, err error) {
	const mark = "\u2581"
	replace := false
	if len(normRaw) > 0 && string(normRaw) != "null" {
		var n hfNormalizer
		if err := json.Unmarshal(normRaw, &n); err != nil {
			return false, errors.New("normalizer is not an object")
		}
		steps := []hfNormalizer{n}
		if n.Type == "Sequence" {
			steps = n.Normalizers
		}
		for _, st := range steps {
			switch {
			case st.Type == "Prepend" && st.Prepend == mark:
				prefix = true
			case st.Type == "Replace" && st.Pattern.String == " " && st.Content == mark:
				replace = true
			default:
				return false, fmt.Errorf("normalizer step %q is not supported", st.Type)
			}
		}
	}
	if len(preRaw) > 0 && string(preRaw) != "null" {
		var p struct {
			Type           string `json:"type"`
			Replacement    string `json:"replacement"`
			PrependScheme  string `json:"prepend_scheme"`
			AddPrefixSpace *bool  `json:"add_prefix_space"`
			Split          *bool  `json:"split"`
		}
		if err := json.Unmarshal(preRaw, &p); err != nil || p.Type != "Metaspace" || p.Replacement != mark {
			return false, errors.New("a byte_fallback BPE needs no pre_tokenizer or a Metaspace one with U+2581")
		}
		if p.Split != nil && *p.Split {
			return false, errors.New("Metaspace with split=true is not supported")
		}
		if p.PrependScheme == "first" {
			return false, errors.New(`Metaspace prepend_scheme "first" is not supported (moe prefixes every text fragment, as llama.cpp)`)
		}
		replace = true
		prefix = p.PrependScheme == "always" || p.PrependScheme == "" && (p.AddPrefixSpace == nil || *p.AddPrefixSpace)
	}
	if !replace {
		return false, errors.New("byte_fallback BPE without a space-to-U+2581 normalizer or Metaspace pre-tokenizer is not supported")
	}
	return prefix, nil
}

// LoadHFVocab reads a Hugging Face tokenizer.json (and, when present, the
// tokenizer_config.json beside it for bos/eos and add_bos_token /
// add_eos_token) of a BPE model: byte-level (GPT-2, Llama 3, Qwen2, OLMoE,
// gpt-oss style) or SentencePiece-like with byte_fallback (Mistral,
// Mixtral). Byte-level ones encode as llama.cpp does for the converted
// GGUF; byte_fallback ones as Hugging Face's BPE.
func LoadHFVocab(path string) (*tokenizer.Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	var hf hfVocabJSON
	if err := json.Unmarshal(data, &hf); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if hf.Model.Type != "BPE" {
		return nil, fmt.Errorf("%s: tokenizer model %q is not supported (moe reads BPE)", path, hf.Model.Type)
	}
	spec := tokenizer.NewSpec(tokenizer.ModelBPE)
	spec.IgnoreMerges = hf.Model.IgnoreMerges
	if hf.Model.ByteFallback {
		prefix, err := hfSpaceMarks(hf.Normalizer, hf.PreTokenizer)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		spec.SpaceMarks, spec.AddSpacePrefix = true, prefix
	} else {
		pre, err := hfPreName(hf.PreTokenizer)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		spec.Pre = pre
	}
	n := 0
	for _, id := range hf.Model.Vocab {
		n = max(n, int(id)+1)
	}
	for _, a := range hf.AddedTokens {
		n = max(n, int(a.ID)+1)
	}
	if n > tokenizer.MaxVocabSize {
		return nil, fmt.Errorf("%s: token ids reach %d, more than %d", path, n, tokenizer.MaxVocabSize)
	}
	spec.Tokens = make([]string, n)
	spec.Types = make([]int32, n)
	for i := range spec.Types {
		spec.Types[i] = tokenizer.TypeUnused
	}
	for text, id := range hf.Model.Vocab {
		if id < 0 {
			return nil, fmt.Errorf("%s: token %q has id %d", path, text, id)
		}
		spec.Tokens[id], spec.Types[id] = text, tokenizer.TypeNormal
		if spec.SpaceMarks && len(text) == 6 && strings.HasPrefix(text, "<0x") && strings.HasSuffix(text, ">") {
			spec.Types[id] = tokenizer.TypeByte
		}
	}
	if u := hf.Model.UnkToken; u != nil {
		id, ok := hf.Model.Vocab[*u]
		if !ok {
			return nil, fmt.Errorf("%s: unk_token %q is not in the vocabulary", path, *u)
		}
		spec.UNK, spec.Types[id] = id, tokenizer.TypeUnknown
	}
	byText := map[string]int32{}
	for _, a := range hf.AddedTokens {
		if a.ID < 0 {
			return nil, fmt.Errorf("%s: added token %q has id %d", path, a.Content, a.ID)
		}
		typ := tokenizer.TypeUserDefined
		if a.Special {
			typ = tokenizer.TypeControl
		}
		spec.Tokens[a.ID], spec.Types[a.ID] = a.Content, typ
		byText[a.Content] = a.ID
	}
	for id, s := range spec.Tokens {
		if s == "" {
			spec.Tokens[id] = fmt.Sprintf("[PAD%d]", id) // llama.cpp's converter fills holes like this
		}
	}
	merges, err := parseMerges(hf.Model.Merges)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	spec.Merges = merges
	if err := readHFTokenizerConfig(filepath.Join(filepath.Dir(path), "tokenizer_config.json"), spec, byText); err != nil {
		return nil, err
	}
	if id, ok := byText[tokenizer.EndOfText]; ok && spec.EOS == tokenizer.NoToken {
		spec.EOS = id // no tokenizer_config.json: GPT-2's convention
	}
	tok, err := tokenizer.NewFromSpec(spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return tok, nil
}

// readHFTokenizerConfig sets the special ids and add_bos/add_eos of spec
// from tokenizer_config.json when the file exists.
func readHFTokenizerConfig(path string, spec *tokenizer.Spec, byText map[string]int32) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("tokenizer_config.json: %w", err)
	}
	var tc map[string]json.RawMessage
	if err := json.Unmarshal(data, &tc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for key, dst := range map[string]*int32{"bos_token": &spec.BOS, "eos_token": &spec.EOS, "pad_token": &spec.PAD, "unk_token": &spec.UNK} {
		raw, ok := tc[key]
		if !ok || string(raw) == "null" {
			continue
		}
		var s string
		if json.Unmarshal(raw, &s) != nil {
			var obj struct {
				Content string `json:"content"`
			}
			if err := json.Unmarshal(raw, &obj); err != nil {
				return fmt.Errorf("%s: %s is neither a string nor {content}", path, key)
			}
			s = obj.Content
		}
		id, ok := byText[s]
		if !ok {
			return fmt.Errorf("%s: %s %q is not an added token of tokenizer.json", path, key, s)
		}
		*dst = id
	}
	for key, dst := range map[string]*bool{"add_bos_token": &spec.AddBOS, "add_eos_token": &spec.AddEOS} {
		if raw, ok := tc[key]; ok {
			if err := json.Unmarshal(raw, dst); err != nil {
				return fmt.Errorf("%s: %s is not a bool", path, key)
			}
		}
	}
	return nil
}

// OpenTokenizer loads only the tokenizer of any model moe reads: a .gguf
// file (vocab-only files included), a run directory (moe's tokenizer.json)
// or a Hugging Face directory (tokenizer.json, tokenizer_config.json).
func OpenTokenizer(path string) (*tokenizer.Tokenizer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if !st.IsDir() {
		if strings.HasSuffix(path, ".json") {
			path = filepath.Dir(path)
		} else {
			return gguf.ReadTokenizer(path)
		}
	}
	file := filepath.Join(path, tokenizer.FileName)
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("model: %s has no tokenizer: %w", path, err)
	}
	var head struct {
		Format string `json:"format"`
	}
	if json.Unmarshal(data, &head) == nil && head.Format != "" {
		return tokenizer.Load(file)
	}
	return LoadHFVocab(file)
}

// hfAdded is a tokenizer.json added token.
type hfAdded struct {
	ID         int32  `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

// saveHFSpec writes a vocabulary read from a model file as tokenizer.json
// and tokenizer_config.json: byte-level BPE with the pre-tokenizer's split
// regex, or SentencePiece-like BPE with byte fallback. SPM vocabularies
// (scores, no merges) have no such form.
func saveHFSpec(dir string, spec *tokenizer.Spec) error {
	if spec.Model != tokenizer.ModelBPE {
		return fmt.Errorf("tokenizer.json: a %s vocabulary (scores, no merge list) cannot be written as Hugging Face BPE; export GGUF", spec.Model)
	}
	vocab := map[string]int32{}
	var adds []hfAdded
	for id, text := range spec.Tokens {
		typ := tokenizer.TypeNormal
		if spec.Types != nil {
			typ = spec.Types[id]
		}
		switch typ {
		case tokenizer.TypeUnused:
			continue
		case tokenizer.TypeControl, tokenizer.TypeUnknown:
			adds = append(adds, hfAdded{ID: int32(id), Content: text, Special: true})
		case tokenizer.TypeUserDefined:
			adds = append(adds, hfAdded{ID: int32(id), Content: text})
		}
		vocab[text] = int32(id)
	}
	merges := make([]string, len(spec.Merges))
	for i, m := range spec.Merges {
		merges[i] = m[0] + " " + m[1]
	}
	model := map[string]any{
		"type": "BPE", "dropout": nil, "continuing_subword_prefix": nil, "end_of_word_suffix": nil,
		"fuse_unk": false, "byte_fallback": spec.SpaceMarks, "ignore_merges": spec.IgnoreMerges, "vocab": vocab, "merges": merges,
		"unk_token": nil,
	}
	doc := map[string]any{"version": "1.0", "truncation": nil, "padding": nil, "added_tokens": adds, "model": model}
	if spec.UNK != tokenizer.NoToken {
		model["unk_token"] = spec.Tokens[spec.UNK]
	}
	if spec.SpaceMarks {
		steps := []any{map[string]any{"type": "Replace", "pattern": map[string]string{"String": " "}, "content": "\u2581"}}
		if spec.AddSpacePrefix {
			steps = append([]any{map[string]any{"type": "Prepend", "prepend": "\u2581"}}, steps...)
		}
		doc["normalizer"] = map[string]any{"type": "Sequence", "normalizers": steps}
		doc["pre_tokenizer"] = nil
		doc["decoder"] = map[string]any{"type": "Sequence", "decoders": []any{
			map[string]any{"type": "Replace", "pattern": map[string]string{"String": "\u2581"}, "content": " "},
			map[string]any{"type": "ByteFallback"}, map[string]any{"type": "Fuse"},
		}}
	} else {
		byteLevel := map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
		doc["normalizer"] = nil
		doc["decoder"] = map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}
		if spec.Pre == "gpt-2" {
			byteLevel["use_regex"] = true
			doc["pre_tokenizer"] = byteLevel
		} else {
			split := ""
			for re, name := range hfSplitPres {
				if name == spec.Pre {
					split = re
				}
			}
			if split == "" {
				return fmt.Errorf("tokenizer.json: moe has no Hugging Face form of pre-tokenizer %q", spec.Pre)
			}
			doc["pre_tokenizer"] = map[string]any{"type": "Sequence", "pretokenizers": []any{
				map[string]any{"type": "Split", "pattern": map[string]string{"Regex": split}, "behavior": "Isolated", "invert": false},
				byteLevel,
			}}
		}
	}
	data, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("tokenizer.json: %w", err)
	}
	if err := tokenizer.WriteFileAtomic(filepath.Join(dir, "tokenizer.json"), data); err != nil {
		return err
	}
	tc := map[string]any{"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": spec.AddBOS, "add_eos_token": spec.AddEOS,
		"clean_up_tokenization_spaces": false}
	for key, id := range map[string]int32{"bos_token": spec.BOS, "eos_token": spec.EOS, "pad_token": spec.PAD, "unk_token": spec.UNK} {
		if id != tokenizer.NoToken {
			tc[key] = spec.Tokens[id]
		}
	}
	cfgDoc, err := json.MarshalIndent(tc, "", "  ")
	if err != nil {
		return fmt.Errorf("tokenizer_config.json: %w", err)
	}
	return tokenizer.WriteFileAtomic(filepath.Join(dir, "tokenizer_config.json"), cfgDoc)
}
