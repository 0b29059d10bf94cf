package data

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"

	"github.com/moe-llm/moe/internal/atomicfile"
)

// Shard file layout (all integers little-endian), see docs/data.md:
//
//	offset  size  field
//	0       8     magic "MOETOKS\x00"
//	8       4     version (1)
//	12      4     token width in bytes: 2 (uint16) or 4 (uint32)
//	16      8     number of tokens N
//	24      8     number of documents D
//	32      4     vocabulary size
//	36      4     CRC-32C of the body (tokens + document ends)
//	40      20    reserved (zero)
//	60      4     CRC-32C of header bytes 0..60
//	64      N*w   tokens
//	64+N*w  D*8   end offset (in tokens, exclusive) of each document
//
// Each document's tokens end with the end-of-text token.
const (
	shardMagic      = "MOETOKS\x00"
	shardVersion    = 1
	shardHeaderSize = 64
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorruptShard is wrapped by every error about a malformed shard file.
var ErrCorruptShard = errors.New("corrupt token shard")

// TokenWidth returns the bytes per token a shard uses for a vocabulary:
// 2 (uint16) up to 65536 tokens, else 4 (uint32).
func TokenWidth(vocabSize int) int {
	if vocabSize <= 1<<16 {
		return 2
	}
	return 4
}

// shardWriter writes one shard to a temporary file; Close makes it visible.
type shardWriter struct {
	path    string
	f       *atomicfile.File
	w       *bufio.Writer
	crc     hash.Hash32
	width   int
	vocab   int
	tokens  int64
	docEnds []uint64
	buf     []byte
}

// createShard starts writing a shard at path for a vocabulary of vocab tokens.
func createShard(path string, vocab int) (*shardWriter, error) {
	f, err := atomicfile.Create(path, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create shard: %w", err)
	}
	sw := &shardWriter{path: path, f: f, w: bufio.NewWriterSize(f, 1<<20), crc: crc32.New(castagnoli),
		width: TokenWidth(vocab), vocab: vocab}
	if _, err := sw.w.Write(make([]byte, shardHeaderSize)); err != nil {
		sw.abort()
		return nil, fmt.Errorf("create shard: %w", err)
	}
	return sw, nil
}

// addDoc appends one document's tokens.
func (sw *shardWriter) addDoc(toks []int32) error {
	buf := sw.buf[:0]
	for _, t := range toks {
		if t < 0 || int(t) >= sw.vocab {
			return fmt.Errorf("shard %s: token %d outside vocabulary of %d", sw.path, t, sw.vocab)
		}
		if sw.width == 2 {
			buf = binary.LittleEndian.AppendUint16(buf, uint16(t))
		} else {
			buf = binary.LittleEndian.AppendUint32(buf, uint32(t))
		}
	}
	sw.buf = buf
	sw.crc.Write(buf)
	if _, err := sw.w.Write(buf); err != nil {
		return fmt.Errorf("write shard %s: %w", sw.path, err)
	}
	sw.tokens += int64(len(toks))
	sw.docEnds = append(sw.docEnds, uint64(sw.tokens))
	return nil
}

// close finishes the shard (index, header, fsync, rename) and returns its CRC.
func (sw *shardWriter) close() (uint32, error) {
	defer sw.abort()
	idx := make([]byte, 0, 8*len(sw.docEnds))
	for _, e := range sw.docEnds {
		idx = binary.LittleEndian.AppendUint64(idx, e)
	}
	sw.crc.Write(idx)
	if _, err := sw.w.Write(idx); err != nil {
		return 0, fmt.Errorf("write shard %s: %w", sw.path, err)
	}
	if err := sw.w.Flush(); err != nil {
		return 0, fmt.Errorf("write shard %s: %w", sw.path, err)
	}
	sum := sw.crc.Sum32()
	hdr := encodeHeader(sw.width, sw.tokens, int64(len(sw.docEnds)), sw.vocab, sum)
	if _, err := sw.f.WriteAt(hdr, 0); err != nil {
		return 0, fmt.Errorf("write shard %s: %w", sw.path, err)
	}
	if err := sw.f.Commit(); err != nil {
		return 0, fmt.Errorf("shard %s: %w", sw.path, err)
	}
	sw.f = nil
	return sum, nil
}

// abort removes an unfinished shard's temporary file.
func (sw *shardWriter) abort() {
	if sw.f != nil {
		sw.f.Abort()
		sw.f = nil
	}
}

func encodeHeader(width int, tokens, docs int64, vocab int, sum uint32) []byte {
	h := make([]byte, shardHeaderSize)
	copy(h, shardMagic)
	binary.LittleEndian.PutUint32(h[8:], shardVersion)
	binary.LittleEndian.PutUint32(h[12:], uint32(width))
	binary.LittleEndian.PutUint64(h[16:], uint64(tokens))
	binary.LittleEndian.PutUint64(h[24:], uint64(docs))
	binary.LittleEndian.PutUint32(h[32:], uint32(vocab))
	binary.LittleEndian.PutUint32(h[36:], sum)
	binary.LittleEndian.PutUint32(h[60:], crc32.Checksum(h[:60], castagnoli))
	return h
}

// Shard is an open, verified token shard. It is safe for concurrent reads.
type Shard struct {
	path   string
	f      *os.File
	data   []byte // the whole file when mapped
	width  int
	tokens int64
	docs   int64
	vocab  int
	crc    uint32
}

// OpenShard opens and verifies a shard for streaming reads (pread): the
// process's resident memory stays small however much of the shard is read.
// Verification checks the header fields, the file size and the body checksum
// (read once, streaming); any mismatch is an error wrapping ErrCorruptShard
// that names the file and the problem.
func OpenShard(path string) (*Shard, error) { return openShardFile(path, false) }

// OpenShardMapped is OpenShard with the file memory-mapped (where the platform
// supports it; otherwise it streams), so reads copy straight from the page
// cache without system calls. Mapped pages count in the resident set, and on
// Linux a fault maps a whole page-cache folio (up to 2 MiB), so a random walk
// over a mapped corpus soon makes the resident set as large as the corpus:
// the Loader therefore streams.
func OpenShardMapped(path string) (*Shard, error) { return openShardFile(path, true) }

func openShardFile(path string, mapped bool) (*Shard, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open shard: %w", err)
	}
	s, err := openShard(path, f, mapped)
	if err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

func openShard(path string, f *os.File, mapped bool) (*Shard, error) {
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("open shard: %w", err)
	}
	size := info.Size()
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("shard %s: %w: %s", path, ErrCorruptShard, fmt.Sprintf(format, args...))
	}
	if size < shardHeaderSize {
		return nil, corrupt("file is %d bytes, shorter than the %d-byte header (truncated?)", size, shardHeaderSize)
	}
	h := make([]byte, shardHeaderSize)
	if _, err := f.ReadAt(h, 0); err != nil {
		return nil, fmt.Errorf("read shard %s: %w", path, err)
	}
	if string(h[:8]) != shardMagic {
		return nil, corrupt("bad magic %q (not a moe token shard)", h[:8])
	}
	if got, want := crc32.Checksum(h[:60], castagnoli), binary.LittleEndian.Uint32(h[60:]); got != want {
		return nil, corrupt("header checksum mismatch")
	}
	if v := binary.LittleEndian.Uint32(h[8:]); v != shardVersion {
		return nil, corrupt("unsupported version %d", v)
	}
	s := &Shard{path: path, f: f,
		width:  int(binary.LittleEndian.Uint32(h[12:])),
		tokens: int64(binary.LittleEndian.Uint64(h[16:])),
		docs:   int64(binary.LittleEndian.Uint64(h[24:])),
		vocab:  int(binary.LittleEndian.Uint32(h[32:])),
		crc:    binary.LittleEndian.Uint32(h[36:]),
	}
	if s.width != 2 && s.width != 4 {
		return nil, corrupt("token width %d, want 2 or 4", s.width)
	}
	if s.tokens < 0 || s.docs < 0 || s.tokens > size || s.docs > size {
		return nil, corrupt("implausible counts (%d tokens, %d documents)", s.tokens, s.docs)
	}
	want := shardHeaderSize + s.tokens*int64(s.width) + 8*s.docs
	if size != want {
		return nil, corrupt("file is %d bytes, header says %d (truncated or overwritten)", size, want)
	}
	if data, err := mmapFile(f, size); mapped && err == nil {
		s.data = data
	}
	// Verify the body checksum, reading through the file rather than the
	// mapping so that the check does not leave the whole shard resident.
	c := crc32.New(castagnoli)
	if _, err := io.CopyBuffer(c, io.NewSectionReader(f, shardHeaderSize, size-shardHeaderSize), make([]byte, 1<<20)); err != nil {
		s.Close()
		return nil, fmt.Errorf("read shard %s: %w", path, err)
	}
	if c.Sum32() != s.crc {
		s.Close()
		return nil, corrupt("body checksum mismatch")
	}
	// Validate the document index, read in bulk.
	idx := bufio.NewReaderSize(io.NewSectionReader(f, shardHeaderSize+s.tokens*int64(s.width), 8*s.docs), 1<<16)
	prev := uint64(0)
	var eb [8]byte
	for i := int64(0); i < s.docs; i++ {
		if _, err := io.ReadFull(idx, eb[:]); err != nil {
			s.Close()
			return nil, fmt.Errorf("read shard %s: %w", path, err)
		}
		e := binary.LittleEndian.Uint64(eb[:])
		if e <= prev || e > uint64(s.tokens) {
			s.Close()
			return nil, corrupt("document %d ends at %d, outside (%d, %d]", i, e, prev, s.tokens)
		}
		prev = e
	}
	if s.docs > 0 && prev != uint64(s.tokens) || s.docs == 0 && s.tokens != 0 {
		s.Close()
		return nil, corrupt("documents cover %d of %d tokens", prev, s.tokens)
	}
	return s, nil
}

