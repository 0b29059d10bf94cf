#!/usr/bin/env python3
"""Write a random-weight Mixtral-layout GGUF with llama.cpp's own gguf-py, in
the exact tensor names and metadata keys llama.cpp's converter uses (arch
"llama", stacked expert tensors), for side-by-side benchmarks of moe against
llama.cpp on the same file. The tokenizer is copied from a vocab-only GGUF
(llama.cpp ships them as models/ggml-vocab-*.gguf).

  MOE_LLAMA_CPP=/path/to/llama.cpp /usr/bin/python3 benchmarks/gguf/make_model.py \\
      --out mid-F16.gguf [--d 1024 --layers 12 --experts 8 --top-k 2 --ff 2816 \\
      --heads 16 --kv-heads 4 --vocab gpt-2 --type f16]

Then quantize with llama.cpp's tool, e.g.
  $MOE_LLAMA_CPP/build/bin/llama-quantize mid-F16.gguf mid-Q4_K_M.gguf q4_k_m

The defaults are the model of the issue on quantized weights (965M total,
~0.29B active). Needs numpy (Debian: python3-numpy).
"""
import argparse
import os

import numpy as np

import llamacpp


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--d", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--ff", type=int, default=2816)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--vocab", default="gpt-2", help="NAME of models/ggml-vocab-NAME.gguf in MOE_LLAMA_CPP")
    ap.add_argument("--type", default="f16", choices=["f32", "f16"])
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    root = llamacpp.root("its gguf-py and models/ are used")
    import gguf

    vocab = gguf.GGUFReader(os.path.join(root, "models", f"ggml-vocab-{args.vocab}.gguf"))
    w = gguf.GGUFWriter(args.out, "llama")
    n_vocab = 0
    for name, field in vocab.fields.items():
        if not name.startswith("tokenizer."):
            continue
        vt = field.types[0]
        if vt == gguf.GGUFValueType.ARRAY:
            sub = field.types[-1]
            if sub == gguf.GGUFValueType.STRING:
                val = [bytes(field.parts[i]).decode("utf-8", errors="surrogateescape") for i in field.data]
            else:
                val = [field.parts[i].tolist()[0] for i in field.data]
            if name == "tokenizer.ggml.tokens":
                n_vocab = len(val)
            w.add_key_value(name, val, vt, sub_type=sub)
        elif vt == gguf.GGUFValueType.STRING:
            w.add_key_value(name, bytes(field.parts[field.data[0]]).decode("utf-8"), vt)
        else:
            w.add_key_value(name, field.parts[field.data[0]].tolist()[0], vt)

    d, L, E, ff = args.d, args.layers, args.experts, args.ff
    hd = d // args.heads
    w.add_name(f"moe-bench-mixtral-d{d}-l{L}-e{E}")
    w.add_context_length(args.ctx)
    w.add_embedding_length(d)
    w.add_block_count(L)
    w.add_feed_forward_length(ff)
    w.add_head_count(args.heads)
    w.add_head_count_kv(args.kv_heads)
    w.add_rope_dimension_count(hd)
    w.add_rope_freq_base(1e6)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_expert_count(E)
    w.add_expert_used_count(args.top_k)
    w.add_vocab_size(n_vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if args.type == "f16" else gguf.LlamaFileType.ALL_F32)

    rng = np.random.default_rng(args.seed)
    dt = np.float16 if args.type == "f16" else np.float32

    def mat(*shape, scale=None):
        fan_in = shape[-1]
        s = scale if scale is not None else 1.0 / np.sqrt(fan_in)
        return (rng.standard_normal(shape, dtype=np.float32) * s).astype(dt)

    def norm():
        return (1.0 + 0.1 * rng.standard_normal(d, dtype=np.float32)).astype(np.float32)

    w.add_tensor("token_embd.weight", mat(n_vocab, d, scale=1.0))
    for l in range(L):
        p = f"blk.{l}."
        w.add_tensor(p + "attn_norm.weight", norm())
        w.add_tensor(p + "attn_q.weight", mat(args.heads * hd, d))
        w.add_tensor(p + "attn_k.weight", mat(args.kv_heads * hd, d))
        w.add_tensor(p + "attn_v.weight", mat(args.kv_heads * hd, d))
        w.add_tensor(p + "attn_output.weight", mat(d, args.heads * hd))
        w.add_tensor(p + "ffn_norm.weight", norm())
        w.add_tensor(p + "ffn_gate_inp.weight", mat(E, d).astype(np.float32))
        w.add_tensor(p + "ffn_gate_exps.weight", mat(E, ff, d))
        w.add_tensor(p + "ffn_up_exps.weight", mat(E, ff, d))
        w.add_tensor(p + "ffn_down_exps.weight", mat(E, d, ff))
    w.add_tensor("output_norm.weight", norm())
    w.add_tensor("output.weight", mat(n_vocab, d))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=False)
    w.close()
    print(f"wrote {args.out}: vocab {n_vocab}, d {d}, {L} layers, {E} experts top-{args.top_k}, ff {ff}")


if __name__ == "__main__":
    main()
