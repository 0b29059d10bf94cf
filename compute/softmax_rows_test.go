package compute

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestRowMaxMatchesGeneric checks the vector row maximum against the scalar
// one for every length up to 70 and the shared sizes, with the maximum at
// every kind of position (vector body, second accumulator, masked tail).
func TestRowMaxMatchesGeneric(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	sizes := slices.Clone(ewSizes)
	for n := 1; n <= 70; n++ {
		sizes = append(sizes, n)
	}
	for _, n := range sizes {
		for trial := 0; trial < 4; trial++ {
			x := randVec(r, n, 3)
			for i := range x {
				x[i] -= 100 // all negative: a zero-initialised lane would win
			}
			x[r.IntN(n)] = -50
			want := rowMaxGeneric(x)
			if got := rowMax(x); got != want || want != -50 {
				t.Fatalf("n=%d: rowMax = %v, generic %v, want -50", n, got, want)
			}
		}
	}
}

// TestSoftmaxBackwardScaledAgainstReference checks dx = s·y⊙(dy − Σdy·y)
// against float64, in place and out of place.
func TestSoftmaxBackwardScaledAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range append(slices.Clone(ewSizes), 16, 31, 32, 33) {
		x := randVec(r, n, 2)
		SoftmaxRow(x)
		dy := randVec(r, n, 1)
		for _, s := range []float32{1, 0.17677669} {
			var dot float64
			for i := range x {
				dot += float64(dy[i]) * float64(x[i])
			}
			want := make([]float64, n)
			for i := range x {
				want[i] = float64(s) * float64(x[i]) * (float64(dy[i]) - dot)
			}
			dx := make([]float32, n)
			SoftmaxBackwardScaled(dx, dy, x, s)
			checkVec(t, "dx", dx, want, 1e-4, 1e-6)
			inPlace := slices.Clone(dy)
			SoftmaxBackwardScaled(inPlace, inPlace, x, s)
			if !slices.Equal(inPlace, dx) {
				t.Fatalf("n=%d: in-place result differs", n)
			}
			gen := make([]float32, n)
			softmaxBwdRowGeneric(gen, dy, x, Dot(x, dy), s)
			if !slices.Equal(gen, dx) {
				t.Fatalf("n=%d: vector kernel differs from the generic one", n)
			}
		}
	}
}

// TestSoftmaxRowLSEAgainstReference checks the softmax values and the
// returned logsumexp against float64 on rows of every tail length.
func TestSoftmaxRowLSEAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for n := 1; n <= 70; n++ {
		x := randVec(r, n, 4)
		want, wantLSE := softmax64(x)
		lse := SoftmaxRowLSE(x)
		checkVec(t, "softmax", x, want, 1e-5, 1e-7)
		if !closeTo(lse, wantLSE, 1e-6, 1e-6) {
			t.Fatalf("n=%d: lse %v, want %v", n, lse, wantLSE)
		}
	}
}

// lse64 returns log Σ exp(x_i) in float64, the maximum subtracted first.
func lse64(x []float32) float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, float64(v))
	}
	var sum float64
	for _, v := range x {
		sum += math.Exp(float64(v) - m)
	}
	return m + math.Log(sum)
}

// softmax64 returns softmax(x) and log Σ exp(x_i) in float64.
func softmax64(x []float32) ([]float64, float64) {
	lse := lse64(x)
	p := make([]float64, len(x))
	for i, v := range x {
		p[i] = math.Exp(float64(v) - lse)
	}
	return p, lse
}

// TestLogSumExpVectorMax checks LogSumExp (vector maximum first) against
// float64 and its non-finite cases on rows long enough for the vector path.
func TestLogSumExpVectorMax(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, n := range []int{1, 15, 16, 17, 40, 257} {
		x := randVec(r, n, 5)
		if got, want := LogSumExp(x), lse64(x); math.Abs(got-want) > 1e-5*math.Max(1, math.Abs(want)) {
			t.Fatalf("n=%d: LogSumExp %v, want %v", n, got, want)
		}
		inf, nan := float32(math.Inf(1)), float32(math.NaN())
		y := slices.Clone(x)
		y[n/3] = inf
		if got := LogSumExp(y); !math.IsInf(got, 1) {
			t.Fatalf("n=%d: with +Inf got %v", n, got)
		}
		if n > 1 {
			y[n-1] = nan
			if got := LogSumExp(y); !math.IsNaN(got) {
				t.Fatalf("n=%d: with +Inf and NaN got %v", n, got)
			}
		}
		z := slices.Clone(x)
		z[n/2] = nan
		if got := LogSumExp(z); !math.IsNaN(got) {
			t.Fatalf("n=%d: with NaN got %v", n, got)
		}
	}
}

// TestSoftmaxRowSinkAgainstReference checks the softmax with a sink logit
// against float64 for sinks below, inside and above the row's range, and a
// row with masked (−Inf) entries as sliding-window attention makes them.
func TestSoftmaxRowSinkAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for n := 1; n <= 70; n++ {
		for _, sink := range []float32{-20, 0.3, 9} {
			x := randVec(r, n, 4)
			if n > 3 {
				x[0], x[1] = float32(math.Inf(-1)), float32(math.Inf(-1))
			}
			m := float64(sink)
			for _, v := range x {
				m = math.Max(m, float64(v))
			}
			sum := math.Exp(float64(sink) - m)
			for _, v := range x {
				sum += math.Exp(float64(v) - m)
			}
			want := make([]float64, n)
			for i, v := range x {
				want[i] = math.Exp(float64(v)-m) / sum
			}
			SoftmaxRowSink(x, sink)
			checkVec(t, "softmax with sink", x, want, 1e-5, 1e-7)
		}
	}
}
