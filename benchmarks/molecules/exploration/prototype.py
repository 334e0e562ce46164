"""First screen (before latent_grid.py): which encoder/decoder learns to copy SMILES fastest per CPU second.

A standalone GRU / Transformer VAE with a hand-written loop (budget in process CPU seconds, one thread), so
that many variants could be compared quickly; its findings were then re-measured with the package's own
MolVAE in latent_grid.py. Run prepare_data.py first. Results: results/*.json (see ../RESULTS.md).

    python prototype.py --tag NAME [--enc gru|bigru|transformer] [--dec gru|transformer] [--beta B] ...
"""

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[3]
MOSES = Path(os.environ.get("SCIVAE_MOSES_DIR", ROOT.parent / "shared" / "data" / "moses"))
WORK = Path(os.environ.get("SCIVAE_EXPLORE_DIR", ROOT / "benchmarks" / "out" / "exploration"))
WORK.mkdir(parents=True, exist_ok=True)
sys.path.insert(0, str(ROOT))
from scivae.molecules.io import canonicalize_many  # noqa: E402
from scivae.molecules.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Vocabulary, detokenize  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--alphabet", default="kekule")
p.add_argument("--n-train", type=int, default=20000)
p.add_argument("--enc", default="gru")
p.add_argument("--dec", default="gru")
p.add_argument("--d", type=int, default=128)
p.add_argument("--enc-layers", type=int, default=2)
p.add_argument("--dec-layers", type=int, default=2)
p.add_argument("--dec-hidden", type=int, default=256)
p.add_argument("--enc-hidden", type=int, default=128)
p.add_argument("--emb", type=int, default=32)
p.add_argument("--n-latent", type=int, default=64)
p.add_argument("--slots", type=int, default=4)
p.add_argument("--beta", type=float, default=0.0)
p.add_argument("--wd", type=float, default=0.0)
p.add_argument("--lr", type=float, default=2e-3)
p.add_argument("--bs", type=int, default=128)
p.add_argument("--cpu-seconds", type=float, default=300)
p.add_argument("--eval-every", type=float, default=60)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--tag", default="")
p.add_argument("--warmup", type=int, default=1000)
p.add_argument("--noise", type=int, default=1)
p.add_argument("--ff", type=int, default=256)
p.add_argument("--heads", type=int, default=4)
p.add_argument("--mmd", type=float, default=0.0)
p.add_argument("--wdrop", type=float, default=0.0)
p.add_argument("--load", default="")
p.add_argument("--cosine", type=int, default=0)
p.add_argument("--zout", type=int, default=0)
p.add_argument("--pos", type=int, default=0)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
D = np.load(WORK / f"data_{a.alphabet}.npz")
meta = json.load(open(WORK / f"meta_{a.alphabet}.json"))
vocab = Vocabulary.from_dict(meta["vocab"])
V = len(vocab)
xtr = torch.from_numpy(D["xtr"][: a.n_train]).long()
ltr = torch.from_numpy(D["ltr"][: a.n_train]).long()
xte = torch.from_numpy(D["xte"][:1000]).long()
lte = torch.from_numpy(D["lte"][:1000]).long()
MAXL = max(xtr.shape[1], xte.shape[1]) + 2


def reverse_within(x, lengths):
    L = x.shape[1]
    idx = lengths[:, None] - 1 - torch.arange(L)[None, :]
    valid = idx >= 0
    return torch.gather(x, 1, idx.clamp(min=0)).masked_fill(~valid, PAD_ID)


