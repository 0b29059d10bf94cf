package compute

import "fmt"

// PanelCols is the width of the column panels PackPanels lays out.
const PanelCols = 64

// panelKB is the depth block of GemmPanels (as in gemmRowAxpy).
const panelKB = 128

// PanelsLen returns the floats PackPanels needs for an n×k matrix.
func PanelsLen(n, k int) int { return (n + PanelCols - 1) / PanelCols * PanelCols * k }

// PackPanels lays out w, an n×k row-major matrix (a weight stored out×in),
// as ⌈n/64⌉ panels of k×64 floats (in×out, the last zero-padded) into dst
// (PanelsLen(n, k) floats), the layout GemmPanels streams: a panel is one
// contiguous run of memory, read front to back.
func PackPanels(dst, w []float32, n, k int) error {
	if n < 0 || k < 0 || len(w) < n*k || len(dst) < PanelsLen(n, k) {
		return fmt.Errorf("compute: PackPanels: %d×%d matrix of %d floats into %d (need %d)", n, k, len(w), len(dst), PanelsLen(n, k))
	}
	const t = 16
	for p := 0; p*PanelCols < n; p++ {
		panel := dst[p*PanelCols*k : (p+1)*PanelCols*k]
		cols := min(PanelCols, n-p*PanelCols)
		if cols < PanelCols {
			clear(panel)
		}
		for l0 := 0; l0 < k; l0 += t {
			for j := 0; j < cols; j++ {
				row := w[(p*PanelCols+j)*k:]
				for l := l0; l < min(k, l0+t); l++ {
					panel[l*PanelCols+j] = row[l]
				}
			}
		}
	}
	return nil
}

// GemmPanels computes columns [j0, j1) of C = A·Wᵀ on the calling goroutine
// for m rows of A (m×k, stride lda) and W packed by PackPanels (n×k); j0 must
// be a multiple of 64 and j1 <= n. It is the small-batch (decode,
// verification, serving step) product: each panel is streamed once per six
// rows of A with broadcast-FMA kernels, and every output is summed over the
// depth in the same order whatever m is, so a row's result does not depend
// on the batch. Bad arguments panic.
func GemmPanels(m, n, k int, a []float32, lda int, panels []float32, j0, j1 int, c []float32, ldc int) {
	if m < 0 || k < 0 || j0 < 0 || j0%PanelCols != 0 || j1 > n || j0 > j1 || lda < k || ldc < j1 ||
		len(panels) < PanelsLen(n, k) || (m > 0 && (len(a) < (m-1)*lda+k || len(c) < (m-1)*ldc+j1)) {
		panic(fmt.Errorf("compute: GemmPanels: bad arguments m=%d n=%d k=%d lda=%d j0=%d j1=%d ldc=%d (A %d, panels %d, C %d floats)",
			m, n, k, lda, j0, j1, ldc, len(a), len(panels), len(c)))
	}
	if m == 0 || j0 == j1 {
		return
	}
	ks := defaultKernels
	rstep := 6
	if ks.rowAxpy != nil {
		rstep = min(6, ks.rowAxpyRows)
	}
	// tail holds a partial last panel's rows, zero-padded; made only when
	// one is met (a fixed array would escape through ks.rowAxpy and cost an
	// allocation and a clear on every call).
	var tail []float32
	for j := j0; j < j1; j += PanelCols {
		panel := panels[j/PanelCols*PanelCols*k:]
		cols := min(PanelCols, n-j)
		for i0 := 0; i0 < m; i0 += rstep {
			ma := min(rstep, m-i0)
			dst, ldd := c[i0*ldc+j:], ldc
			if cols < PanelCols {
				if tail == nil {
					tail = make([]float32, PanelCols*rstep)
				}
				dst, ldd = tail, PanelCols
			}
			for i := 0; i < ma; i++ {
				clear(dst[i*ldd : i*ldd+PanelCols])
			}
			for l0 := 0; l0 < k; l0 += panelKB {
				kb := min(panelKB, k-l0)
				as := a[i0*lda+l0:]
				if ks.rowAxpy != nil {
					ks.rowAxpy(ma, 4, kb, as[:(ma-1)*lda+kb], lda, panel[l0*PanelCols:(l0+kb)*PanelCols], PanelCols, dst[:(ma-1)*ldd+PanelCols], ldd, 1)
					continue
				}
				for i := 0; i < ma; i++ {
					crow := dst[i*ldd : i*ldd+PanelCols]
					var acc [PanelCols]float32
					for l := 0; l < kb; l++ {
						av := as[i*lda+l]
						for jj, bv := range panel[(l0+l)*PanelCols : (l0+l+1)*PanelCols] {
							acc[jj] += av * bv
						}
					}
					for jj := range crow {
						crow[jj] += acc[jj]
					}
				}
			}
			if cols < PanelCols {
				for i := 0; i < ma; i++ {
					copy(c[(i0+i)*ldc+j:(i0+i)*ldc+j+cols], tail[i*PanelCols:i*PanelCols+cols])
				}
			}
		}
	}
}
