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
	fam, qwen, err := fileFamily(f)
	if err != nil {
		return nil, err
	}
	cfg, err := fileConfig(f, fam)
	if err != nil {
		return nil, err
	}
	mp := newMapper(f, cfg, fam, qwen)
	m := &Mapped{Cfg: cfg, f: f, Layers: make([]LayerMatrices, cfg.NumLayers)}
	if m.Embed, err = mp.mat("token_embd.weight", cfg.VocabSize, cfg.HiddenSize); err != nil {
		return nil, err
	}
	for i := range m.Layers {
		if err := mp.layer(&m.Layers[i], i); err != nil {
			return nil, err
		}
	}
	if err := mp.head(m); err != nil {
		return nil, err
	}
	if err := mp.checkAllUsed(); err != nil {
		return nil, err
	}
	return m, nil
}

// fileFamily says how f's architecture is read: fam is the family of a
// file of another MoE architecture, nil for llama files and the qwen2moe
// files moe itself writes; qwen is true for the latter. It fails when the
// architecture is missing or not supported.
func fileFamily(f *File) (fam *family, qwen bool, err error) {
	arch, ok := f.Get("general.architecture")
	if !ok {
		return nil, false, errors.New("gguf: missing metadata \"general.architecture\"")
	}
	_, moeFile := f.Get(KeyMoEConfig)
	if arch != Architecture && (arch != ArchQwen2MoE || !moeFile) {
		name, _ := arch.(string)
		if fam = lookupFamily(name); fam == nil {
			return nil, false, fmt.Errorf("gguf: architecture %q is not supported (moe reads %s)", fmt.Sprint(arch), architectures())
		}
	}
	return fam, arch == ArchQwen2MoE && fam == nil, nil
}

// fileConfig reads f's model config: from the family's metadata for a
// family file (fam non-nil), otherwise from moe's or llama's keys, checked
// for a structure moe can hold.
func fileConfig(f *File, fam *family) (*config.Config, error) {
	if fam != nil {
		return familyConfig(f, fam)
	}
	cfg, err := configFromFile(f)
	if err != nil {
		return nil, err
	}
	if err := checkStructure(cfg); err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	return cfg, nil
}

// mapper is mapModel's state while it maps one file's tensors: the file's
// config and architecture, the regions given to the matrices, and which
// tensors have been read (so that one the model has no place for is
// found).
type mapper struct {
	f   *File
	cfg *config.Config
	// fam is the file's family (nil for llama and moe's qwen2moe files),
	// qwen whether it is a qwen2moe file moe wrote.
	fam  *family
	qwen bool
	// permute says whether q and k rows are stored in llama.cpp's RoPE
	// order and must be copied into moe's.
	permute bool
	// region is the region of the views into the file (0 when f is not
	// mapped: separate copies, never fused); copies the last region given
	// to a copy.
	region, copies int
	used           map[string]bool
}

// newMapper returns a mapper of f's tensors for cfg, with no tensor read
// yet.
func newMapper(f *File, cfg *config.Config, fam *family, qwen bool) *mapper {
	mp := &mapper{f: f, cfg: cfg, fam: fam, qwen: qwen, region: mapRegion, copies: mapRegion, used: map[string]bool{}}
	mp.permute = fam == nil && !qwen || fam != nil && fam.permuteQK
	if !f.Mapped() {
		mp.region = 0
	}
	return mp
}

// newRegion returns a region for a new copy.
func (mp *mapper) newRegion() int {
	mp.copies++
	return mp.copies
}

// tensor checks tensor name's dims (inner, then n when n > 0), marks it
// used and returns its bytes.
func (mp *mapper) tensor(name string, n int, inner ...uint64) (*TensorInfo, []byte, error) {
	dims := inner
	if n > 0 {
		dims = append(dims, uint64(n))
	}
	t, ok := mp.f.Tensor(name)
	if !ok {
		return nil, nil, fmt.Errorf("gguf: missing tensor %q", name)
	}
	if !slices.Equal(t.Dims, dims) {
		return nil, nil, fmt.Errorf("gguf: tensor %q has dims %v, the config needs %v", name, t.Dims, dims)
	}
	mp.used[name] = true
	data, err := mp.f.TensorBytes(t)
	return t, data, err
}

// stack reads an [cols, rows, n] tensor as n matrices of rows×cols (n 0:
// one matrix, dims [cols, rows]).
func (mp *mapper) stack(name string, rows, cols, n int) ([]Matrix, error) {
	t, data, err := mp.tensor(name, n, uint64(cols), uint64(rows))
	if err != nil {
		return nil, err
	}
	per := len(data) / max(n, 1)
	out := make([]Matrix, max(n, 1))
	for e := range out {
		out[e] = Matrix{Name: name, Type: compute.QType(t.Type), Rows: rows, Cols: cols, Data: data[e*per : (e+1)*per : (e+1)*per], region: mp.region}
		if n > 0 {
			out[e].Name = fmt.Sprintf("%s[%d]", name, e)
		}
	}
	return out, nil
}

