// Package memest estimates the memory a moe command needs (weights,
// optimizer state, activations, KV cache, scratch) and checks it against
// what the machine has available, so that a command refuses at once, naming
// the estimate and the flag to change, instead of dying out of memory
// partway through.
//
// The estimates follow the buffers the CPU implementation allocates
// (model's activation buffers, infer's float32 KV cache); they are checked
// against measured peak heap in this package's tests (within the factor
// stated there). They leave out what scales with the data (token arrays)
// and the Go runtime's own overhead, which the check's headroom covers.
package memest

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/model"
)

// Estimate is a memory estimate in bytes, by kind. Values saturate at
// math.MaxInt64 instead of overflowing.
type Estimate struct {
	Weights     int64 `json:"weights_bytes"`     // parameters as held in memory
	Optimizer   int64 `json:"optimizer_bytes"`   // gradients and AdamW moments
	Activations int64 `json:"activations_bytes"` // forward/backward buffers of one micro-batch
	KVCache     int64 `json:"kv_cache_bytes"`    // attention keys and values
	Scratch     int64 `json:"scratch_bytes"`     // per-pass buffers (attention scores, logits, queues)
}

// Total is the sum of all parts.
func (e Estimate) Total() int64 {
	return add(e.Weights, e.Optimizer, e.Activations, e.KVCache, e.Scratch)
}

// String renders e as "12.3 GiB (weights …, optimizer …, …)", leaving out
// zero parts.
func (e Estimate) String() string {
	return Bytes(e.Total()) + " (" + e.parts() + ")"
}

// parts lists the non-zero parts: "weights 1.0 GiB, optimizer 3.0 GiB".
func (e Estimate) parts() string {
	var parts []string
	for _, p := range []struct {
		name string
		v    int64
	}{{"weights", e.Weights}, {"optimizer", e.Optimizer}, {"activations", e.Activations}, {"KV cache", e.KVCache}, {"scratch", e.Scratch}} {
		if p.v > 0 {
			parts = append(parts, p.name+" "+Bytes(p.v))
		}
	}
	return strings.Join(parts, ", ")
}

// Bytes formats n in binary units.
func Bytes(n int64) string {
	if n == math.MaxInt64 {
		return "more than 8 EiB"
	}
	f := float64(n)
	for _, u := range []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"} {
		if f < 1024 || u == "PiB" {
			if u == "B" {
				return fmt.Sprintf("%d B", n)
			}
			return fmt.Sprintf("%.1f %s", f, u)
		}
		f /= 1024
	}
	return ""
}

// add and mul saturate at math.MaxInt64 (every input is non-negative).
func add(v ...int64) int64 {
	var s int64
	for _, x := range v {
		if x < 0 || s > math.MaxInt64-x {
			return math.MaxInt64
		}
		s += x
	}
	return s
}

func mul(v ...int64) int64 {
	p := int64(1)
	for _, x := range v {
		if x < 0 {
			return math.MaxInt64
		}
		if x != 0 && p > math.MaxInt64/x {
			return math.MaxInt64
		}
		p *= x
	}
	return p
}

// Params returns cfg's parameter count (saturating).
func Params(cfg *config.Config) int64 {
	d, hd := int64(cfg.HiddenSize), int64(cfg.HeadDimension())
	nh, nkv, L := int64(cfg.NumHeads), int64(cfg.KVHeads()), int64(cfg.NumLayers)
	V := int64(cfg.VocabSize)
	attn := add(mul(2, nh, hd, d), mul(2, nkv, hd, d), mul(2, d))
	if cfg.QKVBias {
		attn = add(attn, mul(nh+2*nkv, hd))
	}
	if cfg.QKNorm {
		if cfg.QKNormPerHead {
			attn = add(attn, mul(2, hd))
		} else {
			attn = add(attn, mul(nh+nkv, hd))
		}
	}
	var ff int64
	if cfg.IsMoE() {
		if cfg.HasRouterScoreBias() {
			ff = int64(cfg.NumExperts)
		}
		ff = add(ff, mul(int64(cfg.NumExperts), d), mul(3, int64(cfg.NumExperts), int64(cfg.ExpertSize()), d),
			mul(3, int64(cfg.SharedExpertIntermediateSize), d))
	} else {
		ff = mul(3, int64(cfg.IntermediateSize), d)
	}
	heads := 1
	if !cfg.TieWordEmbeddings {
		heads = 2
	}
	return add(mul(L, add(attn, ff)), mul(int64(heads), V, d), d)
}

