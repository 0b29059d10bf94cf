package model

import (
	"fmt"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/internal/scratch"
)

// Precision is the arithmetic of a model's matmuls. Parameters, gradients,
// activations and accumulation stay float32 either way.
type Precision int

const (
	// F32 multiplies float32 inputs (the default).
	F32 Precision = iota
	// BF16 rounds the inputs of every matmul to bfloat16 — those with a
	// weight matrix (the q/k/v and output projections, router, experts,
	// dense and shared FFNs, LM head) and the attention score and value
	// products — in the forward pass and in both backward products (input
	// and weight gradients), accumulating in float32
	// (compute.GemmBF16Mixed, on the AVX-512 BF16 dot-product instructions
	// where the CPU has them): mixed-precision training with float32
	// master weights. The softmax, norms and everything elementwise stay
	// float32.
	BF16
)

// String returns the flag spelling: "float32" or "bf16".
func (p Precision) String() string {
	if p == BF16 {
		return "bf16"
	}
	return "float32"
}

// ParsePrecision parses a --precision value: "float32" (or "fp32", "f32",
// "") or "bf16".
func ParsePrecision(s string) (Precision, error) {
	switch s {
	case "", "float32", "fp32", "f32":
		return F32, nil
	case "bf16", "bfloat16":
		return BF16, nil
	}
	return F32, fmt.Errorf("precision %q: want float32 or bf16", s)
}

// SetPrecision selects the arithmetic of every matmul of Forward and
// Backward from the next call on.
func (m *Model) SetPrecision(p Precision) { m.precision = p }

// Precision returns the arithmetic of the model's matmuls.
func (m *Model) Precision() Precision { return m.precision }

// attnGemm is gemm for the attention score and value products, each on
// one thread: the callers already spread the (sequence, head) jobs over
// the pool.
func (m *Model) attnGemm(transA, transB bool, rows, cols, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	m.gemm(m.pool.Serial(), transA, transB, rows, cols, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// bf16Scratch returns *buf grown to n elements when the model's matmuls
// are bf16 and the depth k of the product it feeds is even, else nil. The
// producer of an untransposed A operand then writes A's bf16 copy there
// (putBF16) while each row is still in cache, and gemmA reads it in place
// of converting A again. Call it outside parallel sections.
func (m *Model) bf16Scratch(buf *[]compute.BF16, n, k int) []compute.BF16 {
	if m.precision != BF16 || k%2 != 0 || m.noBF16Copies {
		return nil
	}
	*buf = scratch.Grow(*buf, n)
	return *buf
}

// putBF16 writes dst's bf16 copy of src (compute.ConvertBF16Mixed) when
// dst is not nil.
func putBF16(dst []compute.BF16, src []float32) {
	if dst != nil {
		compute.ConvertBF16Mixed(dst[:len(src)], src)
	}
}

// gemmA is gemm for an untransposed A: a16, when not nil, is A's bf16 copy
// (same row stride), which the product reads instead of converting a (the
// same bits).
func (m *Model) gemmA(p *compute.Pool, transB bool, rows, cols, k int, alpha float32, a []float32, a16 []compute.BF16, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if a16 != nil {
		compute.GemmBF16MixedA(p, transB, rows, cols, k, alpha, a16, lda, b, ldb, beta, c, ldc)
		return
	}
	m.gemm(p, false, transB, rows, cols, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// gemmTA is gemm for a transposed A and an untransposed B (the weight
// gradients dW = dYᵀ·X): a16, when not nil, is A's bf16 copy (same row
// stride), whose words the product packs instead of converting a (the same
// bits, half the bytes read).
func (m *Model) gemmTA(p *compute.Pool, rows, cols, k int, alpha float32, a []float32, a16 []compute.BF16, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if a16 != nil {
		compute.GemmBF16MixedTA(p, false, rows, cols, k, alpha, a16, lda, b, ldb, beta, c, ldc)
		return
	}
	m.gemm(p, true, false, rows, cols, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// gemm is compute.Gemm in the model's precision.
func (m *Model) gemm(p *compute.Pool, transA, transB bool, rows, cols, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m.precision == BF16 {
		compute.GemmBF16Mixed(p, transA, transB, rows, cols, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	compute.Gemm(p, transA, transB, rows, cols, k, alpha, a, lda, b, ldb, beta, c, ldc)
}
