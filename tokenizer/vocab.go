package tokenizer

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// This file builds tokenizers from the vocabularies of other model files:
// GGUF (llama.cpp's "gpt2" and "llama" tokenizer models) and Hugging Face
// tokenizer.json (BPE with a byte-level or a SentencePiece-like setup). The
// format readers fill a Spec; NewFromSpec validates it and builds the
// tokenizer, which then encodes as llama.cpp's llama_tokenize does.

// Model names the tokenizer algorithm of a Spec.
type Model string

// Tokenizer models.
const (
	// ModelBPE is byte-level byte-pair encoding with a merge list (GGUF
	// tokenizer.ggml.model "gpt2"): the text is split by the named
	// pre-tokenizer and each piece is merged pair by pair in merge order.
	ModelBPE Model = "bpe"
	// ModelSPM is SentencePiece-style BPE (GGUF "llama"): spaces become
	// U+2581, adjacent symbols merge by highest token score, and bytes
	// without a token fall back to <0xNN> tokens.
	ModelSPM Model = "spm"
)

// Attr is a token's kind, as llama.cpp's token types give it.
type Attr uint8

// Token attributes. A token has exactly one of Normal, Control, UserDefined,
// Unknown, Byte or Unused, plus optionally LStrip/RStrip.
const (
	AttrNormal Attr = 1 << iota
	AttrControl
	AttrUserDefined
	AttrUnknown
	AttrByte
	AttrUnused
	// AttrLStrip and AttrRStrip make a special token matched in text
	// swallow the whitespace to its left or right.
	AttrLStrip
	AttrRStrip
)

// llama.cpp's token types (tokenizer.ggml.token_type).
const (
	TypeNormal      int32 = 1
	TypeUnknown     int32 = 2
	TypeControl     int32 = 3
	TypeUserDefined int32 = 4
	TypeUnused      int32 = 5
	TypeByte        int32 = 6
)

// attrOfType maps a llama.cpp token type to an attribute; undefined types
// print as nothing, like unused tokens.
func attrOfType(t int32) Attr {
	switch t {
	case TypeNormal:
		return AttrNormal
	case TypeUnknown:
		return AttrUnknown
	case TypeControl:
		return AttrControl
	case TypeUserDefined:
		return AttrUserDefined
	case TypeByte:
		return AttrByte
	}
	return AttrUnused
}

// NoToken marks an absent special id in a Spec.
const NoToken int32 = -1

// Spec is a vocabulary as model files store it.
type Spec struct {
	// Model is ModelBPE or ModelSPM.
	Model Model
	// Pre names the pre-tokenizer of a BPE model as llama.cpp's
	// tokenizer.ggml.pre does ("gpt-2", "llama-bpe", "qwen2", ...); empty
	// means "default".
	Pre string
	// Name is the model's general.name; llama.cpp keys some token
	// attributes on it (Phi-3's right-stripping specials).
	Name string
	// Tokens are the token texts by id: GPT-2 byte-level text for the
	// normal tokens of a BPE model, U+2581 for spaces and <0xNN> byte
	// tokens for SPM; special tokens are plain text.
	Tokens []string
	// Types are llama.cpp token types by id (TypeNormal, ...); nil means
	// all normal.
	Types []int32
	// Scores are the SPM merge priorities by id (higher merges first).
	Scores []float32
	// Merges are the BPE merges in rank order, as pairs of token texts.
	Merges [][2]string
	// Special ids, NoToken when absent.
	BOS, EOS, EOT, EOM, PAD, UNK int32
	// AddBOS and AddEOS say whether encoding with special tokens adds
	// BOS/EOS. AddSpacePrefix prefixes SPM text with a space.
	AddBOS, AddEOS, AddSpacePrefix bool
	// IgnoreMerges makes a BPE piece that is itself a token encode as
	// that token without merging (llama.cpp sets it for llama3's family).
	IgnoreMerges bool
	// SpaceMarks makes a BPE model SentencePiece-like (Hugging Face BPE
	// with byte_fallback, as Mistral's tokenizer.json): tokens are plain
	// UTF-8 with U+2581 for spaces, each text fragment is one piece whose
	// symbols start as characters, and characters without a token fall
	// back to the <0xNN> byte tokens. Pre is unused.
	SpaceMarks bool
}

