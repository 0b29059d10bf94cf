package gguf

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Mix is one of llama.cpp's quantization mixes (a llama_ftype, as
// llama-quantize names them): a default type for the weight matrices and
// llama-quantize's rules for which tensors get another (token embeddings
// and output, attention V and FFN down in the "use more bits" layers,
// 8-expert models, k-quant fallbacks for rows that are not a multiple of
// 256). Norms, the router and every 1-D tensor keep their type.
type Mix struct {
	// Name is llama-quantize's name of the mix, lower case (q4_k_m).
	Name string
	// FileType is general.file_type (llama_ftype).
	FileType uint32
	// Default is the type of most weight matrices.
	Default GGMLType
	// Pure gives every quantizable tensor Default (llama-quantize --pure);
	// only the fallback for rows that are not whole blocks still applies.
	Pure bool
}

// mixes are llama-quantize's mixes moe writes, with llama_ftype numbers.
var mixes = []Mix{
	{Name: "f32", FileType: 0, Default: F32},
	{Name: "f16", FileType: 1, Default: F16},
	{Name: "bf16", FileType: 32, Default: BF16},
	{Name: "q8_0", FileType: 7, Default: Q8_0},
	{Name: "q4_0", FileType: 2, Default: Q4_0},
	{Name: "q4_1", FileType: 3, Default: Q4_1},
	{Name: "q5_0", FileType: 8, Default: Q5_0},
	{Name: "q5_1", FileType: 9, Default: Q5_1},
	{Name: "q2_k", FileType: 10, Default: Q2_K},
	{Name: "q3_k_s", FileType: 11, Default: Q3_K},
	{Name: "q3_k_m", FileType: 12, Default: Q3_K},
	{Name: "q3_k_l", FileType: 13, Default: Q3_K},
	{Name: "q4_k_s", FileType: 14, Default: Q4_K},
	{Name: "q4_k_m", FileType: 15, Default: Q4_K},
	{Name: "q5_k_s", FileType: 16, Default: Q5_K},
	{Name: "q5_k_m", FileType: 17, Default: Q5_K},
	{Name: "q6_k", FileType: 18, Default: Q6_K},
	{Name: "iq4_nl", FileType: 25, Default: IQ4_NL},
	{Name: "iq4_xs", FileType: 30, Default: IQ4_XS},
	{Name: "mxfp4_moe", FileType: 38, Default: MXFP4},
}

// mixAliases are llama-quantize's other names of mixes (and the one tensor
// type, mxfp4, whose mix has another name).
var mixAliases = map[string]string{"q3_k": "q3_k_m", "q4_k": "q4_k_m", "q5_k": "q5_k_m", "mxfp4": "mxfp4_moe"}

// Mix file types used by the rules.
const (
	ftQ2K      = 10
	ftQ3KS     = 11
	ftQ3KM     = 12
	ftQ3KL     = 13
	ftQ4KS     = 14
	ftQ4KM     = 15
	ftQ5KM     = 17
	ftIQ4NL    = 25
	ftIQ4XS    = 30
	ftMXFP4MoE = 38
)

// ParseMix returns the mix named s (case-insensitive): one of
// llama-quantize's mixes or aliases (q4_k_m, q4_k = q4_k_m, q6_k, q8_0,
// f16, ...) or a tensor type name, which names the mix of that default type.
func ParseMix(s string) (Mix, error) {
	name := strings.ToLower(s)
	if a, ok := mixAliases[name]; ok {
		name = a
	}
	for _, m := range mixes {
		if m.Name == name {
			return m, nil
		}
	}
	names := make([]string, len(mixes))
	for i, m := range mixes {
		names[i] = m.Name
	}
	return Mix{}, fmt.Errorf("gguf: unknown type or mix %q (known: %s; aliases q3_k, q4_k, q5_k, mxfp4)", s, strings.Join(names, ", "))
}

// PureMix returns the mix that gives every quantizable tensor type t, with
// the file type llama-quantize writes for t (q4_K: q4_k_m's).
func PureMix(t GGMLType) (Mix, error) {
	m, err := ParseMix(t.String())
	if err != nil {
		return Mix{}, fmt.Errorf("gguf: moe does not write %s tensors", t)
	}
	m.Pure = true
	return m, nil
}

// MixModel is what the mix rules need to know of a model.
type MixModel struct {
	// Layers is the block count.
	Layers int
	// Experts is the routed expert count (0 or 1 for a dense model).
	Experts int
	// Heads and KVHeads are the attention head counts (their ratio is the
	// grouped-query factor).
	Heads, KVHeads int
}

// MixTensor is one tensor to give a type: its name, dims (contiguous
// dimension first) and present type.
type MixTensor struct {
	Name string
	Dims []uint64
	Type GGMLType
}

