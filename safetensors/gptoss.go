package safetensors

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/gguf"
)

// mxfp4Block is the number of values one MXFP4 block holds (one e8m0
// scale byte and 16 bytes of 4-bit codes).
const mxfp4Block = 32

// IsGPTOSSDir reports whether dir is a Hugging Face gpt_oss checkpoint: a
// config.json whose model_type is gpt_oss beside safetensors files.
func IsGPTOSSDir(dir string) bool {
	return isHFDirOf(dir, func(c *config.Config) bool { return c.ModelType == config.TypeGPTOSS })
}

// isHFDirOf reports whether dir holds safetensors files beside a
// config.json that parses and that is wants.
func isHFDirOf(dir string, is func(*config.Config) bool) bool {
	cfg, err := config.Load(filepath.Join(dir, "config.json"))
	if err != nil || !is(cfg) {
		return false
	}
	m, _ := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	return len(m) > 0
}

// ReadGPTOSS reads a Hugging Face gpt_oss directory (config.json,
// safetensors, tokenizer.json) for inference, as transformers'
// GptOssForCausalLM computes it: the attention, router and norm weights
// kept in their stored float type (norms and biases decoded to float32),
// the experts' MXFP4 blocks (gate_up_proj_blocks /
// _scales, down_proj_blocks / _scales) repacked into ggml's MXFP4 blocks
// and used as such, or, in an unquantized checkpoint, gate_up_proj and
// down_proj (stored in × out) transposed to float32 matrices. gate_up's
// interleaved columns (gate even, up odd) are split as llama.cpp's
// converter splits them. Every tensor must be used.
func ReadGPTOSS(ctx context.Context, dir string) (*gguf.Mapped, error) {
	cfg, err := config.Load(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	if cfg.ModelType != config.TypeGPTOSS {
		return nil, fmt.Errorf("import %s: model_type %q is not gpt_oss", dir, cfg.ModelType)
	}
	if !cfg.AttentionBias || !cfg.AttentionSinks || !cfg.RouterBias || !cfg.ExpertBias || !cfg.IsMoE() {
		return nil, fmt.Errorf("import %s: a gpt_oss config without biases, sinks or experts is not supported", dir)
	}
	set, err := OpenDir(dir)
	if err != nil {
		return nil, err
	}
	defer set.Close()
	r := &ossReader{set: set, dir: dir, used: map[string]bool{}}
	d, hd := cfg.HiddenSize, cfg.HeadDimension()
	qDim, kvDim := cfg.NumHeads*hd, cfg.KVHeads()*hd
	E, ff := cfg.NumExperts, cfg.ExpertSize()
	m := &gguf.Mapped{Cfg: cfg, Layers: make([]gguf.LayerMatrices, cfg.NumLayers)}
	err = readHF(ctx, r, m, func(l int, L *gguf.LayerMatrices, p string) {
		L.Q = r.matrix(p+"self_attn.q_proj.weight", qDim, d)
		L.K = r.matrix(p+"self_attn.k_proj.weight", kvDim, d)
		L.V = r.matrix(p+"self_attn.v_proj.weight", kvDim, d)
		L.O = r.matrix(p+"self_attn.o_proj.weight", d, qDim)
		L.QBias = r.vec(p+"self_attn.q_proj.bias", qDim)
		L.KBias = r.vec(p+"self_attn.k_proj.bias", kvDim)
		L.VBias = r.vec(p+"self_attn.v_proj.bias", kvDim)
		L.OBias = r.vec(p+"self_attn.o_proj.bias", d)
		L.Sinks = r.vec(p+"self_attn.sinks", cfg.NumHeads)
		L.Router = r.matrix(p+"mlp.router.weight", E, d)
		L.RouterBias = r.vec(p+"mlp.router.bias", E)
		L.Experts = r.experts(p+"mlp.experts.", E, ff, d)
	})
	if err != nil {
		return nil, err
	}
	if err := finishImport(dir, set, r.used, m, "gpt_oss model"); err != nil {
		return nil, err
	}
	return m, nil
}

// ossReader reads a gpt_oss checkpoint's tensors, keeping the first error
// (a missing tensor, a wrong shape or dtype, each named).
type ossReader struct {
	set  *Set
	dir  string
	used map[string]bool
	err  error
}

// failed returns the first error kept.
func (r *ossReader) failed() error { return r.err }

// info returns tensor name's description if it has shape and one of the
// dtypes; absent with optional, it returns nil without an error.
func (r *ossReader) info(name string, optional bool, dtypes []string, shape ...int64) *TensorInfo {
	if r.err != nil {
		return nil
	}
	t, ok := r.set.Info(name)
	switch {
	case !ok && optional:
		return nil
	case !ok:
		r.err = fmt.Errorf("import %s: missing tensor %q", r.dir, name)
	case !slices.Equal(t.Shape, shape):
		r.err = fmt.Errorf("import %s: tensor %q has shape %v, config.json needs %v", r.dir, name, t.Shape, shape)
	case !slices.Contains(dtypes, t.DType):
		r.err = fmt.Errorf("import %s: tensor %q has dtype %s, want %s", r.dir, name, t.DType, strings.Join(dtypes, " or "))
	default:
		r.used[name] = true
		return t
	}
	return nil
}

var floatTypes = []string{F32, F16, BF16}

// floats reads a float tensor of the given shape as float32.
func (r *ossReader) floats(name string, shape ...int64) []float32 {
	if r.info(name, false, floatTypes, shape...) == nil {
		return nil
	}
	v, err := r.set.Float32(name)
	if err != nil && r.err == nil {
		r.err = fmt.Errorf("import %s: %w", r.dir, err)
	}
	return v
}

// vec reads a vector of n values.
func (r *ossReader) vec(name string, n int) []float32 { return r.floats(name, int64(n)) }

// matrix reads an out × in matrix as a gguf.Matrix in its stored type
// (F32, F16 or BF16: no float32 copy of a bfloat16 checkpoint).
func (r *ossReader) matrix(name string, rows, cols int) gguf.Matrix {
	t := r.info(name, false, floatTypes, int64(rows), int64(cols))
	if t == nil {
		return gguf.Matrix{}
	}
	b, err := r.set.Bytes(name)
	if err != nil {
		r.err = fmt.Errorf("import %s: %w", r.dir, err)
		return gguf.Matrix{}
	}
	typ := map[string]compute.QType{F32: compute.QF32, F16: compute.QF16, BF16: compute.QBF16}[t.DType]
	return gguf.Matrix{Name: name, Type: typ, Rows: rows, Cols: cols, Data: b}
}

// experts reads the E experts of one layer (prefix "…mlp.experts."): the
// MXFP4 blocks and scales when the checkpoint has them, else the float
// projections, and the biases; gate and up are gate_up's even and odd
// outputs.
func (r *ossReader) experts(p string, E, ff, d int) []gguf.ExpertMatrices {
	out := make([]gguf.ExpertMatrices, E)
	gub := r.floats(p+"gate_up_proj_bias", int64(E), int64(2*ff))
	db := r.floats(p+"down_proj_bias", int64(E), int64(d))
	if r.err != nil {
		return nil
	}
	for e := range out {
		x := &out[e]
		x.GateBias, x.UpBias = make([]float32, ff), make([]float32, ff)
		for j := 0; j < ff; j++ {
			x.GateBias[j], x.UpBias[j] = gub[e*2*ff+2*j], gub[e*2*ff+2*j+1]
		}
		x.DownBias = db[e*d : (e+1)*d]
	}
	if _, ok := r.set.Info(p + "gate_up_proj_blocks"); ok {
		gu := r.mxfp4(p+"gate_up_proj", E, 2*ff, d)
		dn := r.mxfp4(p+"down_proj", E, d, ff)
		if r.err != nil {
			return nil
		}
		rb := d / mxfp4Block * (1 + mxfp4Block/2)
		for e := range out {
			gate, up := make([]byte, ff*rb), make([]byte, ff*rb)
			for j := 0; j < ff; j++ {
				src := gu[e][2*j*rb:]
				copy(gate[j*rb:(j+1)*rb], src[:rb])
				copy(up[j*rb:(j+1)*rb], src[rb:2*rb])
			}
			name := fmt.Sprintf("%sgate_up_proj[%d]", p, e)
			out[e].Gate = gguf.Matrix{Name: name + ".gate", Type: compute.QMXFP4, Rows: ff, Cols: d, Data: gate}
			out[e].Up = gguf.Matrix{Name: name + ".up", Type: compute.QMXFP4, Rows: ff, Cols: d, Data: up}
			out[e].Down = gguf.Matrix{Name: fmt.Sprintf("%sdown_proj[%d]", p, e), Type: compute.QMXFP4, Rows: d, Cols: ff, Data: dn[e]}
		}
		return out
	}
	// Unquantized: gate_up_proj [E, d, 2ff] and down_proj [E, ff, d], in × out.
	gu := r.floats(p+"gate_up_proj", int64(E), int64(d), int64(2*ff))
	dn := r.floats(p+"down_proj", int64(E), int64(ff), int64(d))
	if r.err != nil {
		return nil
	}
	for e := range out {
		gate, up, down := make([]float32, ff*d), make([]float32, ff*d), make([]float32, d*ff)
		for i := 0; i < d; i++ {
			row := gu[(e*d+i)*2*ff:]
			for j := 0; j < ff; j++ {
				gate[j*d+i], up[j*d+i] = row[2*j], row[2*j+1]
			}
		}
		for j := 0; j < ff; j++ {
			for i := 0; i < d; i++ {
				down[i*ff+j] = dn[(e*ff+j)*d+i]
			}
		}
		name := fmt.Sprintf("%sgate_up_proj[%d]", p, e)
		out[e].Gate = f32Matrix(name+".gate", gate, ff, d)
		out[e].Up = f32Matrix(name+".up", up, ff, d)
		out[e].Down = f32Matrix(fmt.Sprintf("%sdown_proj[%d]", p, e), down, d, ff)
	}
	return out
}

// mxfp4 reads name_blocks [E, rows, cols/32, 16] and name_scales [E, rows,
// cols/32] (uint8) as E matrices of rows × cols in ggml's MXFP4 blocks:
// the scale byte (e8m0, the same in both) then 16 bytes whose low nibbles
// are values 0–15 and high nibbles 16–31, where the checkpoint's byte i
// holds values 2i (low) and 2i+1 (high).
func (r *ossReader) mxfp4(name string, E, rows, cols int) [][]byte {
	if cols%mxfp4Block != 0 {
		r.err = fmt.Errorf("import %s: %s: %d columns are not whole MXFP4 blocks of %d", r.dir, name, cols, mxfp4Block)
		return nil
	}
	nb := cols / mxfp4Block
	u8 := []string{U8}
	if r.info(name+"_blocks", false, u8, int64(E), int64(rows), int64(nb), mxfp4Block/2) == nil ||
		r.info(name+"_scales", false, u8, int64(E), int64(rows), int64(nb)) == nil {
		return nil
	}
	blocks, err := r.set.Bytes(name + "_blocks")
	if err != nil {
		r.err = fmt.Errorf("import %s: %w", r.dir, err)
		return nil
	}
	scales, err := r.set.Bytes(name + "_scales")
	if err != nil {
		r.err = fmt.Errorf("import %s: %w", r.dir, err)
		return nil
	}
	const bb = 1 + mxfp4Block/2 // bytes per ggml block
	out := make([][]byte, E)
	for e := range out {
		m := make([]byte, rows*nb*bb)
		for b := 0; b < rows*nb; b++ {
			src := blocks[(e*rows*nb+b)*16 : (e*rows*nb+b+1)*16]
			dst := m[b*bb : (b+1)*bb]
			dst[0] = scales[e*rows*nb+b]
			var v [mxfp4Block]byte
			for i, x := range src {
				v[2*i], v[2*i+1] = x&15, x>>4
			}
			for j := 0; j < 16; j++ {
				dst[1+j] = v[j] | v[j+16]<<4
			}
		}
		out[e] = m
	}
	return out
}
