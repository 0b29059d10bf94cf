#!/usr/bin/python3
"""Writes model/testdata/*.bin: PyTorch references for moe's model.

The model here is an independent implementation of the architecture that
model/ implements (Mixtral-like: RMSNorm, GQA attention with rotate_half RoPE,
MoE SwiGLU experts routed by token choice -- either score order, with
capacity dropping -- or expert choice, an optional shared expert, Switch
load-balancing and z-loss), computed in float64. Each fixture holds the
config, a fixed batch, the weights (in moe's flat layout order), the logits,
the gradient of every parameter and the losses of 10 AdamW steps on that
batch, so that model/fixture_test.go can compare without torch (as llm.c's
test_gpt2 does).

moe_fixture.bin is the main one: token-choice top-2 of 4 experts, GQA.

Run with Debian's python3-torch:  /usr/bin/python3 model/testdata/make_fixture.py
"""
import json
import math
import os
import struct

import torch

DT = torch.float64
STEPS = 10
LR, BETAS, EPS, WD = 1e-3, (0.9, 0.95), 1e-8, 0.1

MAIN = {
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

SMALL = dict(MAIN, vocab_size=32, hidden_size=16, intermediate_size=16, moe_intermediate_size=12,
             head_dim=4, max_position_embeddings=32)

# (file name, config, B, T, seed)
FIXTURES = [
    ("moe_fixture.bin", MAIN, 2, 16, 1234),
    # softmax-then-top-k with renormalisation, capacity dropping, a shared expert, tied embeddings
    ("moe_fixture_softmax_topk.bin", dict(SMALL, moe_router_order="softmax_topk", norm_topk_prob=True,
                                          moe_capacity_factor=0.75, shared_expert_intermediate_size=8,
                                          tie_word_embeddings=True), 2, 12, 99),
    # expert choice (batch-wide, capacity factor 1.5)
    ("moe_fixture_expert_choice.bin", dict(SMALL, moe_routing="expert_choice", moe_capacity_factor=1.5), 2, 12, 7),
]


class Model:
    def __init__(self, cfg, B, T):
        self.c, self.B, self.T = cfg, B, T
        self.V, self.D, self.L = cfg["vocab_size"], cfg["hidden_size"], cfg["num_hidden_layers"]
        self.NH, self.NKV, self.HD = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
        self.E, self.K, self.FFE = cfg["num_local_experts"], cfg["num_experts_per_tok"], cfg["moe_intermediate_size"]
        self.FFS = cfg.get("shared_expert_intermediate_size", 0)

    def layout(self):
        """(name, shape) of every parameter in moe's flat layout order."""
        V, D, NH, NKV, HD, E, FFE, FFS = self.V, self.D, self.NH, self.NKV, self.HD, self.E, self.FFE, self.FFS
        out = [("embed", (V, D))]
        for i in range(self.L):
            p = f"layers.{i}."
            out += [(p + "attn_norm", (D,)), (p + "wq", (NH * HD, D)), (p + "wk", (NKV * HD, D)),
                    (p + "wv", (NKV * HD, D)), (p + "wo", (D, NH * HD)), (p + "ffn_norm", (D,)),
                    (p + "router", (E, D))]
            for e in range(E):
                q = f"{p}expert.{e}."
                out += [(q + "gate", (FFE, D)), (q + "up", (FFE, D)), (q + "down", (D, FFE))]
            if FFS:
                out += [(p + "shared.gate", (FFS, D)), (p + "shared.up", (FFS, D)), (p + "shared.down", (D, FFS))]
        out += [("final_norm", (D,))]
        if not self.c["tie_word_embeddings"]:
            out += [("lm_head", (V, D))]
        return out

    def init_params(self):
        params = {}
        for name, shape in self.layout():
            if name.endswith("norm"):
                t = 1 + 0.1 * torch.randn(shape, dtype=DT)
            elif name.endswith("wo") or name.endswith("down"):
                t = 0.1 / math.sqrt(2 * self.L) * torch.randn(shape, dtype=DT)
            else:
                t = 0.1 * torch.randn(shape, dtype=DT)
            params[name] = t.requires_grad_(True)
        return params

    def rmsnorm(self, x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.c["rms_norm_eps"]) * g

    def rope(self, x):  # x: [B, heads, T, HD]
        HD = self.HD
        inv = self.c["rope_theta"] ** (-torch.arange(0, HD, 2, dtype=DT) / HD)
        ang = torch.arange(self.T, dtype=DT)[:, None] * inv[None, :]
        emb = torch.cat((ang, ang), dim=-1)
        h = HD // 2
        rot = torch.cat((-x[..., h:], x[..., :h]), dim=-1)  # rotate_half
        return x * emb.cos() + rot * emb.sin()

    @staticmethod
    def swiglu(h, g, u, d):
        return (torch.nn.functional.silu(h @ g.T) * (h @ u.T)) @ d.T

    def route(self, logits, probs):
        """Combine weights [N,E] (zero where a token does not use an expert) and the routed
        (pre-drop) assignment counts per expert."""
        c, N, E, K = self.c, logits.shape[0], self.E, self.K
        if c.get("moe_routing") == "expert_choice":
            C = min(N, math.ceil(N * c.get("moe_capacity_factor", 2) / E))
            w = torch.zeros_like(probs)
            for e in range(E):
                idx = probs[:, e].detach().topk(C).indices
                w[idx, e] = probs[idx, e]
            return w, torch.full((E,), float(C), dtype=DT)
        if c.get("moe_router_order", "topk_softmax") == "topk_softmax":
            topv, topi = logits.topk(K, dim=-1)
            topw = topv.softmax(-1)
        else:
            topv, topi = probs.topk(K, dim=-1)
            topw = topv / topv.sum(-1, keepdim=True) if c.get("norm_topk_prob") else topv
        keep = torch.ones(N, K, dtype=DT)
        cf = c.get("moe_capacity_factor", 0)
        if cf > 0:
            cap = math.ceil(N * K * cf / E)
            cnt = [0] * E
            for t in range(N):
                for j in range(K):
                    e = int(topi[t, j])
                    if cnt[e] >= cap:
                        keep[t, j] = 0
                    else:
                        cnt[e] += 1
        w = torch.zeros_like(probs).scatter_add(1, topi, topw * keep)
        counts = torch.stack([(topi == e).sum() for e in range(E)]).to(DT)
        return w, counts

    def forward(self, P, tokens, targets):
        c, B, T, D, L, V = self.c, self.B, self.T, self.D, self.L, self.V
        NH, NKV, HD, E = self.NH, self.NKV, self.HD, self.E
        x = P["embed"][tokens]  # [B,T,D]
        aux_sum, z_sum = 0.0, 0.0
        mask = torch.full((T, T), float("-inf"), dtype=DT).triu(1)
        for i in range(L):
            p = f"layers.{i}."
            h = self.rmsnorm(x, P[p + "attn_norm"])
            q = (h @ P[p + "wq"].T).view(B, T, NH, HD).transpose(1, 2)
            k = (h @ P[p + "wk"].T).view(B, T, NKV, HD).transpose(1, 2)
            v = (h @ P[p + "wv"].T).view(B, T, NKV, HD).transpose(1, 2)
            q, k = self.rope(q), self.rope(k)
            k = k.repeat_interleave(NH // NKV, dim=1)
            v = v.repeat_interleave(NH // NKV, dim=1)
            att = (q @ k.transpose(-1, -2)) / math.sqrt(HD) + mask
            o = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, NH * HD)
            x = x + o @ P[p + "wo"].T

            h = self.rmsnorm(x, P[p + "ffn_norm"]).reshape(B * T, D)
            logits = h @ P[p + "router"].T  # [N,E]
            probs = logits.softmax(-1)
            w, counts = self.route(logits, probs)
            y = torch.zeros_like(h)
            for e in range(E):
                q_ = f"{p}expert.{e}."
                y = y + w[:, e:e + 1] * self.swiglu(h, P[q_ + "gate"], P[q_ + "up"], P[q_ + "down"])
            if self.FFS:
                y = y + self.swiglu(h, P[p + "shared.gate"], P[p + "shared.up"], P[p + "shared.down"])
            x = x + y.view(B, T, D)
            f = counts / counts.sum()
            aux_sum = aux_sum + E * (f * probs.mean(0)).sum()
            z_sum = z_sum + torch.logsumexp(logits, -1).pow(2).mean()
        x = self.rmsnorm(x, P["final_norm"])
        head = P["embed"] if c["tie_word_embeddings"] else P["lm_head"]
        out = x @ head.T  # [B,T,V]
        ce = torch.nn.functional.cross_entropy(out.reshape(-1, V), targets.reshape(-1), ignore_index=-1)
        loss = ce + c["router_aux_loss_coef"] * aux_sum / L + c["moe_router_z_loss_coef"] * z_sum / L
        return out, loss, ce


def write_fixture(fname, cfg, B, T, seed):
    torch.manual_seed(seed)
    M = Model(cfg, B, T)
    V = M.V
    P = M.init_params()
    tokens = torch.randint(0, V, (B, T))
    targets = torch.roll(tokens, -1, dims=1).clone()
    targets[:, -1] = torch.randint(0, V, (B,))
    targets[0, 3] = -1  # an ignored position
    names = [n for n, _ in M.layout()]
    flat0 = torch.cat([P[n].detach().reshape(-1) for n in names]).to(torch.float32)

    logits, loss, ce = M.forward(P, tokens, targets)
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
        _, l, _ = M.forward(P, tokens, targets)
        l.backward()
        opt.step()
        losses.append(l.item())

    sections = [("weights", flat0), ("logits", logits.detach().reshape(-1).to(torch.float32)), ("grads", grads)]
    header = {
        "config": cfg, "B": B, "T": T,
        "tokens": tokens.reshape(-1).tolist(), "targets": targets.reshape(-1).tolist(),
        "loss": loss.item(), "ce_loss": ce.item(), "losses": losses,
        "adamw": {"lr": LR, "beta1": BETAS[0], "beta2": BETAS[1], "eps": EPS, "weight_decay": WD},
        "sections": [{"name": n, "len": t.numel()} for n, t in sections],
    }
    hb = json.dumps(header).encode()
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), fname)
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


def main():
    for fname, cfg, B, T, seed in FIXTURES:
        write_fixture(fname, cfg, B, T, seed)


if __name__ == "__main__":
    main()
