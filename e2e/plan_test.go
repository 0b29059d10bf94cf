package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
)

// planKeys are the numeric keys `moe plan --json` must print.
var planKeys = []string{"total_params", "active_params", "attention_params", "expert_params", "embedding_params",
	"layers", "experts", "experts_per_token", "context", "forward_flops_per_token", "train_tokens", "train_flops",
	"kv_cache_bytes_per_token", "gpus", "mfu", "train_days", "cost_usd", "tokens_per_expert_per_batch"}

// checkPlan checks the keys and types of a plan and returns it.
func checkPlan(t *testing.T, args ...string) map[string]any {
	t.Helper()
	m := jsonObject(t, ok(t, append([]string{"plan", "--json"}, args...)...).stdout)
	numbers(t, m, planKeys...)
	if g := str(t, m, "gpu"); g == "" {
		t.Errorf("plan %v: empty gpu", args)
	}
	total, active := number(t, m, "total_params"), number(t, m, "active_params")
	if total <= 0 || active <= 0 || active > total {
		t.Errorf("plan %v: total %v, active %v", args, total, active)
	}
	for _, k := range []string{"total_params", "active_params", "layers", "experts", "context", "gpus"} {
		if v := number(t, m, k); v != math.Trunc(v) {
			t.Errorf("plan %v: %s = %v is not a whole number", args, k, v)
		}
	}
	return m
}

func TestPlanPresets(t *testing.T) {
	for _, p := range []string{"gpt4", "gpt3", "mixtral-8x7b", "tiny", "tiny-draft"} {
		m := checkPlan(t, p)
		ok(t, "plan", p) // the human-readable form
		switch p {
		case "gpt4":
			checks, isList := m["checks"].([]any)
			if !isList || len(checks) == 0 {
				t.Fatalf("gpt4 plan: checks is %T %v, want a non-empty list", m["checks"], m["checks"])
			}
			for _, c := range checks {
				obj, isObj := c.(map[string]any)
				if !isObj {
					t.Fatalf("gpt4 check %v is not an object", c)
				}
				for _, k := range []string{"claim", "stated", "computed", "verdict"} {
					if _, present := obj[k]; !present {
						t.Errorf("gpt4 check %v lacks %q", obj, k)
					}
				}
			}
			if tot := number(t, m, "total_params"); tot < 1.6e12 || tot > 2e12 {
				t.Errorf("gpt4 total params %v, the account says ~1.8T", tot)
			}
		case "mixtral-8x7b":
			// Published: 46.7B total, 12.9B active.
			if tot, act := number(t, m, "total_params"), number(t, m, "active_params"); math.Abs(tot-46.7e9) > 0.1e9 || math.Abs(act-12.9e9) > 0.1e9 {
				t.Errorf("mixtral-8x7b: total %v active %v, want 46.7B / 12.9B", tot, act)
			}
		case "tiny":
			if number(t, m, "experts") < 2 {
				t.Errorf("tiny is not an MoE: %v experts", m["experts"])
			}
		case "tiny-draft":
			tiny := checkPlan(t, "tiny")
			if number(t, tiny, "forward_flops_per_token") < 10*number(t, m, "forward_flops_per_token") {
				t.Errorf("tiny-draft is not 10x cheaper per token than tiny: %v vs %v", m["forward_flops_per_token"], tiny["forward_flops_per_token"])
			}
		}
	}
}

// hfBase is a small Hugging Face style config shared by every model_type.
func hfBase() map[string]any {
	return map[string]any{
		"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
		"num_key_value_heads": 2, "head_dim": 16, "vocab_size": 320, "max_position_embeddings": 64,
		"rope_theta": 10000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": false,
	}
}

