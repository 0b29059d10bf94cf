package infer

import (
	"github.com/moe-llm/moe/compute"
)

// addRowBias adds bias to every row of x (rows of len(bias)); a nil bias
// adds nothing.
func addRowBias(x, bias []float32) {
	n := len(bias)
	if n == 0 {
		return
	}
	for o := 0; o+n <= len(x); o += n {
		compute.Add(x[o:o+n], bias)
	}
}
