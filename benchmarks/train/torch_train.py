#!/usr/bin/python3
"""PyTorch twin of `moe bench train`: forward + backward + AdamW on random
tokens for the same model config, batch, sequence length and threads.

The model follows moe's conventions (Mixtral-like): token embedding ->
layers of [x += Attn(RMSNorm(x)); x += FFN(RMSNorm(x))] -> RMSNorm -> LM head
(tied when tie_word_embeddings). Attention is causal GQA with NeoX
("rotate_half") RoPE; the FFN is SwiGLU, dense or a token-choice MoE
(top-k logits then softmax over those k, or softmax then top-k), plus an
optional shared expert, with the Switch load-balancing and router z-losses.

Usage (compare on the same threads; see docs/train.md):

  moe bench train --config tiny --save-config /tmp/tiny.json --threads 2 --json
  OMP_NUM_THREADS=2 LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp \
      /usr/bin/python3 benchmarks/train/torch_train.py --config /tmp/tiny.json --threads 2

--precision bf16 runs the forward pass and the loss under
torch.autocast(device_type="cpu", dtype=torch.bfloat16): the matmuls take
bf16 inputs while the master weights, gradients and AdamW stay float32 (the
usual PyTorch mixed precision on CPU).

Prints one JSON object {"tokens_per_second", "batch", "seq_len", ...}.
"""
import argparse
import contextlib
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.g = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.g


