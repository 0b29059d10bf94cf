package gguf

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"unsafe"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/tokenizer"
)

// Matrix is one weight matrix of a GGUF model as the file stores it: Rows
// rows of Cols elements of Type (ggml's n×k, out×in), its bytes used in
// place: a view into the mapped file, or for llama-layout q and k
// projections a copy with the rows put back in moe's RoPE order.
type Matrix struct {
	// Name is the tensor's name (with the expert index for a slice of a
	// stacked expert tensor).
	Name string
	// Type is the storage type.
	Type compute.QType
	// Rows and Cols are the matrix's shape: Rows outputs of Cols inputs.
	Rows, Cols int
	// Data is Rows·RowBytes(Cols) bytes.
	Data []byte
	// region identifies the allocation Data lies in (0: unknown), so that
	// Fuse joins only matrices of one allocation.
	region int
}

// ExpertMatrices are one feed-forward block's matrices (a dense FFN, an
// expert, or a shared expert).
type ExpertMatrices struct {
	Gate, Up, Down Matrix
	// GateBias, UpBias and DownBias are the projections' biases (gpt-oss's
	// experts); nil when the block has none.
	GateBias, UpBias, DownBias []float32
}

// LayerMatrices are one layer's tensors: norm gains decoded to float32, and
// the matrices as stored.
type LayerMatrices struct {
	AttnNorm, FFNNorm []float32
	Q, K, V, O        Matrix
	// FFN is the dense feed-forward of a dense layer.
	FFN ExpertMatrices
	// Router is the MoE router (NumExperts × hidden), Experts the routed
	// experts, Shared the shared expert (zero Rows when there is none).
	Router  Matrix
	Experts []ExpertMatrices
	Shared  ExpertMatrices
	// QNorm and KNorm are the q/k RMSNorm gains (width head_dim, or the
	// whole projection); nil when the model has none.
	QNorm, KNorm []float32
	// QBias, KBias and VBias are the q/k/v projection biases; nil when
	// the model has none.
	QBias, KBias, VBias []float32
	// SharedGateInp is the shared expert's sigmoid gate (hidden wide); nil
	// when the shared expert is ungated.
	SharedGateInp []float32
	// MLA holds the attention matrices of a multi-head latent attention
	// layer (Q, K and V are then empty); nil otherwise.
	MLA *MLAMatrices
	// ScoreBias is the router's per-expert selection bias (exp_probs_b);
	// nil when the model has none.
	ScoreBias []float32
	// Sinks are gpt-oss's per-head attention sink logits, OBias the output
	// projection's bias, RouterBias the router logits' bias; nil when the
	// model has none.
	Sinks, OBias, RouterBias []float32
}

// Mapped is a GGUF model opened for inference: its config and tokenizer,
// and every weight matrix used in place from the mapped file (no float32
// copy). Its matrices' Data are valid until Close.
type Mapped struct {
	Cfg *config.Config
	// Tok is the file's tokenizer (never nil from OpenModel).
	Tok *tokenizer.Tokenizer
	// Embed is the token embedding (vocab × hidden); Output the LM head,
	// the same matrix as Embed when the embeddings are tied.
	Embed, Output Matrix
	FinalNorm     []float32
	Layers        []LayerMatrices

	f *File
	// closer releases what a NewMapped model's matrices view.
	closer io.Closer
}

