package tokenizer

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	"github.com/moe-llm/moe/internal/atomicfile"
)

// fileFormat and fileVersion identify a tokenizer.json written by Save.
const (
	fileFormat  = "moe-bpe"
	fileVersion = 1
)

// fileJSON is the on-disk form of a Tokenizer (see docs/data.md):
// tokens[id] is the standard base64 of the token's bytes ("" for an id that
// is special or unused); ids are BPE ranks.
type fileJSON struct {
	Format    string           `json:"format"`
	Version   int              `json:"version"`
	Pattern   string           `json:"pattern"`
	VocabSize int              `json:"vocab_size"`
	Specials  map[string]int32 `json:"specials,omitempty"`
	Tokens    []string         `json:"tokens,omitempty"`
	// Spec (version 2) is a vocabulary read from a model file (GGUF,
	// Hugging Face), kept as read.
	Spec *Spec `json:"spec,omitempty"`
}

// specVersion marks a file holding a model file's vocabulary (Spec).
const specVersion = 2

// Save writes the tokenizer to path atomically (temporary file, fsync, rename).
func (t *Tokenizer) Save(path string) error {
	if t.spec != nil {
		data, err := json.Marshal(&fileJSON{Format: fileFormat, Version: specVersion, Pattern: t.pattern, VocabSize: t.VocabSize(), Spec: t.spec})
		if err != nil {
			return fmt.Errorf("tokenizer: encode %s: %w", path, err)
		}
		if err := WriteFileAtomic(path, data); err != nil {
			return fmt.Errorf("tokenizer: save: %w", err)
		}
		return nil
	}
	f := fileJSON{
		Format:    fileFormat,
		Version:   fileVersion,
		Pattern:   t.pattern,
		VocabSize: t.VocabSize(),
		Specials:  t.specials,
		Tokens:    make([]string, len(t.vocab)),
	}
	for i, b := range t.vocab {
		if b != nil {
			f.Tokens[i] = base64.StdEncoding.EncodeToString(b)
		}
	}
	data, err := json.Marshal(&f)
	if err != nil {
		return fmt.Errorf("tokenizer: encode %s: %w", path, err)
	}
	if err := WriteFileAtomic(path, data); err != nil {
		return fmt.Errorf("tokenizer: save: %w", err)
	}
	return nil
}

// Load reads a tokenizer written by Save.
func Load(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: load: %w", err)
	}
	var f fileJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("tokenizer: load %s: not a tokenizer file: %w", path, err)
	}
	if f.Format != fileFormat {
		return nil, fmt.Errorf("tokenizer: load %s: format %q, want %q", path, f.Format, fileFormat)
	}
	if f.Version == specVersion && f.Spec != nil {
		t, err := NewFromSpec(f.Spec)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", path, err)
		}
		if f.VocabSize != t.VocabSize() {
			return nil, fmt.Errorf("tokenizer: load %s: vocab_size %d but the tokens give %d", path, f.VocabSize, t.VocabSize())
		}
		return t, nil
	}
	if f.Version != fileVersion {
		return nil, fmt.Errorf("tokenizer: load %s: unsupported version %d", path, f.Version)
	}
	vocab := make([][]byte, len(f.Tokens))
	for i, s := range f.Tokens {
		if s == "" {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("tokenizer: load %s: token %d: %w", path, i, err)
		}
		vocab[i] = b
	}
	t, err := newTokenizer(vocab, f.Specials, f.Pattern)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	if f.VocabSize != t.VocabSize() {
		return nil, fmt.Errorf("tokenizer: load %s: vocab_size %d but the tokens give %d", path, f.VocabSize, t.VocabSize())
	}
	return t, nil
}

// cl100kSpecials are the special tokens of tiktoken's cl100k_base.
var cl100kSpecials = map[string]int32{
	EndOfText:         100257,
	"<|fim_prefix|>":  100258,
	"<|fim_middle|>":  100259,
	"<|fim_suffix|>":  100260,
	"<|endofprompt|>": 100276,
}

// cl100kRanks is the number of mergeable ranks in cl100k_base.
const cl100kRanks = 100256

// LoadTiktoken reads a tiktoken-format BPE file (one "base64-token rank" pair
// per line, e.g. cl100k_base.tiktoken) and uses GPT-4's cl100k pre-tokenizer.
// When the file has cl100k_base's 100256 ranks, its special tokens get their
// published ids (<|endoftext|> = 100257, ...); otherwise <|endoftext|> follows
// the largest rank. The chat-role tokens (<|system|>, <|user|>,
// <|assistant|>, <|end|>), which cl100k_base lacks, are appended after all
// other ids.
func LoadTiktoken(path string) (*Tokenizer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: load tiktoken: %w", err)
	}
	defer f.Close()
	var vocab [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		sp := bytes.IndexByte(text, ' ')
		if sp < 0 {
			return nil, fmt.Errorf("tokenizer: %s:%d: want \"base64 rank\", got %q", path, line, truncate(text))
		}
		tok, err := base64.StdEncoding.DecodeString(string(text[:sp]))
		if err != nil || len(tok) == 0 {
			return nil, fmt.Errorf("tokenizer: %s:%d: bad base64 token %q", path, line, truncate(text[:sp]))
		}
		rank, err := strconv.Atoi(string(bytes.TrimSpace(text[sp+1:])))
		if err != nil || rank < 0 || rank >= MaxVocabSize {
			return nil, fmt.Errorf("tokenizer: %s:%d: bad rank %q", path, line, truncate(text[sp+1:]))
		}
		for len(vocab) <= rank {
			vocab = append(vocab, nil)
		}
		if vocab[rank] != nil {
			return nil, fmt.Errorf("tokenizer: %s:%d: rank %d appears twice", path, line, rank)
		}
		vocab[rank] = tok
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("tokenizer: read %s: %w", path, err)
	}
	if len(vocab) == 0 {
		return nil, fmt.Errorf("tokenizer: %s has no tokens", path)
	}
	specials := make(map[string]int32)
	next := int32(len(vocab))
	if len(vocab) == cl100kRanks {
		for s, id := range cl100kSpecials {
			specials[s] = id
		}
		next = 100277
	} else {
		specials[EndOfText] = next
		next++
	}
	for _, s := range SpecialNames[1:] {
		specials[s] = next
		next++
	}
	t, err := newTokenizer(vocab, specials, PatternCL100K)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return t, nil
}

func truncate(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

// WriteFileAtomic writes data to path through a temporary file in the same
// directory, fsyncs it, renames it over path and fsyncs the directory. The
// file gets mode 0600 (what os.CreateTemp gives, as before).
func WriteFileAtomic(path string, data []byte) error {
	return atomicfile.WriteFile(path, data, 0o600)
}
