package train

import (
	"encoding/json"
	"fmt"

	"moe/data"
)

// loaderBatches adapts a data.Loader of the train split to Batches.
type loaderBatches struct {
	l *data.Loader
	B int
	T int
}

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
	for r := 0; r < b.B; r++ {
		row := rows[r*(T+1) : (r+1)*(T+1)]
		copy(tok[r*T:(r+1)*T], row[:T])
		copy(tgt[r*T:(r+1)*T], row[1:])
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