// tensorCategory is llama-quantize's broad class of a tensor name.
type tensorCategory int

const (
	catOther tensorCategory = iota
	catOutput
	catTokenEmbd
	catAttnQKV
	catAttnKVB
	catAttnV
	catAttnK
	catAttnQ
	catAttnOutput
	catFFNUp
	catFFNGate
	catFFNDown
)

// categoryOf classifies a tensor name as llama-quantize does (the first
// match wins, in this order).
func categoryOf(name string) tensorCategory {
	switch name {
	case "output.weight":
		return catOutput
	case "token_embd.weight", "per_layer_token_embd.weight":
		return catTokenEmbd
	}
	for _, c := range []struct {
		sub string
		cat tensorCategory
	}{
		{"attn_qkv.weight", catAttnQKV}, {"attn_kv_b.weight", catAttnKVB}, {"attn_v.weight", catAttnV},
		{"attn_k.weight", catAttnK}, {"attn_q.weight", catAttnQ}, {"attn_output.weight", catAttnOutput},
		{"ffn_up", catFFNUp}, {"ffn_gate", catFFNGate}, {"ffn_down", catFFNDown},
	} {
		if strings.Contains(name, c.sub) {
			return c.cat
		}
	}
	return catOther
}

func (c tensorCategory) attnV() bool { return c == catAttnV || c == catAttnQKV || c == catAttnKVB }

// quantizable reports whether llama-quantize changes a tensor's type: 2-D
// and 3-D weights other than norms, the router and a few small
// special-purpose tensors of other architectures.
func quantizable(t MixTensor) bool {
	if len(t.Dims) < 2 {
		return false
	}
	n := 0 // ggml_n_dims: trailing dimensions of 1 do not count
	for i, d := range t.Dims {
		if d != 1 {
			n = i + 1
		}
	}
	if n < 2 || !strings.HasSuffix(t.Name, "weight") {
		return false
	}
	for _, sub := range []string{"_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
		"per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight", "attn_rel_b.weight", "position_embd",
		"token_types.weight", "time_mix_", ".rel_pos", ".patch_embd", ".patch_merger"} {
		if strings.Contains(t.Name, sub) {
			return false
		}
	}
	return true
}

// blockLayer returns N of a "blk.N." tensor name.
func blockLayer(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, "blk.")
	if !ok {
		return 0, false
	}
	num, _, ok := strings.Cut(rest, ".")
	n, err := strconv.Atoi(num)
	return n, ok && err == nil
}

// useMoreBits is llama-quantize's choice of layers that get more bits: the
// first and last eighth and every third layer between.
func useMoreBits(i, n int) bool { return i < n/8 || i >= 7*n/8 || (i-n/8)%3 == 2 }

// fallback is llama-quantize's type for a tensor whose rows are not a whole
// number of t's blocks: a 32-block type of about the same size, or F16 when
// rows are not whole 32-blocks either (where llama-quantize has no fallback
// for a 32-block type it refuses the tensor; moe writes F16).
func fallback(t GGMLType, cols uint64) GGMLType {
	if cols%uint64(t.BlockSize()) == 0 {
		return t
	}
	switch t {
	case Q2_K, Q3_K:
		t = Q4_0
	case Q4_K:
		t = Q5_0
	case Q5_K:
		t = Q5_1
	case Q6_K:
		t = Q8_0
	case IQ4_XS:
		t = IQ4_NL
	}
	if cols%uint64(t.BlockSize()) != 0 {
		return F16
	}
	return t
}

// quantized reports whether t is a block type (not f32, f16 or bf16).
func quantized(t GGMLType) bool { return t.BlockSize() > 1 }

