//go:build amd64 && !purego

package compute

import "testing"

// TestQKernelCoverage checks that every type QMatMul supports has an
// AVX-512 and an AVX2 kernel, so that none silently falls back to Go.
func TestQKernelCoverage(t *testing.T) {
	for _, ty := range qTestTypes {
		for _, ks := range []*qKernels{qAVX512, qAVX2} {
			_, q := ks.quant[ty]
			_, f := ks.float[ty]
			_, f2 := ks.float2[ty]
			if !q && !f && !f2 {
				t.Errorf("%s: no %s kernel", ty, ks.name)
			}
		}
	}
	if QMatMulKernels() == "" {
		t.Error("QMatMulKernels is empty")
	}
}