// NewSpec returns a Spec of the given model with every special id absent
// and llama.cpp's defaults for the model (SPM: BOS added, space prefix).
func NewSpec(m Model) *Spec {
	s := &Spec{Model: m, BOS: NoToken, EOS: NoToken, EOT: NoToken, EOM: NoToken, PAD: NoToken, UNK: NoToken}
	if m == ModelSPM {
		s.AddBOS, s.AddSpacePrefix = true, true
	}
	return s
}

// kind is the encoding algorithm of a Tokenizer.
type kind uint8

const (
	kindRank   kind = iota // moe's own and tiktoken: rank = id of the merged bytes
	kindMerges             // merge-list BPE (GGUF gpt2, HF BPE)
	kindSPM                // SentencePiece-style
)

// maxSpecTokens bounds the vocabulary size of a Spec.
const maxSpecTokens = MaxVocabSize

// NewFromSpec builds a tokenizer from a model file's vocabulary. An unknown
// model or pre-tokenizer is an error naming it.
func NewFromSpec(spec *Spec) (*Tokenizer, error) {
	n := len(spec.Tokens)
	if n == 0 {
		return nil, fmt.Errorf("tokenizer: vocabulary has no tokens")
	}
	if n > maxSpecTokens {
		return nil, fmt.Errorf("tokenizer: vocabulary has %d tokens, more than %d", n, maxSpecTokens)
	}
	if spec.Types != nil && len(spec.Types) != n {
		return nil, fmt.Errorf("tokenizer: %d token types for %d tokens", len(spec.Types), n)
	}
	t := &Tokenizer{
		vocab:       make([][]byte, n),
		ranks:       make(map[string]int32, n),
		attrs:       make([]Attr, n),
		specials:    map[string]int32{},
		specialByID: map[int32]string{},
		cache:       make(map[string][]int32),
		spec:        spec,
		bos:         spec.BOS,
		eos:         spec.EOS,
		eotTurn:     spec.EOT,
		addBOS:      spec.AddBOS,
		addEOS:      spec.AddEOS,
	}
	for i := range t.byteID {
		t.byteID[i] = -1
	}
	for id := range n {
		typ := TypeNormal
		if spec.Types != nil {
			typ = spec.Types[id]
		}
		t.attrs[id] = attrOfType(typ)
	}
	for _, p := range []struct {
		name string
		id   int32
	}{{"bos", spec.BOS}, {"eos", spec.EOS}, {"eot", spec.EOT}, {"eom", spec.EOM}, {"pad", spec.PAD}, {"unk", spec.UNK}} {
		if p.id != NoToken && (p.id < 0 || int(p.id) >= n) {
			return nil, fmt.Errorf("tokenizer: %s token id %d outside the %d tokens", p.name, p.id, n)
		}
	}
	if spec.AddBOS && spec.BOS == NoToken {
		return nil, fmt.Errorf("tokenizer: add_bos_token is set but there is no bos_token_id")
	}
	if spec.AddEOS && spec.EOS == NoToken {
		return nil, fmt.Errorf("tokenizer: add_eos_token is set but there is no eos_token_id")
	}
	var err error
	switch spec.Model {
	case ModelBPE:
		err = t.initMerges(spec)
	case ModelSPM:
		err = t.initSPM(spec)
	default:
		return nil, fmt.Errorf("tokenizer: unknown tokenizer model %q", spec.Model)
	}
	if err != nil {
		return nil, err
	}
	t.computeSize()
	t.markEndOfGeneration()
	t.markStrip(spec.Name)
	for id, a := range t.attrs {
		if a&(AttrControl|AttrUserDefined|AttrUnknown) != 0 && spec.Tokens[id] != "" {
			t.specials[spec.Tokens[id]] = int32(id)
			t.specialByID[int32(id)] = spec.Tokens[id]
			t.partition = append(t.partition, int32(id))
		}
	}
	// llama.cpp splits the text on special tokens longest first.
	sort.SliceStable(t.partition, func(i, j int) bool {
		return len(spec.Tokens[t.partition[i]]) > len(spec.Tokens[t.partition[j]])
	})
	t.eot = spec.EOS
	if t.eot == NoToken {
		t.eot = spec.EOT
	}
	return t, nil
}

