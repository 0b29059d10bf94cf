// Package compute holds moe's numerical kernels: GEMM/GEMV, element-wise
// transformer ops and the optimizer update, as plain Go functions over
// row-major float32 slices. Fast SIMD paths are chosen at run time, with a
// portable fallback that is always tested against them.
//
// The matrix kernels (Gemm, GemmBatched, Gemv, the bf16 variants GemmBF16 and
// GemvBF16, and GemmPacked over weights packed once by PackB) split their
// work over a Pool of persistent workers; Pool.Run is a parallel-for that
// other packages may use too. QMatMul multiplies by a weight matrix kept in
// its stored GGUF type (ggml's block layouts, QType), quantizing the
// activations to 8 bits once per call as ggml's CPU backend does. Sdot and Axpy are the vectorised level-1
// kernels. CPUFeatures says which path this machine runs ("avx512", "avx2"
// or "generic"; build with -tags purego to force the portable Go path).
package compute
