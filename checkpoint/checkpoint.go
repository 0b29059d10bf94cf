// Package checkpoint reads and writes moe's training checkpoints: the model
// weights, the optimizer state and everything needed to resume a run
// exactly (step, data position, RNG state, hyper-parameters), in one file
// that is written atomically and carries a checksum.
//
// # File format (version 1)
//
// All integers and floats are little-endian.
//
//	offset  size  content
//	0       8     magic "MOECKPT\x00"
//	8       4     format version (uint32, currently 1)
//	12      4     header length H in bytes (uint32)
//	16      H     header: UTF-8 JSON, see Header
//	16+H    P     zero padding so that the first section starts at a multiple of 64
//	...           the sections named in Header.Sections, in that order, each
//	              Count float32 values (IEEE 754 binary32) back to back
//	end-4   4     CRC-32C (Castagnoli) of every byte before it
//
// A file shorter or longer than the header says, or whose checksum does not
// match, is rejected with an error naming the file.
//
// Training writes "weights", "adam_m" and "adam_v" sections; a model-only
// checkpoint (e.g. from an import) holds just "weights". Files in a run
// directory are named checkpoint-<step, 8 digits>.moeckpt; Save keeps the
// newest few and removes older ones.
package checkpoint

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/internal/atomicfile"
	"github.com/moe-llm/moe/internal/memest"
	"github.com/moe-llm/moe/model"
)

// Magic is the 8 bytes every checkpoint file starts with.
const Magic = "MOECKPT\x00"

// Version is the format version this package writes.
const Version = 1

// Ext is the file name extension of checkpoint files.
const Ext = ".moeckpt"

// Section names used by training.
const (
	SectionWeights = "weights" // model parameters in model.Weights' flat layout
	SectionAdamM   = "adam_m"  // AdamW first moments, same layout
	SectionAdamV   = "adam_v"  // AdamW second moments, same layout
)

// maxHeader bounds the header length a reader accepts.
const maxHeader = 64 << 20

// maxSections and maxSectionValues bound a header's section list: a
// checkpoint holds three sections, and 2^40 float32s are 4 TiB.
const (
	maxSections      = 1 << 10
	maxSectionValues = 1 << 40
)

// Optimizer holds the AdamW hyper-parameters of a run.
type Optimizer struct {
	Beta1       float64 `json:"beta1"`
	Beta2       float64 `json:"beta2"`
	Eps         float64 `json:"eps"`
	WeightDecay float64 `json:"weight_decay"`
	GradClip    float64 `json:"grad_clip"`
	// Step is the number of AdamW updates applied so far (the t of the bias
	// correction).
	Step int `json:"step"`
}

// Schedule holds the learning-rate schedule: linear warmup to LR over
// WarmupSteps, then cosine decay to MinLR at TotalSteps.
type Schedule struct {
	LR          float64 `json:"lr"`
	MinLR       float64 `json:"min_lr"`
	WarmupSteps int     `json:"warmup_steps"`
	TotalSteps  int     `json:"total_steps"`
}

// SectionInfo names one float32 section of the file and its length.
type SectionInfo struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

// Header is the JSON header of a checkpoint.
type Header struct {
	// Step is the number of optimizer steps completed.
	Step int `json:"step"`
	// Tokens is the number of training tokens consumed.
	Tokens int64 `json:"tokens"`
	// Seed is the run's seed.
	Seed uint64 `json:"seed"`
	// Threads is the thread count the run used (bit-exact resume needs the same).
	Threads int `json:"threads,omitempty"`
	// Config is the model.
	Config *config.Config `json:"config"`
	// Loader is the training data loader's position, as the data package
	// serialises it.
	Loader json.RawMessage `json:"loader,omitempty"`
	// RNG is the serialised state of the run's random number generator.
	RNG []byte `json:"rng,omitempty"`
	// Optimizer and Schedule are the optimizer hyper-parameters.
	Optimizer Optimizer `json:"optimizer"`
	Schedule  Schedule  `json:"schedule"`
	// Train holds any further run options the trainer needs to resume.
	Train json.RawMessage `json:"train,omitempty"`
	// Created is the wall time the file was written (RFC 3339).
	Created string `json:"created,omitempty"`
	// Sections lists the float32 sections in file order. Save fills it in.
	Sections []SectionInfo `json:"sections"`
}

