package data

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"path/filepath"
	"sort"
)

// LoaderState is a Loader's position, JSON-serialisable, for checkpoints:
// Restore(State()) continues the token stream bit for bit.
type LoaderState struct {
	Split    string `json:"split"`
	Seed     uint64 `json:"seed"`
	SeqLen   int    `json:"seq_len"`
	Manifest string `json:"manifest"` // tokenizer fingerprint + source names, to refuse a foreign state
	// Pass counts completed passes over the whole mixture (all epochs).
	Pass int64 `json:"pass"`
	// RNG is the state of the generator that interleaves sources.
	RNG uint64 `json:"rng"`
	// Cursors hold, per source, the epoch and document position within the
	// current pass.
	Cursors []Cursor `json:"cursors"`
	// Current document being streamed: source, document, next token offset.
	// Source < 0 means none.
	Source int   `json:"source"`
	Doc    int64 `json:"doc"`
	Offset int64 `json:"offset"`
	// Carry is the last token of the previous row (rows overlap by one token);
	// HasCarry is false at the very start.
	Carry    int32 `json:"carry"`
	HasCarry bool  `json:"has_carry"`
	// CarrySource is the source (manifest order) Carry came from.
	CarrySource int `json:"carry_source,omitempty"`
	// Tokens is the number of tokens consumed from the stream so far.
	Tokens int64 `json:"tokens"`
}

// Cursor is one source's position in the current pass.
type Cursor struct {
	Epoch int   `json:"epoch"`
	Pos   int64 `json:"pos"`
}

// sourceDocs is one source's documents in one split, across its shards.
type sourceDocs struct {
	name    string
	epochs  int
	shards  []*Shard
	cumDocs []int64 // cumDocs[k] = documents in shards[:k]
	docs    int64
	tokens  int64
}

func (s *sourceDocs) locate(doc int64) (*Shard, int64) {
	k := sort.Search(len(s.shards), func(i int) bool { return s.cumDocs[i+1] > doc })
	return s.shards[k], doc - s.cumDocs[k]
}

// ErrEmptySplit is wrapped by OpenLoader's error when the requested split
// holds no documents (a corpus too small for a validation split, say), so a
// trainer can skip evaluation.
var ErrEmptySplit = errors.New("split has no documents")

// Loader streams packed sequences from a prepared directory. It reads shards
// with pread (see OpenShard), so its memory does not grow with the corpus.
//
// For the train split, one pass of the mixture visits every document of a
// source with E epochs exactly E times: each epoch is a fresh permutation of
// the source's documents (a keyed Feistel permutation, so nothing is
// materialised), and sources are interleaved by drawing the next source with
// probability proportional to its remaining documents in the pass, so every
// source finishes its epochs together at the end of the pass. Passes repeat
// with new permutations. Documents (each ending in end-of-text) are
// concatenated and cut into rows of SeqLen+1 tokens; consecutive rows
// overlap by one token, so every token is a target exactly once.
//
// The validation split is read once in storage order (sources in manifest
// order, epochs ignored); Next then returns io.EOF until Reset.
type Loader struct {
	dir     string
	split   string
	seqLen  int
	seed    uint64
	m       *Manifest
	sources []*sourceDocs
	st      LoaderState
	// docs per pass, for progress.
	passDocs int64
	scratch  []byte
	// srcs is the source of each token the last Next returned.
	srcs []int16
}

// Sources returns, for each token the last Next returned, the index in
// Manifest().Sources of the source it came from (valid until the next call).
func (l *Loader) Sources() []int16 { return l.srcs }

