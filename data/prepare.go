package data

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/moe-llm/moe/tokenizer"
)

// ManifestFile is the name of the manifest Prepare writes into its directory.
const ManifestFile = "manifest.json"

// manifestVersion is the version of the manifest and shard layout.
const manifestVersion = 1

// DefaultShardTokens is the default number of tokens after which a shard is
// closed (at a document boundary).
const DefaultShardTokens = 64 << 20

// PrepareOptions tune Prepare.
type PrepareOptions struct {
	// ValFraction is the fraction of each source's documents held out for
	// validation (0 ≤ ValFraction < 1).
	ValFraction float64
	// Seed chooses which documents are held out.
	Seed uint64
	// ShardTokens closes a shard after about this many tokens (default
	// DefaultShardTokens).
	ShardTokens int64
	// Workers is the number of tokenizing goroutines (default GOMAXPROCS).
	Workers int
	// Progress, when non-nil, receives a progress bar with throughput and ETA.
	Progress io.Writer
	// Logger receives progress logs (default: slog.Default()).
	Logger *slog.Logger

	// batchBytes is the size of a unit of tokenizing work (default 1 MB);
	// tests make it small to exercise the reordering.
	batchBytes int64
}

// Manifest describes a prepared data directory.
type Manifest struct {
	Version     int     `json:"version"`
	Tokenizer   string  `json:"tokenizer"` // SHA-256 of the vocabulary
	VocabSize   int     `json:"vocab_size"`
	EOT         int32   `json:"eot"`
	TokenBytes  int     `json:"token_bytes"` // 2 (uint16) or 4 (uint32)
	ValFraction float64 `json:"val_fraction"`
	Seed        uint64  `json:"seed"`
	// Sources are in mixture order; epochs are scheduled by the Loader.
	Sources []SourceManifest `json:"sources"`
}

// SourceManifest describes one prepared source.
type SourceManifest struct {
	Source
	// Fingerprint summarises the input files (paths, sizes, times) so that a
	// changed source is prepared again.
	Fingerprint string `json:"fingerprint"`
	Stats       Stats  `json:"stats"`
	Train       Split  `json:"train"`
	Val         Split  `json:"val"`
}

// Split lists the shards of one split of a source.
type Split struct {
	Tokens int64       `json:"tokens"`
	Docs   int64       `json:"docs"`
	Shards []ShardInfo `json:"shards"`
}

// ShardInfo describes one shard file (relative to the data directory).
type ShardInfo struct {
	File   string `json:"file"`
	Tokens int64  `json:"tokens"`
	Docs   int64  `json:"docs"`
	CRC32C uint32 `json:"crc32c"`
}

// Tokens returns the tokens of one split (SplitTrain or SplitVal) over all
// sources, each counted once (epochs not applied).
func (m *Manifest) Tokens(split string) int64 {
	var n int64
	for _, s := range m.Sources {
		if split == SplitVal {
			n += s.Val.Tokens
		} else {
			n += s.Train.Tokens
		}
	}
	return n
}

// Split names.
const (
	SplitTrain = "train"
	SplitVal   = "val"
)

