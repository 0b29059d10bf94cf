package infer

// panelsOff removes the packed panels of every matrix (so that small
// products take the GEMM over the matrices as stored) and returns the
// function that puts them back.
func (m *Model) panelsOff() (restore func()) {
	var ls []*Linear
	var ps [][]float32
	m.forEachLinear(func(l *Linear, _ bool) {
		ls = append(ls, l)
		ps = append(ps, l.panels)
		l.panels = nil
	})
	return func() {
		for i, l := range ls {
			l.panels = ps[i]
		}
	}
}