// OpenLoader opens split (SplitTrain or SplitVal) of the data prepared in
// dir, producing rows of seqLen+1 tokens. All shards are opened and verified.
func OpenLoader(dir string, split string, seqLen int, seed uint64) (*Loader, error) {
	if split != SplitTrain && split != SplitVal {
		return nil, fmt.Errorf("data loader: split %q, want %q or %q", split, SplitTrain, SplitVal)
	}
	if seqLen < 1 {
		return nil, fmt.Errorf("data loader: sequence length %d must be positive", seqLen)
	}
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, fmt.Errorf("data loader: %w", err)
	}
	if len(m.Sources) > math.MaxInt16 {
		return nil, fmt.Errorf("data loader: %d sources, at most %d", len(m.Sources), math.MaxInt16)
	}
	l := &Loader{dir: dir, split: split, seqLen: seqLen, seed: seed, m: m}
	var total int64
	for _, sm := range m.Sources {
		sp := sm.Train
		if split == SplitVal {
			sp = sm.Val
		}
		sd := &sourceDocs{name: sm.Name, epochs: sm.Epochs, cumDocs: []int64{0}}
		if sd.epochs < 1 {
			sd.epochs = 1
		}
		for _, si := range sp.Shards {
			sh, err := OpenShard(filepath.Join(dir, filepath.Base(si.File)))
			if err != nil {
				l.Close()
				return nil, fmt.Errorf("data loader: %w", err)
			}
			sd.shards = append(sd.shards, sh)
			if sh.Docs() != si.Docs || sh.Tokens() != si.Tokens || sh.Checksum() != si.CRC32C {
				l.Close()
				return nil, fmt.Errorf("data loader: shard %s does not match the manifest (%d docs, %d tokens, crc %08x; manifest %d, %d, %08x): %w",
					si.File, sh.Docs(), sh.Tokens(), sh.Checksum(), si.Docs, si.Tokens, si.CRC32C, ErrCorruptShard)
			}
			if sh.VocabSize() != m.VocabSize {
				l.Close()
				return nil, fmt.Errorf("data loader: shard %s has vocabulary %d, manifest %d: %w", si.File, sh.VocabSize(), m.VocabSize, ErrCorruptShard)
			}
			sd.docs += sh.Docs()
			sd.tokens += sh.Tokens()
			sd.cumDocs = append(sd.cumDocs, sd.docs)
		}
		total += sd.tokens
		l.sources = append(l.sources, sd)
		if split == SplitTrain {
			l.passDocs += sd.docs * int64(sd.epochs)
		} else {
			l.passDocs += sd.docs
		}
	}
	if total == 0 {
		l.Close()
		return nil, fmt.Errorf("data loader: %s: %s %w (too little data for a validation split?)", dir, split, ErrEmptySplit)
	}
	if split == SplitVal && total < int64(seqLen)+1 {
		l.Close()
		return nil, fmt.Errorf("data loader: %s: %w: %s split has %d tokens, fewer than one row of seq-len+1 = %d", dir, ErrEmptySplit, split, total, seqLen+1)
	}
	l.Reset()
	return l, nil
}

// Close releases the shards.
func (l *Loader) Close() error {
	var err error
	for _, s := range l.sources {
		for _, sh := range s.shards {
			if e := sh.Close(); e != nil && err == nil {
				err = e
			}
		}
	}
	return err
}

func (l *Loader) manifestKey() string {
	k := l.m.Tokenizer[:16]
	for _, s := range l.sources {
		k += fmt.Sprintf("/%s:%d:%d:%d", s.name, s.epochs, s.docs, s.tokens)
	}
	return k
}

// Reset rewinds the loader to the start of the stream.
func (l *Loader) Reset() {
	l.st = LoaderState{
		Split:    l.split,
		Seed:     l.seed,
		SeqLen:   l.seqLen,
		Manifest: l.manifestKey(),
		RNG:      mix(l.seed ^ 0x9e3779b97f4a7c15),
		Cursors:  make([]Cursor, len(l.sources)),
		Source:   -1,
	}
}

// State returns the loader's position.
func (l *Loader) State() LoaderState {
	st := l.st
	st.Cursors = append([]Cursor(nil), l.st.Cursors...)
	return st
}

