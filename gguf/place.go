package gguf

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/moe-llm/moe/internal/memest"
)

// Placement says where an opened model's tensor bytes live while it runs.
type Placement int

const (
	// PlaceAuto copies the weights onto transparent huge pages (PlaceHuge)
	// when the system offers them and the copy fits comfortably in the
	// available memory, and otherwise uses the mapping in place.
	PlaceAuto Placement = iota
	// PlaceMapped uses the file's read-only mapping in place: the weights
	// are the page cache's pages, resident memory is the pages touched, and
	// the first token comes soonest.
	PlaceMapped
	// PlaceHuge reads the file into anonymous memory backed by 2 MB
	// transparent huge pages. Decoding streams the whole active model per
	// token; over 4 KB page-cache pages every 4 KB costs a TLB miss and a
	// page walk, which on this project's machines held decode at 75–90%
	// of the rate the same kernels reach on huge pages. The read costs a
	// fraction of a second per GB at start (from the page cache) and the
	// resident memory is the whole file, where the mapping holds only the
	// pages touched.
	PlaceHuge
)

// String returns the placement's flag spelling.
func (p Placement) String() string {
	switch p {
	case PlaceMapped:
		return "mmap"
	case PlaceHuge:
		return "huge"
	}
	return "auto"
}

// ParsePlacement reads a placement's flag spelling: auto, mmap or huge.
func ParsePlacement(s string) (Placement, error) {
	for _, p := range []Placement{PlaceAuto, PlaceMapped, PlaceHuge} {
		if p.String() == s {
			return p, nil
		}
	}
	return PlaceAuto, fmt.Errorf("unknown weight placement %q (want auto, mmap or huge)", s)
}

// place moves a mapped file's bytes as p asks. PlaceHuge fails where
// huge pages or mapping are unavailable; PlaceAuto then keeps the mapping.
func (f *File) place(p Placement) error {
	if f.data == nil && p == PlaceHuge {
		return fmt.Errorf("gguf: weights on huge pages need a memory-mapped file, which this platform does not give")
	}
	if f.data == nil || p == PlaceMapped {
		return nil
	}
	if p == PlaceAuto {
		if !hugePagesOffered() {
			return nil
		}
		// Copy only when twice the file still fits: the copy must not push
		// the page cache (or other programs) out.
		if avail, _, err := memest.Available(); err != nil || avail < 2*int64(len(f.data)) {
			return nil
		}
	}
	r, ok := f.closer.(io.ReaderAt)
	if !ok {
		return fmt.Errorf("gguf: copying the weights onto huge pages needs the open file")
	}
	data, unmap, err := copyToHugePages(r, len(f.data))
	if err != nil {
		if p == PlaceAuto {
			slog.Debug("gguf: weights stay mapped in place", "err", err)
			return nil
		}
		return fmt.Errorf("gguf: copying the weights onto huge pages: %w", err)
	}
	if err := f.unmap(); err != nil {
		unmap()
		return fmt.Errorf("gguf: unmapping the file after copying it: %w", err)
	}
	f.data, f.unmap = data, unmap
	return nil
}
