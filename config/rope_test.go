package config

import (
	"strings"
	"testing"
)

// TestRopeScalingField reads rope_scaling under both of transformers'
// spellings of its type, round-trips it, and rejects a factor ≤ 1 and
// unknown types naming the field.
func TestRopeScalingField(t *testing.T) {
	add := func(extra string) string {
		return strings.Replace(goodMixtral, `"max_position_embeddings":64`, `"max_position_embeddings":64,`+extra, 1)
	}
	c, err := Parse([]byte(add(`"rope_scaling":{"type":"yarn","factor":4,"original_max_position_embeddings":16,"beta_fast":32,"beta_slow":1}`)))
	if err != nil {
		t.Fatal(err)
	}
	want := RopeScaling{Type: RopeYaRN, Factor: 4, OriginalMaxPositionEmbeddings: 16, BetaFast: 32, BetaSlow: 1}
	if c.RopeScaling == nil || *c.RopeScaling != want {
		t.Fatalf("read %+v", c.RopeScaling)
	}
	b, _ := c.Marshal()
	c2, err := Parse(b)
	if err != nil || *c2.RopeScaling != want {
		t.Fatalf("round trip: %+v, %v", c2.RopeScaling, err)
	}
	if d := c.Clone(); d.RopeScaling == c.RopeScaling {
		t.Fatal("Clone shares rope_scaling")
	}
	c, err = Parse([]byte(add(`"rope_scaling":{"rope_type":"yarn","factor":32,"truncate":false}`)))
	if err != nil || c.RopeScaling.YaRNTruncate() {
		t.Fatalf("truncate false: %+v, %v", c.RopeScaling, err)
	}
	if b, _ := c.Marshal(); !strings.Contains(string(b), `"truncate": false`) {
		t.Fatalf("truncate false not written back:\n%s", b)
	}
	// transformers' types moe does not compute are read (moe plan works)
	// and refused for running.
	c, err = Parse([]byte(add(`"rope_scaling":{"rope_type":"llama3","factor":8,"original_max_position_embeddings":8192}`)))
	if err != nil || c.RopeScalingImplemented() == nil || !strings.Contains(c.RopeScalingImplemented().Error(), "llama3") {
		t.Fatalf("llama3: %v, %v", err, c.RopeScalingImplemented())
	}
	c, err = Parse([]byte(add(`"rope_scaling":{"rope_type":"default"}`)))
	if err != nil || c.RopeScaling != nil {
		t.Fatalf("default type: %+v, %v", c.RopeScaling, err)
	}
	for extra, msg := range map[string]string{
		`"rope_scaling":{"rope_type":"linear","factor":1}`:              "rope_scaling.factor: must be a finite number > 1",
		`"rope_scaling":{"rope_type":"linear","factor":0.5}`:            "rope_scaling.factor",
		`"rope_scaling":{"rope_type":"linear"}`:                         "rope_scaling.factor: missing",
		`"rope_scaling":{"rope_type":"su","factor":8}`:                  "rope_scaling.rope_type: unknown",
		`"rope_scaling":{"rope_type":"yarn","factor":4,"beta_fast":-1}`: "rope_scaling.beta_fast: must be a finite non-negative number (got -1)",
	} {
		if _, err := Parse([]byte(add(extra))); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: err = %v, want %q", extra, err, msg)
		}
	}
}
