package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestPresetsRoundTrip(t *testing.T) {
	names := PresetNames()
	for _, want := range []string{"gpt4", "gpt3", "mixtral-8x7b", "tiny", "tiny-draft"} {
		if _, ok := Preset(want); !ok {
			t.Errorf("preset %q missing (have %v)", want, names)
		}
	}
	dir := t.TempDir()
	for _, n := range names {
		c, ok := Preset(n)
		if !ok {
			t.Fatalf("Preset(%q) not found though listed", n)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("preset %s: %v", n, err)
			continue
		}
		p := filepath.Join(dir, n+".json")
		if err := c.Save(p); err != nil {
			t.Fatalf("save %s: %v", n, err)
		}
		back, err := Load(p)
		if err != nil {
			t.Fatalf("load %s: %v", n, err)
		}
		back.Name = c.Name
		if !reflect.DeepEqual(c, back) {
			t.Errorf("preset %s does not round-trip:\n got %+v\nwant %+v", n, back, c)
		}
	}
}

func TestPresetIsFreshCopy(t *testing.T) {
	a, _ := Preset("qwen3-30b-a3b")
	a.HiddenSize = 1
	a.MLPOnlyLayers = append(a.MLPOnlyLayers, 3)
	b, _ := Preset("qwen3-30b-a3b")
	if b.HiddenSize != 2048 || len(b.MLPOnlyLayers) != 0 {
		t.Fatalf("mutating one preset changed the next: %+v", b)
	}
	if _, ok := Preset("../etc/passwd"); ok {
		t.Fatal("a path is not a preset")
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	c, _ := Preset("tiny")
	if err := c.Save(filepath.Join(dir, "config.json")); err != nil {
		t.Fatal(err)
	}
	for _, arg := range []string{"tiny", dir, filepath.Join(dir, "config.json")} {
		got, err := Resolve(arg)
		if err != nil {
			t.Fatalf("Resolve(%q): %v", arg, err)
		}
		if got.HiddenSize != 256 || got.NumExperts != 8 {
			t.Errorf("Resolve(%q) = %+v", arg, got)
		}
	}
	_, err := Resolve(filepath.Join(dir, "nope"))
	if err == nil || !strings.Contains(err.Error(), "neither a preset") {
		t.Errorf("Resolve of a missing path: %v", err)
	}
}

func TestLoadFieldMapping(t *testing.T) {
	q2, _ := Preset("qwen1.5-moe-a2.7b")
	if !q2.QKVBias || q2.AttentionBias || !q2.SharedExpertGate || q2.SharedExpertIntermediateSize != 5632 ||
		q2.ExpertSize() != 1408 || q2.NumExperts != 60 || q2.SlidingWindow != 0 {
		t.Errorf("qwen2_moe mapped wrong: %+v", q2)
	}
	q3, _ := Preset("qwen3-30b-a3b")
	if !q3.QKNorm || !q3.QKNormPerHead || q3.HeadDimension() != 128 || q3.KVHeads() != 4 || !q3.NormTopKProb {
		t.Errorf("qwen3_moe mapped wrong: %+v", q3)
	}
	ol, _ := Preset("olmoe-1b-7b")
	if !ol.QKNorm || ol.QKNormPerHead || ol.NumExperts != 64 || ol.ExpertSize() != 1024 {
		t.Errorf("olmoe mapped wrong: %+v", ol)
	}
	oss, _ := Preset("gpt-oss-20b")
	if !oss.AttentionBias || !oss.AttentionSinks || !oss.RouterBias || !oss.ExpertBias || oss.SwiGLULimit != 7 ||
		oss.AttentionWindow(0) != 128 || oss.AttentionWindow(1) != 0 || oss.NumExperts != 32 || oss.ExpertsPerToken != 4 {
		t.Errorf("gpt_oss mapped wrong: %+v", oss)
	}
	mi, _ := Preset("mistral-7b")
	if mi.AttentionWindow(5) != 4096 || mi.IsMoE() {
		t.Errorf("mistral mapped wrong: %+v", mi)
	}
	ll, _ := Preset("llama-2-7b")
	if ll.RopeTheta != 10000 || ll.KVHeads() != 32 || ll.IsMoE() {
		t.Errorf("llama mapped wrong: %+v", ll)
	}
	mx, _ := Preset("mixtral-8x7b")
	if mx.RopeTheta != 1e6 || mx.RouterOrder != RouterTopKSoftmax || mx.SlidingWindow != 0 {
		t.Errorf("mixtral mapped wrong: %+v", mx)
	}
	// Qwen's decoder_sparse_step and mlp_only_layers.
	c, err := Parse([]byte(`{"model_type":"qwen2_moe","vocab_size":10,"hidden_size":8,"intermediate_size":16,
		"moe_intermediate_size":4,"num_hidden_layers":4,"num_attention_heads":2,"max_position_embeddings":8,
		"num_experts":4,"num_experts_per_tok":2,"decoder_sparse_step":2,"mlp_only_layers":[3]}`))
	if err != nil {
		t.Fatal(err)
	}
	var moe []bool
	for i := 0; i < 4; i++ {
		moe = append(moe, c.LayerIsMoE(i))
	}
	if !reflect.DeepEqual(moe, []bool{false, true, false, false}) {
		t.Errorf("LayerIsMoE = %v", moe)
	}
	// Expert-choice routing needs no top-k.
	ec, err := Parse([]byte(strings.Replace(goodMixtral, `,"num_experts_per_tok":2`, `,"moe_routing":"expert_choice","moe_capacity_factor":2`, 1)))
	if err != nil || ec.ExpertsPerToken != 0 || ec.Routing != RoutingExpertChoice {
		t.Errorf("expert choice: %v %+v", err, ec)
	}
	// GPT-2 style field names for gpt3.
	g, err := Parse([]byte(`{"model_type":"gpt3","vocab_size":50257,"n_embd":768,"n_layer":12,"n_head":12,"n_positions":1024}`))
	if err != nil {
		t.Fatal(err)
	}
	if g.HiddenSize != 768 || g.IntermediateSize != 3072 || !g.LearnedPositions || !g.TieWordEmbeddings || !g.PlainMLP {
		t.Errorf("gpt3 mapped wrong: %+v", g)
	}
}

const goodMixtral = `{"model_type":"mixtral","vocab_size":100,"hidden_size":16,"intermediate_size":32,
"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"max_position_embeddings":64,
"num_local_experts":4,"num_experts_per_tok":2}`

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, json, want string
	}{
		{"malformed", `{"model_type": "mixtral",`, "malformed JSON"},
		{"trailing", goodMixtral + `{}`, "malformed JSON"},
		{"not object", `[1,2]`, "malformed JSON"},
		{"no type", `{"hidden_size": 4}`, "model_type: missing"},
		{"unknown type", `{"model_type": "bert"}`, `model_type: unknown "bert"`},
		{"missing hidden", strings.Replace(goodMixtral, `"hidden_size":16,`, "", 1), "hidden_size: missing"},
		{"missing experts", strings.Replace(goodMixtral, `"num_local_experts":4,`, "", 1), "num_local_experts: missing"},
		{"missing topk", strings.Replace(goodMixtral, `,"num_experts_per_tok":2`, "", 1), "num_experts_per_tok: missing"},
		{"qwen missing experts", `{"model_type":"qwen3_moe","vocab_size":10,"hidden_size":8,"moe_intermediate_size":4,
			"num_hidden_layers":2,"num_attention_heads":2,"max_position_embeddings":8,"num_experts_per_tok":2}`, "num_experts: missing"},
		{"negative", strings.Replace(goodMixtral, `"hidden_size":16`, `"hidden_size":-16`, 1), "hidden_size: must not be negative (got -16)"},
		{"zero layers", strings.Replace(goodMixtral, `"num_hidden_layers":2`, `"num_hidden_layers":0`, 1), "num_hidden_layers: missing or zero"},
		{"float int", strings.Replace(goodMixtral, `"hidden_size":16`, `"hidden_size":16.5`, 1), "hidden_size: expected an integer, got JSON number 16.5"},
		{"string int", strings.Replace(goodMixtral, `"hidden_size":16`, `"hidden_size":"16"`, 1), "hidden_size: expected an integer, got JSON string"},
		{"huge int", strings.Replace(goodMixtral, `"hidden_size":16`, `"hidden_size":1e300`, 1), "hidden_size: expected an integer"},
		{"bool field", strings.Replace(goodMixtral, `"max_position_embeddings":64`, `"max_position_embeddings":64,"tie_word_embeddings":1`, 1), "tie_word_embeddings: expected true or false"},
		{"list field", strings.Replace(goodMixtral, `"max_position_embeddings":64`, `"max_position_embeddings":64,"mlp_only_layers":[0.5]`, 1), "mlp_only_layers: expected an integer"},
		{"type type", `{"model_type": 7}`, "model_type: expected a string, got JSON number"},
		{"topk > experts", strings.Replace(goodMixtral, `"num_experts_per_tok":2`, `"num_experts_per_tok":5`, 1), "num_experts_per_tok (5) > num_local_experts (4)"},
		{"kv heads", strings.Replace(goodMixtral, `"num_key_value_heads":2`, `"num_key_value_heads":3`, 1), "num_key_value_heads: 3 does not divide"},
		{"heads vs hidden", strings.Replace(goodMixtral, `"num_attention_heads":4,"num_key_value_heads":2`, `"num_attention_heads":3,"num_key_value_heads":1`, 1), "num_attention_heads: 3 does not divide hidden_size"},
		{"negative eps", strings.Replace(goodMixtral, `"max_position_embeddings":64`, `"max_position_embeddings":64,"rms_norm_eps":-1`, 1), "rms_norm_eps: must be a finite non-negative number (got -1)"},
		{"bad routing", strings.Replace(goodMixtral, `"max_position_embeddings":64`, `"max_position_embeddings":64,"moe_routing":"random"`, 1), "moe_routing"},
		{"huge", strings.Replace(goodMixtral, `"num_hidden_layers":2`, `"num_hidden_layers":16000,"hidden_size":4000000`, 1), "hidden_size"},
		{"layer types", strings.Replace(goodMixtral, `"max_position_embeddings":64`, `"max_position_embeddings":64,"sliding_window":4,"layer_types":["full_attention"]`, 1), "layer_types: 1 entries for 2 layers"},
		{"mlp_only_layers", strings.Replace(goodMixtral, `"max_position_embeddings":64`, `"max_position_embeddings":64,"mlp_only_layers":[7]`, 1), "mlp_only_layers[0]: layer 7"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".json")
			if err := os.WriteFile(p, []byte(tc.json), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(p)
			if err == nil {
				t.Fatalf("Load accepted %s", tc.json)
			}
			if !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not name the file %s", err, p)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
	if _, err := Parse([]byte(goodMixtral)); err != nil {
		t.Fatalf("the good config was rejected: %v", err)
	}
	// Integral numbers written as floats are integers.
	c, err := Parse([]byte(strings.Replace(goodMixtral, `"hidden_size":16`, `"hidden_size":16.0`, 1)))
	if err != nil || c.HiddenSize != 16 {
		t.Fatalf("16.0 as hidden_size: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "absent.json")); err == nil {
		t.Fatal("Load of a missing file succeeded")
	}
}

func TestSaveIsAtomicAndReadable(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.json")
	c, _ := Preset("tiny")
	if err := c.Save(p); err != nil {
		t.Fatal(err)
	}
	bad := c.Clone()
	bad.ExpertsPerToken = 9
	if err := bad.Save(p); err == nil || !strings.Contains(err.Error(), "num_experts_per_tok (9) > num_local_experts (8)") {
		t.Fatalf("saving an invalid config: %v", err)
	}
	back, err := Load(p)
	if err != nil || back.ExpertsPerToken != 2 {
		t.Fatalf("failed save clobbered the file: %v %+v", err, back)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", st.Mode())
	}
}

// FuzzParse checks that no input makes the reader panic, and that whatever
// it accepts is valid and survives a save and reload unchanged.
func FuzzParse(f *testing.F) {
	f.Add([]byte(goodMixtral))
	f.Add([]byte(`{"model_type":"gpt3","vocab_size":50257,"n_embd":768,"n_layer":12,"n_head":12,"n_positions":1024}`))
	f.Add([]byte(`{"model_type":"qwen2_moe","vocab_size":10,"hidden_size":8,"intermediate_size":16,"moe_intermediate_size":4,"num_hidden_layers":4,"num_attention_heads":2,"max_position_embeddings":8,"num_experts":4,"num_experts_per_tok":2,"decoder_sparse_step":2,"mlp_only_layers":[3]}`))
	f.Add([]byte(`{"model_type":"mixtral","hidden_size":-1}`))
	f.Add([]byte(`{`))
	entries, _ := hfConfigs.ReadDir("hf")
	for _, e := range entries {
		data, _ := hfConfigs.ReadFile("hf/" + e.Name())
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if c != nil {
				t.Fatal("non-nil config with an error")
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted an invalid config: %v", err)
		}
		out, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("reloading a saved config: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(c, back) {
			t.Fatalf("save/reload changed the config:\n%+v\n%+v", c, back)
		}
	})
}
