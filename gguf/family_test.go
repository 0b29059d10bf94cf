package gguf

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/moe-llm/moe/config"
)

// familyFixture is the path of a fixture that make_family.py wrote.
func familyFixture(arch, typ string) string {
	return filepath.Join("..", "infer", "testdata", "family", arch+"-"+typ+".gguf")
}

// TestFamilyConfig checks the config each family file maps onto: the
// family's routing rule and pieces, and the shapes from its keys.
func TestFamilyConfig(t *testing.T) {
	for _, c := range []struct {
		arch  string
		check func(*config.Config) bool
	}{
		{"qwen3moe", func(c *config.Config) bool {
			return c.ModelType == config.TypeQwen3MoE && c.QKNorm && c.QKNormPerHead && c.HeadDim == 32 &&
				c.RouterOrder == config.RouterSoftmaxTopK && c.NormTopKProb && c.MoEIntermediateSize == 32 &&
				c.SharedExpertIntermediateSize == 0 && c.TieWordEmbeddings
		}},
		{"olmoe", func(c *config.Config) bool {
			return c.ModelType == config.TypeOLMoE && c.QKNorm && !c.QKNormPerHead &&
				c.RouterOrder == config.RouterSoftmaxTopK && !c.NormTopKProb && !c.TieWordEmbeddings
		}},
		{"qwen2moe", func(c *config.Config) bool {
			return c.ModelType == config.TypeQwen2MoE && c.QKVBias && c.SharedExpertGate &&
				c.SharedExpertIntermediateSize == 48 && c.MoEIntermediateSize == 32 &&
				c.RouterOrder == config.RouterSoftmaxTopK && !c.NormTopKProb
		}},
		{"granitemoe", func(c *config.Config) bool {
			return c.ModelType == config.TypeGraniteMoE && c.EmbeddingMultiplier == 6 && c.ResidualMultiplier == 0.5 &&
				float32(c.AttentionMultiplier) == 0.15 && c.LogitsScaling == 4 && c.RouterOrder == config.RouterTopKSoftmax &&
				c.SharedExpertIntermediateSize == 32 && !c.SharedExpertGate
		}},
	} {
		mm, err := OpenModel(familyFixture(c.arch, "q8_0"), PlaceMapped)
		if err != nil {
			t.Fatalf("%s: %v", c.arch, err)
		}
		if !c.check(mm.Cfg) {
			t.Errorf("%s: config %+v", c.arch, *mm.Cfg)
		}
		if mm.Layers[0].Experts[1].Down.Type != Q8_0 {
			t.Errorf("%s: expert matrix type %v, want q8_0 kept as stored", c.arch, mm.Layers[0].Experts[1].Down.Type)
		}
		mm.Close()
	}
}

// TestFamilyBadShape checks that a family tensor of the wrong shape is a
// one-line error naming the tensor.
func TestFamilyBadShape(t *testing.T) {
	for _, name := range []string{"blk.1.attn_q_norm.weight", "blk.0.ffn_up_exps.weight"} {
		f, err := Open(familyFixture("qwen3moe", "f32"))
		if err != nil {
			t.Fatal(err)
		}
		ti, ok := f.Tensor(name)
		if !ok {
			t.Fatalf("no %s", name)
		}
		ti.Dims[0] *= 2
		_, err = mapModel(f)
		f.Close()
		if err == nil || !strings.Contains(err.Error(), `"`+name+`"`) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s with doubled dims: got %v, want a one-line error naming it", name, err)
		}
	}
}
