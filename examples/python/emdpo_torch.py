#!/usr/bin/python3
"""EM-DPO in plain PyTorch, with emdpo doing the exact parts.

A complete EM-DPO loop (the paper's Algorithm 1) around a trainer written
here in PyTorch: a tiny Llama-style model (RMSNorm, RoPE, causal attention,
SwiGLU, tied head), supervised fine-tuning on the chosen responses, then
K policies trained by weighted multi-item DPO. emdpo supplies the parts no
trainer has:

  emdpo.estep    the E-step on the per-type log-ratios computed here, in log
                 space: each annotator's posterior gamma, the new eta and the
                 observed-data log-likelihood;
  emdpo.weights  each decision's weight for each type's next DPO round
                 (gamma of its annotator, rescaled to mean 1);
  emdpo.mmra_ae  MMRA-AE on the regret matrix computed here: the mixture of
                 the K policies with the smallest worst-case regret, with its
                 duality-gap certificate.

The data are emdpo's MPI-style ternary choices (the paper's personality
experiment), and the tokenizer an emdpo BPE vocabulary:

  E=build/emdpo
  $E simulate --preset personalities --phrases 10 --annotators 240 --decisions 8 --items 3 --out tern.jsonl
  $E tokenizer --data tern.jsonl --vocab 400 --up-to --out tok.bin
  PYTHONPATH=python/src EMDPO_LIBRARY=build/libemdpo.so.0 \\
      /usr/bin/python3 examples/python/emdpo_torch.py --data tern.jsonl --tokenizer tok.bin --out torch_run

It prints the EM log-likelihood after every E-step, the posterior's
adjusted Rand index against the true personalities (the data's "group"),
and the MMRA-AE mixture; --out writes posterior.csv there. With the
settings above it recovers the types as well as `emdpo fit --policy llama`
does on the same data (tests/cli_torch_example.sh checks that).
"""
import argparse
import copy
import math
import os
import sys
import time

# PyTorch runs its own threads (torch.set_num_threads); OpenBLAS's threads on
# top of them, for matrices this small, made every product 10 to 100 times
# slower on a busy machine. Must be set before OpenBLAS loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import torch
import torch.nn.functional as F

import emdpo


# ---- A tiny Llama in PyTorch ------------------------------------------------

