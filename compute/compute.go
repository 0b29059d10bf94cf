// Package compute holds moe's numerical kernels: GEMM/GEMV, element-wise
// transformer ops and the optimizer update, as plain Go functions over
// row-major float32 slices. Fast SIMD paths are chosen at run time, with a
// portable fallback that is always tested against them.
//
// The matrix kernels (Gemm, Gemv, Dot, Axpy, the bf16 variants and the
// pre-packed weights) split their work over a Pool of persistent workers;
// Pool.Run is a parallel-for that other packages may use too. CPUFeatures
// says which path this machine runs.
package compute
