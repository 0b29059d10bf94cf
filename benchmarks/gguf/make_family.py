#!/usr/bin/env python3
"""Write a small random-weight GGUF of one of llama.cpp's MoE architectures
(qwen3moe, olmoe, qwen2moe, granitemoe, gpt-oss, llama with expert tensors:
the Mixtral layout, and deepseek2 in three variants: deepseek2, deepseek2v3,
deepseek2kvb) with llama.cpp's own gguf-py, in the
tensor names, shapes and metadata keys its converter writes for that family,
for moe's tests (infer/testdata/family/) and for side-by-side runs against
llama.cpp (llama-simple -m FILE -n 32 PROMPT).

  MOE_LLAMA_CPP=/path/to/llama.cpp /usr/bin/python3 benchmarks/gguf/make_family.py \\
      --arch qwen3moe --out infer/testdata/family/qwen3moe-f32.gguf [--type f32|q8_0]

gpt-oss files are written as its converter writes them: attention sinks,
q/k/v/o, router and expert biases, post_attention_norm, sliding_window and
YaRN keys, no expert_weights_scale; with --type q8_0 the expert tensors are
MXFP4 (as published gpt-oss files and llama-quantize keep them) and the
other matrices Q8_0. Its tokenizer uses the gpt-4o (o200k) pre-tokenizer.

The weights are laid out as the file stores them (q and k rows of granitemoe
in llama.cpp's NORM RoPE order, as its converter permutes them), so the
file defines the model: moe's test recomputes it from the file in float64.
The tokenizer is a tiny byte-level BPE ("gpt2" model, llama-bpe
pre-tokenizer): the 256 byte symbols, three merges (Ġt, he, Ġthe),
<|endoftext|> and the family's chat special tokens; for llama (Mixtral) a
tiny SentencePiece vocabulary ("llama" model: <unk>, <s>, </s>, the 256
byte-fallback tokens, ASCII characters and a few merged pieces with scores).
Each file carries its family's real chat template as
tokenizer.chat_template (tokenizer/chattmpl/testdata/*.jinja) and the
family's bos/eos ids and add_bos_token, so that chat, serve and the
templates can be compared with llama.cpp's. Needs numpy.
"""
import argparse
import os

import numpy as np

import llamacpp

# arch -> shape and the family's extra pieces.
SHAPES = {
    # per-head q/k norms, head_dim 32 != d/heads, renormalised top-k.
    "qwen3moe": dict(d=64, heads=4, kv=2, hd=32, ff=96, eff=32, experts=4, topk=2, tied=True),
    # full-width q/k norms (kv heads = heads), untied output.
    "olmoe": dict(d=64, heads=4, kv=4, hd=16, ff=32, eff=None, experts=4, topk=2, tied=False),
    # q/k/v biases, sigmoid-gated shared expert.
    "qwen2moe": dict(d=64, heads=4, kv=2, hd=16, ff=96, eff=32, shff=48, experts=4, topk=2, tied=False),
    # embedding/residual/attention/logit scales, NORM RoPE, tied.
    # with the optional ungated shared expert.
    "granitemoe": dict(d=64, heads=4, kv=2, hd=16, ff=32, eff=None, shff=32, experts=4, topk=2, tied=True),
    # sinks, biases everywhere, sliding window 4 on even layers, clamped
    # SwiGLU (gate/up scaled past the clamp), YaRN x4 from 64 positions;
    # a 1024-token context for harmony's long system prompt.
    "gpt-oss": dict(d=64, heads=4, kv=2, hd=32, ff=32, eff=32, experts=4, topk=2, tied=False,
                    swa=4, yarn=4.0, yarn_orig=64, theta=150000.0, eps=1e-5, pre="gpt-4o", ctx=1024),
    # Mixtral: llama with stacked expert tensors, NORM RoPE, renormalised
    # top-k, untied, SentencePiece vocabulary.
    "llama": dict(d=64, heads=4, kv=2, hd=16, ff=32, eff=None, experts=4, topk=2, tied=False),
    # deepseek2 (multi-head latent attention, one dense leading layer, one
    # shared expert), written by ds2() below. DeepSeek-V2-Lite style:
    # queries straight from the hidden state, softmax routing without
    # renormalisation, YaRN with the converter's yarn_log_multiplier.
    "deepseek2": dict(arch="deepseek2", d=64, heads=4, nope=32, rope=16, v=32, kv_lora=32, q_lora=0,
                      ff=96, eff=32, shared=1, experts=4, topk=2, lead=1, tied=False, yarn=True),
    # DeepSeek-V3 / Moonlight style: q LoRA, sigmoid scores with a selection
    # bias (exp_probs_b), 4 groups of 2 experts of which 2 are used,
    # renormalised and scaled weights.
    "deepseek2v3": dict(arch="deepseek2", d=64, heads=4, nope=32, rope=16, v=32, kv_lora=32, q_lora=32,
                        ff=96, eff=32, shared=1, experts=8, topk=2, lead=1, tied=False, yarn=False,
                        groups=4, groups_used=2, scale=2.5),
    # The older layout with one attn_kv_b per layer (no *_mla keys).
    "deepseek2kvb": dict(arch="deepseek2", d=64, heads=4, nope=32, rope=16, v=32, kv_lora=32, q_lora=0,
                         ff=96, eff=32, shared=1, experts=4, topk=2, lead=1, tied=False, yarn=False, kvb=True),
}