// Restore sets the loader's position to one returned by State on a loader
// over the same data, split, sequence length and seed.
func (l *Loader) Restore(st LoaderState) error {
	switch {
	case st.Split != l.split:
		return fmt.Errorf("data loader: state is for split %q, loader reads %q", st.Split, l.split)
	case st.Seed != l.seed:
		return fmt.Errorf("data loader: state has seed %d, loader %d", st.Seed, l.seed)
	case st.SeqLen != l.seqLen:
		return fmt.Errorf("data loader: state has sequence length %d, loader %d", st.SeqLen, l.seqLen)
	case st.Manifest != l.manifestKey():
		return fmt.Errorf("data loader: state was saved for different data (%s, now %s)", st.Manifest, l.manifestKey())
	case len(st.Cursors) != len(l.sources):
		return fmt.Errorf("data loader: state has %d sources, data %d", len(st.Cursors), len(l.sources))
	}
	for i, c := range st.Cursors {
		s := l.sources[i]
		if c.Epoch < 0 || c.Pos < 0 || c.Pos > s.docs || c.Epoch > s.epochs || (c.Epoch == s.epochs && c.Pos != 0) {
			return fmt.Errorf("data loader: state cursor %d (%+v) out of range", i, c)
		}
	}
	if st.HasCarry && (st.Carry < 0 || int(st.Carry) >= l.m.VocabSize) || st.Pass < 0 || st.Tokens < 0 ||
		st.CarrySource < 0 || st.CarrySource >= len(l.sources) {
		return fmt.Errorf("data loader: state carry token %d (source %d), pass %d or tokens %d out of range", st.Carry, st.CarrySource, st.Pass, st.Tokens)
	}
	if st.Source >= len(l.sources) || st.Source >= 0 && (st.Doc < 0 || st.Doc >= l.sources[st.Source].docs || st.Offset < 0) {
		return fmt.Errorf("data loader: state document (%d, %d) out of range", st.Source, st.Doc)
	}
	l.st = st
	l.st.Cursors = append([]Cursor(nil), st.Cursors...)
	return nil
}

// Epoch returns the number of completed passes over the mixture (a pass
// covers every source's epochs).
func (l *Loader) Epoch() int64 { return l.st.Pass }

// Tokens returns the number of tokens consumed so far.
func (l *Loader) Tokens() int64 { return l.st.Tokens }

// Progress returns the fraction of the current pass's documents started.
func (l *Loader) Progress() float64 {
	var done int64
	for i, c := range l.st.Cursors {
		if l.split == SplitTrain {
			done += int64(c.Epoch)*l.sources[i].docs + c.Pos
		} else {
			done += c.Pos
		}
	}
	return float64(done) / float64(l.passDocs)
}

// PassTokens returns the tokens in one pass: each source's tokens times its
// epochs for the train split, the tokens once for the validation split.
func (l *Loader) PassTokens() int64 {
	var n int64
	for _, s := range l.sources {
		if l.split == SplitTrain {
			n += s.tokens * int64(s.epochs)
		} else {
			n += s.tokens
		}
	}
	return n
}

// Next returns batch rows of SeqLen+1 consecutive tokens (inputs and targets
// shifted by one), batch*(SeqLen+1) tokens in all. For the validation split
// the final call may return fewer rows, and later calls io.EOF.
func (l *Loader) Next(batch int) ([]int32, error) {
	if batch < 1 {
		return nil, fmt.Errorf("data loader: batch %d must be positive", batch)
	}
	row := l.seqLen + 1
	out := make([]int32, 0, batch*row)
	l.srcs = l.srcs[:0]
	for r := 0; r < batch; r++ {
		save := l.State()
		start := len(out)
		if l.st.HasCarry {
			out = append(out, l.st.Carry)
			l.srcs = append(l.srcs, int16(l.st.CarrySource))
		}
		var err error
		out, err = l.fill(out, start+row)
		if err != nil {
			out = out[:start]
			l.srcs = l.srcs[:start]
			if errors.Is(err, io.EOF) {
				l.st = save
				if r == 0 {
					return nil, io.EOF
				}
				return out, nil
			}
			return nil, err
		}
		l.st.Carry, l.st.HasCarry = out[len(out)-1], true
		l.st.CarrySource = int(l.srcs[len(l.srcs)-1])
	}
	return out, nil
}

