// Package stattest holds the chi-square goodness-of-fit test that moe's
// tests use to check that a sampler (plain, speculative, distilled or
// n-gram drafted) draws from the distribution it should.
package stattest

import "math"

// ChiSquare returns Pearson's statistic of counts (n draws in all) against
// the probabilities probs, and its degrees of freedom. Outcomes whose
// expected count is below 5 are pooled into one cell, and so are outcomes
// probs does not hold, so an impossible outcome drawn even once makes the
// statistic huge.
func ChiSquare[K comparable](counts map[K]int, probs map[K]float64, n int) (stat float64, df int) {
	var poolE float64
	poolO, cells := 0, 0
	for k, p := range probs {
		e := p * float64(n)
		if e < 5 {
			poolE += e
			poolO += counts[k]
			continue
		}
		o := float64(counts[k])
		stat += (o - e) * (o - e) / e
		cells++
	}
	for k, c := range counts {
		if _, ok := probs[k]; !ok && c > 0 {
			poolO += c // impossible outcome
		}
	}
	if poolE > 0 || poolO > 0 {
		e := math.Max(poolE, 1e-9)
		stat += (float64(poolO) - e) * (float64(poolO) - e) / e
		cells++
	}
	return stat, cells - 1
}

// ChiSquareDense is ChiSquare for outcomes 0..len(weights)−1: counts[i]
// draws of outcome i against probabilities proportional to weights
// (entries 0 are impossible outcomes).
func ChiSquareDense[F float32 | float64](counts []int, weights []F) (stat float64, df int) {
	var total float64
	for _, w := range weights {
		total += float64(w)
	}
	c, p := map[int]int{}, map[int]float64{}
	n := 0
	for i, k := range counts {
		c[i] = k
		n += k
	}
	for i, w := range weights {
		if w > 0 {
			p[i] = float64(w) / total
		}
	}
	return ChiSquare(c, p, n)
}

// Critical approximates the 1−10⁻⁴ quantile of χ²(df) (Wilson–Hilferty),
// so a correct sampler fails a test about once in 10⁴ seeds.
func Critical(df int) float64 {
	const z = 3.719
	k := float64(df)
	a := 2 / (9 * k)
	return k * math.Pow(1-a+z*math.Sqrt(a), 3)
}