// activationFloats returns the float32s (and same-sized ints) of model's
// forward/backward buffers per token of a micro-batch, and per thread
// (the T×T attention score and gradient blocks per unit of T²).
func activationFloats(cfg *config.Config) (perToken int64) {
	d, hd := int64(cfg.HiddenSize), int64(cfg.HeadDimension())
	nh, nkv, L := int64(cfg.NumHeads), int64(cfg.KVHeads()), int64(cfg.NumLayers)
	V := int64(cfg.VocabSize)
	qdim, qkvdim := nh*hd, (nh+2*nkv)*hd
	layer := add(mul(4, d), 2, qkvdim, nh, qdim)
	global := add(mul(L+1, d), mul(4, d), 1, V, qkvdim, qdim)
	if cfg.QKNorm { // q and k before their norms, 1/rms per normed span; two gradient rows
		layer = add(layer, mul(nh+nkv, hd), nh+nkv)
		global = add(global, mul(2, qdim))
	}
	if cfg.IsMoE() {
		E, ffe, ffs := int64(cfg.NumExperts), int64(cfg.ExpertSize()), int64(cfg.SharedExpertIntermediateSize)
		k := int64(model.RoutedK(cfg))
		if cfg.Routing == config.RoutingExpertChoice {
			k = max(k, int64(math.Ceil(max(cfg.CapacityFactor, 1))))
		}
		layer = add(layer, mul(2, E), 1, mul(6, k), mul(3, k, ffe), mul(k, d), mul(3, ffs))
		global = add(global, mul(3, k, d), mul(3, k, ffe), mul(3, E), 3, mul(3, ffs))
	} else {
		ff := int64(cfg.IntermediateSize)
		layer = add(layer, mul(3, ff))
		global = add(global, mul(3, ff))
	}
	return add(mul(L, layer), global)
}

// Train estimates `moe train` / `moe finetune`: float32 weights, their
// gradients and AdamW's two moments, and the activations of a batch×seqLen
// micro-batch on threads threads.
func Train(cfg *config.Config, batch, seqLen, threads int) Estimate {
	p := Params(cfg)
	return Estimate{
		Weights:     mul(4, p),
		Optimizer:   mul(12, p),
		Activations: mul(4, int64(batch), int64(seqLen), activationFloats(cfg)),
		Scratch:     mul(2*4, int64(max(threads, 1)), int64(seqLen), int64(seqLen)),
	}
}

// Eval estimates `moe eval`: the loaded weights, the training model's
// weights and gradient buffers, and the activations of batch windows of
// seqLen tokens.
func Eval(cfg *config.Config, batch, seqLen, threads int) Estimate {
	p := Params(cfg)
	e := Train(cfg, batch, seqLen, threads)
	e.Weights = mul(8, p)   // the loaded weights and the model's copy
	e.Optimizer = mul(4, p) // the (unused) gradient buffer
	return e
}

// KVBytesPerToken is infer's float32 KV cache per position of a sequence.
func KVBytesPerToken(cfg *config.Config) int64 {
	return mul(8, int64(cfg.NumLayers), int64(cfg.KVHeads()), int64(cfg.HeadDimension()))
}

