package safetensors

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moe-llm/moe/gguf"
)

// TestLoadHFRefusesHugeConfigs checks that configs implying a model that
// cannot be loaded fail with one line naming the problem before anything
// is allocated (no safetensors file is even needed to get there).
func TestLoadHFRefusesHugeConfigs(t *testing.T) {
	base := `"model_type":"mistral","vocab_size":32000,"hidden_size":%H,"intermediate_size":%F,"num_attention_heads":32,"num_key_value_heads":8,"rms_norm_eps":1e-5,"rope_theta":10000`
	for _, c := range []struct {
		name, hidden, ff, extra, want string
	}{
		{"16000 layers", "4096", "14336", `"num_hidden_layers":16000,"max_position_embeddings":4096`, "num_hidden_layers"},
		{"context 2^30", "4096", "14336", `"num_hidden_layers":32,"max_position_embeddings":1073741824`, "max_position_embeddings"},
		{"4.3e12 parameters", "16384", "65536", `"num_hidden_layers":1000,"max_position_embeddings":4096`, "needs about"},
	} {
		dir := t.TempDir()
		js := "{" + strings.NewReplacer("%H", c.hidden, "%F", c.ff).Replace(base) + "," + c.extra + "}"
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(js), 0o644); err != nil {
			t.Fatal(err)
		}
		_, _, err := LoadHF(context.Background(), dir)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want one line with %q", c.name, err, c.want)
		}
	}
}

// FuzzLoadHFTokenizer feeds arbitrary tokenizer.json files to the Hugging
// Face tokenizer loader: no panic, and a tokenizer it accepts encodes and
// decodes.
func FuzzLoadHFTokenizer(f *testing.F) {
	vocab := map[string]int32{}
	for b := 0; b < 256; b++ {
		vocab[gguf.BytesToToken([]byte{byte(b)})] = int32(b)
	}
	vocab["Ġt"] = 256
	doc, _ := json.Marshal(map[string]any{
		"model":        map[string]any{"type": "BPE", "vocab": vocab, "merges": [][2]string{{"Ġ", "t"}}},
		"added_tokens": []map[string]any{{"id": 257, "content": "<|endoftext|>", "special": true}},
	})
	f.Add(doc)
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":0},"merges":["a a"]},"added_tokens":[{"id":-1,"content":"<|endoftext|>"}]}`))
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":2147483647},"merges":[]}}`))
	f.Add([]byte(`{"model":{"type":"Unigram"}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "tokenizer.json")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		tok, _, err := LoadHFTokenizer(p, "<|endoftext|>")
		if err != nil {
			return
		}
		ids := tok.Encode([]byte(" the text"))
		for _, id := range ids {
			if id < 0 || int(id) >= tok.VocabSize() {
				t.Fatalf("encoded id %d outside the vocabulary of %d", id, tok.VocabSize())
			}
			tok.TokenBytes(id)
		}
	})
}