class Block(nn.Module):
    def __init__(s, d, h, ff):
        super().__init__()
        s.ln1 = nn.LayerNorm(d)
        s.ln2 = nn.LayerNorm(d)
        s.qkv = nn.Linear(d, 3 * d)
        s.o = nn.Linear(d, d)
        s.h = h
        s.ff = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d))

    def forward(s, x, causal=False, keypad=None, prefix=0):
        B, T, d = x.shape
        q, k, v = s.qkv(s.ln1(x)).view(B, T, 3, s.h, d // s.h).permute(2, 0, 3, 1, 4)
        mask = None
        if causal:
            m = torch.ones(T, T, dtype=torch.bool).tril()
            if prefix:
                m[:, :prefix] = True
            mask = m
        if keypad is not None:
            km = (~keypad)[:, None, None, :]
            mask = km if mask is None else (mask[None, None] & km)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + s.o(y.transpose(1, 2).reshape(B, T, d))
        return x + s.ff(s.ln2(x))


class VAE(nn.Module):
    def __init__(s):
        super().__init__()
        s.emb = nn.Embedding(V, a.emb if a.dec == "gru" else a.d, padding_idx=PAD_ID)
        if a.enc in ("gru", "bigru"):
            s.enc_emb = s.emb if a.dec == "gru" else nn.Embedding(V, a.emb, padding_idx=PAD_ID)
            s.egru = nn.GRU(s.enc_emb.embedding_dim, a.enc_hidden, batch_first=True)
            if a.enc == "bigru":
                s.egru_b = nn.GRU(s.enc_emb.embedding_dim, a.enc_hidden, batch_first=True)
            nf = a.enc_hidden * (2 if a.enc == "bigru" else 1)
        else:
            s.enc_emb = nn.Embedding(V, a.d, padding_idx=PAD_ID)
            s.epos = nn.Embedding(MAXL, a.d)
            s.eblocks = nn.ModuleList([Block(a.d, a.heads, a.ff) for _ in range(a.enc_layers)])
            s.eln = nn.LayerNorm(a.d)
            nf = 2 * a.d
        s.mu = nn.Linear(nf, a.n_latent)
        s.lv = nn.Linear(nf, a.n_latent)
        if a.dec == "gru":
            extra = a.d if a.pos else 0
            if a.pos:
                s.dpos = nn.Embedding(MAXL, a.d)
            s.z2h = nn.Linear(a.n_latent, a.dec_layers * a.dec_hidden)
            s.dgru = nn.GRU(a.emb + a.n_latent + extra, a.dec_hidden, num_layers=a.dec_layers, batch_first=True)
            s.out = nn.Linear(a.dec_hidden, V)
            if a.zout:
                s.zout = nn.Linear(a.n_latent, a.dec_hidden)
        else:
            s.dpos = nn.Embedding(MAXL + a.slots, a.d)
            s.z2m = nn.Linear(a.n_latent, a.slots * a.d)
            s.z2x = nn.Linear(a.n_latent, a.d)
            s.dblocks = nn.ModuleList([Block(a.d, a.heads, a.ff) for _ in range(a.dec_layers)])
            s.dln = nn.LayerNorm(a.d)
            s.out = nn.Linear(a.d, V)

    def encode(s, x, lengths):
        x = x[:, : int(lengths.max())]
        if a.enc in ("gru", "bigru"):
            o, _ = s.egru(s.enc_emb(x))
            r = torch.arange(x.shape[0])
            f = o[r, lengths - 1]
            if a.enc == "bigru":
                ob, _ = s.egru_b(s.enc_emb(reverse_within(x, lengths)))
                f = torch.cat([f, ob[r, lengths - 1]], -1)
        else:
            T = x.shape[1]
            h = s.enc_emb(x) + s.epos(torch.arange(T))[None]
            pad = x == PAD_ID
            for b in s.eblocks:
                h = b(h, keypad=pad)
            h = s.eln(h)
            m = (~pad).float()[..., None]
            mean = (h * m).sum(1) / m.sum(1)
            mx = h.masked_fill(pad[..., None], -1e4).max(1).values
            f = torch.cat([mean, mx], -1)
        return s.mu(f), s.lv(f).clamp(-10, 5)

    def logits(s, z, x, lengths):
        x = x[:, : int(lengths.max())]
        B, T = x.shape
        inp = torch.cat([torch.full((B, 1), BOS_ID), x[:, :-1]], 1)
        if a.dec == "gru":
            if s.training and a.wdrop > 0:
                drop = torch.rand(inp.shape) < a.wdrop
                drop[:, 0] = False
                inp = inp.masked_fill(drop, UNK_ID)
            e = s.emb(inp)
            parts = [e, z[:, None].expand(-1, T, -1)]
            if a.pos:
                parts.append(s.dpos(torch.arange(T))[None].expand(B, -1, -1))
            h0 = s.z2h(z).view(B, a.dec_layers, a.dec_hidden).transpose(0, 1).contiguous()
            o, _ = s.dgru(torch.cat(parts, -1), h0)
            if a.zout:
                o = o + s.zout(z)[:, None]
            return s.out(o), x
        mem = s.z2m(z).view(B, a.slots, a.d)
        h = torch.cat([mem, s.emb(inp) + s.z2x(z)[:, None]], 1) + s.dpos(torch.arange(T + a.slots))[None]
        for b in s.dblocks:
            h = b(h, causal=True, prefix=a.slots)
        return s.out(s.dln(h[:, a.slots :])), x

    def nll(s, z, x, lengths):
        lg, xx = s.logits(z, x, lengths)
        ce = F.cross_entropy(lg.transpose(1, 2), xx, reduction="none")
        mask = torch.arange(xx.shape[1])[None] < lengths[:, None]
        return (ce * mask).sum(1), lg, xx, mask


m = VAE()
nparam = sum(q.numel() for q in m.parameters())
opt = torch.optim.Adam(m.parameters(), lr=a.lr, weight_decay=a.wd)
print(f"params {nparam}", flush=True)


@torch.no_grad()
def evaluate():
    m.eval()
    mu, lv = m.encode(xte, lte)
    nll, lg, xx, mask = m.nll(mu, xte, lte)
    pred = lg.argmax(-1)
    ok = (pred == xx) | ~mask
    kl = 0.5 * (lv.exp() + mu**2 - 1 - lv).sum(1)
    m.train()
    return dict(
        nll=float(nll.mean()),
        tok=float(((pred == xx) & mask).sum() / mask.sum()),
        exact=float(ok.all(1).float().mean()),
        kl=float(kl.mean()),
        au=int((mu.var(0) > 0.01).sum()),
    )


order = torch.argsort(ltr)
t0 = time.process_time()
w0 = time.time()
step = 0
nexteval = a.eval_every
log = []
seen = 0
g = torch.Generator().manual_seed(0)
if a.load:
    m.load_state_dict(torch.load(a.load))
while not a.load:
    # length-grouped batches: shuffle, pools of 50 batches sorted by length
    perm = torch.randperm(len(xtr), generator=g)
    pools = perm.split(a.bs * 50)
    batches = []
    for pool in pools:
        pool = pool[torch.argsort(ltr[pool])]
        batches += list(pool.split(a.bs))
    batches = [batches[i] for i in torch.randperm(len(batches), generator=g)]
    done = False
    for idx in batches:
        x, lens = xtr[idx], ltr[idx]
        mu, lv = m.encode(x, lens)
        z = mu + (torch.randn_like(mu) * (0.5 * lv).exp() if a.noise else 0)
        nll, *_ = m.nll(z, x, lens)
        kl = 0.5 * (lv.exp() + mu**2 - 1 - lv).sum(1)
        w = min(1.0, step / max(a.warmup, 1)) * a.beta
        if a.cosine:
            for gr in opt.param_groups:
                gr["lr"] = a.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (time.process_time() - t0) / a.cpu_seconds)))
        loss = nll.mean() + w * kl.mean()
        if a.mmd > 0:
            zp = torch.randn_like(z)
            dd = z.shape[1]

            def k(x, y, dd=dd):
                d2 = torch.cdist(x, y) ** 2
                out = 0
                for c in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0):
                    C = 2 * dd * c
                    out = out + C / (C + d2)
                return out

            n = z.shape[0]
            off = 1 - torch.eye(n)
            mmd = (k(z, z) * off).sum() / (n * (n - 1)) + (k(zp, zp) * off).sum() / (n * (n - 1)) - 2 * k(z, zp).mean()
            loss = loss + a.mmd * min(1.0, step / max(a.warmup, 1)) * mmd
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(m.parameters(), 10.0)
        opt.step()
        step += 1
        seen += len(idx)
        cpu = time.process_time() - t0
        if cpu >= nexteval:
            r = evaluate()
            r.update(
                step=step,
                cpu=round(cpu),
                wall=round(time.time() - w0),
                seen=seen,
                train_nll=float(nll.mean()),
                train_kl=float(kl.mean()),
            )
            log.append(r)
            nexteval += a.eval_every
            print(json.dumps(r), flush=True)
        if cpu >= a.cpu_seconds:
            done = True
            break
    if done:
        break


