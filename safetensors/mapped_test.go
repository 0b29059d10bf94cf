package safetensors

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moe-llm/moe/config"
)

// TestMappedRealConfigs checks that the published config.json of each
// family OpenMapped reads (config/hf) passes its feature checks with the
// family's pieces recognised, and that an unmapped family is refused by
// name before any weights are opened.
func TestMappedRealConfigs(t *testing.T) {
	for _, c := range []struct {
		file                   string
		qkNorm, perHead, bias  bool
		sharedGate, normTopK   bool
		expertWidth, sharedLen int
		refuse                 string // what the refusal names
	}{
		{file: "mixtral-8x7b.json", expertWidth: 14336},
		{file: "mistral-7b.json", refuse: "sliding-window"}, // 4096 of 32768
		{file: "llama-2-7b.json"},
		{file: "qwen3-30b-a3b.json", qkNorm: true, perHead: true, normTopK: true, expertWidth: 768},
		{file: "olmoe-1b-7b.json", qkNorm: true, expertWidth: 1024},
		{file: "qwen1.5-moe-a2.7b.json", bias: true, sharedGate: true, expertWidth: 1408, sharedLen: 5632},
	} {
		t.Run(c.file, func(t *testing.T) {
			cfg, err := config.Load(filepath.Join("..", "config", "hf", c.file))
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := hfLayouts[cfg.ModelType]; !ok {
				t.Fatalf("no layout for %s", cfg.ModelType)
			}
			if err := checkFeatures(cfg, true); c.refuse != "" {
				if err == nil || !strings.Contains(err.Error(), c.refuse) {
					t.Fatalf("error %v, want one naming %s", err, c.refuse)
				}
				return
			} else if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if cfg.QKNorm != c.qkNorm || cfg.QKNormPerHead != c.perHead || cfg.QKVBias != c.bias ||
				cfg.SharedExpertGate != c.sharedGate || cfg.NormTopKProb != c.normTopK {
				t.Errorf("pieces: qk norm %v per head %v, bias %v, shared gate %v, norm top-k %v", cfg.QKNorm, cfg.QKNormPerHead,
					cfg.QKVBias, cfg.SharedExpertGate, cfg.NormTopKProb)
			}
			if cfg.IsMoE() && cfg.ExpertSize() != c.expertWidth || cfg.SharedExpertIntermediateSize != c.sharedLen {
				t.Errorf("expert width %d, shared %d; want %d, %d", cfg.ExpertSize(), cfg.SharedExpertIntermediateSize, c.expertWidth, c.sharedLen)
			}
			// The training model has q/k norms, q/k/v biases and the gated
			// shared expert: the float32 import takes every one of these.
			if err := checkFeatures(cfg, false); err != nil {
				t.Errorf("the float32 import refuses %s: %v", c.file, err)
			}
		})
	}
	dir := t.TempDir()
	js, err := os.ReadFile(filepath.Join("..", "config", "hf", "gpt-oss-20b.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), js, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenMapped(dir); err == nil || !strings.Contains(err.Error(), `model_type "gpt_oss"`) {
		t.Fatalf("gpt-oss directory: %v, want a refusal naming gpt_oss", err)
	}
}
