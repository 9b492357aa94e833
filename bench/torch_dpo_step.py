#!/usr/bin/env python3
"""The PyTorch peer of bench/bench_llama.c: one DPO step (policy forward and
backward, no optimizer update) of a Llama of the same architecture as
emdpo's engine: RMSNorm, RoPE (llama2.c's pairing), grouped-query attention,
SwiGLU, tied output head.

usage: torch_dpo_step.py small|large [REPS] [THREADS]
  small: dim 256, 4 layers, 4 heads (4 kv), hidden 688, vocab 512; 32 pairs at T=64
  large: dim 512, 6 layers, 8 heads (8 kv), hidden 1376, vocab 512; 16 pairs at T=128
Prints one line "RESULT peer=torch model=... params=... median_s=... cpu_s=... tok_per_s=..."
(cpu_s: process CPU time per step, all threads) and exits 0 with
"RESULT peer=torch skipped=1" when torch is missing."""
import math
import statistics
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("RESULT peer=torch skipped=1 reason=no-torch")
    sys.exit(0)

CONFIGS = {
    "small": dict(dim=256, n_layers=4, n_heads=4, n_kv_heads=4, hidden=688, vocab=512, pairs=32, T=64),
    "large": dict(dim=512, n_layers=6, n_heads=8, n_kv_heads=8, hidden=1376, vocab=512, pairs=16, T=128),
}


class RMSNorm(torch.nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope(x, cos, sin):
    # x (B, T, nh, hs): rotate the pairs (x[2i], x[2i+1]) by the angle of row t
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


class Block(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        d, self.nh, self.nkv = c["dim"], c["n_heads"], c["n_kv_heads"]
        self.hs = d // self.nh
        kvd = self.nkv * self.hs
        self.attn_norm = RMSNorm(d)
        self.wq = torch.nn.Linear(d, d, bias=False)
        self.wk = torch.nn.Linear(d, kvd, bias=False)
        self.wv = torch.nn.Linear(d, kvd, bias=False)
        self.wo = torch.nn.Linear(d, d, bias=False)
        self.ffn_norm = RMSNorm(d)
        self.w1 = torch.nn.Linear(d, c["hidden"], bias=False)
        self.w2 = torch.nn.Linear(c["hidden"], d, bias=False)
        self.w3 = torch.nn.Linear(d, c["hidden"], bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, C = x.shape
        h = self.attn_norm(x)
        q = rope(self.wq(h).view(B, T, self.nh, self.hs), cos, sin).transpose(1, 2)
        k = rope(self.wk(h).view(B, T, self.nkv, self.hs), cos, sin).transpose(1, 2)
        v = self.wv(h).view(B, T, self.nkv, self.hs).transpose(1, 2)
        if self.nkv != self.nh:
            k = k.repeat_interleave(self.nh // self.nkv, dim=1)
            v = v.repeat_interleave(self.nh // self.nkv, dim=1)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.hs) + mask
        y = (F.softmax(att, dim=-1) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self.wo(y)
        h = self.ffn_norm(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class Llama(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.emb = torch.nn.Embedding(c["vocab"], c["dim"])
        self.layers = torch.nn.ModuleList(Block(c) for _ in range(c["n_layers"]))
        self.norm = RMSNorm(c["dim"])
        hs = c["dim"] // c["n_heads"]
        freq = 10000.0 ** (-torch.arange(0, hs, 2, dtype=torch.float64) / hs)
        ang = torch.arange(c["T"], dtype=torch.float64)[:, None] * freq[None, :]
        self.register_buffer("cos", ang.cos().float()[:, None, :])  # (T, 1, hs/2)
        self.register_buffer("sin", ang.sin().float()[:, None, :])
        T = c["T"]
        self.register_buffer("mask", torch.full((T, T), float("-inf")).triu(1))
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * c["n_layers"]) if name.endswith(("wo.weight", "w2.weight")) else 0.02
                torch.nn.init.normal_(p, std=std)

    def forward(self, tokens):
        x = self.emb(tokens)
        for layer in self.layers:
            x = layer(x, self.cos, self.sin, self.mask)
        return self.norm(x) @ self.emb.weight.t()  # tied head


def main():
    which = sys.argv[1] if len(sys.argv) > 1 else "small"
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    c = CONFIGS[which]
    torch.manual_seed(1)
    torch.set_num_threads(threads)
    model = Llama(c)
    params = sum(p.numel() for p in model.parameters())
    B, T, beta = 2 * c["pairs"], c["T"], 0.1
    tokens = torch.randint(3, c["vocab"], (B, T))
    ref = torch.randn(B) * 0.1  # reference-policy log-probs: constants of the step

    def step():
        model.zero_grad(set_to_none=True)
        logits = model(tokens[:, :-1])
        logp = torch.gather(F.log_softmax(logits, dim=-1), 2, tokens[:, 1:, None]).squeeze(-1).sum(1)
        margin = beta * ((logp[0::2] - ref[0::2]) - (logp[1::2] - ref[1::2]))
        loss = -F.logsigmoid(margin).mean()
        loss.backward()
        return loss.item()

    # the model sees T-1 positions, as emdpo's forward over T tokens predicts T-1
    model.cos, model.sin, model.mask = model.cos[: T - 1], model.sin[: T - 1], model.mask[: T - 1, : T - 1]
    def timed(fn):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - t0, time.process_time() - c0

    step()
    step()
    times, cpus = zip(*(timed(step) for _ in range(reps)))
    med = statistics.median(times)
    with torch.no_grad():
        model(tokens[:, :-1])
        ftimes, fcpus = zip(*(timed(lambda: model(tokens[:, :-1])) for _ in range(reps)))
    fmed = statistics.median(ftimes)
    print(f"RESULT peer=torch torch={torch.__version__} model={which} params={params} B={B} T={T} "
          f"threads={threads} median_s={med:.4f} min_s={min(times):.4f} cpu_s={statistics.median(cpus):.4f} "
          f"tok_per_s={B * T / med:.0f} fwd_s={fmed:.4f} fwd_cpu_s={statistics.median(fcpus):.4f} "
          f"fwd_tok_per_s={B * T / fmed:.0f}")


if __name__ == "__main__":
    main()