// mat reads a [cols, rows] tensor as one matrix of rows×cols.
func (mp *mapper) mat(name string, rows, cols int) (Matrix, error) {
	ms, err := mp.stack(name, rows, cols, 0)
	if err != nil {
		return Matrix{}, err
	}
	return ms[0], nil
}

// vecs reads an [n, count] tensor as count vectors (count 0: one vector,
// dims [n]), decoded to float32.
func (mp *mapper) vecs(name string, n, count int) ([][]float32, error) {
	t, raw, err := mp.tensor(name, count, uint64(n))
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

// vec reads an [n] tensor as one vector, decoded to float32.
func (mp *mapper) vec(name string, n int) ([]float32, error) {
	v, err := mp.vecs(name, n, 0)
	if err != nil {
		return nil, err
	}
	return v[0], nil
}

// layer reads layer i's tensors into L: the attention, the family's extra
// tensors, then the dense feed-forward or the MoE block.
func (mp *mapper) layer(L *LayerMatrices, i int) error {
	p := fmt.Sprintf("blk.%d.", i)
	if err := mp.attention(L, p); err != nil {
		return err
	}
	if mp.fam != nil {
		if err := familyLayer(L, mp.fam, mp.cfg, p, mp.vec); err != nil {
			return err
		}
	}
	if mp.permute {
		mp.ropeOrderQK(L)
	}
	if !mp.cfg.LayerIsMoE(i) {
		return mp.ffnBlock(&L.FFN, p, "", mp.cfg.IntermediateSize)
	}
	return mp.moeBlock(L, p)
}

// attention reads the attention tensors of layer prefix p into L: its
// norm, the q/k/v projections (or the latent attention's matrices), the
// output projection, and the norm in front of the feed-forward. It
// reports every problem among them at once.
func (mp *mapper) attention(L *LayerMatrices, p string) error {
	cfg := mp.cfg
	d, hd, nh, nkv := cfg.HiddenSize, cfg.HeadDimension(), cfg.NumHeads, cfg.KVHeads()
	var errs [6]error
	L.AttnNorm, errs[0] = mp.vec(p+"attn_norm.weight", d)
	oIn := nh * hd
	if cfg.MLA() {
		oIn = nh * cfg.VHeadDim
		L.MLA, errs[1] = mlaLayer(mp.f, cfg, p, mp.mat, mp.stack, mp.vec, mp.newRegion)
	} else {
		L.Q, errs[1] = mp.mat(p+"attn_q.weight", nh*hd, d)
		L.K, errs[2] = mp.mat(p+"attn_k.weight", nkv*hd, d)
		L.V, errs[3] = mp.mat(p+"attn_v.weight", nkv*hd, d)
	}
	L.O, errs[4] = mp.mat(p+"attn_output.weight", d, oIn)
	L.FFNNorm, errs[5] = mp.vec(p+ffnNormName(mp.fam), d)
	return errors.Join(errs[:]...)
}

// ropeOrderQK replaces L's q and k matrices with copies whose rows are in
// moe's RoPE order: llama.cpp's q and k rows pair 2i with 2i+1 (its RoPE),
// moe's pair i with i+hd/2. Both copies share one allocation so that they
// can be fused.
func (mp *mapper) ropeOrderQK(L *LayerMatrices) {
	nh, nkv, hd := mp.cfg.NumHeads, mp.cfg.KVHeads(), mp.cfg.HeadDimension()
	reg := mp.newRegion()
	buf := make([]byte, len(L.Q.Data)+len(L.K.Data))
	rq := len(L.Q.Data) / L.Q.Rows
	rk := len(L.K.Data) / L.K.Rows
	copy(buf, ropePermute(L.Q.Data, nh, hd, rq, false))
	copy(buf[len(L.Q.Data):], ropePermute(L.K.Data, nkv, hd, rk, false))
	L.Q.Data, L.Q.region = buf[:len(L.Q.Data):len(L.Q.Data)], reg
	L.K.Data, L.K.region = buf[len(L.Q.Data):], reg
}

// ffnBlock reads a feed-forward block of width ff into x: layer prefix p's
// ffn_gate, ffn_up and ffn_down with suffix after each name ("" for a
// dense layer's FFN, "_shexp" for the shared expert). It reports every
// problem among them at once.
func (mp *mapper) ffnBlock(x *ExpertMatrices, p, suffix string, ff int) error {
	d := mp.cfg.HiddenSize
	var errs [3]error
	x.Gate, errs[0] = mp.mat(p+"ffn_gate"+suffix+".weight", ff, d)
	x.Up, errs[1] = mp.mat(p+"ffn_up"+suffix+".weight", ff, d)
	x.Down, errs[2] = mp.mat(p+"ffn_down"+suffix+".weight", d, ff)
	return errors.Join(errs[:]...)
}

// moeBlock reads the MoE block of layer prefix p into L: the router and
// routed experts, gpt-oss's biases, the placeholder shared expert of a
// qwen2moe file moe wrote, and the shared expert when the config has one.
func (mp *mapper) moeBlock(L *LayerMatrices, p string) error {
	if err := mp.routedExperts(L, p); err != nil {
		return err
	}
	if mp.fam != nil && mp.fam.gptOSS {
		if err := ossLayer(L, mp.f, mp.cfg, p, mp.vec, mp.vecs); err != nil {
			return err
		}
	}
	if mp.qwen {
		if err := mp.checkPlaceholderShared(p); err != nil {
			return err
		}
	}
	if s := mp.cfg.SharedExpertIntermediateSize; s > 0 {
		return mp.ffnBlock(&L.Shared, p, "_shexp", s)
	}
	return nil
}

// routedExperts reads layer prefix p's router and stacked expert tensors
// into L (reporting every problem among them at once), then the router's
// score bias when the config has one.
func (mp *mapper) routedExperts(L *LayerMatrices, p string) error {
	d, E, fe := mp.cfg.HiddenSize, mp.cfg.NumExperts, mp.cfg.ExpertSize()
	var gate, up, down []Matrix
	var errs [4]error
	L.Router, errs[0] = mp.mat(p+"ffn_gate_inp.weight", E, d)
	gate, errs[1] = mp.stack(p+"ffn_gate_exps.weight", fe, d, E)
	up, errs[2] = mp.stack(p+"ffn_up_exps.weight", fe, d, E)
	down, errs[3] = mp.stack(p+"ffn_down_exps.weight", d, fe, E)
	if err := errors.Join(errs[:]...); err != nil {
		return err
	}
	if mp.cfg.HasRouterScoreBias() {
		var err error
		if L.ScoreBias, err = mp.vec(p+"exp_probs_b.bias", E); err != nil {
			return err
		}
	}
	L.Experts = make([]ExpertMatrices, E)
	for e := range L.Experts {
		L.Experts[e] = ExpertMatrices{Gate: gate[e], Up: up[e], Down: down[e]}
	}
	return nil
}

// checkPlaceholderShared reads the placeholder shared expert moe writes
// into a qwen2moe file at layer prefix p: its down projection must be
// zero, or the file computes something moe does not.
func (mp *mapper) checkPlaceholderShared(p string) error {
	d := mp.cfg.HiddenSize
	var errs [4]error
	_, errs[0] = mp.vec(p+"ffn_gate_inp_shexp.weight", d)
	_, errs[1] = mp.mat(p+"ffn_gate_shexp.weight", shexpWidth, d)
	_, errs[2] = mp.mat(p+"ffn_up_shexp.weight", shexpWidth, d)
	var sd Matrix
	sd, errs[3] = mp.mat(p+"ffn_down_shexp.weight", d, shexpWidth)
	if err := errors.Join(errs[:]...); err != nil {
		return err
	}
	zero := make([]float32, d*shexpWidth)
	if err := Decode(GGMLType(sd.Type), sd.Data, zero); err != nil {
		return fmt.Errorf("gguf: tensor %q: %w", sd.Name, err)
	}
	for _, v := range zero {
		if v != 0 {
			return fmt.Errorf("gguf: %sffn_down_shexp.weight is not zero: moe has no place for a gated shared expert", p)
		}
	}
	return nil
}

// head reads the final norm and the LM head into m: output.weight, or the
// embedding when the embeddings are tied (a qwen2moe file's output.weight,
// which it needs even then, is checked and left unused).
func (mp *mapper) head(m *Mapped) error {
	d, V := mp.cfg.HiddenSize, mp.cfg.VocabSize
	var err error
	if m.FinalNorm, err = mp.vec("output_norm.weight", d); err != nil {
		return err
	}
	m.Output = m.Embed
	if !mp.cfg.TieWordEmbeddings {
		if m.Output, err = mp.mat("output.weight", V, d); err != nil {
			return err
		}
	} else if _, ok := mp.f.Tensor("output.weight"); ok && mp.qwen {
		// qwen2moe needs output.weight even for tied embeddings: a copy.
		if _, err := mp.mat("output.weight", V, d); err != nil {
			return err
		}
	}
	return nil
}

// checkAllUsed fails on the first of the file's tensors that no step has
// read: one the moe model has no place for.
func (mp *mapper) checkAllUsed() error {
	for _, t := range mp.f.Tensors {
		if !mp.used[t.Name] {
			return fmt.Errorf("gguf: tensor %q has no place in the moe model (unsupported feature)", t.Name)
		}
	}
	return nil
}
