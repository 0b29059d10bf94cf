"""Write a Mixtral-layout GGUF with random weights, for timing moe on GGUF files.

The file is llama.cpp's "llama" architecture with stacked experts, written
with llama.cpp's own gguf-py and its GPT-2 vocabulary, so that moe and
llama.cpp can run the same file. Nothing here is a fixture: the weights are
random (normal, std 0.02), only the shapes and types matter.

Usage (MOE_LLAMA_CPP is a llama.cpp source tree):
  PYTHONPATH=$MOE_LLAMA_CPP/gguf-py python3 benchmarks/gguf/mixtral_layout.py OUT.gguf TYPE [d layers experts expert_width heads kv_heads]
TYPE is f32, f16 or q8_0 (other types: llama-quantize the f16 file). The
default shape (768 8 8 2048 12 4) is 392M parameters: q8_0 418 MB, f16 786 MB.
Then, for example:
  /usr/bin/time -v moe generate --model OUT.gguf --prompt "Hello world" --max-tokens 16 --json
  moe bench generate --model OUT.gguf --prompt-tokens 128 --gen-tokens 64 --threads 2
"""
import os
import sys

import numpy as np

import gguf
from gguf import GGMLQuantizationType as Q
from gguf import GGUFReader, GGUFWriter

import llamacpp


def strings(reader, key):
    f = reader.fields[key]
    return [bytes(f.parts[i]).decode("utf-8") for i in f.data]


def main():
    if len(sys.argv) not in (3, 9):
        sys.exit(__doc__)
    out, typ = sys.argv[1], sys.argv[2]
    d, L, E, fe, nh, nkv = (int(x) for x in sys.argv[3:9]) if len(sys.argv) == 9 else (768, 8, 8, 2048, 12, 4)
    qt = {"f32": Q.F32, "f16": Q.F16, "q8_0": Q.Q8_0}[typ]
    root = llamacpp.root("for models/ggml-vocab-gpt-2.gguf")
    voc = GGUFReader(os.path.join(root, "models", "ggml-vocab-gpt-2.gguf"))
    tokens = strings(voc, "tokenizer.ggml.tokens")
    tf = voc.fields["tokenizer.ggml.token_type"]
    types = [int(tf.parts[i][0]) for i in tf.data]
    merges = strings(voc, "tokenizer.ggml.merges")
    V, hd = len(tokens), d // nh

    w = GGUFWriter(out, "llama")
    w.add_name("mixtral-layout-random")
    w.add_context_length(4096)
    w.add_embedding_length(d)
    w.add_block_count(L)
    w.add_feed_forward_length(fe)
    w.add_head_count(nh)
    w.add_head_count_kv(nkv)
    w.add_rope_dimension_count(hd)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_expert_count(E)
    w.add_expert_used_count(2)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(V - 1)
    w.add_eos_token_id(V - 1)

    rng = np.random.default_rng(1)

    def mat(name, *shape, t=qt):
        x = (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)
        if t == Q.F32:
            w.add_tensor(name, x)
        elif t == Q.F16:
            w.add_tensor(name, x.astype(np.float16))
        else:
            q = gguf.quants.quantize(x, t)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=t)

    def ones(name):
        w.add_tensor(name, np.ones(d, dtype=np.float32))

    mat("token_embd.weight", V, d)
    for i in range(L):
        p = f"blk.{i}."
        ones(p + "attn_norm.weight")
        mat(p + "attn_q.weight", nh * hd, d)
        mat(p + "attn_k.weight", nkv * hd, d)
        mat(p + "attn_v.weight", nkv * hd, d)
        mat(p + "attn_output.weight", d, nh * hd)
        ones(p + "ffn_norm.weight")
        mat(p + "ffn_gate_inp.weight", E, d, t=Q.F32)
        mat(p + "ffn_gate_exps.weight", E, fe, d)
        mat(p + "ffn_up_exps.weight", E, fe, d)
        mat(p + "ffn_down_exps.weight", E, d, fe)
    ones("output_norm.weight")
    mat("output.weight", V, d)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