// eogTexts are the texts llama.cpp treats as end of generation when the
// file does not say (its list in llama-vocab.cpp).
var eogTexts = []string{
	"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>", "<|endoftext|>",
	"<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>", "<｜end▁of▁sentence｜>",
}

// markEndOfGeneration collects the ids that end generation: eos, eot, eom
// and the tokens llama.cpp recognises by text, which also become control
// tokens (as llama.cpp does). gpt-oss's <|end|> ends a message, not the
// generation, when <|return|> and <|call|> exist.
func (t *Tokenizer) markEndOfGeneration() {
	set := map[int32]bool{}
	for _, id := range []int32{t.spec.EOS, t.spec.EOT, t.spec.EOM} {
		if id != NoToken {
			set[id] = true
		}
	}
	byText := map[string]int32{}
	for id, s := range t.spec.Tokens {
		byText[s] = int32(id)
	}
	for _, s := range eogTexts {
		if id, ok := byText[s]; ok {
			set[id] = true
			if t.attrs[id]&AttrControl == 0 {
				t.attrs[id] = t.attrs[id]&^(AttrNormal|AttrUserDefined) | AttrControl
			}
		}
	}
	_, hasReturn := byText["<|return|>"]
	_, hasCall := byText["<|call|>"]
	if end, ok := byText["<|end|>"]; ok && hasReturn && hasCall {
		delete(set, end)
		t.attrs[end] = AttrUserDefined
	}
	// gpt-oss: llama.cpp always renders these harmony tokens.
	for _, s := range []string{"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"} {
		if id, ok := byText[s]; ok {
			t.attrs[id] = AttrUserDefined
		}
	}
	for id := range set {
		t.eog = append(t.eog, id)
	}
	sort.Slice(t.eog, func(i, j int) bool { return t.eog[i] < t.eog[j] })
}

// markStrip applies llama.cpp's per-model strip attributes (keyed on the
// model name): Phi-3's special tokens swallow the whitespace after them.
func (t *Tokenizer) markStrip(name string) {
	name = strings.ToLower(name)
	if !strings.Contains(name, "phi-3") && !strings.Contains(name, "phi3") {
		return
	}
	for id, a := range t.attrs {
		if a&(AttrControl|AttrUserDefined|AttrUnknown) != 0 {
			t.attrs[id] |= AttrRStrip
		}
	}
	for id, s := range t.spec.Tokens {
		switch s {
		case "</s>":
			t.attrs[id] |= AttrRStrip
		case "<unk>", "<s>", "<|endoftext|>":
			t.attrs[id] &^= AttrRStrip
		}
	}
}