// Tensor is one named float32 section.
type Tensor struct {
	Name string
	Data []float32
}

// Checkpoint is a checkpoint read into memory.
type Checkpoint struct {
	Path     string
	Header   Header
	Sections []Tensor
}

// Section returns the named section's data, or nil when the file has none.
func (c *Checkpoint) Section(name string) []float32 {
	for _, s := range c.Sections {
		if s.Name == name {
			return s.Data
		}
	}
	return nil
}

// FileName returns the base name of the checkpoint of the given step.
func FileName(step int) string { return fmt.Sprintf("checkpoint-%08d%s", step, Ext) }

// stepOf parses the step out of a checkpoint base name.
func stepOf(name string) (int, bool) {
	if !strings.HasPrefix(name, "checkpoint-") || !strings.HasSuffix(name, Ext) {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(name, "checkpoint-"), Ext))
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// Save writes a checkpoint of h.Step into dir (atomically: temp file,
// fsync, rename, fsync of the directory), then removes all but the newest
// keep checkpoints of dir (keep <= 0 keeps all). It returns the new file's path.
func Save(dir string, h Header, sections []Tensor, keep int) (string, error) {
	path := filepath.Join(dir, FileName(h.Step))
	if err := WriteFile(path, h, sections); err != nil {
		return "", err
	}
	if keep > 0 {
		paths, err := List(dir)
		if err != nil {
			return path, err
		}
		for _, old := range paths[min(keep, len(paths)):] {
			if err := os.Remove(old); err != nil && !errors.Is(err, os.ErrNotExist) {
				return path, fmt.Errorf("checkpoint: removing old %s: %w", old, err)
			}
		}
	}
	return path, nil
}

// WriteFile writes one checkpoint file atomically to path.
func WriteFile(path string, h Header, sections []Tensor) (err error) {
	h.Sections = h.Sections[:0:0]
	for _, s := range sections {
		if s.Name == "" {
			return fmt.Errorf("checkpoint: section with empty name")
		}
		h.Sections = append(h.Sections, SectionInfo{Name: s.Name, Count: len(s.Data)})
	}
	if h.Created == "" {
		h.Created = time.Now().UTC().Format(time.RFC3339)
	}
	hdr, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("checkpoint: encoding header: %w", err)
	}
	f, err := atomicfile.Create(path, 0o644)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	defer f.Abort()
	tmp := f.Name()
	crc := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	bw := bufio.NewWriterSize(io.MultiWriter(f, crc), 1<<20)
	var pre [16]byte
	copy(pre[:8], Magic)
	binary.LittleEndian.PutUint32(pre[8:], Version)
	binary.LittleEndian.PutUint32(pre[12:], uint32(len(hdr)))
	bw.Write(pre[:])
	bw.Write(hdr)
	bw.Write(make([]byte, padding(len(hdr))))
	buf := make([]byte, 64<<10)
	for _, s := range sections {
		for i := 0; i < len(s.Data); {
			n := min(len(buf)/4, len(s.Data)-i)
			for j, x := range s.Data[i : i+n] {
				binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(x))
			}
			if _, err := bw.Write(buf[:4*n]); err != nil {
				return fmt.Errorf("checkpoint: writing %s: %w", tmp, err)
			}
			i += n
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("checkpoint: writing %s: %w", tmp, err)
	}
	var sum [4]byte
	binary.LittleEndian.PutUint32(sum[:], crc.Sum32())
	if _, err := f.Write(sum[:]); err != nil {
		return fmt.Errorf("checkpoint: writing %s: %w", tmp, err)
	}
	if err := f.Commit(); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// padding returns the zero bytes after a header of n bytes so that the
// sections start at a multiple of 64.
func padding(n int) int { return (64 - (16+n)%64) % 64 }

// List returns the checkpoint files of dir, newest (highest step) first.
// Temporary files of interrupted writes are ignored.
func List(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	type ck struct {
		step int
		path string
	}
	var cks []ck
	for _, e := range ents {
		if s, ok := stepOf(e.Name()); ok && e.Type().IsRegular() {
			cks = append(cks, ck{s, filepath.Join(dir, e.Name())})
		}
	}
	sort.Slice(cks, func(i, j int) bool { return cks[i].step > cks[j].step })
	out := make([]string, len(cks))
	for i, c := range cks {
		out[i] = c.path
	}
	return out, nil
}