// TokenizerFingerprint is a SHA-256 over a tokenizer's token bytes and
// special ids; a manifest records it to refuse shards made by another
// tokenizer.
func TokenizerFingerprint(tok *tokenizer.Tokenizer) string {
	h := sha256.New()
	var b [8]byte
	for id := 0; id < tok.VocabSize(); id++ {
		tb := tok.TokenBytes(int32(id))
		binary.LittleEndian.PutUint32(b[:4], uint32(len(tb)))
		if tok.IsSpecial(int32(id)) {
			b[4] = 1
		} else {
			b[4] = 0
		}
		h.Write(b[:5])
		h.Write(tb)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ReadManifest reads dir's manifest.
func ReadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("data manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("data manifest %s: %w", filepath.Join(dir, ManifestFile), err)
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("data manifest %s: %w", filepath.Join(dir, ManifestFile), err)
	}
	return &m, nil
}

// validate checks a manifest read from disk before anything trusts it.
func (m *Manifest) validate() error {
	if m.Version != manifestVersion {
		return fmt.Errorf("unsupported version %d", m.Version)
	}
	if _, err := hex.DecodeString(m.Tokenizer); err != nil || len(m.Tokenizer) != 64 {
		return fmt.Errorf("bad tokenizer fingerprint %q", m.Tokenizer)
	}
	if m.VocabSize < 1 || m.VocabSize > tokenizer.MaxVocabSize || m.TokenBytes != TokenWidth(m.VocabSize) {
		return fmt.Errorf("vocabulary size %d with %d-byte tokens", m.VocabSize, m.TokenBytes)
	}
	if m.EOT < 0 || int(m.EOT) >= m.VocabSize {
		return fmt.Errorf("end-of-text id %d outside the vocabulary", m.EOT)
	}
	if len(m.Sources) == 0 {
		return errors.New("no sources")
	}
	for _, s := range m.Sources {
		if !validName(s.Name) || s.Epochs < 1 {
			return fmt.Errorf("bad source %q (epochs %d)", s.Name, s.Epochs)
		}
		for _, sp := range []Split{s.Train, s.Val} {
			var tokens, docs int64
			for _, sh := range sp.Shards {
				if sh.File == "" || sh.File != filepath.Base(sh.File) || sh.Tokens < 0 || sh.Docs < 0 {
					return fmt.Errorf("source %s: bad shard entry %+v", s.Name, sh)
				}
				tokens += sh.Tokens
				docs += sh.Docs
			}
			if tokens != sp.Tokens || docs != sp.Docs {
				return fmt.Errorf("source %s: shard counts (%d tokens, %d docs) do not add up to the split's (%d, %d)",
					s.Name, tokens, docs, sp.Tokens, sp.Docs)
			}
		}
	}
	return nil
}

// Prepare tokenizes sources into shards under dir and writes dir/manifest.json.
// Each source is stored once; its epochs are recorded for the Loader to
// schedule. Every document is tokenized followed by the end-of-text token and
// goes whole to either the train or the validation split: with fraction f,
// document i of a source is held out when floor((i+1)·f+φ) > floor(i·f+φ),
// φ ∈ [0,1) drawn from the seed and the source name, so about f of the
// documents, evenly spread, are held out. Two corrections apply to a
// source's last document: it goes to train when train would otherwise be
// empty (a one-document source is all train), and to validation when f > 0
// and the source has no validation document yet.
//
// Prepare is idempotent: when dir already holds a manifest for the same
// tokenizer, options and unchanged sources, it only updates epochs and
// returns that manifest.
func Prepare(ctx context.Context, sources []Source, tok *tokenizer.Tokenizer, dir string, opts PrepareOptions) (*Manifest, error) {
	if len(sources) == 0 {
		return nil, errors.New("prepare data: no sources")
	}
	if tok == nil {
		return nil, errors.New("prepare data: no tokenizer")
	}
	if !(opts.ValFraction >= 0 && opts.ValFraction < 1) {
		return nil, fmt.Errorf("prepare data: validation fraction %v outside [0, 1)", opts.ValFraction)
	}
	if opts.ShardTokens <= 0 {
		opts.ShardTokens = DefaultShardTokens
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.batchBytes <= 0 {
		opts.batchBytes = batchBytes
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	seen := map[string]bool{}
	for _, s := range sources {
		if !validName(s.Name) {
			return nil, fmt.Errorf("prepare data: source name %q must be 1-64 of [A-Za-z0-9_.-]", s.Name)
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("prepare data: two sources named %q; name them NAME=PATH", s.Name)
		}
		seen[s.Name] = true
		if s.Epochs < 1 {
			return nil, fmt.Errorf("prepare data: source %s: epochs %d must be at least 1", s.Name, s.Epochs)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("prepare data: %w", err)
	}
	want := &Manifest{
		Version:     manifestVersion,
		Tokenizer:   TokenizerFingerprint(tok),
		VocabSize:   tok.VocabSize(),
		EOT:         tok.EOT(),
		TokenBytes:  TokenWidth(tok.VocabSize()),
		ValFraction: opts.ValFraction,
		Seed:        opts.Seed,
	}
	var total int64
	for _, s := range sources {
		fp, size, err := fingerprint(s.Path)
		if err != nil {
			return nil, fmt.Errorf("prepare data: source %s: %w", s.Name, err)
		}
		total += size
		want.Sources = append(want.Sources, SourceManifest{Source: s, Fingerprint: fp})
	}
	if old, err := ReadManifest(dir); err == nil && sameInputs(old, want) && shardsPresent(dir, old) {
		changed := false
		for i := range old.Sources {
			if old.Sources[i].Epochs != want.Sources[i].Epochs || old.Sources[i].Path != want.Sources[i].Path {
				old.Sources[i].Epochs, old.Sources[i].Path = want.Sources[i].Epochs, want.Sources[i].Path
				changed = true
			}
		}
		if changed {
			if err := writeManifest(dir, old); err != nil {
				return nil, err
			}
		}
		log.Info("data already prepared", "dir", dir, "train_tokens", old.Tokens(SplitTrain), "val_tokens", old.Tokens(SplitVal))
		return old, nil
	} else if err == nil {
		// Stale: drop the manifest first so that a failure below cannot leave
		// it pointing at missing shards.
		if err := os.Remove(filepath.Join(dir, ManifestFile)); err != nil {
			return nil, fmt.Errorf("prepare data: %w", err)
		}
		removeShards(dir, old)
	}

	var bar *progressbar.ProgressBar
	if opts.Progress != nil {
		bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(opts.Progress),
			progressbar.OptionSetDescription("tokenizing"),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionSetWidth(30),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(opts.Progress) }),
		)
	}
	start := time.Now()
	for i := range want.Sources {
		if err := prepareSource(ctx, &want.Sources[i], tok, dir, opts, bar); err != nil {
			removeShards(dir, want)
			return nil, fmt.Errorf("prepare data: %w", err)
		}

		sm := &want.Sources[i]
		level := slog.LevelInfo
		if bar != nil {
			level = slog.LevelDebug // do not break the progress bar's line
		}
		log.Log(ctx, level, "prepared source", "name", sm.Name, "docs", sm.Stats.Documents, "bytes", sm.Stats.Bytes,
			"train_tokens", sm.Train.Tokens, "val_tokens", sm.Val.Tokens, "binary_skipped", sm.Stats.BinarySkipped)
	}
	if bar != nil {
		bar.Finish()
	}
	if err := writeManifest(dir, want); err != nil {
		removeShards(dir, want)
		return nil, err
	}
	el := time.Since(start).Seconds()
	var bytes, docs int64
	var binary, empty int
	for _, s := range want.Sources {
		bytes += s.Stats.Bytes
		docs += s.Stats.Documents
		binary += s.Stats.BinarySkipped
		empty += s.Stats.EmptySkipped
	}
	log.Info("data prepared", "dir", dir, "documents", docs, "binary_skipped", binary, "empty_skipped", empty,
		"train_tokens", want.Tokens(SplitTrain), "val_tokens", want.Tokens(SplitVal),
		"seconds", math.Round(el*100)/100, "mb_per_s", math.Round(float64(bytes)/1e6/el*10)/10)
	return want, nil
}

func writeManifest(dir string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("prepare data: manifest: %w", err)
	}
	if err := tokenizer.WriteFileAtomic(filepath.Join(dir, ManifestFile), append(b, '\n')); err != nil {
		return fmt.Errorf("prepare data: manifest: %w", err)
	}
	return nil
}