// Close releases the shard's mapping and file.
func (s *Shard) Close() error {
	var err error
	if s.data != nil {
		err = munmap(s.data)
		s.data = nil
	}
	if s.f != nil {
		if e := s.f.Close(); err == nil {
			err = e
		}
		s.f = nil
	}
	return err
}

// Tokens returns the number of tokens in the shard.
func (s *Shard) Tokens() int64 { return s.tokens }

// Docs returns the number of documents in the shard.
func (s *Shard) Docs() int64 { return s.docs }

// VocabSize returns the vocabulary size recorded in the header.
func (s *Shard) VocabSize() int { return s.vocab }

// Checksum returns the body CRC-32C.
func (s *Shard) Checksum() uint32 { return s.crc }

func (s *Shard) readAt(p []byte, off int64) error {
	if s.data != nil {
		copy(p, s.data[off:off+int64(len(p))])
		return nil
	}
	if _, err := s.f.ReadAt(p, off); err != nil {
		return fmt.Errorf("read shard %s: %w", s.path, err)
	}
	return nil
}

func (s *Shard) docEnd(i int64) (uint64, error) {
	off := shardHeaderSize + s.tokens*int64(s.width) + 8*i
	if s.data != nil {
		return binary.LittleEndian.Uint64(s.data[off:]), nil
	}
	var b [8]byte
	if err := s.readAt(b[:], off); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// DocRange returns the token range [start, end) of document i.
func (s *Shard) DocRange(i int64) (start, end int64, err error) {
	if i < 0 || i >= s.docs {
		return 0, 0, fmt.Errorf("shard %s: document %d out of range [0, %d)", s.path, i, s.docs)
	}
	e, err := s.docEnd(i)
	if err != nil {
		return 0, 0, err
	}
	if i > 0 {
		b, err := s.docEnd(i - 1)
		if err != nil {
			return 0, 0, err
		}
		start = int64(b)
	}
	return start, int64(e), nil
}

// ReadTokens appends tokens [start, end) to dst.
func (s *Shard) ReadTokens(dst []int32, start, end int64) ([]int32, error) {
	return s.readTokens(dst, start, end, nil)
}

// readTokens is ReadTokens with a reusable scratch buffer for streaming reads.
func (s *Shard) readTokens(dst []int32, start, end int64, scratch *[]byte) ([]int32, error) {
	if start < 0 || end > s.tokens || start > end {
		return dst, fmt.Errorf("shard %s: token range [%d, %d) outside [0, %d)", s.path, start, end, s.tokens)
	}
	off := shardHeaderSize + start*int64(s.width)
	n := int(end - start)
	var b []byte
	if s.data != nil {
		b = s.data[off : off+int64(n*s.width)]
	} else {
		if scratch == nil {
			scratch = new([]byte)
		}
		if cap(*scratch) < n*s.width {
			*scratch = make([]byte, n*s.width)
		}
		b = (*scratch)[:n*s.width]
		if err := s.readAt(b, off); err != nil {
			return dst, err
		}
	}
	base := len(dst)
	var bad uint32
	if s.width == 2 {
		for i := 0; i < n; i++ {
			v := binary.LittleEndian.Uint16(b[2*i:])
			bad |= uint32(v) // checked below, off the per-token path
			dst = append(dst, int32(v))
		}
	} else {
		for i := 0; i < n; i++ {
			v := binary.LittleEndian.Uint32(b[4*i:])
			bad |= v
			dst = append(dst, int32(v))
		}
	}
	// A token outside the vocabulary (which would index past an embedding
	// table) can only come from a forged shard; the OR of all tokens bounds
	// the largest, and the exact scan runs only when that bound is too big.
	if int64(bad) >= int64(s.vocab) {
		for i, t := range dst[base:] {
			if t < 0 || int(t) >= s.vocab {
				return dst[:base], fmt.Errorf("shard %s: %w: token %d at %d is outside the vocabulary of %d",
					s.path, ErrCorruptShard, uint32(t), start+int64(i), s.vocab)
			}
		}
	}
	return dst, nil
}