// Latest returns the path of dir's newest checkpoint file.
func Latest(dir string) (string, error) {
	paths, err := List(dir)
	if err != nil {
		return "", err
	}
	if len(paths) == 0 {
		return "", fmt.Errorf("checkpoint: no checkpoint files (checkpoint-*%s) in %s", Ext, dir)
	}
	return paths[0], nil
}

// ReadResumable reads dir's newest checkpoint that verifies, for resuming
// a run. A newer one that does not (a crash mid-write on a filesystem
// without atomic rename, a flipped bit) is renamed to NAME.corrupt (kept
// for inspection, no longer listed) and reported in skipped. With no
// checkpoint files it returns nil and no error; when none verifies, the
// newest one's error.
func ReadResumable(dir string) (ck *Checkpoint, skipped []error, err error) {
	paths, err := List(dir)
	if err != nil {
		return nil, nil, err
	}
	for _, p := range paths {
		ck, err := ReadFile(p)
		if err == nil {
			return ck, skipped, nil
		}
		if len(skipped) == len(paths)-1 {
			// The oldest is bad too: leave the files as they are.
			if len(skipped) > 0 {
				return nil, skipped, fmt.Errorf("checkpoint: no checkpoint in %s verifies (newest: %w)", dir, skipped[0])
			}
			return nil, nil, err
		}
		if rerr := os.Rename(p, p+".corrupt"); rerr != nil {
			return nil, skipped, fmt.Errorf("checkpoint: setting aside corrupt %s: %w", p, rerr)
		}
		skipped = append(skipped, err)
	}
	return nil, nil, nil
}

// Resolve turns a run directory into its newest checkpoint file; a path
// that is a file is returned unchanged.
func Resolve(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	if st.IsDir() {
		return Latest(path)
	}
	return path, nil
}

// ReadFile reads and verifies a whole checkpoint file.
func ReadFile(path string) (*Checkpoint, error) {
	return read(path, func(string) bool { return true })
}

// ReadHeader reads only the header of a checkpoint file (without verifying
// the checksum of the rest).
func ReadHeader(path string) (*Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	defer f.Close()
	h, _, err := readHeader(bufio.NewReader(f), nil, path)
	return h, err
}

// readHeader reads the magic, version and header from r, feeding every
// byte to crc when it is not nil. It returns the header and the number of
// bytes consumed.
func readHeader(r io.Reader, crc hash.Hash32, path string) (*Header, int64, error) {
	if crc != nil {
		r = io.TeeReader(r, crc)
	}
	var pre [16]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return nil, 0, fmt.Errorf("checkpoint %s: truncated or not a checkpoint (short prefix): %w", path, err)
	}
	if string(pre[:8]) != Magic {
		return nil, 0, fmt.Errorf("checkpoint %s: not a moe checkpoint (bad magic %q)", path, pre[:8])
	}
	if v := binary.LittleEndian.Uint32(pre[8:]); v != Version {
		return nil, 0, fmt.Errorf("checkpoint %s: unsupported format version %d (this moe reads %d)", path, v, Version)
	}
	hl := int(binary.LittleEndian.Uint32(pre[12:]))
	if hl > maxHeader {
		return nil, 0, fmt.Errorf("checkpoint %s: corrupt header length %d", path, hl)
	}
	hdr := make([]byte, hl+padding(hl))
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, 0, fmt.Errorf("checkpoint %s: truncated header: %w", path, err)
	}
	var h Header
	if err := json.Unmarshal(hdr[:hl], &h); err != nil {
		return nil, 0, fmt.Errorf("checkpoint %s: corrupt header: %w", path, err)
	}
	if len(h.Sections) > maxSections {
		return nil, 0, fmt.Errorf("checkpoint %s: corrupt header: %d sections (at most %d)", path, len(h.Sections), maxSections)
	}
	for _, s := range h.Sections {
		// The bound keeps 4*Count and the sum over sections far from
		// overflow; the file size check then bounds what is allocated.
		if s.Count < 0 || s.Count > maxSectionValues {
			return nil, 0, fmt.Errorf("checkpoint %s: corrupt header: section %q has %d values", path, s.Name, s.Count)
		}
	}
	if h.Config != nil {
		if err := h.Config.Validate(); err != nil {
			return nil, 0, fmt.Errorf("checkpoint %s: header config: %w", path, err)
		}
	}
	return &h, int64(16 + len(hdr)), nil
}

