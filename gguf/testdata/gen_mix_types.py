#!/usr/bin/env python3
"""Writes mix_types.json: the tensor types llama-quantize chooses for each
of its mixes on a few small models laid out as moe's export lays them out
(llama architecture, Mixtral-style experts), for gguf's TestMixMatchesLlamaQuantize.

llama.cpp is found through MOE_LLAMA_CPP (a source tree with its tools built
under build/bin); gguf-py is read from it to write the input models and read
the quantized files:

    MOE_LLAMA_CPP=/path/to/llama.cpp python3 gguf/testdata/gen_mix_types.py

The input weights are zero: only the type choices are recorded.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

root = os.environ.get("MOE_LLAMA_CPP")
if not root:
    sys.exit("set MOE_LLAMA_CPP to a llama.cpp source tree with build/bin/llama-quantize")
sys.path.insert(0, os.path.join(root, "gguf-py"))
import gguf  # noqa: E402

quantize = os.path.join(root, "build", "bin", "llama-quantize")
if not os.path.exists(quantize):
    sys.exit("no " + quantize + " (build llama.cpp first)")

MIXES = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s", "q4_k_m",
         "q5_k_s", "q5_k_m", "q6_k", "iq4_nl", "iq4_xs", "mxfp4_moe", "f16", "bf16"]

# name, layers, experts (0: dense), d, heads, kv heads, ffn width, tied embeddings
MODELS = [
    ("moe8_ff32", 16, 8, 256, 4, 2, 32, False),      # 8 experts; expert rows of 32: k-quant fallbacks
    ("moe4_gqa4_tied", 12, 4, 256, 8, 2, 256, True),  # grouped-query factor 4, no output.weight
    ("dense9", 9, 0, 256, 4, 4, 512, False),
]
VOCAB = 320


def tensors_of(layers, experts, d, heads, kv, ff, tied):
    """(name, shape in numpy order: slowest dimension first)."""
    hd = d // heads
    ts = [("token_embd.weight", (VOCAB, d))]
    for i in range(layers):
        p = "blk.%d." % i
        ts += [(p + "attn_norm.weight", (d,)), (p + "attn_q.weight", (d, d)), (p + "attn_k.weight", (kv * hd, d)),
               (p + "attn_v.weight", (kv * hd, d)), (p + "attn_output.weight", (d, d)), (p + "ffn_norm.weight", (d,))]
        if experts:
            ts += [(p + "ffn_gate_inp.weight", (experts, d)), (p + "ffn_gate_exps.weight", (experts, ff, d)),
                   (p + "ffn_up_exps.weight", (experts, ff, d)), (p + "ffn_down_exps.weight", (experts, d, ff))]
        else:
            ts += [(p + "ffn_gate.weight", (ff, d)), (p + "ffn_up.weight", (ff, d)), (p + "ffn_down.weight", (d, ff))]
    ts.append(("output_norm.weight", (d,)))
    if not tied:
        ts.append(("output.weight", (VOCAB, d)))
    return ts


def write_model(path, layers, experts, d, heads, kv, ff, tied):
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("mixtest")
    w.add_file_type(0)
    w.add_vocab_size(VOCAB)
    w.add_context_length(128)
    w.add_embedding_length(d)
    w.add_block_count(layers)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_rope_dimension_count(d // heads)
    w.add_layer_norm_rms_eps(1e-5)
    if experts:
        w.add_expert_count(experts)
        w.add_expert_used_count(2)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["<%d>" % i for i in range(VOCAB)])
    w.add_token_types([1] * VOCAB)
    w.add_token_merges([])
    ts = tensors_of(layers, experts, d, heads, kv, ff, tied)
    for name, shape in ts:
        w.add_tensor(name, np.zeros(shape, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return ts


out = {"generator": "gguf/testdata/gen_mix_types.py (llama-quantize, no importance matrix)", "models": []}
with tempfile.TemporaryDirectory() as tmp:
    for name, layers, experts, d, heads, kv, ff, tied in MODELS:
        src = os.path.join(tmp, name + ".gguf")
        ts = write_model(src, layers, experts, d, heads, kv, ff, tied)
        entry = {"name": name, "layers": layers, "experts": experts, "heads": heads, "kv_heads": kv,
                 "tensors": [{"name": n, "dims": list(reversed(s))} for n, s in ts], "mixes": {}}
        for mix in MIXES:
            dst = os.path.join(tmp, name + "-" + mix + ".gguf")
            r = subprocess.run([quantize, src, dst, mix.upper(), "1"], capture_output=True, text=True)
            if r.returncode != 0:
                entry["mixes"][mix] = {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed"}
                print(name, mix, "failed:", entry["mixes"][mix]["error"], file=sys.stderr)
                continue
            rd = gguf.GGUFReader(dst)
            types = {t.name: t.tensor_type.name.lower() for t in rd.tensors}
            ft = int(rd.fields["general.file_type"].parts[-1][0])
            entry["mixes"][mix] = {"file_type": ft, "types": [types[n] for n, _ in ts]}
            os.remove(dst)
        out["models"].append(entry)
        print("model", name, "done", file=sys.stderr)

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mix_types.json")
with open(path, "w") as f:
    json.dump(out, f, indent=None, separators=(",", ":"))
    f.write("\n")
print("wrote", path)