// initMerges sets up merge-list BPE: byte-level, or SentencePiece-like
// with spec.SpaceMarks.
func (t *Tokenizer) initMerges(spec *Spec) error {
	t.kind = kindMerges
	t.ignoreMerges = spec.IgnoreMerges
	n := len(spec.Tokens)
	decode := ByteLevelDecode
	if spec.SpaceMarks {
		t.spaceMarks = true
		t.spmSpacePrefix = spec.AddSpacePrefix
		t.pattern = "spm-bpe"
		decode = func(s string) ([]byte, error) { return []byte(s), nil }
		t.initSPMTexts(spec)
	} else {
		pre, err := preTokenizerNamed(spec.Pre)
		if err != nil {
			return err
		}
		t.pre = pre
		t.pattern = pre.name
		t.ignoreMerges = t.ignoreMerges || pre.ignoreMerges
		t.sanitize = true
		for id, s := range spec.Tokens {
			a := t.attrs[id]
			b, err := ByteLevelDecode(s)
			if err != nil {
				b = nil
			}
			if b != nil {
				// llama.cpp looks tokens up by text; the last id with a text wins.
				t.ranks[string(b)] = int32(id)
			}
			switch {
			case a&AttrNormal != 0 && b != nil:
				t.vocab[id] = b
			case a&AttrByte != 0:
				t.vocab[id] = byteTokenValue(s)
			case a&(AttrControl|AttrUserDefined|AttrUnknown|AttrNormal) != 0:
				t.vocab[id] = []byte(s)
			}
		}
	}
	// Symbols are token ids; strings the merges need that are not tokens
	// get ids from n up (their bytes in t.syms).
	symOf := func(b []byte) int32 {
		if id, ok := t.ranks[string(b)]; ok {
			return id
		}
		if id, ok := t.extra[string(b)]; ok {
			return id
		}
		if t.extra == nil {
			t.extra = map[string]int32{}
		}
		id := int32(n + len(t.syms))
		t.extra[string(b)] = id
		t.syms = append(t.syms, append([]byte(nil), b...))
		return id
	}
	if !spec.SpaceMarks {
		for b := range 256 {
			t.byteSym[b] = symOf([]byte{byte(b)})
			if id, ok := t.ranks[string([]byte{byte(b)})]; ok {
				t.byteID[b] = id
			}
		}
	}
	t.merges = make(map[uint64]uint64, len(spec.Merges))
	for rank, m := range spec.Merges {
		l, err1 := decode(m[0])
		r, err2 := decode(m[1])
		if err1 != nil || err2 != nil || len(l) == 0 || len(r) == 0 {
			continue // no piece's symbols can ever match it (llama.cpp keeps it, unused)
		}
		li, ri := symOf(l), symOf(r)
		res := symOf(append(append([]byte(nil), l...), r...))
		key := uint64(uint32(li))<<32 | uint64(uint32(ri))
		if _, dup := t.merges[key]; !dup { // llama.cpp keeps the first rank
			t.merges[key] = uint64(rank)<<32 | uint64(uint32(res))
		}
	}
	if len(t.syms) > math.MaxInt32-n {
		return fmt.Errorf("tokenizer: too many merge symbols")
	}
	return nil
}

// byteTokenValue returns the byte of an SPM byte token "<0xNN>", or nil.
func byteTokenValue(s string) []byte {
	if len(s) != 6 || s[:3] != "<0x" || s[5] != '>' {
		return nil
	}
	v := 0
	for _, c := range s[3:5] {
		switch {
		case '0' <= c && c <= '9':
			v = v*16 + int(c-'0')
		case 'A' <= c && c <= 'F':
			v = v*16 + int(c-'A'+10)
		case 'a' <= c && c <= 'f':
			v = v*16 + int(c-'a'+10)
		default:
			return nil
		}
	}
	return []byte{byte(v)}
}

// Spec returns the vocabulary the tokenizer was built from (nil for moe's
// own tokenizers): what a GGUF or Hugging Face export writes back. The
// result must not be modified.
func (t *Tokenizer) Spec() *Spec { return t.spec }

// Model returns the tokenizer algorithm: ModelBPE for byte-level BPE (moe's
// own included) or ModelSPM.
func (t *Tokenizer) Model() Model {
	if t.kind == kindSPM {
		return ModelSPM
	}
	return ModelBPE
}

// Attr returns the attributes of token id (0 outside the vocabulary). moe's
// own tokenizers have normal tokens and control specials.
func (t *Tokenizer) Attr(id int32) Attr {
	if id < 0 || int(id) >= t.VocabSize() {
		return 0
	}
	if t.attrs != nil {
		if int(id) < len(t.attrs) {
			return t.attrs[id]
		}
		return 0
	}
	if _, ok := t.specialByID[id]; ok {
		return AttrControl
	}
	if int(id) < len(t.vocab) && t.vocab[id] != nil {
		return AttrNormal
	}
	return AttrUnused
}

// Piece returns the text of token id as llama.cpp's token_to_piece gives
// it: raw bytes for byte-level tokens, U+2581 turned back into spaces and
// <0xNN> into its byte for SPM, the text of user-defined tokens, and for
// control and unknown tokens their text when special is set, else nothing.
// Unused ids give nothing. The result must not be modified.
func (t *Tokenizer) Piece(id int32, special bool) []byte {
	a := t.Attr(id)
	if a&(AttrControl|AttrUnknown) != 0 && !special {
		return nil
	}
	if a&AttrUnused != 0 {
		return nil
	}
	return t.TokenBytes(id)
}

// SpecialIDs are the ids of a vocabulary's special tokens; NoToken when
// absent.
type SpecialIDs struct {
	BOS, EOS, EOT int32
	// EOG lists every id that ends generation (EOS, EOT, EOM and the
	// tokens llama.cpp recognises by text).
	EOG []int32
	// AddBOS and AddEOS say whether the vocabulary wants BOS/EOS added
	// around an encoded prompt.
	AddBOS, AddEOS bool
}