func TestPlanHuggingFaceConfigs(t *testing.T) {
	dir := t.TempDir()
	// Parameter counts worked out by hand from the HF modelling code for
	// d 64, ff 128, 2 layers, 4 heads of 16, 2 KV heads, vocabulary 320.
	const (
		emb   = 320 * 64
		attn  = 64*64 + 2*64*32 + 64*64 // q, k, v, o
		mlp   = 3 * 64 * 128
		norms = 2 * 64
	)
	types := []struct {
		name           string
		extra          map[string]any
		total, active  int
		experts, perTk int
	}{
		{"llama", nil, 2*emb + 2*(attn+mlp+norms) + 64, 2*emb + 2*(attn+mlp+norms) + 64, 0, 0},
		{"mistral", map[string]any{"sliding_window": nil}, 2*emb + 2*(attn+mlp+norms) + 64, 2*emb + 2*(attn+mlp+norms) + 64, 0, 0},
		{"mixtral", map[string]any{"num_local_experts": 4, "num_experts_per_tok": 2, "router_aux_loss_coef": 0.02},
			2*emb + 2*(attn+4*mlp+4*64+norms) + 64, 2*emb + 2*(attn+2*mlp+4*64+norms) + 64, 4, 2},
		{"qwen2_moe", map[string]any{"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32, "shared_expert_intermediate_size": 64, "decoder_sparse_step": 1},
			2*emb + 2*(attn+128+4*3*64*32+3*64*64+64+4*64+norms) + 64, 2*emb + 2*(attn+128+2*3*64*32+3*64*64+64+4*64+norms) + 64, 4, 2},
		{"qwen3_moe", map[string]any{"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32, "decoder_sparse_step": 1, "norm_topk_prob": true},
			2*emb + 2*(attn+32+4*3*64*32+4*64+norms) + 64, 2*emb + 2*(attn+32+2*3*64*32+4*64+norms) + 64, 4, 2},
		{"olmoe", map[string]any{"num_experts": 4, "num_experts_per_tok": 2},
			2*emb + 2*(attn+96+4*mlp+4*64+norms) + 64, 2*emb + 2*(attn+96+2*mlp+4*64+norms) + 64, 4, 2},
		{"gpt_oss", map[string]any{"num_local_experts": 4, "num_experts_per_tok": 2, "experts_per_token": 2, "intermediate_size": 64,
			"sliding_window": 16, "layer_types": []string{"sliding_attention", "full_attention"}, "attention_bias": true},
			2*emb + 2*(attn+192+4+4*(3*64*64+128+64)+4*64+4+norms) + 64, 2*emb + 2*(attn+192+4+2*(3*64*64+128+64)+4*64+4+norms) + 64, 4, 2},
	}
	for _, ty := range types {
		cfg := hfBase()
		cfg["model_type"] = ty.name
		for k, v := range ty.extra {
			cfg[k] = v
		}
		b, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		m := checkPlan(t, writeFile(t, dir, ty.name+".json", string(b)))
		if got := number(t, m, "total_params"); got != float64(ty.total) {
			t.Errorf("%s: total_params %v, want %d", ty.name, got, ty.total)
		}
		if got := number(t, m, "active_params"); got != float64(ty.active) {
			t.Errorf("%s: active_params %v, want %d", ty.name, got, ty.active)
		}
		if got := number(t, m, "experts"); got != float64(ty.experts) {
			t.Errorf("%s: experts %v, want %d", ty.name, got, ty.experts)
		}
		if got := number(t, m, "layers"); got != 2 {
			t.Errorf("%s: layers %v, want 2", ty.name, got)
		}
		if got := number(t, m, "embedding_params"); got < emb || got > 2*emb {
			t.Errorf("%s: embedding_params %v, want %d or %d", ty.name, got, emb, 2*emb)
		}
		// Optional fields: left out, the HF defaults apply.
		for _, drop := range []string{"head_dim", "num_key_value_heads", "tie_word_embeddings", "rope_theta", "rms_norm_eps"} {
			c := map[string]any{}
			for k, v := range cfg {
				if k != drop {
					c[k] = v
				}
			}
			b, _ := json.Marshal(c)
			m := checkPlan(t, writeFile(t, dir, fmt.Sprintf("%s-no-%s.json", ty.name, drop), string(b)))
			got := number(t, m, "total_params")
			switch drop {
			case "num_key_value_heads": // defaults to the number of heads: k and v grow by 64·32 each, per layer
				extra := 2 * 2 * 64 * 32
				if ty.name == "olmoe" { // k_norm grows with the KV width
					extra += 2 * 32
				}
				if ty.name == "qwen2_moe" || ty.name == "gpt_oss" { // k and v biases
					extra += 2 * 2 * 32
				}
				if got != float64(ty.total+extra) {
					t.Errorf("%s without %s: total %v, want %d", ty.name, drop, got, ty.total+extra)
				}
			default: // head_dim = 64/4 = 16 anyway; untied by default
				if got != float64(ty.total) {
					t.Errorf("%s without %s: total %v, want %d", ty.name, drop, got, ty.total)
				}
			}
		}
	}
}

func TestPlanFlags(t *testing.T) {
	m := checkPlan(t, "mixtral-8x7b", "--gpu", "h100", "--gpus", "64", "--mfu", "0.4", "--tokens", "1000000000",
		"--price", "2.5", "--context", "4096", "--batch-tokens", "1048576")
	if str(t, m, "gpu") != "h100" || number(t, m, "gpus") != 64 || number(t, m, "mfu") != 0.4 ||
		number(t, m, "train_tokens") != 1e9 || number(t, m, "context") != 4096 {
		t.Errorf("plan flags not reflected: %v", m)
	}
	// cost = GPUs × days × 24 h × price.
	days, cost := number(t, m, "train_days"), number(t, m, "cost_usd")
	if want := 64 * days * 24 * 2.5; math.Abs(cost-want) > 1e-6*want {
		t.Errorf("cost_usd %v, want gpus×days×24×price = %v", cost, want)
	}
	// train_flops / (gpus × peak × mfu) = days: the A100 run takes longer than the H100 one.
	a := checkPlan(t, "mixtral-8x7b", "--gpu", "a100", "--gpus", "64", "--mfu", "0.4", "--tokens", "1000000000")
	if number(t, a, "train_days") <= days {
		t.Errorf("a100 days %v not above h100 days %v", a["train_days"], days)
	}
	// tokens per expert per batch: batch × top-k / experts = 1048576 × 2 / 8.
	if got := number(t, m, "tokens_per_expert_per_batch"); got != 1048576*2/8 {
		t.Errorf("tokens_per_expert_per_batch %v, want %v", got, 1048576*2/8)
	}
	if !strings.Contains(ok(t, "plan", "gpt4").stdout, "1.8") {
		t.Errorf("plan gpt4 text does not mention the ~1.8T total")
	}
}