@torch.no_grad()
def sample(z, greedy=False, syntax=False):
    from scivae.molecules.constraints import decoding_constraint

    cons = decoding_constraint(vocab, syntax=syntax)
    st = cons.start(z.shape[0], z.device) if cons else None
    m.eval()
    B = z.shape[0]
    tok = torch.full((B,), BOS_ID)
    outs = []
    fin = torch.zeros(B, dtype=torch.bool)
    h = m.z2h(z).view(B, a.dec_layers, a.dec_hidden).transpose(0, 1).contiguous()
    for t in range(MAXL - 2):
        parts = [m.emb(tok), z]
        if a.pos:
            parts.append(m.dpos(torch.full((B,), t)))
        o, h = m.dgru(torch.cat(parts, -1)[:, None], h)
        o = o[:, 0]
        if a.zout:
            o = o + m.zout(z)
        lg = m.out(o)
        lg[:, [PAD_ID, BOS_ID, UNK_ID]] = -1e9
        if st is not None:
            lg = lg.masked_fill(~cons.allowed(st), -1e9)
        tok = lg.argmax(-1) if greedy else torch.multinomial(lg.softmax(-1), 1)[:, 0]
        tok = tok.masked_fill(fin, PAD_ID)
        if st is not None:
            cons.advance(st, tok)
        outs.append(tok)
        fin |= tok == EOS_ID
        if fin.all():
            break
    ids = torch.stack(outs, 1).numpy()
    return [detokenize(vocab.decode(r), a.alphabet) for r in ids]