// Specials returns the special ids. For moe's own tokenizers BOS and EOS
// are <|endoftext|> and EOT is <|end|> when present; none is added.
func (t *Tokenizer) Specials() SpecialIDs {
	if t.spec == nil {
		s := SpecialIDs{BOS: t.eot, EOS: t.eot, EOT: NoToken, EOG: []int32{t.eot}}
		if end, ok := t.specials[End]; ok {
			s.EOT = end
			s.EOG = append(s.EOG, end)
		}
		return s
	}
	return SpecialIDs{BOS: t.bos, EOS: t.eos, EOT: t.eotTurn, EOG: t.eog, AddBOS: t.addBOS, AddEOS: t.addEOS}
}

// AddSpacePrefix reports whether encoding prefixes text with a space (SPM
// vocabularies): a detokenizer drops the first piece's leading space.
func (t *Tokenizer) AddSpacePrefix() bool {
	return (t.kind == kindSPM || t.spaceMarks) && t.spmSpacePrefix
}

// Detokenize turns ids into text as llama.cpp's llama_detokenize: the
// Piece of each id (control tokens' text only with unparseSpecial); with
// removeSpecial a leading BOS and trailing EOS that the vocabulary adds are
// dropped; a vocabulary that prefixes text with a space loses one leading
// space from the first piece; and for the byte-level vocabularies where
// llama.cpp cleans spaces, " ." " ," " !" " ?" lose their space and so do
// " 's" " 'm" " 're" " 've" and a lone apostrophe between spaces.
func (t *Tokenizer) Detokenize(ids []int32, removeSpecial, unparseSpecial bool) []byte {
	removeSpace := t.AddSpacePrefix()
	if removeSpecial && t.addBOS && len(ids) > 0 && ids[0] == t.bos {
		removeSpace = false
		ids = ids[1:]
	}
	if removeSpecial && t.addEOS && len(ids) > 0 && ids[len(ids)-1] == t.eos {
		ids = ids[:len(ids)-1]
	}
	var out []byte
	for i, id := range ids {
		p := t.Piece(id, unparseSpecial)
		if i == 0 && removeSpace && len(p) > 0 && p[0] == ' ' {
			p = p[1:]
		}
		out = append(out, p...)
	}
	if t.pre != nil && t.pre.cleanSpaces && t.spec != nil {
		out = cleanSpaces(out)
	}
	return out
}

// cleanSpaces is llama.cpp's clean_spaces pass over detokenized text,
// done in place in the same three passes.
func cleanSpaces(text []byte) []byte {
	// " ?", " !", " .", " ," lose the space.
	text = dropSpaces(text, func(text []byte, i int) (bool, bool) {
		x := text[i]
		return text[i-1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ','), false
	})
	// A lone apostrophe between spaces loses both spaces.
	text = dropSpaces(text, func(text []byte, i int) (bool, bool) {
		lone := text[i] == '\'' && i+1 < len(text) && text[i-1] == ' ' && text[i+1] == ' '
		return lone, lone
	})
	// " 's", " 'm", " 're", " 've" lose the space.
	return dropSpaces(text, func(text []byte, i int) (bool, bool) {
		if text[i-1] != ' ' || text[i] != '\'' || i+1 >= len(text) {
			return false, false
		}
		x1 := text[i+1]
		return x1 == 's' || x1 == 'm' || (i+2 < len(text) && (x1 == 'r' || x1 == 'v') && text[i+2] == 'e'), false
	})
}

// dropSpaces is one pass of cleanSpaces: it copies text onto itself from
// byte 1 on, dropping the byte before text[i] where drop(text, i) says
// dropPrev and also the byte after it where it says dropNext.
func dropSpaces(text []byte, drop func(text []byte, i int) (dropPrev, dropNext bool)) []byte {
	total := min(len(text), 1)
	for i := 1; i < len(text); i++ {
		x := text[i]
		prev, next := drop(text, i)
		if prev {
			total--
		}
		if next {
			i++
			text[i] = 0
		}
		text[total] = x
		total++
	}
	return text[:total]
}