def rope_tables(T, hd, theta):
    inv = theta ** (-torch.arange(0, hd // 2, dtype=torch.float32) * 2 / hd)
    ang = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]
    return torch.cos(ang), torch.sin(ang)


def apply_rope(x, cos, sin):
    # x: (B, H, T, hd); pairs (i, i + hd/2)
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["hidden_size"]
        self.nh = c["num_attention_heads"]
        self.nkv = c.get("num_key_value_heads") or self.nh
        self.hd = c.get("head_dim") or d // self.nh
        self.wq = nn.Linear(d, self.nh * self.hd, bias=False)
        self.wk = nn.Linear(d, self.nkv * self.hd, bias=False)
        self.wv = nn.Linear(d, self.nkv * self.hd, bias=False)
        self.wo = nn.Linear(self.nh * self.hd, d, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.nh, self.hd).transpose(1, 2)
        k = self.wk(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        v = self.wv(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        rep = self.nh // self.nkv
        if rep > 1:
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd) + mask
        y = torch.softmax(s, dim=-1) @ v
        return self.wo(y.transpose(1, 2).reshape(B, T, self.nh * self.hd))


class SwiGLU(nn.Module):
    def __init__(self, d, ff):
        super().__init__()
        self.gate = nn.Linear(d, ff, bias=False)
        self.up = nn.Linear(d, ff, bias=False)
        self.down = nn.Linear(ff, d, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class MoE(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["hidden_size"]
        self.E = c.get("num_local_experts") or c.get("num_experts")
        self.k = c["num_experts_per_tok"]
        ffe = c.get("moe_intermediate_size") or c["intermediate_size"]
        self.order = c.get("moe_router_order") or "topk_softmax"
        self.norm_topk = c.get("norm_topk_prob", False)
        self.router = nn.Linear(d, self.E, bias=False)
        self.experts = nn.ModuleList([SwiGLU(d, ffe) for _ in range(self.E)])
        s = c.get("shared_expert_intermediate_size") or 0
        self.shared = SwiGLU(d, s) if s > 0 else None
        self.aux_coef = c.get("router_aux_loss_coef") or 0.0
        self.z_coef = c.get("moe_router_z_loss_coef") or 0.0

    def forward(self, x):
        B, T, d = x.shape
        xf = x.reshape(-1, d)
        logits = self.router(xf)
        probs = torch.softmax(logits, dim=-1)
        if self.order == "topk_softmax":
            top, idx = logits.topk(self.k, dim=-1)
            w = torch.softmax(top, dim=-1)
        else:
            w, idx = probs.topk(self.k, dim=-1)
            if self.norm_topk:
                w = w / w.sum(-1, keepdim=True)
        out = torch.zeros_like(xf)
        counts = torch.zeros(self.E)
        for e in range(self.E):
            tok, slot = (idx == e).nonzero(as_tuple=True)
            counts[e] = tok.numel()
            if tok.numel() == 0:
                continue
            y = self.experts[e](xf[tok]) * w[tok, slot].unsqueeze(-1)
            out.index_add_(0, tok, y.to(out.dtype))
        if self.shared is not None:
            out = out + self.shared(xf)
        f = counts / counts.sum()
        aux = self.aux_coef * self.E * (f * probs.mean(0)).sum()
        z = self.z_coef * torch.logsumexp(logits, dim=-1).pow(2).mean()
        return out.view(B, T, d), aux + z


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        eps = c.get("rms_norm_eps", 1e-5)
        d = c["hidden_size"]
        self.attn_norm = RMSNorm(d, eps)
        self.attn = Attention(c)
        self.ffn_norm = RMSNorm(d, eps)
        E = c.get("num_local_experts") or c.get("num_experts") or 0
        self.moe = E > 1
        self.ffn = MoE(c) if self.moe else SwiGLU(d, c["intermediate_size"])

    def forward(self, x, cos, sin, mask):
        x = x + self.attn(self.attn_norm(x), cos, sin, mask)
        if self.moe:
            y, aux = self.ffn(self.ffn_norm(x))
            return x + y, aux
        return x + self.ffn(self.ffn_norm(x)), torch.zeros(())


class Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        V, d = c["vocab_size"], c["hidden_size"]
        self.embed = nn.Embedding(V, d)
        self.layers = nn.ModuleList([Block(c) for _ in range(c["num_hidden_layers"])])
        self.norm = RMSNorm(d, c.get("rms_norm_eps", 1e-5))
        self.tied = c.get("tie_word_embeddings", False)
        if not self.tied:
            self.lm_head = nn.Linear(d, V, bias=False)
        std = c.get("initializer_range") or 0.02
        for n, p in self.named_parameters():
            if p.dim() == 2:
                nn.init.normal_(p, 0, std)
                if n.endswith("wo.weight") or n.endswith("down.weight"):
                    p.data /= math.sqrt(2 * c["num_hidden_layers"])

    def forward(self, tok, tgt):
        B, T = tok.shape
        hd = self.layers[0].attn.hd
        cos, sin = rope_tables(T, hd, self.c.get("rope_theta", 10000.0))
        mask = torch.full((T, T), float("-inf")).triu(1)
        x = self.embed(tok)
        aux = torch.zeros(())
        nmoe = 0
        for l in self.layers:
            x, a = l(x, cos, sin, mask)
            aux = aux + a
            nmoe += int(l.moe)
        x = self.norm(x)
        logits = x @ self.embed.weight.t() if self.tied else self.lm_head(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-1)
        return loss + aux / max(nmoe, 1), loss


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="config.json (e.g. from moe bench train --save-config)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=0, help="0: the config's context")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--precision", choices=["float32", "bf16"], default="float32",
                    help="bf16: autocast the forward pass and loss to bfloat16 (float32 master weights)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    with open(a.config) as f:
        c = json.load(f)
    T = a.seq_len or c["max_position_embeddings"]
    m = Model(c)
    decay = [p for n, p in m.named_parameters() if p.dim() >= 2]
    nodecay = [p for n, p in m.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": nodecay, "weight_decay": 0.0}], lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    V = c["vocab_size"]

    def autocast():
        if a.precision == "bf16":
            return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step():
        tok = torch.randint(0, V, (a.batch, T + 1))
        opt.zero_grad(set_to_none=True)
        with autocast():
            total, loss = m(tok[:, :-1], tok[:, 1:])
        total.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(a.steps):
        loss = step()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({
        "tokens_per_second": a.batch * T * a.steps / dt,
        "tokens_per_cpu_second": a.batch * T * a.steps / cpu,
        "precision": a.precision,
        "batch": a.batch, "seq_len": T, "threads": a.threads, "steps": a.steps,
        "seconds_per_step": dt / a.steps, "loss": loss,
        "params": sum(p.numel() for p in m.parameters()),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
