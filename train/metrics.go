package train

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"

	"github.com/moe-llm/moe/internal/atomicfile"
)

// Record is one line of metrics.jsonl.
type Record struct {
	Step            int         `json:"step"`
	Tokens          int64       `json:"tokens"`
	TrainLoss       float64     `json:"train_loss"`
	BatchTokens     int         `json:"batch_tokens,omitempty"` // this step's training tokens
	LR              float64     `json:"lr"`
	ValLoss         *float64    `json:"val_loss,omitempty"`
	ValBitsPerByte  *float64    `json:"val_bits_per_byte,omitempty"`
	AuxLoss         float64     `json:"aux_loss"`
	ZLoss           float64     `json:"z_loss"`
	GradNorm        float64     `json:"grad_norm"`
	ExpertLoad      [][]float64 `json:"expert_load,omitempty"`
	RoutedLoad      [][]float64 `json:"routed_load,omitempty"` // before capacity dropping
	DroppedFrac     float64     `json:"dropped_frac"`
	TokensPerSecond float64     `json:"tokens_per_second"`
	ElapsedSeconds  float64     `json:"elapsed_seconds"`
}

// MetricsLog appends Records to a JSONL file.
type MetricsLog struct {
	f *os.File
}

// OpenMetrics opens path for appending. When resuming, lines with a step
// after keepThrough (logged after the checkpoint the run resumes from) are
// dropped first, so the file reads as one uninterrupted run; keepThrough < 0
// truncates the file.
func OpenMetrics(path string, keepThrough int) (*MetricsLog, error) {
	var kept []byte
	if keepThrough >= 0 {
		old, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("metrics: %w", err)
		}
		for _, line := range bytes.SplitAfter(old, []byte("\n")) {
			var r struct {
				Step int `json:"step"`
			}
			if !bytes.HasSuffix(line, []byte("\n")) || json.Unmarshal(line, &r) != nil || r.Step > keepThrough {
				continue
			}
			kept = append(kept, line...)
		}
	}
	if err := atomicfile.WriteFile(path, kept, 0o644); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return &MetricsLog{f: f}, nil
}

// Write appends one record as a line.
func (m *MetricsLog) Write(r Record) error {
	b, err := json.Marshal(sanitize(r))
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if _, err := m.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// sanitize replaces non-finite floats, which JSON cannot hold, by -1.
func sanitize(r Record) Record {
	fix := func(x float64) float64 {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return -1
		}
		return x
	}
	r.TrainLoss, r.LR, r.AuxLoss, r.ZLoss = fix(r.TrainLoss), fix(r.LR), fix(r.AuxLoss), fix(r.ZLoss)
	r.GradNorm, r.DroppedFrac, r.TokensPerSecond = fix(r.GradNorm), fix(r.DroppedFrac), fix(r.TokensPerSecond)
	if r.ValLoss != nil {
		v := fix(*r.ValLoss)
		r.ValLoss = &v
	}
	if r.ValBitsPerByte != nil {
		v := fix(*r.ValBitsPerByte)
		r.ValBitsPerByte = &v
	}
	return r
}

// Close flushes and closes the file.
func (m *MetricsLog) Close() error {
	if err := m.f.Sync(); err != nil {
		m.f.Close()
		return fmt.Errorf("metrics: %w", err)
	}
	return m.f.Close()
}

// ReadMetrics reads the records of a metrics.jsonl file.
func ReadMetrics(path string) ([]Record, error) {
	var out []Record
	err := readJSONL(path, "metrics", 64<<20, func(r Record) error {
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// readJSONL decodes each non-blank line of the JSON Lines file path (lines
// of up to maxLine bytes) as a T and passes it to each. Errors start with
// what and name the file, and the line where one line is at fault.
func readJSONL[T any](path, what string, maxLine int, each func(v T) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), maxLine)
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("%s %s:%d: %w", what, path, line, err)
		}
		if err := each(v); err != nil {
			return fmt.Errorf("%s %s:%d: %w", what, path, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", what, path, err)
	}
	return nil
}
