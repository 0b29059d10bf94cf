package infer

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestNgramDrafterCases(t *testing.T) {
	for _, c := range []struct {
		name       string
		ctx        []int32
		k          int
		minN, maxN int
		want       []int32
	}{
		{"bigram", []int32{1, 2, 3, 4, 1, 2}, 3, 0, 0, []int32{3, 4, 1}},
		{"latest occurrence", []int32{1, 2, 5, 1, 2, 6, 1, 2}, 2, 0, 0, []int32{6, 1}},
		{"longest match first", []int32{1, 2, 3, 9, 2, 4, 1, 2}, 2, 0, 0, []int32{3, 9}},
		{"copy overlaps its output", []int32{1, 2, 1, 2}, 5, 0, 0, []int32{1, 2, 1, 2, 1}},
		{"continuation cut at k", []int32{7, 8, 9, 10, 11, 7}, 2, 0, 0, []int32{8, 9}},
		{"no match", []int32{1, 2, 3}, 4, 0, 0, nil},
		{"one token", []int32{5}, 4, 0, 0, nil},
		{"k 0", []int32{1, 2, 1}, 0, 0, 0, nil},
		{"min n excludes unigrams", []int32{1, 2, 3, 9, 2}, 2, 2, 3, nil},
		{"max n 1 takes the latest unigram", []int32{1, 2, 3, 9, 2, 4, 1, 2}, 1, 1, 1, []int32{4}},
	} {
		d := NgramDrafter{MinN: c.minN, MaxN: c.maxN}
		got, qs, err := d.Propose(c.ctx, c.k)
		if err != nil || qs != nil {
			t.Fatalf("%s: err %v, qs %v", c.name, err, qs)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: proposed %v, want %v", c.name, got, c.want)
		}
	}
}

// ngramRef is prompt lookup written the naive way: every n-gram position
// compared, the largest n with a match wins, then the latest position; the
// proposal reads the context extended by itself.
func ngramRef(ctx []int32, k, minN, maxN int) []int32 {
	L := len(ctx)
	for n := maxN; n >= minN; n-- {
		if n >= L {
			continue
		}
		best := -1
		for i := 0; i+n < L; i++ {
			if slices.Equal(ctx[i:i+n], ctx[L-n:]) {
				best = i
			}
		}
		if best < 0 {
			continue
		}
		ext := slices.Clone(ctx)
		for j := best + n; len(ext) < L+k; j++ {
			ext = append(ext, ext[j])
		}
		return ext[L:]
	}
	return nil
}

func TestNgramDrafterMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var d NgramDrafter
	for it := 0; it < 3000; it++ {
		ctx := make([]int32, 1+r.IntN(40))
		alpha := 2 + r.IntN(6)
		for i := range ctx {
			ctx[i] = int32(r.IntN(alpha))
		}
		k := r.IntN(7)
		got, _, _ := d.Propose(ctx, k)
		want := ngramRef(ctx, k, 1, 3)
		if k == 0 {
			want = nil
		}
		if !slices.Equal(got, want) {
			t.Fatalf("ctx %v k %d: proposed %v, want %v", ctx, k, got, want)
		}
	}
}

// TestNgramGreedyIdentity checks that greedy decoding with prompt lookup
// gives exactly the tokens of plain decoding, with fixed and adaptive K,
// and that it does propose (the prompt repeats itself).
func TestNgramGreedyIdentity(t *testing.T) {
	target, _ := specPair(t)
	ctx := context.Background()
	prompt := []int32{1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2}
	plain, err := target.Generate(ctx, prompt, GenerateOptions{MaxTokens: 40}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		k     int
		fixed bool
	}{{1, true}, {4, true}, {8, true}, {4, false}} {
		var streamed []int32
		res, err := target.Generate(ctx, prompt, GenerateOptions{MaxTokens: 40, Drafter: &NgramDrafter{}, DraftTokens: c.k, FixedDraftTokens: c.fixed},
			func(tok int32) error { streamed = append(streamed, tok); return nil })
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.Tokens, plain.Tokens) || !slices.Equal(streamed, plain.Tokens) {
			t.Fatalf("K=%d fixed=%v: prompt-lookup greedy differs:\n%v\n%v", c.k, c.fixed, res.Tokens, plain.Tokens)
		}
		if c.fixed && (res.Proposed == 0 || res.Accepted == 0) {
			t.Fatalf("K=%d: proposed %d, accepted %d", c.k, res.Proposed, res.Accepted)
		}
		t.Logf("K=%d fixed=%v: proposed %d accepted %d rounds %d final K %d", c.k, c.fixed, res.Proposed, res.Accepted, res.Rounds, res.FinalDraftTokens)
	}
}

// TestVerifyDraftsGreedy checks the greedy acceptance rule on hand-made
// rows: drafts are kept while they are the row's argmax.
func TestVerifyDraftsGreedy(t *testing.T) {
	rows := []float32{
		0, 5, 1, // argmax 1
		2, 0, 1, // argmax 0
		0, 0, 9, // argmax 2
	}
	for _, c := range []struct {
		drafts []int32
		acc    int
		next   int32
	}{{[]int32{1, 0}, 2, 2}, {[]int32{1, 2}, 1, 0}, {[]int32{2, 0}, 0, 1}} {
		acc, next := VerifyDrafts(nil, rows, c.drafts, nil, nil, nil)
		if acc != c.acc || next != c.next {
			t.Errorf("drafts %v: accepted %d next %d, want %d %d", c.drafts, acc, next, c.acc, c.next)
		}
	}
}
