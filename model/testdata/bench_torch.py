#!/usr/bin/python3
"""PyTorch peer of `moe bench train --config tiny`: the same MoE (d 256, 4 layers, 8 heads / 4 kv heads,
8 experts top-2 of width 512, vocab 4096, tied embeddings), forward+backward+AdamW on a random 8x256 batch.

Run: OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp \
     /usr/bin/python3 model/testdata/bench_torch.py
"""
import math, time, torch, torch.nn as nn, torch.nn.functional as F
torch.manual_seed(0)
V,D,L,NH,NKV,FF,E,K,B,T = 4096,256,4,8,4,512,8,2,8,256
HD=D//NH
class Block(nn.Module):
    def __init__(s):
        super().__init__()
        s.n1=nn.Parameter(torch.ones(D)); s.n2=nn.Parameter(torch.ones(D))
        s.qkv=nn.Linear(D,(NH+2*NKV)*HD,bias=False); s.o=nn.Linear(NH*HD,D,bias=False)
        s.router=nn.Linear(D,E,bias=False)
        s.gu=nn.Parameter(torch.randn(E,2*FF,D)*0.02); s.down=nn.Parameter(torch.randn(E,D,FF)*0.02)
    def rms(s,x,g): return x*torch.rsqrt(x.pow(2).mean(-1,keepdim=True)+1e-5)*g
    def forward(s,x,cos,sin):
        h=s.rms(x,s.n1); qkv=s.qkv(h)
        q,k,v=qkv.split([NH*HD,NKV*HD,NKV*HD],-1)
        q=q.view(B,T,NH,HD).transpose(1,2); k=k.view(B,T,NKV,HD).transpose(1,2); v=v.view(B,T,NKV,HD).transpose(1,2)
        def rope(x):
            h2=HD//2; return x*cos+torch.cat((-x[...,h2:],x[...,:h2]),-1)*sin
        q,k=rope(q),rope(k)
        k=k.repeat_interleave(NH//NKV,1); v=v.repeat_interleave(NH//NKV,1)
        o=F.scaled_dot_product_attention(q,k,v,is_causal=True) if hasattr(F,'scaled_dot_product_attention') else None
        if o is None:
            att=(q@k.transpose(-1,-2))/math.sqrt(HD)
            att=att.masked_fill(torch.triu(torch.ones(T,T,dtype=torch.bool),1),float('-inf')).softmax(-1); o=att@v
        x=x+s.o(o.transpose(1,2).reshape(B,T,D))
        h=s.rms(x,s.n2).reshape(B*T,D)
        logits=s.router(h); tv,ti=logits.topk(K,-1); w=tv.softmax(-1)
        y=torch.zeros_like(h)
        for e in range(E):
            tok,slot=(ti==e).nonzero(as_tuple=True)
            if tok.numel()==0: continue
            xe=h[tok]; gu=xe@s.gu[e].T; g,u=gu.split(FF,-1)
            ye=(F.silu(g)*u)@s.down[e].T
            y.index_add_(0,tok,ye*w[tok,slot,None])
        return x+y.view(B,T,D)
class M(nn.Module):
    def __init__(s):
        super().__init__(); s.emb=nn.Embedding(V,D); s.blocks=nn.ModuleList([Block() for _ in range(L)]); s.nf=nn.Parameter(torch.ones(D))
    def forward(s,tok,tgt):
        inv=10000**(-torch.arange(0,HD,2).float()/HD); ang=torch.arange(T).float()[:,None]*inv[None]
        emb=torch.cat((ang,ang),-1); cos,sin=emb.cos(),emb.sin()
        x=s.emb(tok)
        for b in s.blocks: x=b(x,cos,sin)
        x=x*torch.rsqrt(x.pow(2).mean(-1,keepdim=True)+1e-5)*s.nf
        return F.cross_entropy((x@s.emb.weight.T).view(-1,V),tgt.view(-1))
m=M(); nn.init.normal_(m.emb.weight, std=0.02); opt=torch.optim.AdamW(m.parameters(),lr=1e-3)
tok=torch.randint(0,V,(B,T)); tgt=torch.randint(0,V,(B,T))
for i in range(5):
    if i==2: t0=time.time()
    opt.zero_grad(); l=m(tok,tgt); l.backward(); opt.step()
dt=(time.time()-t0)/3
print(f"torch {torch.__version__} threads {torch.get_num_threads()}: {B*T/dt:.0f} tok/s ({dt:.3f} s/step) loss {l.item():.3f}")
