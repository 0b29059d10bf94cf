package train

import (
	"encoding/json"
	"fmt"

	"github.com/moe-llm/moe/data"
)

// loaderBatches adapts a data.Loader of the train split to Batches.
type loaderBatches struct {
	l   *data.Loader
	B   int
	T   int
	src []int16 // source of each input token of the last Next
}

// TokenSources returns the source index of each input token of the last
// Next (B·T of them).
func (b *loaderBatches) TokenSources() []int16 { return b.src }

// openTrainBatches opens the train split of a prepared data directory.
func openTrainBatches(dir string, _ *data.Manifest, B, T int, seed uint64) (*loaderBatches, error) {
	l, err := data.OpenLoader(dir, data.SplitTrain, T, seed)
	if err != nil {
		return nil, err
	}
	return &loaderBatches{l: l, B: B, T: T}, nil
}

// Next fills B rows: tokens are a row's first T tokens, targets the last T.
func (b *loaderBatches) Next(tok, tgt []int32) error {
	rows, err := b.l.Next(b.B)
	if err != nil {
		return err
	}
	T := b.T
	if len(rows) != b.B*(T+1) {
		return fmt.Errorf("data loader returned %d tokens, want %d", len(rows), b.B*(T+1))
	}
	srcs := b.l.Sources()
	if len(b.src) != b.B*T {
		b.src = make([]int16, b.B*T)
	}
	for r := 0; r < b.B; r++ {
		row := rows[r*(T+1) : (r+1)*(T+1)]
		copy(tok[r*T:(r+1)*T], row[:T])
		copy(tgt[r*T:(r+1)*T], row[1:])
		copy(b.src[r*T:(r+1)*T], srcs[r*(T+1):r*(T+1)+T])
	}
	return nil
}

// State serialises the loader's position.
func (b *loaderBatches) State() (json.RawMessage, error) { return json.Marshal(b.l.State()) }

// Restore sets the loader's position.
func (b *loaderBatches) Restore(s json.RawMessage) error {
	var st data.LoaderState
	if err := json.Unmarshal(s, &st); err != nil {
		return fmt.Errorf("data position: %w", err)
	}
	return b.l.Restore(st)
}

// Close releases the shards.
func (b *loaderBatches) Close() error { return b.l.Close() }

// readValTokens returns up to n tokens from the start of the validation
// split (nil when it is empty).
func readValTokens(dir string, man *data.Manifest, n int) ([]int32, error) {
	total := man.Tokens(data.SplitVal)
	if total < 2 {
		return nil, nil
	}
	want := int(min(int64(n), total))
	l, err := data.OpenLoader(dir, data.SplitVal, want-1, 0)
	if err != nil {
		return nil, fmt.Errorf("validation data: %w", err)
	}
	defer l.Close()
	row, err := l.Next(1)
	if err != nil {
		return nil, fmt.Errorf("validation data: %w", err)
	}
	return row, nil
}

// RandomBatches yields uniformly random token ids (for benchmarks).
type RandomBatches struct {
	V   int
	Pos uint64 // position of the random stream
}

// Next fills tok with random ids and tgt with the following ones.
func (r *RandomBatches) Next(tok, tgt []int32) error {
	for i := range tok {
		r.Pos++
		tok[i] = int32(mix64(r.Pos) % uint64(r.V))
		tgt[i] = int32(mix64(r.Pos^0xabcdef) % uint64(r.V))
	}
	return nil
}

// State serialises the position.
func (r *RandomBatches) State() (json.RawMessage, error) { return json.Marshal(r.Pos) }

// Restore sets the position.
func (r *RandomBatches) Restore(s json.RawMessage) error { return json.Unmarshal(s, &r.Pos) }

// mix64 is the splitmix64 finaliser.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