// sameInputs reports whether a manifest was made from the same tokenizer,
// options and source contents (epochs may differ).
func sameInputs(old, want *Manifest) bool {
	if old.Tokenizer != want.Tokenizer || old.ValFraction != want.ValFraction || old.Seed != want.Seed ||
		len(old.Sources) != len(want.Sources) {
		return false
	}
	for i := range old.Sources {
		if old.Sources[i].Name != want.Sources[i].Name || old.Sources[i].Fingerprint != want.Sources[i].Fingerprint {
			return false
		}
	}
	return true
}

func shardsPresent(dir string, m *Manifest) bool {
	for _, s := range m.Sources {
		for _, sp := range []Split{s.Train, s.Val} {
			for _, sh := range sp.Shards {
				info, err := os.Stat(filepath.Join(dir, sh.File))
				if err != nil || info.Size() != shardHeaderSize+sh.Tokens*int64(m.TokenBytes)+8*sh.Docs {
					return false
				}
			}
		}
	}
	return true
}

func removeShards(dir string, m *Manifest) {
	for _, s := range m.Sources {
		for _, sp := range []Split{s.Train, s.Val} {
			for _, sh := range sp.Shards {
				os.Remove(filepath.Join(dir, filepath.Base(sh.File)))
			}
		}
	}
}