# arch -> the family's chat template (a file of tokenizer/chattmpl/testdata),
# the special tokens its template writes (appended to the vocabulary as
# control tokens), which of them are bos and eos, and whether llama.cpp
# adds bos to a tokenized prompt. qwen2moe's eos is <|endoftext|> so that
# <|im_end|> ends generation only as llama.cpp recognises it by its text;
# granitemoe adds a bos its template does not write.
CHAT = {
    "qwen3moe": dict(tmpl="qwen3.jinja", specials=["<|im_start|>", "<|im_end|>"], bos="<|endoftext|>", eos="<|im_end|>", add_bos=False),
    "qwen2moe": dict(tmpl="qwen2.5.jinja", specials=["<|im_start|>", "<|im_end|>"], bos="<|endoftext|>", eos="<|endoftext|>", add_bos=False),
    "olmoe": dict(tmpl="olmoe.jinja", specials=[], bos="<|endoftext|>", eos="<|endoftext|>", add_bos=False),
    "granitemoe": dict(tmpl="granite-3.3.jinja", specials=["<|start_of_role|>", "<|end_of_role|>", "<|end_of_text|>"], bos="<|end_of_text|>", eos="<|end_of_text|>", add_bos=True),
    "llama": dict(tmpl="mixtral.jinja", specials=[], bos="<s>", eos="</s>", add_bos=True),
    # DeepSeek-V2-Lite-Chat's template (User:/Assistant: lines, bos first,
    # eos after each reply) over the tiny vocabulary's <|endoftext|>.
    "deepseek2": dict(tmpl="deepseek-v2.jinja", specials=[], bos="<|endoftext|>", eos="<|endoftext|>", add_bos=False),
    # harmony: bos <|startoftext|> and eos <|return|> as gpt-oss's
    # tokenizer_config names them; llama.cpp ends generation at <|return|>
    # and <|call|> (and then not at <|end|>).
    "gpt-oss": dict(tmpl="gpt-oss.jinja", specials=["<|startoftext|>", "<|start|>", "<|end|>", "<|message|>", "<|channel|>",
                                                    "<|constrain|>", "<|return|>", "<|call|>"],
                    bos="<|startoftext|>", eos="<|return|>", add_bos=False),
}


