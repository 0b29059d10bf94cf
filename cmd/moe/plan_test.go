package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPlanCLI(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"plan", "gpt4", "--json"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var r map[string]any
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out.String())
	}
	for _, k := range []string{"total_params", "active_params", "attention_params", "expert_params", "embedding_params",
		"layers", "experts", "experts_per_token", "context", "forward_flops_per_token", "train_tokens", "train_flops",
		"kv_cache_bytes_per_token", "gpus", "mfu", "train_days", "cost_usd", "tokens_per_expert_per_batch"} {
		if _, ok := r[k].(float64); !ok {
			t.Errorf("key %q missing or not a number: %v", k, r[k])
		}
	}
	if r["gpu"] != "a100" {
		t.Errorf("gpu = %v", r["gpu"])
	}
	checks, _ := r["checks"].([]any)
	if len(checks) < 10 {
		t.Fatalf("checks: %v", r["checks"])
	}
	for _, c := range checks {
		m := c.(map[string]any)
		for _, k := range []string{"claim", "stated", "computed", "verdict"} {
			if s, _ := m[k].(string); s == "" {
				t.Errorf("check %v lacks %s", m, k)
			}
		}
	}

	// Flags change the plan.
	out.Reset()
	if code := run([]string{"plan", "--json", "--gpu", "h100", "--gpus", "100", "--mfu", "0.5", "--tokens", "1T",
		"--price", "3", "--context", "4096", "--batch-tokens", "1e6", "mixtral-8x7b"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	r = nil
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if r["gpus"] != 100.0 || r["mfu"] != 0.5 || r["train_tokens"] != 1e12 || r["context"] != 4096.0 ||
		r["tokens_per_expert_per_batch"] != 250000.0 || r["gpu"] != "h100" || r["checks"] != nil {
		t.Errorf("flags not applied: %v", r)
	}

	// The table.
	out.Reset()
	if code := run([]string{"plan", "gpt4"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "wrong unit") {
		t.Fatalf("exit %d, table:\n%s", code, out.String())
	}
}

func TestPlanCLIErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "config.json")
	if err := os.WriteFile(bad, []byte(`{"model_type":"mixtral","vocab_size":10,"hidden_size":8,"intermediate_size":16,
		"num_hidden_layers":1,"num_attention_heads":2,"max_position_embeddings":8,"num_local_experts":2,"num_experts_per_tok":4}`), 0o644); err != nil {
		t.Fatal(err)
	}
	checkCLI(t, []cliCase{
		{[]string{"plan"}, 2, "CONFIG"},
		{[]string{"plan", "a", "b"}, 2, "CONFIG"},
		{[]string{"plan", "tiny", "--mfu", "2"}, 2, "--mfu"},
		{[]string{"plan", "tiny", "--gpu", "tpu"}, 2, "tpu"},
		{[]string{"plan", "tiny", "--bogus"}, 2, "bogus"},
		{[]string{"plan", "tiny", "--tokens", "lots"}, 2, "lots"},
		{[]string{"plan", "tiny", "--tokens", "-1T"}, 2, "--tokens"},
		{[]string{"plan", "no-such-model"}, 1, "no-such-model"},
		{[]string{"plan", dir}, 1, bad + ": num_experts_per_tok (4) > num_local_experts (2)"},
		{[]string{"plan", "--help"}, 0, ""},
	})
}
