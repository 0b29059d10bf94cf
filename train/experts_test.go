package train

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/model"
)

// TestExpertRolesTelemetry trains on two named sources and checks the
// routing telemetry: every routing of every training token is counted
// under its source (tokens × k per layer, both sources present), an
// interrupted and resumed run counts the same as an uninterrupted one,
// and the table and heat map render.
func TestExpertRolesTelemetry(t *testing.T) {
	o := microOptions(t, "")
	dir := t.TempDir()
	src, err := os.ReadFile("experts.go")
	if err != nil {
		t.Fatal(err)
	}
	// Many small documents, so that the mixture draws code early.
	code := filepath.Join(dir, "code")
	if err := os.Mkdir(code, 0o755); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(src), "\n")
	for i := 0; i*20 < len(lines); i++ {
		chunk := strings.Join(lines[i*20:min(len(lines), (i+1)*20)], "\n")
		if err := os.WriteFile(filepath.Join(code, fmt.Sprintf("f%02d.txt", i)), []byte(chunk), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The text too as many small documents (a long file is few documents).
	corpus, err := os.ReadFile(o.Data[0])
	if err != nil {
		t.Fatal(err)
	}
	text := filepath.Join(dir, "text")
	if err := os.Mkdir(text, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 40; i++ {
		if err := os.WriteFile(filepath.Join(text, fmt.Sprintf("t%02d.txt", i)), corpus[i*1500:(i+1)*1500], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	o.Data = []string{"text=" + text, "code=" + code + "@6"} // six epochs: drawn as often as the text
	o.Steps = 12
	o.Out = t.TempDir()
	ck, _ := interruptAndResumeIn(t, o)
	roles, err := ReadExpertRoles(o.Out)
	if err != nil {
		t.Fatal(err)
	}
	if len(roles.Sources) != 2 || roles.Sources[0] != "text" || roles.Sources[1] != "code" {
		t.Fatalf("sources %v", roles.Sources)
	}
	for l, ls := range roles.Counts {
		var total uint64
		for s, c := range ls {
			var n uint64
			for _, v := range c {
				n += v
			}
			if n == 0 {
				t.Fatalf("layer %d: no routings counted for source %s (%v, %d tokens)", l, roles.Sources[s], roles.Counts, ck.Header.Tokens)
			}
			total += n
		}
		if want := uint64(ck.Header.Tokens) * 2; total != want {
			t.Fatalf("layer %d: %d routings counted, want tokens × k = %d", l, total, want)
		}
	}
	// interruptAndResumeIn compared the checkpoints' train states, so the
	// resumed run counted exactly what the uninterrupted one did.
	var tbl bytes.Buffer
	if err := roles.WriteTable(&tbl); err != nil {
		t.Fatal(err)
	}
	if s := tbl.String(); !strings.Contains(s, "from text") || !strings.Contains(s, "code pref") || !strings.Contains(s, "layer 1") {
		t.Fatalf("table:\n%s", s)
	}
	b, err := roles.PNG()
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	// 2 layers × 2 sources × 16 px + 3 gaps; 4 experts × 16 px + 2 gaps.
	if r := img.Bounds(); r.Dx() != 2*2*16+3*8 || r.Dy() != 4*16+2*8 {
		t.Fatalf("heat map %v", r)
	}
}

// TestEvaluateRoles counts the routing of held-out tokens under their
// source: tokens × k per layer, the padding of the last batch excluded.
func TestEvaluateRoles(t *testing.T) {
	cfg := &config.Config{ModelType: "mixtral", VocabSize: 16, HiddenSize: 8, IntermediateSize: 8, NumLayers: 2,
		NumHeads: 2, MaxPositionEmbeddings: 16, NumExperts: 4, ExpertsPerToken: 2, RopeTheta: 10000}
	m, err := model.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(1)
	roles := NewExpertRoles([]string{"a", "b"}, 2, 4)
	ids := make([]int32, 30)
	for i := range ids {
		ids[i] = int32(i % 16)
	}
	// 29 predicted tokens in windows of 8, batches of 2: the last batch pads.
	if _, err := EvaluateRoles(context.Background(), NewModel(m, true), roles, 1, ids, 2, 8, 0, nil); err != nil {
		t.Fatal(err)
	}
	for l := range roles.Counts {
		var a, b uint64
		for e := 0; e < 4; e++ {
			a += roles.Counts[l][0][e]
			b += roles.Counts[l][1][e]
		}
		if a != 0 || b != 29*2 {
			t.Fatalf("layer %d: %d routings under a, %d under b; want 0 and %d", l, a, b, 29*2)
		}
	}
	if _, err := EvaluateRoles(context.Background(), NewModel(m, true), roles, 2, ids, 2, 8, 0, nil); err == nil {
		t.Fatal("source 2 of 2 accepted")
	}
}
