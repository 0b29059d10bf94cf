// Package data turns corpora into training data: it reads sources (text
// files, directories, JSON Lines), tokenizes them into checksummed token shards
// with a held-out validation split by document, and streams packed training
// sequences from those shards through a Loader that schedules each source's
// epochs (text@2, code@4) without storing repeats on disk. See docs/data.md.
package data

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Document sizes for splitting large text files (see Documents).
const (
	// MaxWholeFile is the largest text file that is one document. It is small
	// enough that a single modest text file (a few tens of KiB) still yields
	// several documents, so that a one-file corpus has a validation split.
	MaxWholeFile = 16 << 10
	// TargetDocBytes is the size after which a large file's document ends at
	// the next blank line.
	TargetDocBytes = 8 << 10
	// MaxDocBytes is the size at which a document ends at the next line break
	// (or, for a line longer than this, at a UTF-8 character boundary).
	MaxDocBytes = 64 << 10
)

// sniffBytes is how much of a file is inspected to decide whether it is binary.
const sniffBytes = 8000

// Source is one corpus of a data mixture: Path is read Epochs times per pass
// of the mixture.
type Source struct {
	Name   string `json:"name"`
	Path   string `json:"path"`
	Epochs int    `json:"epochs"`
}

// String formats the source as NAME=PATH@EPOCHS.
func (s Source) String() string { return fmt.Sprintf("%s=%s@%d", s.Name, s.Path, s.Epochs) }

// ParseSource parses a source spec: PATH or NAME=PATH, optionally followed by
// @EPOCHS (a positive integer, default 1). The name defaults to the file name
// of PATH without its extension. A '=' counts as a name separator only when
// the text before it is a valid name (letters, digits, '_', '-', '.').
func ParseSource(spec string) (Source, error) {
	src := Source{Epochs: 1}
	rest := spec
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		suffix := rest[i+1:]
		if suffix != "" && strings.Trim(suffix, "0123456789.+-eE") == "" && strings.ContainsAny(suffix, "0123456789") {
			n, err := strconv.Atoi(suffix)
			if err != nil || n < 1 {
				return Source{}, fmt.Errorf("data source %q: epochs %q must be a positive integer", spec, suffix)
			}
			src.Epochs = n
			rest = rest[:i]
		}
	}
	if i := strings.IndexByte(rest, '='); i > 0 && validName(rest[:i]) {
		src.Name, rest = rest[:i], rest[i+1:]
	}
	if rest == "" {
		return Source{}, fmt.Errorf("data source %q: empty path", spec)
	}
	src.Path = rest
	if src.Name == "" {
		src.Name = defaultName(rest)
		if !validName(src.Name) {
			return Source{}, fmt.Errorf("data source %q: cannot derive a name from the path; write NAME=PATH", spec)
		}
	}
	return src, nil
}

// validName reports whether s is usable as a source name (and in file names).
func validName(s string) bool {
	if s == "" || len(s) > 64 || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		ok := r == '_' || r == '-' || r == '.' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
		if !ok {
			return false
		}
	}
	return true
}