// TensorTypes returns the type each tensor gets under the mix, in the
// order of tensors: llama-quantize's llama_tensor_get_type without an
// importance matrix, for the architectures moe writes (no Falcon or 70B
// special cases). Tensors that are not quantized keep their type.
func (m Mix) TensorTypes(model MixModel, tensors []MixTensor) ([]GGMLType, error) {
	out := make([]GGMLType, len(tensors))
	// llama-quantize visits tensors ordered by layer (non-layer tensors
	// first), then by name; its attention-V and FFN-down counters count in
	// that order.
	order := make([]int, len(tensors))
	tied := true
	nAttnV := 0
	for i, t := range tensors {
		order[i] = i
		c := categoryOf(t.Name)
		if c == catOutput {
			tied = false
		}
		if c.attnV() {
			nAttnV++
		}
	}
	layerOf := func(name string) int {
		if l, ok := blockLayer(name); ok {
			return l
		}
		return -1
	}
	sort.SliceStable(order, func(a, b int) bool {
		na, nb := tensors[order[a]].Name, tensors[order[b]].Name
		if la, lb := layerOf(na), layerOf(nb); la != lb {
			return la < lb
		}
		return na < nb
	})
	iAttnV, iFFNDown := 0, 0
	gqa := 0
	if model.KVHeads > 0 {
		gqa = model.Heads / model.KVHeads
	}
	for _, i := range order {
		t := tensors[i]
		if !quantizable(t) {
			out[i] = t.Type
			continue
		}
		nt := m.Default
		if !quantized(nt) {
			out[i] = nt
			continue
		}
		if !m.Pure {
			c := categoryOf(t.Name)
			// layer is the FFN-down layer: parsed from the name for MoE
			// models (their expert tensors need not be in layer order),
			// counted otherwise.
			layer := func() (int, error) {
				if model.Experts > 1 {
					l, ok := blockLayer(t.Name)
					if !ok || l < 0 || l >= model.Layers {
						return 0, fmt.Errorf("gguf: tensor %q: no layer in [0, %d) in its name", t.Name, model.Layers)
					}
					return l, nil
				}
				return iFFNDown, nil
			}
			var err error
			nt, err = m.ruleType(nt, t, c, model, gqa, tied, &iAttnV, nAttnV, layer)
			if err != nil {
				return nil, err
			}
			if c == catFFNDown {
				iFFNDown++
			}
		}
		out[i] = fallback(nt, t.Dims[0])
	}
	return out, nil
}

// ruleType is llama_tensor_get_type_impl for the mixes moe writes: the type
// of tensor t of category c, starting from the mix's default nt.
func (m Mix) ruleType(nt GGMLType, t MixTensor, c tensorCategory, model MixModel, gqa int, tied bool, iAttnV *int, nAttnV int, layer func() (int, error)) (GGMLType, error) {
	ft, n := m.FileType, model.Layers
	switch {
	case c == catOutput || (tied && c == catTokenEmbd):
		switch {
		case ft == ftMXFP4MoE, t.Dims[0]%uint64(nt.BlockSize()) != 0:
			return Q8_0, nil
		case nt != Q8_0:
			return Q6_K, nil
		}
	case ft == ftMXFP4MoE:
		if len(t.Dims) > 2 && t.Dims[2] > 1 {
			return MXFP4, nil
		}
		return Q8_0, nil
	case c == catTokenEmbd:
	case c.attnV():
		i := *iAttnV
		*iAttnV++
		switch {
		case ft == ftQ2K:
			nt = Q3_K
			if gqa >= 4 {
				nt = Q4_K
			}
		case ft == ftQ3KM:
			nt = Q4_K
			if i < 2 {
				nt = Q5_K
			}
		case ft == ftQ3KL:
			nt = Q5_K
		case (ft == ftIQ4NL || ft == ftIQ4XS) && gqa >= 4:
			nt = Q5_K
		case (ft == ftQ4KM || ft == ftQ5KM) && useMoreBits(i, nAttnV):
			nt = Q6_K
		case ft == ftQ4KS && i < 4:
			nt = Q5_K
		}
		if model.Experts == 8 {
			nt = Q8_0
		}
	case c == catAttnK:
		if model.Experts == 8 {
			nt = Q8_0
		}
	case c == catFFNDown:
		i, err := layer()
		if err != nil {
			return 0, err
		}
		switch {
		case ft == ftQ2K:
			nt = Q3_K
		case ft == ftQ3KM:
			nt = Q4_K
			if i < n/16 {
				nt = Q5_K
			}
		case ft == ftQ3KL:
			nt = Q5_K
		case ft == ftQ4KM:
			if useMoreBits(i, n) {
				nt = Q6_K
			}
		case i < n/8 && (ft == ftIQ4NL || ft == ftIQ4XS):
			nt = Q5_K
		case ft == ftQ5KM && useMoreBits(i, n):
			nt = Q6_K
		case ft == ftQ4KS && i < n/8:
			nt = Q5_K
		}
	case c == catAttnOutput:
		if model.Experts == 8 {
			switch ft {
			case ftQ2K, ftQ3KS, ftQ3KM, ftIQ4NL, ftQ4KS, ftQ4KM, ftIQ4XS:
				nt = Q5_K
			}
		} else {
			switch ft {
			case ftQ2K:
				nt = Q3_K
			case ftQ3KM:
				nt = Q4_K
			case ftQ3KL:
				nt = Q5_K
			}
		}
	case c == catAttnQKV:
		switch ft {
		case ftQ3KM, ftQ3KL:
			nt = Q4_K
		case ftQ4KM:
			nt = Q5_K
		case ftQ5KM:
			nt = Q6_K
		}
	}
	return nt, nil
}