// fingerprint hashes the paths, sizes and modification times of the files a
// source would read, and returns their total size.
func fingerprint(path string) (string, int64, error) {
	h := sha256.New()
	var total int64
	info, err := os.Stat(path)
	if err != nil {
		return "", 0, err
	}
	add := func(p string, fi fs.FileInfo) {
		fmt.Fprintf(h, "%s\x00%d\x00%d\n", p, fi.Size(), fi.ModTime().UnixNano())
		total += fi.Size()
	}
	if !info.IsDir() {
		add(filepath.Base(path), info)
	} else {
		err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if p != path && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(path, p)
			add(rel, fi)
			return nil
		})
		if err != nil {
			return "", 0, err
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:32], total, nil
}

// valPhase returns φ ∈ [0,1) for a source's validation selection.
func valPhase(seed uint64, name string) float64 {
	h := sha256.Sum256([]byte(fmt.Sprintf("%d/%s", seed, name)))
	return float64(binary.LittleEndian.Uint64(h[:8])>>11) / (1 << 53)
}

// isVal reports whether document i of a source goes to the validation split
// under fraction f and phase phi (see Prepare).
func isVal(i int64, f, phi float64) bool {
	if f <= 0 {
		return false
	}
	return math.Floor(float64(i+1)*f+phi) > math.Floor(float64(i)*f+phi)
}

// docBatch is a unit of tokenizing work.
type docBatch struct {
	docs  [][]byte
	val   []bool
	toks  [][]int32
	bytes int64
	done  chan struct{}
}

const batchBytes = 1 << 20