// defaultName derives a source name from a path: its base name without
// extension, with characters outside [A-Za-z0-9_.-] replaced by '_'.
func defaultName(path string) string {
	base := filepath.Base(filepath.Clean(path))
	if base == "." || base == ".." || base == string(filepath.Separator) {
		if abs, err := filepath.Abs(path); err == nil {
			base = filepath.Base(abs)
		}
	}
	if ext := filepath.Ext(base); ext != "" && ext != base {
		base = strings.TrimSuffix(base, ext)
	}
	b := []byte(base)
	for i, c := range b {
		ok := c == '_' || c == '-' || c == '.' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
		if !ok {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

// Stats counts what reading a source found.
type Stats struct {
	Files         int   `json:"files"`          // files read as text or JSON Lines
	Documents     int64 `json:"documents"`      // documents produced
	Bytes         int64 `json:"bytes"`          // bytes in those documents
	BinarySkipped int   `json:"binary_skipped"` // files skipped as binary
	EmptySkipped  int   `json:"empty_skipped"`  // empty files and empty JSONL texts
}

// ErrNoDocuments is wrapped by Documents when a source yields no document.
var ErrNoDocuments = errors.New("no text documents")

// Documents streams the documents of src to fn, in a deterministic order.
//
//   - A directory is walked recursively in lexical order; entries whose name
//     starts with '.' are skipped, symbolic links are not followed.
//   - A file ending in .gz is decompressed as it is read; the extension
//     before .gz decides its format. A corrupt or truncated gzip stream is an
//     error naming the file.
//   - A file ending in .jsonl holds one JSON object per line; its "text"
//     string field is one document. A malformed or truncated line is an error
//     naming the file and line.
//   - Any other file is text. A file with a NUL byte, or with more than 10%
//     control or invalid UTF-8 bytes, in its first 8000 bytes is binary: it is
//     skipped and counted. A text file of up to MaxWholeFile bytes is one
//     document; a larger one (a book, a dump) is cut into documents that end
//     at the first blank line after TargetDocBytes, or at a line break after
//     MaxDocBytes, so that a validation split by document is meaningful. The
//     documents of a file concatenate to the file exactly.
//
// The slice passed to fn is only valid during the call. A source that yields
// no document is an error wrapping ErrNoDocuments; an error from fn stops the
// walk and is returned.
func Documents(ctx context.Context, src Source, fn func(doc []byte) error) (Stats, error) {
	return documents(ctx, src, fn, nil)
}

// documents is Documents with a progress callback that receives the number
// of file bytes consumed (each file's size in all, whatever its format).
func documents(ctx context.Context, src Source, fn func(doc []byte) error, progress func(int64)) (Stats, error) {
	var st Stats
	info, err := os.Stat(src.Path)
	if err != nil {
		return st, fmt.Errorf("source %s: %w", src.Name, err)
	}
	if progress == nil {
		progress = func(int64) {}
	}
	r := &docReader{ctx: ctx, fn: fn, st: &st, progress: progress}
	if info.IsDir() {
		err = filepath.WalkDir(src.Path, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if path != src.Path && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			return r.file(path)
		})
	} else if info.Mode().IsRegular() {
		err = r.file(src.Path)
	} else {
		err = fmt.Errorf("%s is not a regular file or directory", src.Path)
	}
	if err != nil {
		return st, fmt.Errorf("source %s: %w", src.Name, err)
	}
	if st.Documents == 0 {
		return st, fmt.Errorf("source %s (%s): %w (%d text files, %d binary files skipped, %d empty)",
			src.Name, src.Path, ErrNoDocuments, st.Files, st.BinarySkipped, st.EmptySkipped)
	}
	return st, nil
}

// docReader carries the state of one Documents call.
type docReader struct {
	ctx      context.Context
	fn       func([]byte) error
	st       *Stats
	buf      []byte
	progress func(int64)
}

func (r *docReader) emit(doc []byte) error {
	if err := r.ctx.Err(); err != nil {
		return err
	}
	r.st.Documents++
	r.st.Bytes += int64(len(doc))
	return r.fn(doc)
}

// countingReader reports the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
	f func(int64)
}

// Read reads from the underlying reader and reports the count.
func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.f(int64(n))
	return n, err
}