final = {}
if a.dec == "gru" and a.load:
    for T, greedy in ((1.0, True), (0.7, False), (0.85, False)):
        z = torch.randn(2000, a.n_latent, generator=torch.Generator().manual_seed(5))
        smi = sample(z, greedy=greedy, syntax=True) if T == 1.0 else None
        if smi is None:
            lg_scale = 1 / T
            old = m.out.weight.data.clone(), m.out.bias.data.clone()
            m.out.weight.data *= lg_scale
            m.out.bias.data *= lg_scale
            smi = sample(z, syntax=True)
            m.out.weight.data, m.out.bias.data = old
        can = [c for c in canonicalize_many(smi)]
        v = [c for c in can if c is not None]
        final[f"T{T}_greedy{greedy}"] = dict(
            valid=len(v) / len(can),
            unique=len(set(v)) / max(len(v), 1),
            novel=len(set(v) - set(meta["train"])) / max(len(set(v)), 1),
        )
    print(json.dumps(final))
    sys.exit()
if a.dec == "gru":
    smi = sample(torch.randn(500, a.n_latent, generator=torch.Generator().manual_seed(5)))
    can = canonicalize_many(smi)
    final["prior_valid"] = float(np.mean([c is not None for c in can]))
    smi = sample(torch.randn(500, a.n_latent, generator=torch.Generator().manual_seed(5)), syntax=True)
    final["prior_valid_syntax"] = float(np.mean([c is not None for c in canonicalize_many(smi)]))
    mu, lv = m.encode(xte[:500], lte[:500])
    final["mu_var_mean"] = float(mu.var(0).mean())
    final["sig2_mean"] = float(lv.exp().mean())
    smi = sample(mu + (0.5 * lv).exp() * torch.randn_like(mu))
    can = canonicalize_many(smi)
    final["post_valid"] = float(np.mean([c is not None for c in can]))
    zm = torch.randn(500, a.n_latent, generator=torch.Generator().manual_seed(6)) * (
        mu.var(0) + lv.exp().mean(0)
    ).sqrt() + mu.mean(0)
    final["moment_matched_valid"] = float(np.mean([c is not None for c in canonicalize_many(sample(zm))]))
    mu, _ = m.encode(xte[:300], lte[:300])
    rec = sample(mu, greedy=True)
    pairs = zip(canonicalize_many(rec), meta["test"][:300], strict=False)
    final["greedy_recon"] = float(np.mean([c == t for c, t in pairs]))
    print(json.dumps(final), flush=True)
torch.save(m.state_dict(), WORK / f"{a.tag}.pt")
json.dump(
    {"args": vars(a), "params": nparam, "log": log, "final": final},
    open(Path(__file__).resolve().parent / "results" / f"{a.tag}.json", "w"),
)