// read reads and verifies path, keeping the sections for which keep is true.
func read(path string, keep func(name string) bool) (*Checkpoint, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	crc := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	br := bufio.NewReaderSize(f, 1<<20)
	h, off, err := readHeader(br, crc, path)
	if err != nil {
		return nil, err
	}
	want := off + 4
	for _, s := range h.Sections {
		want += 4 * int64(s.Count)
	}
	if st.Size() != want {
		return nil, fmt.Errorf("checkpoint %s: file is %d bytes, header describes %d (truncated or corrupt)", path, st.Size(), want)
	}
	ck := &Checkpoint{Path: path, Header: *h}
	r := io.TeeReader(br, crc)
	buf := make([]byte, 64<<10)
	for _, s := range h.Sections {
		var data []float32
		if keep(s.Name) {
			data = make([]float32, s.Count)
		}
		for i := 0; i < s.Count; {
			n := min(len(buf)/4, s.Count-i)
			if _, err := io.ReadFull(r, buf[:4*n]); err != nil {
				return nil, fmt.Errorf("checkpoint %s: truncated in section %q: %w", path, s.Name, err)
			}
			if data != nil {
				for j := range n {
					data[i+j] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*j:]))
				}
			}
			i += n
		}
		if data != nil {
			ck.Sections = append(ck.Sections, Tensor{Name: s.Name, Data: data})
		}
	}
	var sum [4]byte
	if _, err := io.ReadFull(br, sum[:]); err != nil {
		return nil, fmt.Errorf("checkpoint %s: truncated checksum: %w", path, err)
	}
	if got, stored := crc.Sum32(), binary.LittleEndian.Uint32(sum[:]); got != stored {
		return nil, fmt.Errorf("checkpoint %s: checksum mismatch (stored %08x, computed %08x): the file is corrupt", path, stored, got)
	}
	return ck, nil
}

// LoadModel loads a model for inference from path: a run directory (its
// newest checkpoint) or a checkpoint file. The whole file is verified; only
// the weights are kept.
func LoadModel(path string) (*config.Config, *model.Weights, error) {
	file, err := Resolve(path)
	if err != nil {
		return nil, nil, err
	}
	// Check what the header implies before reading anything large.
	h, err := ReadHeader(file)
	if err != nil {
		return nil, nil, err
	}
	if h.Config == nil {
		return nil, nil, fmt.Errorf("checkpoint %s: header has no model config", file)
	}
	want := model.NumParams(h.Config)
	for _, s := range h.Sections {
		if s.Name == SectionWeights && s.Count != want {
			return nil, nil, fmt.Errorf("checkpoint %s: the %q section has %d values, its config needs %d", file, SectionWeights, s.Count, want)
		}
	}
	if err := memest.CheckWeights(h.Config, "loading "+file); err != nil {
		return nil, nil, err
	}
	ck, err := read(file, func(name string) bool { return name == SectionWeights })
	if err != nil {
		return nil, nil, err
	}
	cfg := ck.Header.Config
	if cfg == nil {
		return nil, nil, fmt.Errorf("checkpoint %s: header has no model config", file)
	}
	flat := ck.Section(SectionWeights)
	if flat == nil {
		return nil, nil, fmt.Errorf("checkpoint %s: no %q section", file, SectionWeights)
	}
	w, err := model.NewWeights(cfg, flat)
	if err != nil {
		return nil, nil, fmt.Errorf("checkpoint %s: %w", file, err)
	}
	if err := CheckFinite(cfg, w); err != nil {
		return nil, nil, fmt.Errorf("checkpoint %s: %w", file, err)
	}
	return cfg, w, nil
}

// CheckFinite returns an error naming the first tensor of w that holds a
// NaN or an infinity (a diverged run or a corrupt file: such weights make
// every output NaN).
func CheckFinite(cfg *config.Config, w *model.Weights) error {
	var err error
	w.Visit(cfg, func(name string, t []float32) {
		if err != nil {
			return
		}
		for i, x := range t {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				err = fmt.Errorf("weights: tensor %s holds %v at index %d (diverged or corrupt weights)", name, x, i)
				return
			}
		}
	})
	return err
}