// prepareSource reads, tokenizes (in parallel, order kept) and writes one source.
func prepareSource(ctx context.Context, sm *SourceManifest, tok *tokenizer.Tokenizer, dir string, opts PrepareOptions, bar *progressbar.ProgressBar) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	phi := valPhase(opts.Seed, sm.Name)
	eot := tok.EOT()

	jobs := make(chan *docBatch, opts.Workers)
	ordered := make(chan *docBatch, 2*opts.Workers)
	var wg sync.WaitGroup
	for w := 0; w < opts.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range jobs {
				b.toks = make([][]int32, len(b.docs))
				for i, d := range b.docs {
					t := tok.AppendEncode(make([]int32, 0, len(d)/3+2), d)
					b.toks[i] = append(t, eot)
				}
				close(b.done)
			}
		}()
	}

	// Writer: consumes batches in order.
	writeErr := make(chan error, 1)
	go func() {
		err := writeSplits(ctx, ordered, sm, tok.VocabSize(), dir, opts.ShardTokens, opts.ValFraction)
		if err != nil {
			cancel()
			for range ordered { // drain so the reader never blocks
			}
		}
		writeErr <- err
	}()

	var idx int64
	cur := &docBatch{done: make(chan struct{})}
	send := func() error {
		b := cur
		cur = &docBatch{done: make(chan struct{})}
		select {
		case ordered <- b:
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case jobs <- b:
		case <-ctx.Done():
			return ctx.Err()
		}
		return nil
	}
	var progress func(int64)
	if bar != nil {
		progress = func(n int64) { bar.Add64(n) }
	}
	st, readErr := documents(ctx, sm.Source, func(doc []byte) error {
		cur.docs = append(cur.docs, append([]byte(nil), doc...))
		cur.val = append(cur.val, isVal(idx, opts.ValFraction, phi))
		cur.bytes += int64(len(doc))
		idx++
		if cur.bytes >= opts.batchBytes {
			return send()
		}
		return nil
	}, progress)
	if readErr == nil && len(cur.docs) > 0 {
		readErr = send()
	}
	close(jobs)
	close(ordered)
	if readErr != nil {
		cancel()
	}
	wErr := <-writeErr
	wg.Wait()
	sm.Stats = st
	switch {
	case readErr != nil && !errors.Is(readErr, context.Canceled):
		return readErr
	case wErr != nil:
		return wErr
	}
	return readErr
}

// writeSplits writes the tokens of ordered batches to train and val shards.
func writeSplits(ctx context.Context, ordered <-chan *docBatch, sm *SourceManifest, vocab int, dir string, shardTokens int64, valFraction float64) (err error) {
	type splitWriter struct {
		name  string
		split *Split
		sw    *shardWriter
	}
	ws := []*splitWriter{{name: SplitTrain, split: &sm.Train}, {name: SplitVal, split: &sm.Val}}
	defer func() {
		for _, w := range ws {
			if w.sw != nil {
				w.sw.abort()
			}
		}
	}()
	closeShard := func(w *splitWriter) error {
		sum, err := w.sw.close()
		if err != nil {
			return err
		}
		w.split.Shards[len(w.split.Shards)-1].CRC32C = sum
		w.sw = nil
		return nil
	}
	write := func(w *splitWriter, t []int32) error {
		var err error
		if w.sw == nil {
			file := fmt.Sprintf("%s.%s.%03d.tok", sm.Name, w.name, len(w.split.Shards))
			if w.sw, err = createShard(filepath.Join(dir, file), vocab); err != nil {
				return err
			}
			w.split.Shards = append(w.split.Shards, ShardInfo{File: file})
		}
		if err := w.sw.addDoc(t); err != nil {
			return err
		}
		sh := &w.split.Shards[len(w.split.Shards)-1]
		sh.Tokens += int64(len(t))
		sh.Docs++
		w.split.Tokens += int64(len(t))
		w.split.Docs++
		if sh.Tokens >= shardTokens {
			return closeShard(w)
		}
		return nil
	}
	// The last document is held back one step so that, at the end, a source
	// whose train split would be empty keeps it for training, and a source
	// with no validation document (but f > 0 and two or more documents)
	// gives it to validation.
	var pending []int32
	pendingVal, hasPending := false, false
	for b := range ordered {
		select {
		case <-b.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		for i, t := range b.toks {
			if hasPending {
				w := ws[0]
				if pendingVal {
					w = ws[1]
				}
				if err := write(w, pending); err != nil {
					return err
				}
			}
			pending, pendingVal, hasPending = t, b.val[i], true
		}
	}
	if hasPending {
		w := ws[0]
		switch {
		case sm.Train.Docs == 0:
		case sm.Val.Docs == 0 && valFraction > 0, pendingVal:
			w = ws[1]
		}
		if err := write(w, pending); err != nil {
			return err
		}
	}
	for _, w := range ws {
		if w.sw != nil {
			if err := closeShard(w); err != nil {
				return err
			}
		}
	}
	return nil
}