// fill appends stream tokens to out until it holds n tokens.
func (l *Loader) fill(out []int32, n int) ([]int32, error) {
	for len(out) < n {
		if l.st.Source < 0 {
			if err := l.nextDoc(); err != nil {
				return out, err
			}
		}
		src := l.sources[l.st.Source]
		sh, local := src.locate(l.st.Doc)
		ds, de, err := sh.DocRange(local)
		if err != nil {
			return out, err
		}
		from := ds + l.st.Offset
		to := min(de, from+int64(n-len(out)))
		if out, err = sh.readTokens(out, from, to, &l.scratch); err != nil {
			return out, err
		}
		for range to - from {
			l.srcs = append(l.srcs, int16(l.st.Source))
		}
		l.st.Tokens += to - from
		if to == de {
			l.st.Source, l.st.Doc, l.st.Offset = -1, 0, 0
		} else {
			l.st.Offset = to - ds
		}
	}
	return out, nil
}

// nextDoc chooses the next document of the stream.
func (l *Loader) nextDoc() error {
	if l.split == SplitVal {
		for i, s := range l.sources {
			c := &l.st.Cursors[i]
			if c.Pos < s.docs {
				l.st.Source, l.st.Doc, l.st.Offset = i, c.Pos, 0
				c.Pos++
				return nil
			}
		}
		return io.EOF
	}
	for attempt := 0; attempt < 2; attempt++ {
		var remaining int64
		for i, s := range l.sources {
			c := l.st.Cursors[i]
			remaining += int64(s.epochs-c.Epoch)*s.docs - c.Pos
		}
		if remaining == 0 {
			l.st.Pass++
			for i := range l.st.Cursors {
				l.st.Cursors[i] = Cursor{}
			}
			continue
		}
		var r uint64
		r, l.st.RNG = below(l.st.RNG, uint64(remaining))
		for i, s := range l.sources {
			c := &l.st.Cursors[i]
			rem := int64(s.epochs-c.Epoch)*s.docs - c.Pos
			if int64(r) >= rem {
				r -= uint64(rem)
				continue
			}
			key := mix(l.seed ^ mix(uint64(i)+1) ^ mix(uint64(l.st.Pass)<<20|uint64(c.Epoch)))
			l.st.Source, l.st.Doc, l.st.Offset = i, permute(c.Pos, s.docs, key), 0
			if c.Pos++; c.Pos == s.docs {
				c.Epoch++
				c.Pos = 0
			}
			return nil
		}
	}
	return errors.New("data loader: no documents to schedule")
}

// mix is the SplitMix64 finaliser.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// below returns a uniform number in [0, n) and the next generator state
// (SplitMix64 with Lemire's multiply-shift reduction and rejection).
func below(state, n uint64) (uint64, uint64) {
	for {
		x := mix(state)
		state += 0x9e3779b97f4a7c15
		hi, lo := bits.Mul64(x, n)
		if lo >= n || lo >= (-n)%n {
			return hi, state
		}
	}
}

// permute maps i ∈ [0, n) to its image under a keyed pseudo-random
// permutation of [0, n): a 4-round Feistel network on the smallest
// even-bit-width domain ≥ n, with cycle walking back into range.
func permute(i, n int64, key uint64) int64 {
	if n <= 1 {
		return 0
	}
	b := bits.Len64(uint64(n - 1))
	if b%2 == 1 {
		b++
	}
	half := uint(b / 2)
	mask := uint64(1)<<half - 1
	x := uint64(i)
	for {
		l, r := x>>half, x&mask
		for round := uint64(0); round < 4; round++ {
			f := mix(key^r^round<<56) & mask
			l, r = r, l^f
		}
		x = l<<half | r
		if x < uint64(n) {
			return int64(x)
		}
	}
}
