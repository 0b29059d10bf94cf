package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/moe-llm/moe/internal/peer"
)

// TestQuantizeDeepseek2LikeLlamaQuantize: on the deepseek2 fixtures (latent
// attention tensors attn_kv_a_mqa, attn_k_b, attn_v_b or attn_kv_b, q LoRA,
// dense and shared-expert FFNs), moe quantize writes the tensor types and
// bytes llama-quantize writes for each mix (the fixtures' rows, 32 to 128
// wide, take the mixes' fallbacks for rows that are not whole k-quant
// blocks, as llama-quantize's rules say), and moe runs the result.
func TestQuantizeDeepseek2LikeLlamaQuantize(t *testing.T) {
	lq := peer.NeedBin(t, "llama-quantize")
	dir := t.TempDir()
	for _, name := range []string{"deepseek2", "deepseek2v3", "deepseek2kvb"} {
		f32, err := filepath.Abs(filepath.Join("..", "infer", "testdata", "family", name+"-f32.gguf"))
		if err != nil {
			t.Fatal(err)
		}
		for _, mix := range []string{"q8_0", "q4_k_m", "q6_k"} {
			ours := filepath.Join(dir, name+"-moe-"+mix+".gguf")
			theirs := filepath.Join(dir, name+"-llama-"+mix+".gguf")
			ok(t, "quantize", f32, ours, mix)
			runTool(t, lq, f32, theirs, strings.ToUpper(mix), "2")
			sameAsLlamaQuantize(t, name+" "+mix, ours, theirs)
			if r := ok(t, "generate", "--model", ours, "--prompt", "Hello", "--max-tokens", "8", "--temperature", "0"); !strings.Contains(r.stderr, "8 generated") {
				t.Errorf("%s %s: generate did not report 8 tokens: %s", name, mix, r)
			}
		}
	}
}
