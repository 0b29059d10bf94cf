#!/usr/bin/python3
"""Writes model/testdata/moe_fixture.bin: a PyTorch reference for moe's model.

The model here is an independent implementation of the architecture that
model/ implements (Mixtral-like: RMSNorm, GQA attention with rotate_half RoPE,
token-choice top-2-of-4 MoE SwiGLU experts, Switch load-balancing and z-loss),
computed in float64. The fixture holds the config, a fixed batch, the weights
(in moe's flat layout order), the logits, the gradient of every parameter and
the losses of 10 AdamW steps on that batch, so that model/fixture_test.go can
compare without torch (as llm.c's test_gpt2 does).

Run with Debian's python3-torch:  /usr/bin/python3 model/testdata/make_fixture.py
"""
import json
import math
import os
import struct

import torch

torch.manual_seed(1234)
DT = torch.float64

CFG = {
    "model_type": "mixtral",
    "vocab_size": 64,
    "hidden_size": 32,
    "intermediate_size": 32,
    "moe_intermediate_size": 24,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "max_position_embeddings": 64,
    "rope_theta": 10000.0,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False,
    "num_local_experts": 4,
    "num_experts_per_tok": 2,
    "router_aux_loss_coef": 0.02,
    "moe_router_z_loss_coef": 0.001,
    "moe_router_order": "topk_softmax",
}
B, T = 2, 16
STEPS = 10
LR, BETAS, EPS, WD = 1e-3, (0.9, 0.95), 1e-8, 0.1

V = CFG["vocab_size"]
D = CFG["hidden_size"]
L = CFG["num_hidden_layers"]
NH = CFG["num_attention_heads"]
NKV = CFG["num_key_value_heads"]
HD = CFG["head_dim"]
E = CFG["num_local_experts"]
K = CFG["num_experts_per_tok"]
FFE = CFG["moe_intermediate_size"]


def layout():
    """(name, shape) of every parameter in moe's flat layout order."""
    out = [("embed", (V, D))]
    for i in range(L):
        p = f"layers.{i}."
        out += [(p + "attn_norm", (D,)), (p + "wq", (NH * HD, D)), (p + "wk", (NKV * HD, D)),
                (p + "wv", (NKV * HD, D)), (p + "wo", (D, NH * HD)), (p + "ffn_norm", (D,)),
                (p + "router", (E, D))]
        for e in range(E):
            q = f"{p}expert.{e}."
            out += [(q + "gate", (FFE, D)), (q + "up", (FFE, D)), (q + "down", (D, FFE))]
    out += [("final_norm", (D,)), ("lm_head", (V, D))]
    return out


def init_params():
    params = {}
    for name, shape in layout():
        if name.endswith("norm"):
            t = 1 + 0.1 * torch.randn(shape, dtype=DT)
        elif name.endswith("wo") or name.endswith("down"):
            t = 0.1 / math.sqrt(2 * L) * torch.randn(shape, dtype=DT)
        else:
            t = 0.1 * torch.randn(shape, dtype=DT)
        params[name] = t.requires_grad_(True)
    return params


def rmsnorm(x, g):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + CFG["rms_norm_eps"]) * g


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope(x):  # x: [B, heads, T, HD]
    inv = CFG["rope_theta"] ** (-torch.arange(0, HD, 2, dtype=DT) / HD)
    ang = torch.arange(T, dtype=DT)[:, None] * inv[None, :]
    emb = torch.cat((ang, ang), dim=-1)
    return x * emb.cos() + rotate_half(x) * emb.sin()