class RMSNorm(torch.nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.w


def rope(x, cos, sin):
    """Rotates the pairs (x[2i], x[2i+1]) of each head by pos * theta_i."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class Block(torch.nn.Module):
    def __init__(self, dim, heads, hidden):
        super().__init__()
        self.heads = heads
        self.n1, self.n2 = RMSNorm(dim), RMSNorm(dim)
        self.qkv = torch.nn.Linear(dim, 3 * dim, bias=False)
        self.o = torch.nn.Linear(dim, dim, bias=False)
        self.w13 = torch.nn.Linear(dim, 2 * hidden, bias=False)
        self.w2 = torch.nn.Linear(hidden, dim, bias=False)

    def forward(self, x, cos, sin, causal):
        B, T, C = x.shape
        q, k, v = self.qkv(self.n1(x)).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(C // self.heads)
        att = att.masked_fill(causal, float("-inf")).softmax(-1)
        x = x + self.o((att @ v).transpose(1, 2).reshape(B, T, C))
        a, b = self.w13(self.n2(x)).chunk(2, dim=-1)
        return x + self.w2(F.silu(a) * b)


class TinyLlama(torch.nn.Module):
    def __init__(self, vocab, dim=32, layers=1, heads=2, hidden=96, seq_len=64):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, dim)
        self.blocks = torch.nn.ModuleList(Block(dim, heads, hidden) for _ in range(layers))
        self.norm = RMSNorm(dim)
        hs = dim // heads
        freq = 10000.0 ** (-torch.arange(0, hs, 2).float() / hs)
        ang = torch.arange(seq_len).float()[:, None] * freq[None, :]
        self.register_buffer("cos", ang.cos(), persistent=False)
        self.register_buffer("sin", ang.sin(), persistent=False)
        torch.nn.init.normal_(self.emb.weight, std=0.02)

    def forward(self, ids):
        T = ids.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool, device=ids.device).triu(1)
        x = self.emb(ids)
        for b in self.blocks:
            x = b(x, self.cos[:T], self.sin[:T], causal)
        return self.norm(x) @ self.emb.weight.T  # tied head


# ---- Sequences --------------------------------------------------------------

class Items:
    """Every item of the data as one token sequence, as emdpo builds them:
    BOS + prompt, then the response and EOS; only the response tokens are
    scored. ids (n_items, T) padded, tgt_mask (n_items, T-1) marks the
    positions whose next token is a response token."""

    def __init__(self, data, tok):
        prompts, texts, off = data.prompts, data.texts, data.offsets
        seqs, starts = [], []
        for j in range(data.n_decisions):
            p = tok.encode(prompts[j] or "", add_bos=True)
            for i in range(off[j], off[j + 1]):
                seqs.append(p + tok.encode(texts[i] or "") + [tok.eos])
                starts.append(len(p))
        T = max(len(s) for s in seqs)
        self.lengths = torch.tensor([len(s) for s in seqs])
        self.ids = torch.zeros(len(seqs), T, dtype=torch.long)
        self.tgt_mask = torch.zeros(len(seqs), T - 1)
        for n, (s, st) in enumerate(zip(seqs, starts)):
            self.ids[n, :len(s)] = torch.tensor(s)
            self.tgt_mask[n, st - 1:len(s) - 1] = 1.0


def seq_logp(model, items, idx):
    """log pi(response | prompt) of items idx (a tensor of item indices)."""
    T = int(items.lengths[idx].max())  # no work on the padding past the batch's longest
    ids = items.ids[idx, :T]
    logp = model(ids[:, :-1]).log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
    return (logp * items.tgt_mask[idx, :T - 1]).sum(-1)


@torch.no_grad()
def all_logp(model, items, batch=256):
    """seq_logp of every item, in batches of similar lengths."""
    order = torch.argsort(items.lengths)
    out = torch.empty(items.ids.shape[0])
    for a in range(0, len(order), batch):
        out[order[a:a + batch]] = seq_logp(model, items, order[a:a + batch])
    return out


def choice_logp(u, n_items, ranking):
    """log P of each decision's choices from utilities u (B, n): the chosen
    item's log-softmax, or a full ranking's Plackett-Luce product."""
    if not ranking:
        return u.log_softmax(-1)[:, 0]
    lp = 0
    for t in range(n_items - 1):
        lp = lp + u[:, t] - u[:, t:].logsumexp(-1)
    return lp


# ---- The EM-DPO loop --------------------------------------------------------

def kmeans_tokens_init(data, items, K, rng):
    """EM's start, as emdpo's kmeans-tokens: k-means++ on each annotator's
    mean over decisions of (the chosen response's token counts minus the
    mean over the decision's items), hard assignment."""
    V = int(items.ids.max()) + 1
    counts = np.zeros((items.ids.shape[0], V))
    for n in range(items.ids.shape[0]):
        resp = items.ids[n, 1:][items.tgt_mask[n] > 0].numpy()
        np.add.at(counts[n], resp, 1.0)
    off, ann = data.offsets, data.annotator
    summ = np.zeros((data.n_annotators, V))
    for j in range(data.n_decisions):
        c = counts[off[j]:off[j + 1]]
        summ[ann[j]] += c[0] - c.mean(0)
    summ /= np.bincount(ann, minlength=data.n_annotators)[:, None]
    centers = [summ[rng.integers(len(summ))]]
    for _ in range(1, K):
        d2 = np.min([((summ - c) ** 2).sum(1) for c in centers], axis=0)
        centers.append(summ[rng.choice(len(summ), p=d2 / d2.sum())])
    centers = np.array(centers)
    for _ in range(50):
        assign = np.argmin(((summ[:, None, :] - centers[None]) ** 2).sum(-1), axis=1)
        for k in range(K):
            if (assign == k).any():
                centers[k] = summ[assign == k].mean(0)
    return np.eye(K)[assign]


def train_type(model, ref_lp, items, data, w, args, gen):
    """One M-step for one type: weighted multi-item DPO (the Plackett-Luce
    likelihood of beta * log-ratios, each decision weighted by w (n_dec,))
    plus RPO's NLL on the chosen responses, RMSprop with a linear warmup."""
    off = data.offsets
    n_items = int(off[1] - off[0])
    assert (np.diff(off) == n_items).all(), "this example batches decisions of one size"
    ranking = bool(data.ranking.any())
    opt = torch.optim.RMSprop(model.parameters(), lr=args.lr)
    wt = torch.tensor(w, dtype=torch.float32)
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, (step + 1) / args.warmup)
        dec = torch.randint(0, data.n_decisions, (args.batch,), generator=gen)
        idx = (torch.tensor(off[:-1])[dec][:, None] + torch.arange(n_items)[None]).reshape(-1)
        lp = seq_logp(model, items, idx).view(args.batch, n_items)
        u = args.beta * (lp - ref_lp[idx].view(args.batch, n_items))
        nll = -lp[:, 0] / items.tgt_mask[idx].sum(-1).view(args.batch, n_items)[:, 0]
        loss = (wt[dec] * (-choice_logp(u, n_items, ranking) + args.rpo_alpha * nll)).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()


def adjusted_rand_index(a, b):
    _, a = np.unique(a, return_inverse=True)
    _, b = np.unique(b, return_inverse=True)
    table = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(table, (a, b), 1)
    comb = lambda x: x * (x - 1) / 2
    s, sa, sb, n = comb(table).sum(), comb(table.sum(1)).sum(), comb(table.sum(0)).sum(), comb(len(a))
    expected = sa * sb / n
    return (s - expected) / ((sa + sb) / 2 - expected)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="emdpo preference JSONL with texts (emdpo simulate)")
    ap.add_argument("--tokenizer", required=True, help="an emdpo tokenizer (emdpo tokenizer's tok.bin)")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--iters", type=int, default=4, help="EM iterations after the first M-step")
    ap.add_argument("--steps", type=int, default=150, help="DPO steps per type per M-step")
    ap.add_argument("--sft-steps", type=int, default=300)
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rpo-alpha", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1,
                    help="PyTorch's threads (this model is too small to gain from more) and emdpo's")
    ap.add_argument("--out", help="write OUT/posterior.csv")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    emdpo.set_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()

    data = emdpo.read_data(args.data)
    tok = emdpo.Tokenizer(args.tokenizer)
    items = Items(data, tok)
    off, ann, ranking = data.offsets, data.annotator, data.ranking
    K = args.k
    print("%d annotators, %d decisions, %d items; K = %d" % (data.n_annotators, data.n_decisions, data.n_items, K))

    # SFT on the chosen responses: the reference policy and every type's start.
    sft = TinyLlama(tok.vocab_size, seq_len=items.ids.shape[1])
    opt = torch.optim.AdamW(sft.parameters(), lr=3e-3, weight_decay=0.0)
    chosen = torch.tensor(off[:-1])
    for step in range(args.sft_steps):
        idx = chosen[torch.randint(0, len(chosen), (16,), generator=gen)]
        loss = -(seq_logp(sft, items, idx) / items.tgt_mask[idx].sum(-1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    print("SFT: %d steps, chosen-response NLL %.3f per token (%.0f s)" % (args.sft_steps, loss.item(), time.time() - t0))
    ref = sft.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    ref_lp = all_logp(ref, items)
    policies = [copy.deepcopy(sft).requires_grad_(True) for _ in range(K)]

    # EM: M-step (weighted multi-item DPO per type), then the E-step by emdpo.
    gamma = kmeans_tokens_init(data, items, K, rng)
    for it in range(args.iters + 1):
        w = emdpo.weights(gamma, ann, normalize=True)             # (n_decisions, K)
        for k in range(K):
            train_type(policies[k], ref_lp, items, data, w[:, k], args, gen)
        logratios = torch.stack([all_logp(m, items) - ref_lp for m in policies]).double().numpy()  # (K, n_items)
        gamma, eta, loglik = emdpo.estep(logratios, off, ann, args.beta, gamma.mean(0), ranking)
        print("iteration %d: loglik %.4f  eta %s  (%.0f s)" % (it, loglik, np.round(eta, 4), time.time() - t0))

    truth = data.groups
    ari = adjusted_rand_index(truth, gamma.argmax(1))
    print("adjusted Rand index of the posterior vs the true types: %.4f" % ari)
    for g in sorted(set(truth)):
        sel = np.array([t == g for t in truth])
        print("  %-4s n=%-4d mean posterior %s" % (g, sel.sum(), np.round(gamma[sel].mean(0), 3)))

    # MMRA-AE on the regret matrix, exact over each decision's items:
    # L[k, k'] = mean over decisions of E_{y ~ pi_k'(.|C)}[beta log(pi_k / pi_ref)(y)].
    with torch.no_grad():
        lp = torch.stack([all_logp(m, items) for m in policies]).double()  # (K, n_items)
        r = args.beta * (lp - ref_lp.double())
        L = torch.zeros(K, K, dtype=torch.float64)
        for j in range(data.n_decisions):
            s = slice(off[j], off[j + 1])
            pi = lp[:, s].softmax(-1)  # (K', items)
            L += r[:, s] @ pi.T
        L /= data.n_decisions
        R = L.diag()[:, None] - L
    w_mix, max_regret, gap = emdpo.mmra_ae(R.numpy())
    print("MMRA-AE: mixture %s, max regret %.5f, duality gap %.2g" % (np.round(w_mix, 4), max_regret, gap))
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "posterior.csv"), "w") as f:
            f.write("annotator," + ",".join("gamma_%d" % (k + 1) for k in range(K)) + "\n")
            for a, row in zip(data.annotators, gamma):
                f.write(a + "," + ",".join(repr(float(x)) for x in row) + "\n")
    print("done in %.0f s" % (time.time() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