def byte_symbols():
    """GPT-2's byte-to-unicode map: printable bytes as themselves, the rest
    shifted to code points from 256."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    m = dict(zip(bs, cs))
    return [chr(m[b]) for b in range(256)]


def spm_vocab():
    """A tiny SentencePiece vocabulary as llama.cpp's converter writes one:
    <unk>, <s>, </s>, the 256 <0xXX> byte tokens, then pieces (▁ for a
    space) with scores, higher first."""
    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    pieces = ["▁", "▁t", "he", "▁the", "in", "▁a", "IN", "ST", "INST", "▁[", "▁[/", "]", "er", "on", "▁w", "or", "an", "▁s", "ll", "▁H", "ello"]
    chars = [c for c in "etaoinshrdlcumwfgypbvkjxqz" + "ETAOINSHRDLCUMWFGYPBVKJXQZ" + "0123456789" + ".,!?'[]/-:" if c not in pieces]
    toks += pieces + chars
    scores = [0.0] * 3 + [0.0] * 256 + [-float(i) for i in range(len(pieces) + len(chars))]
    return toks, scores


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", required=True, choices=sorted(SHAPES))
    ap.add_argument("--out", required=True)
    ap.add_argument("--type", default="f32", choices=["f32", "q8_0"])
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    llamacpp.root("its gguf-py is used")
    import gguf
    from gguf import GGMLQuantizationType as Q
    from gguf import MODEL_TENSOR as T

    s = SHAPES[args.arch]
    arch = s.get("arch", args.arch)
    rng = np.random.default_rng(args.seed)
    march = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch)
    allowed = set(gguf.MODEL_TENSORS[march])

    w = gguf.GGUFWriter(args.out, arch)
    w.add_name(f"moe-test-{arch}")
    w.add_type(gguf.GGUFType.MODEL)

    chat = CHAT[arch]
    if arch == "llama":
        # Tokenizer: SentencePiece with byte fallback.
        toks, scores = spm_vocab()
        types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256
        types += [gguf.TokenType.NORMAL] * (len(toks) - len(types))
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_list(toks)
        w.add_token_scores(scores)
        w.add_token_types(types)
        w.add_unk_token_id(0)
    else:
        # Tokenizer: bytes, three merges, the control tokens.
        toks = byte_symbols() + ["Ġt", "he", "Ġthe", "<|endoftext|>"] + chat["specials"]
        types = [gguf.TokenType.NORMAL] * 259 + [gguf.TokenType.CONTROL] * (len(toks) - 259)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(s.get("pre", "llama-bpe"))
        w.add_token_list(toks)
        w.add_token_types(types)
        w.add_token_merges(["Ġ t", "h e", "Ġt he"])
    w.add_bos_token_id(toks.index(chat["bos"]))
    w.add_eos_token_id(toks.index(chat["eos"]))
    w.add_add_bos_token(chat["add_bos"])
    w.add_add_eos_token(False)
    if chat["tmpl"]:
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, "..", "..", "tokenizer", "chattmpl", "testdata", chat["tmpl"]), encoding="utf-8") as f:
            w.add_chat_template(f.read())
    V = len(toks)

    if arch == "deepseek2":
        ds2(w, s, args, rng, V, T, Q, gguf, allowed)
        return

    d, H, KV, hd, L, E = s["d"], s["heads"], s["kv"], s["hd"], args.layers, s["experts"]
    eff = s["eff"] or s["ff"]
    w.add_context_length(s.get("ctx", 256))
    w.add_embedding_length(d)
    w.add_block_count(L)
    w.add_feed_forward_length(s["ff"])
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_rope_freq_base(s.get("theta", 10000.0))
    w.add_layer_norm_rms_eps(s.get("eps", 1e-6))
    w.add_expert_count(E)
    w.add_expert_used_count(s["topk"])
    w.add_file_type(gguf.LlamaFileType.ALL_F32 if args.type == "f32" else gguf.LlamaFileType.MOSTLY_Q8_0)
    if hd != d // H:
        w.add_key_length(hd)
        w.add_value_length(hd)
    if arch != "gpt-oss":  # its converter writes no rope dimension count
        w.add_rope_dimension_count(hd)
    if "swa" in s:
        w.add_sliding_window(s["swa"])
    if "yarn" in s:
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(s["yarn"])
        w.add_rope_scaling_orig_ctx_len(s["yarn_orig"])
        w.add_rope_scaling_yarn_beta_fast(32.0)
        w.add_rope_scaling_yarn_beta_slow(1.0)
    if s["eff"]:
        w.add_expert_feed_forward_length(s["eff"])
    if "shff" in s:
        w.add_expert_shared_feed_forward_length(s["shff"])
    if arch == "granitemoe":
        w.add_embedding_scale(6.0)
        w.add_residual_scale(0.5)
        w.add_attention_scale(0.15)
        w.add_logit_scale(4.0)

    name, add, mat, gain, ffn = helpers(w, args, rng, gguf, Q, allowed, arch)

    oss = arch == "gpt-oss"
    # gpt-oss keeps its experts in MXFP4.
    exp_q = Q.MXFP4 if oss else Q.Q8_0
    # gpt-oss's gate and up reach past the SwiGLU clamp (7).
    exp_scale = 5.0 if oss else 1.0

    def bias(n, *lead):
        return 0.5 * rng.standard_normal((*lead, n))

    add(name(T.TOKEN_EMBD), rng.standard_normal((V, d)))
    for i in range(L):
        add(name(T.ATTN_NORM, i), gain(d), False)
        add(name(T.ATTN_Q, i), mat(H * hd, d))
        add(name(T.ATTN_K, i), mat(KV * hd, d))
        add(name(T.ATTN_V, i), mat(KV * hd, d))
        if arch in ("qwen2moe", "gpt-oss"):
            add(name(T.ATTN_Q, i, "bias"), bias(H * hd), False)
            add(name(T.ATTN_K, i, "bias"), bias(KV * hd), False)
            add(name(T.ATTN_V, i, "bias"), bias(KV * hd), False)
        if arch == "qwen3moe":
            add(name(T.ATTN_Q_NORM, i), gain(hd), False)
            add(name(T.ATTN_K_NORM, i), gain(hd), False)
        if arch == "olmoe":
            add(name(T.ATTN_Q_NORM, i), gain(H * hd), False)
            add(name(T.ATTN_K_NORM, i), gain(KV * hd), False)
        add(name(T.ATTN_OUT, i), mat(d, H * hd))
        if oss:
            add(name(T.ATTN_OUT, i, "bias"), bias(d), False)
            add(name(T.ATTN_SINKS, i), 2.0 * rng.standard_normal(H), False)
            add(name(T.ATTN_POST_NORM, i), gain(d), False)
        else:
            add(name(T.FFN_NORM, i), gain(d), False)
        add(name(T.FFN_GATE_INP, i), mat(E, d, scale=2.0), False)
        if oss:
            add(name(T.FFN_GATE_INP, i, "bias"), bias(E), False)
        add(name(T.FFN_GATE_EXP, i), mat(eff, d, E, scale=exp_scale), qtype=exp_q)
        add(name(T.FFN_UP_EXP, i), mat(eff, d, E, scale=exp_scale), qtype=exp_q)
        add(name(T.FFN_DOWN_EXP, i), mat(d, eff, E), qtype=exp_q)
        if oss:
            add(name(T.FFN_GATE_EXP, i, "bias"), bias(eff, E), False)
            add(name(T.FFN_UP_EXP, i, "bias"), bias(eff, E), False)
            add(name(T.FFN_DOWN_EXP, i, "bias"), bias(d, E), False)
        if "shff" in s:
            sh = s["shff"]
            if arch == "qwen2moe":
                add(name(T.FFN_GATE_INP_SHEXP, i), rng.standard_normal(d) / np.sqrt(d), False)
            ffn(i, "shexp", d, sh)
    finish(w, name, add, mat, gain, T, d, V, s["tied"])


def helpers(w, args, rng, gguf, Q, allowed, arch):
    """The tensor helpers of one file: name (a tensor's GGUF name, checked
    against the architecture's list), add (writes it, as Q8_0 (or qtype)
    where --type asks and its rows are whole blocks), mat (a random out×in matrix scaled
    by 1/sqrt(in)), gain (a random norm gain near 1) and ffn (a SwiGLU
    block's gate, up and down: dense "", experts "exps" or shared "shexp")."""
    def name(t, bid=None, suffix="weight"):
        assert t in allowed, f"{arch} has no {t}"
        n = gguf.TENSOR_NAMES[t]
        return (n.format(bid=bid) if bid is not None else n) + "." + suffix

    def add(nm, a, quant=True, qtype=Q.Q8_0):
        a = np.ascontiguousarray(a, dtype=np.float32)
        if quant and args.type == "q8_0" and a.ndim >= 2 and a.shape[-1] % 32 == 0:
            w.add_tensor(nm, gguf.quants.quantize(a, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(nm, a)

    def mat(rows, cols, *lead, scale=1.0):
        return rng.standard_normal((*lead, rows, cols)) * (scale / np.sqrt(cols))

    def gain(n):
        return 1.0 + 0.2 * rng.standard_normal(n)

    T = gguf.MODEL_TENSOR
    kinds = {"": (T.FFN_GATE, T.FFN_UP, T.FFN_DOWN),
             "exps": (T.FFN_GATE_EXP, T.FFN_UP_EXP, T.FFN_DOWN_EXP),
             "shexp": (T.FFN_GATE_SHEXP, T.FFN_UP_SHEXP, T.FFN_DOWN_SHEXP)}

    def ffn(i, kind, d, width, *lead):
        gate, up, down = kinds[kind]
        add(name(gate, i), mat(width, d, *lead))
        add(name(up, i), mat(width, d, *lead))
        add(name(down, i), mat(d, width, *lead))

    return name, add, mat, gain, ffn


def finish(w, name, add, mat, gain, T, d, V, tied):
    """Adds the output norm and (unless tied) the output matrix, writes the
    header, metadata and tensors, and closes the file."""
    add(name(T.OUTPUT_NORM), gain(d), False)
    if not tied:
        add(name(T.OUTPUT), mat(V, d, scale=4.0))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def ds2(w, s, args, rng, V, T, Q, gguf, allowed):
    """The rest of a deepseek2 file, as the converter's DeepseekV2Model
    writes it: MLA with attn_k_b (transposed per head) and attn_v_b split
    from kv_b_proj (or the older single attn_kv_b), NORM RoPE rows left as
    Hugging Face stores them."""
    d, H, E, L = s["d"], s["heads"], s["experts"], args.layers
    nope, rope, vd, rank, qr = s["nope"], s["rope"], s["v"], s["kv_lora"], s["q_lora"]
    w.add_vocab_size(V)
    w.add_context_length(256)
    w.add_embedding_length(d)
    w.add_block_count(L)
    w.add_feed_forward_length(s["ff"])
    w.add_head_count(H)
    w.add_head_count_kv(1 if not s.get("kvb") else H)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_expert_count(E)
    w.add_expert_used_count(s["topk"])
    if "groups" in s:
        w.add_expert_group_count(s["groups"])
        w.add_expert_group_used_count(s["groups_used"])
    w.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID if "groups" in s else gguf.ExpertGatingFuncType.SOFTMAX)
    w.add_file_type(gguf.LlamaFileType.ALL_F32 if args.type == "f32" else gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_leading_dense_block_count(s["lead"])
    # llama.cpp reads q_lora_rank unless the layer count is a known "lite"
    # model's, so a small file without q LoRA says 0 (the converter writes
    # the config's value, which DeepSeek-V2-Lite leaves null).
    w.add_q_lora_rank(qr)
    w.add_kv_lora_rank(rank)
    if s.get("kvb"):
        w.add_key_length(nope + rope)
        w.add_value_length(vd)
    else:
        w.add_key_length(rank + rope)
        w.add_value_length(rank)
        w.add_key_length_mla(nope + rope)
        w.add_value_length_mla(vd)
    w.add_expert_feed_forward_length(s["eff"])
    w.add_expert_shared_count(s["shared"])
    if "scale" in s:
        w.add_expert_weights_scale(s["scale"])
        w.add_expert_weights_norm(True)
    w.add_rope_dimension_count(rope)
    if s["yarn"]:
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(4.0)
        w.add_rope_scaling_orig_ctx_len(64)
        w.add_rope_scaling_yarn_log_mul(0.1 * 0.707)

    name, add, mat, gain, ffn = helpers(w, args, rng, gguf, Q, allowed, "deepseek2")

    add(name(T.TOKEN_EMBD), rng.standard_normal((V, d)))
    for i in range(L):
        add(name(T.ATTN_NORM, i), gain(d), False)
        if qr:
            add(name(T.ATTN_Q_A, i), mat(qr, d))
            add(name(T.ATTN_Q_A_NORM, i), gain(qr), False)
            add(name(T.ATTN_Q_B, i), mat(H * (nope + rope), qr))
        else:
            add(name(T.ATTN_Q, i), mat(H * (nope + rope), d))
        add(name(T.ATTN_KV_A_MQA, i), mat(rank + rope, d))
        add(name(T.ATTN_KV_A_NORM, i), gain(rank), False)
        # kv_b_proj as Hugging Face stores it: per head nope key rows, then
        # v value rows, each of rank.
        kvb = mat(nope + vd, rank, H, scale=2.0)
        if s.get("kvb"):
            add(name(T.ATTN_KV_B, i), kvb.reshape(H * (nope + vd), rank))
        else:
            add(name(T.ATTN_K_B, i), np.transpose(kvb[:, :nope, :], (0, 2, 1)))
            add(name(T.ATTN_V_B, i), kvb[:, nope:, :])
        add(name(T.ATTN_OUT, i), mat(d, H * vd))
        add(name(T.FFN_NORM, i), gain(d), False)
        if i < s["lead"]:
            ffn(i, "", d, s["ff"])
            continue
        add(name(T.FFN_GATE_INP, i), mat(E, d, scale=2.0), False)
        if "groups" in s:
            add(name(T.FFN_EXP_PROBS_B, i, "bias"), 0.3 * rng.standard_normal(E), False)
        ffn(i, "exps", d, s["eff"], E)
        ffn(i, "shexp", d, s["eff"] * s["shared"])
    finish(w, name, add, mat, gain, T, d, V, s["tied"])


if __name__ == "__main__":
    main()