// OpenModel opens the GGUF model at path for inference: the file is mapped
// read-only and its matrices are used in place. Everything is validated
// before anything large is allocated: the architecture, every tensor's
// name, shape and byte size against the config, and that moe can compute
// with every matrix's type. Close releases the file, after which the
// matrices' bytes must not be touched.
//
// place says where the weights live while the model runs (see Placement);
// the file is validated before anything is copied.
func OpenModel(path string, place Placement) (*Mapped, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	m, err := mapModel(f)
	if err == nil {
		err = m.checkComputable()
	}
	if err == nil {
		m.Tok, err = readTokenizer(f)
		if err == nil && m.Tok == nil {
			err = errors.New("gguf: the file has no tokenizer (tokenizer.ggml.tokens)")
		}
		if err == nil && m.Tok.VocabSize() > m.Cfg.VocabSize {
			err = fmt.Errorf("gguf: tokenizer has %d ids but the model embeds only %d", m.Tok.VocabSize(), m.Cfg.VocabSize)
		}
	}
	if err == nil && place != PlaceMapped {
		// Validated: now move the bytes, and view the copy instead.
		if err = f.place(place); err == nil {
			tok := m.Tok
			if m, err = mapModel(f); err == nil {
				m.Tok = tok
			}
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// familyLayer reads the tensors of one layer of a family file that a
// Mixtral-style layer does not have: q/k norms, q/k/v biases, the shared
// expert's gate.
func familyLayer(L *LayerMatrices, fam *family, cfg *config.Config, p string, vec func(string, int) ([]float32, error)) error {
	hd := cfg.HeadDimension()
	qDim, kvDim := cfg.NumHeads*hd, cfg.KVHeads()*hd
	var errs [6]error
	if cfg.QKNorm {
		qn, kn := qDim, kvDim
		if cfg.QKNormPerHead {
			qn, kn = hd, hd
		}
		L.QNorm, errs[0] = vec(p+"attn_q_norm.weight", qn)
		L.KNorm, errs[1] = vec(p+"attn_k_norm.weight", kn)
	}
	if cfg.QKVBias {
		L.QBias, errs[2] = vec(p+"attn_q.bias", qDim)
		L.KBias, errs[3] = vec(p+"attn_k.bias", kvDim)
		L.VBias, errs[4] = vec(p+"attn_v.bias", kvDim)
	}
	if fam.sharedGate {
		L.SharedGateInp, errs[5] = vec(p+"ffn_gate_inp_shexp.weight", cfg.HiddenSize)
	}
	return errors.Join(errs[:]...)
}

// Close releases the file; the matrices' bytes become invalid.
func (m *Mapped) Close() error {
	if m == nil {
		return nil
	}
	var err error
	if m.f != nil {
		err = m.f.Close()
		m.f = nil
	}
	if m.closer != nil {
		err = errors.Join(err, m.closer.Close())
		m.closer = nil
	}
	return err
}

// each calls f with every matrix of the model.
func (m *Mapped) each(f func(*Matrix)) {
	f(&m.Embed)
	f(&m.Output)
	for l := range m.Layers {
		L := &m.Layers[l]
		for _, x := range []*Matrix{&L.Q, &L.K, &L.V, &L.O, &L.Router} {
			f(x)
		}
		if a := L.MLA; a != nil {
			for _, x := range append([]*Matrix{&a.Q, &a.QA, &a.QB, &a.KVA}, ptrs(a.KB, a.VB)...) {
				f(x)
			}
		}
		blocks := append([]ExpertMatrices{L.FFN, L.Shared}, L.Experts...)
		for i := range blocks {
			f(&blocks[i].Gate)
			f(&blocks[i].Up)
			f(&blocks[i].Down)
		}
	}
}

// checkComputable fails on the first matrix whose type moe cannot multiply
// by or dequantize.
func (m *Mapped) checkComputable() error {
	var err error
	m.each(func(x *Matrix) {
		if err == nil && x.Rows > 0 && !compute.QMatMulSupported(x.Type) {
			err = fmt.Errorf("gguf: tensor %q has type %s, which moe cannot compute with", x.Name, x.Type)
		}
	})
	return err
}

// ptrs returns pointers to the matrices of every list.
func ptrs(lists ...[]Matrix) []*Matrix {
	var out []*Matrix
	for _, l := range lists {
		for i := range l {
			out = append(out, &l[i])
		}
	}
	return out
}

// Fuse joins consecutive parts that lie back to back in one allocation
// with the same type and row length into one matrix (a fused [q; k; v] or
// [gate; up]), so that one product computes them; parts that cannot be
// joined stay separate. The result's matrices, in order, stack the parts'
// rows.
func Fuse(parts ...Matrix) []Matrix {
	var out []Matrix
	for _, p := range parts {
		if n := len(out); n > 0 {
			last := &out[n-1]
			if last.region != 0 && last.region == p.region && last.Type == p.Type && last.Cols == p.Cols &&
				len(last.Data) > 0 && len(p.Data) > 0 &&
				unsafe.Add(unsafe.Pointer(unsafe.SliceData(last.Data)), len(last.Data)) == unsafe.Pointer(unsafe.SliceData(p.Data)) {
				last.Data = unsafe.Slice(unsafe.SliceData(last.Data), len(last.Data)+len(p.Data))
				last.Rows += p.Rows
				last.Name += "+" + p.Name
				continue
			}
		}
		out = append(out, p)
	}
	return out
}

// mapRegion is the region of matrices viewed in the mapped file; copies
// get regions above it.
const mapRegion = 1

// mapModel builds the config and the matrices of f (used in place when f
// is mapped), failing on any tensor that is missing, misshapen or has no
// place in the model.
func mapModel(f *File) (*Mapped, error) {
	arch, ok := f.Get("general.architecture")
	if !ok {
		return nil, errors.New("gguf: missing metadata \"general.architecture\"")
	}
	_, moeFile := f.Get(KeyMoEConfig)
	// fam is the family of a file of another MoE architecture; nil for
	// llama files and the qwen2moe files moe itself writes.
	var fam *family
	if arch != Architecture && (arch != ArchQwen2MoE || !moeFile) {
		name, _ := arch.(string)
		if fam = lookupFamily(name); fam == nil {
			return nil, fmt.Errorf("gguf: architecture %q is not supported (moe reads %s)", fmt.Sprint(arch), architectures())
		}
	}
	qwen := arch == ArchQwen2MoE && fam == nil
	var cfg *config.Config
	var err error
	if fam != nil {
		if cfg, err = familyConfig(f, fam); err != nil {
			return nil, err
		}
	} else {
		if cfg, err = configFromFile(f); err != nil {
			return nil, err
		}
		if err := checkStructure(cfg); err != nil {
			return nil, fmt.Errorf("gguf: %w", err)
		}
	}
	permute := fam == nil && !qwen || fam != nil && fam.permuteQK
	region := mapRegion // of the views into the file
	if !f.Mapped() {
		region = 0 // separate copies: never fused
	}
	copies := mapRegion // the last region given to a copy
	used := map[string]bool{}
	// tensor checks tensor name's dims (inner, then n when n > 0) and
	// returns its bytes.
	tensor := func(name string, n int, inner ...uint64) (*TensorInfo, []byte, error) {
		dims := inner
		if n > 0 {
			dims = append(dims, uint64(n))
		}
		t, ok := f.Tensor(name)
		if !ok {
			return nil, nil, fmt.Errorf("gguf: missing tensor %q", name)
		}
		if !slices.Equal(t.Dims, dims) {
			return nil, nil, fmt.Errorf("gguf: tensor %q has dims %v, the config needs %v", name, t.Dims, dims)
		}
		used[name] = true
		data, err := f.TensorBytes(t)
		return t, data, err
	}
	// stack reads an [cols, rows, n] tensor as n matrices of rows×cols.
	stack := func(name string, rows, cols, n int) ([]Matrix, error) {
		t, data, err := tensor(name, n, uint64(cols), uint64(rows))
		if err != nil {
			return nil, err
		}
		per := len(data) / max(n, 1)
		out := make([]Matrix, max(n, 1))
		for e := range out {
			out[e] = Matrix{Name: name, Type: compute.QType(t.Type), Rows: rows, Cols: cols, Data: data[e*per : (e+1)*per : (e+1)*per], region: region}
			if n > 0 {
				out[e].Name = fmt.Sprintf("%s[%d]", name, e)
			}
		}
		return out, nil
	}
	mat := func(name string, rows, cols int) (Matrix, error) {
		ms, err := stack(name, rows, cols, 0)
		if err != nil {
			return Matrix{}, err
		}
		return ms[0], nil
	}
	// vecs reads an [n, count] tensor as count vectors (count 0: one
	// vector, dims [n]), decoded to float32.
	vecs := func(name string, n, count int) ([][]float32, error) {
		t, raw, err := tensor(name, count, uint64(n))
		if err != nil {
			return nil, err
		}
		out := make([]float32, n*max(count, 1))
		if err := Decode(t.Type, raw, out); err != nil {
			return nil, fmt.Errorf("gguf: tensor %q: %w", name, err)
		}
		vs := make([][]float32, max(count, 1))
		for i := range vs {
			vs[i] = out[i*n : (i+1)*n : (i+1)*n]
		}
		return vs, nil
	}
	vec := func(name string, n int) ([]float32, error) {
		v, err := vecs(name, n, 0)
		if err != nil {
			return nil, err
		}
		return v[0], nil
	}
	d, hd := cfg.HiddenSize, cfg.HeadDimension()
	nh, nkv, V := cfg.NumHeads, cfg.KVHeads(), cfg.VocabSize
	m := &Mapped{Cfg: cfg, f: f, Layers: make([]LayerMatrices, cfg.NumLayers)}
	if m.Embed, err = mat("token_embd.weight", V, d); err != nil {
		return nil, err
	}
	for i := range m.Layers {
		L := &m.Layers[i]
		p := fmt.Sprintf("blk.%d.", i)
		var errs [8]error
		L.AttnNorm, errs[0] = vec(p+"attn_norm.weight", d)
		oIn := nh * hd
		if cfg.MLA() {
			oIn = nh * cfg.VHeadDim
			L.MLA, errs[1] = mlaLayer(f, cfg, p, mat, stack, vec, func() int { copies++; return copies })
		} else {
			L.Q, errs[1] = mat(p+"attn_q.weight", nh*hd, d)
			L.K, errs[2] = mat(p+"attn_k.weight", nkv*hd, d)
			L.V, errs[3] = mat(p+"attn_v.weight", nkv*hd, d)
		}
		L.O, errs[4] = mat(p+"attn_output.weight", d, oIn)
		L.FFNNorm, errs[5] = vec(p+ffnNormName(fam), d)
		if err := errors.Join(errs[:]...); err != nil {
			return nil, err
		}
		if fam != nil {
			if err := familyLayer(L, fam, cfg, p, vec); err != nil {
				return nil, err
			}
		}
		if permute {
			// llama.cpp's q and k rows pair 2i with 2i+1 (its RoPE);
			// moe's pair i with i+hd/2: a copy of both in moe's order, in
			// one allocation so that they can be fused.
			copies++
			buf := make([]byte, len(L.Q.Data)+len(L.K.Data))
			rq := len(L.Q.Data) / L.Q.Rows
			rk := len(L.K.Data) / L.K.Rows
			copy(buf, ropePermute(L.Q.Data, nh, hd, rq, false))
			copy(buf[len(L.Q.Data):], ropePermute(L.K.Data, nkv, hd, rk, false))
			L.Q.Data, L.Q.region = buf[:len(L.Q.Data):len(L.Q.Data)], copies
			L.K.Data, L.K.region = buf[len(L.Q.Data):], copies
		}
		if !cfg.LayerIsMoE(i) {
			ff := cfg.IntermediateSize
			L.FFN.Gate, errs[0] = mat(p+"ffn_gate.weight", ff, d)
			L.FFN.Up, errs[1] = mat(p+"ffn_up.weight", ff, d)
			L.FFN.Down, errs[2] = mat(p+"ffn_down.weight", d, ff)
			if err := errors.Join(errs[:3]...); err != nil {
				return nil, err
			}
			continue
		}
		E, fe := cfg.NumExperts, cfg.ExpertSize()
		var gate, up, down []Matrix
		L.Router, errs[0] = mat(p+"ffn_gate_inp.weight", E, d)
		gate, errs[1] = stack(p+"ffn_gate_exps.weight", fe, d, E)
		up, errs[2] = stack(p+"ffn_up_exps.weight", fe, d, E)
		down, errs[3] = stack(p+"ffn_down_exps.weight", d, fe, E)
		if err := errors.Join(errs[:4]...); err != nil {
			return nil, err
		}
		if cfg.HasRouterScoreBias() {
			if L.ScoreBias, err = vec(p+"exp_probs_b.bias", E); err != nil {
				return nil, err
			}
		}
		L.Experts = make([]ExpertMatrices, E)
		for e := range L.Experts {
			L.Experts[e] = ExpertMatrices{Gate: gate[e], Up: up[e], Down: down[e]}
		}
		if fam != nil && fam.gptOSS {
			if err := ossLayer(L, f, cfg, p, vec, vecs); err != nil {
				return nil, err
			}
		}
		if qwen {
			// The placeholder shared expert moe writes: its down projection
			// must be zero, or the file computes something moe does not.
			_, errs[0] = vec(p+"ffn_gate_inp_shexp.weight", d)
			_, errs[1] = mat(p+"ffn_gate_shexp.weight", shexpWidth, d)
			_, errs[2] = mat(p+"ffn_up_shexp.weight", shexpWidth, d)
			var sd Matrix
			sd, errs[3] = mat(p+"ffn_down_shexp.weight", d, shexpWidth)
			if err := errors.Join(errs[:4]...); err != nil {
				return nil, err
			}
			zero := make([]float32, d*shexpWidth)
			if err := Decode(GGMLType(sd.Type), sd.Data, zero); err != nil {
				return nil, fmt.Errorf("gguf: tensor %q: %w", sd.Name, err)
			}
			for _, v := range zero {
				if v != 0 {
					return nil, fmt.Errorf("gguf: %sffn_down_shexp.weight is not zero: moe has no place for a gated shared expert", p)
				}
			}
		}
		if s := cfg.SharedExpertIntermediateSize; s > 0 {
			L.Shared.Gate, errs[0] = mat(p+"ffn_gate_shexp.weight", s, d)
			L.Shared.Up, errs[1] = mat(p+"ffn_up_shexp.weight", s, d)
			L.Shared.Down, errs[2] = mat(p+"ffn_down_shexp.weight", d, s)
			if err := errors.Join(errs[:3]...); err != nil {
				return nil, err
			}
		}
	}
	if m.FinalNorm, err = vec("output_norm.weight", d); err != nil {
		return nil, err
	}
	m.Output = m.Embed
	if !cfg.TieWordEmbeddings {
		if m.Output, err = mat("output.weight", V, d); err != nil {
			return nil, err
		}
	} else if _, ok := f.Tensor("output.weight"); ok && qwen {
		// qwen2moe needs output.weight even for tied embeddings: a copy.
		if _, err := mat("output.weight", V, d); err != nil {
			return nil, err
		}
	}
	for _, t := range f.Tensors {
		if !used[t.Name] {
			return nil, fmt.Errorf("gguf: tensor %q has no place in the moe model (unsupported feature)", t.Name)
		}
	}
	return m, nil
}
