// Package compute holds moe's numerical kernels: GEMM/GEMV, element-wise
// transformer ops and the optimizer update, as plain Go functions over
// row-major float32 slices. Fast SIMD paths are chosen at run time, with a
// portable fallback that is always tested against them.
//
// The matrix kernels (Gemm, which is also the batch-1 decode GEMV with
// m = 1; GemmBF16 and GemmBF16T over bf16 weights; GemmBF16Mixed for bf16
// mixed-precision training; GemmPanels over weights packed once by
// PackPanels) split their work over a Pool of persistent workers; Pool.Run
// is a parallel-for that other packages may use too. QMatMul multiplies by
// a weight matrix kept in its stored GGUF type (ggml's block layouts,
// QType), quantizing the activations to 8 bits once per call as ggml's CPU
// backend does. Dot is the vectorised dot product. CPUFeatures says which
// path this machine runs ("avx512", "avx2" or "generic"; build with -tags
// purego to force the portable Go path). Only what other packages call is
// exported; docs/compute.md lists the API.
package compute