// file reads one file: gzip-compressed when its name ends in .gz (the
// extension before that decides the format), JSON Lines for .jsonl, else
// text unless it looks binary.
func (r *docReader) file(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	cr := &countingReader{r: f, f: r.progress}
	defer func() {
		// Account for what was not read (a skipped binary file's tail).
		if info, err := f.Stat(); err == nil && info.Size() > cr.n {
			r.progress(info.Size() - cr.n)
		}
	}()
	var in io.Reader = cr
	name := path
	if strings.EqualFold(filepath.Ext(path), ".gz") {
		gz, err := gzip.NewReader(bufio.NewReaderSize(cr, 64<<10))
		if err != nil {
			return fmt.Errorf("%s: not a readable gzip file: %w", path, err)
		}
		defer gz.Close()
		in = gz
		name = strings.TrimSuffix(path, filepath.Ext(path))
	}
	if strings.EqualFold(filepath.Ext(name), ".jsonl") {
		r.st.Files++
		return r.jsonl(path, in)
	}
	// The buffer holds one more byte than a whole-file document, so that
	// Peek tells a small file from a large one without its size (which a
	// compressed file does not give).
	br := bufio.NewReaderSize(in, MaxWholeFile+1)
	head, err := br.Peek(MaxWholeFile + 1)
	if err != nil && err != io.EOF {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if len(head) == 0 {
		r.st.EmptySkipped++
		return nil
	}
	if isBinary(head[:min(len(head), sniffBytes)], len(head) <= sniffBytes) {
		r.st.BinarySkipped++
		return nil
	}
	r.st.Files++
	if err := r.text(br, len(head) <= MaxWholeFile); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

// text cuts a text stream into documents (see Documents); whole says the
// stream is at most MaxWholeFile bytes and is one document.
func (r *docReader) text(br *bufio.Reader, whole bool) error {
	return r.textSized(br, whole, TargetDocBytes, MaxDocBytes)
}

// textSized is text with the document sizes as parameters (for tests).
func (r *docReader) textSized(br *bufio.Reader, whole bool, target, maxDoc int) error {
	doc := r.buf[:0]
	defer func() { r.buf = doc[:0] }()
	emitted := 0
	for {
		line, err := br.ReadSlice('\n')
		if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
			return err
		}
		doc = append(doc, line...)
		if !whole && err != io.EOF {
			endLine := len(line) > 0 && line[len(line)-1] == '\n'
			blank := endLine && len(bytes.TrimSpace(line)) == 0
			cut := -1
			switch {
			case blank && len(doc) >= target, endLine && len(doc) >= maxDoc:
				cut = len(doc)
			case len(doc) >= maxDoc:
				cut = runeBoundary(doc) // a very long line
			}
			if cut > 0 {
				if e := r.emit(doc[:cut]); e != nil {
					return e
				}
				emitted++
				doc = append(doc[:0], doc[cut:]...)
			}
		}
		if err == io.EOF {
			break
		}
	}
	if len(doc) > 0 {
		if emitted == 0 && len(bytes.TrimSpace(doc)) == 0 {
			r.st.EmptySkipped++
			return nil
		}
		return r.emit(doc)
	}
	if emitted == 0 {
		r.st.EmptySkipped++
	}
	return nil
}

// runeBoundary returns len(b), or less so that b[:n] does not end inside an
// incomplete UTF-8 sequence (which then starts the next document).
func runeBoundary(b []byte) int {
	for k := 1; k <= utf8.UTFMax-1 && k <= len(b); k++ {
		j := len(b) - k
		if utf8.RuneStart(b[j]) {
			if b[j] >= utf8.RuneSelf && !utf8.FullRune(b[j:]) && j > 0 {
				return j
			}
			break
		}
	}
	return len(b)
}

// jsonl reads documents from the "text" field of each line.
func (r *docReader) jsonl(path string, f io.Reader) error {
	br := bufio.NewReaderSize(f, 64<<10)
	var line []byte
	for n := 1; ; n++ {
		chunk, err := br.ReadSlice('\n')
		line = append(line[:0], chunk...)
		for errors.Is(err, bufio.ErrBufferFull) {
			chunk, err = br.ReadSlice('\n')
			line = append(line, chunk...)
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("read %s:%d: %w", path, n, err)
		}
		if t := bytes.TrimSpace(line); len(t) > 0 {
			var rec struct {
				Text *string `json:"text"`
			}
			if e := json.Unmarshal(t, &rec); e != nil {
				what := "malformed"
				if err == io.EOF && !bytes.HasSuffix(t, []byte("}")) {
					what = "truncated"
				}
				return fmt.Errorf("%s:%d: %s JSON line: %w", path, n, what, e)
			}
			if rec.Text == nil {
				return fmt.Errorf("%s:%d: no \"text\" string field", path, n)
			}
			if *rec.Text == "" {
				r.st.EmptySkipped++
			} else if e := r.emit([]byte(*rec.Text)); e != nil {
				return e
			}
		}
		if err == io.EOF {
			return nil
		}
	}
}

// isBinary reports whether a file whose first bytes are head looks binary: a
// NUL byte, or more than 10% control characters or invalid UTF-8. complete
// says head is the whole file (so a rune cut at its end is invalid).
func isBinary(head []byte, complete bool) bool {
	if bytes.IndexByte(head, 0) >= 0 {
		return true
	}
	bad := 0
	for i := 0; i < len(head); {
		c := head[i]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != '\v' && c != 0x1b {
				bad++
			}
			i++
			continue
		}
		r, w := utf8.DecodeRune(head[i:])
		if r == utf8.RuneError && w == 1 {
			if !complete && len(head)-i < utf8.UTFMax && !utf8.FullRune(head[i:]) {
				break
			}
			bad++
		}
		i += w
	}
	return bad*10 > len(head)
}
