package safetensors

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