// Inference estimates generation or serving with weights of weightBytes and
// a KV cache of kvTokens positions in all (over every sequence), with
// batch sequences decoding at once and queue requests waiting. A non-nil
// draft (speculative decoding) keeps a KV cache of the same positions.
func Inference(cfg, draft *config.Config, weightBytes int64, kvTokens, batch, queue int) Estimate {
	V, d := int64(cfg.VocabSize), int64(cfg.HiddenSize)
	perTok := KVBytesPerToken(cfg)
	if draft != nil {
		perTok = add(perTok, KVBytesPerToken(draft))
	}
	return Estimate{
		Weights: weightBytes,
		KVCache: mul(perTok, int64(kvTokens)),
		// Per running sequence: logits, sampler buffers and the residual
		// stream; per queued request a job of about a kilobyte.
		Scratch: add(mul(int64(max(batch, 1)), add(mul(12, V), mul(64, d))), mul(1024, int64(queue))),
	}
}

// Headroom is the share of the available memory an estimate may use: the
// rest covers the Go runtime, the data and what the estimate leaves out.
const Headroom = 0.9

// Check refuses an estimate above Headroom × the available memory with
// one line: what needs it, the estimate, what is available and hint (the
// flag to change). It passes when the available memory cannot be read.
func Check(e Estimate, what, hint string) error {
	avail, src, err := Available()
	if err != nil {
		return nil
	}
	return check(e, avail, src, what, hint)
}

// CheckWeights refuses to load cfg's weights as float32 when they alone
// exceed the available memory; what names the source.
func CheckWeights(cfg *config.Config, what string) error {
	return Check(Estimate{Weights: mul(4, Params(cfg))}, what, "use a machine with more memory, or a quantized GGUF of the model")
}

// CheckLoaded is Check for a command that has already loaded resident
// bytes of the estimate (the weights): only the rest must still fit.
func CheckLoaded(e Estimate, resident int64, what, hint string) error {
	avail, src, err := Available()
	if err != nil {
		return nil
	}
	return check(e, add(avail, resident), src, what, hint)
}

func check(e Estimate, avail int64, src, what, hint string) error {
	if float64(e.Total()) <= Headroom*float64(avail) {
		return nil
	}
	return fmt.Errorf("%s needs about %s of memory (%s) but %s is available (%s): %s", what, Bytes(e.Total()), e.parts(), Bytes(avail), src, hint)
}

// FitKVTokens returns how many KV-cache positions fit beside the rest of
// e (whose KVCache is ignored) in the available memory, for perToken
// bytes a position; ok is false when the available memory cannot be read.
func FitKVTokens(e Estimate, perToken int64) (n int, ok bool) {
	avail, _, err := Available()
	if err != nil {
		return 0, false
	}
	return fitKV(e, perToken, avail), true
}

func fitKV(e Estimate, perToken, avail int64) int {
	e.KVCache = 0
	room := Headroom*float64(avail) - float64(e.Total())
	return int(max(0, min(room/float64(max(perToken, 1)), math.MaxInt32)))
}

// Available returns the memory this process may still use: /proc/meminfo's
// MemAvailable, or less when a cgroup memory limit is tighter; src says
// which.
func Available() (avail int64, src string, err error) {
	avail, err = memAvailable("/proc/meminfo")
	if err != nil {
		return 0, "", err
	}
	src = "MemAvailable"
	if lim, ok := cgroupRoom(); ok && lim < avail {
		avail, src = lim, "cgroup memory limit"
	}
	return avail, src, nil
}

// memAvailable reads MemAvailable (kB) from a meminfo file.
func memAvailable(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: MemAvailable: %w", path, err)
			}
			return mul(kb, 1024), nil
		}
	}
	return 0, errors.New(path + ": no MemAvailable line")
}

// cgroupRoom returns the cgroup's memory limit minus its usage (cgroup v2,
// then v1), when a limit is set.
func cgroupRoom() (int64, bool) {
	for _, p := range [][2]string{
		{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"},
		{"/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"},
	} {
		lim, ok1 := readInt(p[0])
		use, ok2 := readInt(p[1])
		if ok1 && ok2 && lim > 0 && lim < 1<<60 {
			return max(lim-use, 0), true
		}
	}
	return 0, false
}

func readInt(path string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return v, err == nil
}