def forward(P, tokens, targets):
    x = P["embed"][tokens]  # [B,T,D]
    aux_sum, z_sum = 0.0, 0.0
    mask = torch.full((T, T), float("-inf"), dtype=DT).triu(1)
    for i in range(L):
        p = f"layers.{i}."
        h = rmsnorm(x, P[p + "attn_norm"])
        q = (h @ P[p + "wq"].T).view(B, T, NH, HD).transpose(1, 2)
        k = (h @ P[p + "wk"].T).view(B, T, NKV, HD).transpose(1, 2)
        v = (h @ P[p + "wv"].T).view(B, T, NKV, HD).transpose(1, 2)
        q, k = rope(q), rope(k)
        k = k.repeat_interleave(NH // NKV, dim=1)
        v = v.repeat_interleave(NH // NKV, dim=1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(HD) + mask
        o = att.softmax(-1) @ v  # [B,NH,T,HD]
        o = o.transpose(1, 2).reshape(B, T, NH * HD)
        x = x + o @ P[p + "wo"].T

        h = rmsnorm(x, P[p + "ffn_norm"]).reshape(B * T, D)
        logits = h @ P[p + "router"].T  # [N,E]
        probs = logits.softmax(-1)
        topv, topi = logits.topk(K, dim=-1)
        w = topv.softmax(-1)
        y = torch.zeros_like(h)
        for e in range(E):
            q_ = f"{p}expert.{e}."
            ex = torch.nn.functional.silu(h @ P[q_ + "gate"].T) * (h @ P[q_ + "up"].T)
            ex = ex @ P[q_ + "down"].T
            we = (w * (topi == e)).sum(-1, keepdim=True)  # 0 for tokens not routed to e
            y = y + we * ex
        x = x + y.view(B, T, D)
        f = torch.stack([(topi == e).sum() for e in range(E)]).to(DT) / (B * T * K)
        aux_sum = aux_sum + E * (f * probs.mean(0)).sum()
        z_sum = z_sum + torch.logsumexp(logits, -1).pow(2).mean()
    x = rmsnorm(x, P["final_norm"])
    out = x @ P["lm_head"].T  # [B,T,V]
    ce = torch.nn.functional.cross_entropy(out.reshape(-1, V), targets.reshape(-1), ignore_index=-1)
    loss = ce + CFG["router_aux_loss_coef"] * aux_sum / L + CFG["moe_router_z_loss_coef"] * z_sum / L
    return out, loss, ce


def main():
    P = init_params()
    tokens = torch.randint(0, V, (B, T))
    targets = torch.roll(tokens, -1, dims=1).clone()
    targets[:, -1] = torch.randint(0, V, (B,))
    targets[0, 3] = -1  # an ignored position
    names = [n for n, _ in layout()]
    flat0 = torch.cat([P[n].detach().reshape(-1) for n in names]).to(torch.float32)

    logits, loss, ce = forward(P, tokens, targets)
    loss.backward()
    grads = torch.cat([P[n].grad.reshape(-1) for n in names]).to(torch.float32)
    for n in names:
        P[n].grad = None

    decay = [P[n] for n in names if not n.endswith("norm")]
    nodecay = [P[n] for n in names if n.endswith("norm")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD}, {"params": nodecay, "weight_decay": 0.0}],
                            lr=LR, betas=BETAS, eps=EPS)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        _, l, _ = forward(P, tokens, targets)
        l.backward()
        opt.step()
        losses.append(l.item())

    sections = [("weights", flat0), ("logits", logits.detach().reshape(-1).to(torch.float32)), ("grads", grads)]
    header = {
        "config": CFG, "B": B, "T": T,
        "tokens": tokens.reshape(-1).tolist(), "targets": targets.reshape(-1).tolist(),
        "loss": loss.item(), "ce_loss": ce.item(), "losses": losses,
        "adamw": {"lr": LR, "beta1": BETAS[0], "beta2": BETAS[1], "eps": EPS, "weight_decay": WD},
        "sections": [{"name": n, "len": t.numel()} for n, t in sections],
    }
    hb = json.dumps(header).encode()
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "moe_fixture.bin")
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(b"MOEFIX1\n")
        fh.write(struct.pack("<I", len(hb)))
        fh.write(hb)
        for _, t in sections:
            fh.write(t.contiguous().numpy().astype("<f4").tobytes())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    print(f"wrote {path}: loss {loss.item():.6f}, losses {losses[0]:.6f} .. {losses[-1]:.6f}")


if __name__ == "__main__":
    main()
