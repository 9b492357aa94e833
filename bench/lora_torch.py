#!/usr/bin/env python3
"""The PyTorch peer of bench/bench_lora.c's DPO step: LoRA adapters in PEFT's
formula on a frozen SmolLM2-135M-shaped Llama (dim 576, 30 layers, 9 heads,
3 kv heads, hidden 1536, vocab 49152, tied), 4 preference pairs of T = 256
tokens (a 64-token prompt, the log-probability summed over the 192 response
tokens), DPO loss with beta 0.1 against the reference = the base without
adapters, computed once before the timed steps.

LoRA as PEFT's LoraLayer runs it with dropout 0: y = W x + s * B(A(x)),
s = alpha / r, A (r, in) drawn by kaiming_uniform_(a=sqrt(5)), B (out, r)
zero, on q, k, v, o, gate, up and down of every layer; every base parameter
has requires_grad False. A step is zero_grad, the forward of the 8
sequences, the loss, the backward and an RMSprop update of the adapters
(what emdpo's trainer runs by default for DPO).

usage: lora_torch.py [REPS] [THREADS] [R] [ALPHA]
Prints "RESULT peer=torch ... median_s=... cpu_s=... peak_rss_mb=..." (one
warm-up step, then REPS timed ones) and exits 0 with "RESULT peer=torch
skipped=1" when torch is missing."""
import math
import os
import resource
import statistics
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("RESULT peer=torch skipped=1 reason=no-torch")
    sys.exit(0)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_dpo_step import Llama  # noqa: E402  (the same Llama as the engine's DPO-step peer)

SHAPE = dict(dim=576, n_layers=30, n_heads=9, n_kv_heads=3, hidden=1536, vocab=49152, T=256)
PAIRS, PROMPT = 4, 64


class LoraLinear(torch.nn.Module):
    """PEFT's lora.Linear without dropout: base(x) + lora_B(lora_A(x)) * scaling."""

    def __init__(self, base, r, alpha):
        super().__init__()
        self.base = base
        self.lora_A = torch.nn.Linear(base.in_features, r, bias=False)
        self.lora_B = torch.nn.Linear(r, base.out_features, bias=False)
        torch.nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        torch.nn.init.zeros_(self.lora_B.weight)
        self.scaling = alpha / r
        self.enabled = True

    def forward(self, x):
        y = self.base(x)
        if self.enabled:
            y = y + self.lora_B(self.lora_A(x)) * self.scaling
        return y


def add_lora(model, r, alpha):
    """Wraps the seven projections of every layer (PEFT's q_proj ... down_proj)."""
    wrapped = []
    for layer in model.layers:
        for name in ("wq", "wk", "wv", "wo", "w1", "w3", "w2"):
            m = LoraLinear(getattr(layer, name), r, alpha)
            setattr(layer, name, m)
            wrapped.append(m)
    return wrapped


def main():
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    r = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    alpha = float(sys.argv[4]) if len(sys.argv) > 4 else 32.0
    torch.manual_seed(1)
    torch.set_num_threads(threads)
    c = SHAPE
    model = Llama(c)
    for p in model.parameters():
        p.requires_grad_(False)
    loras = add_lora(model, r, alpha)
    adapter = [p for p in model.parameters() if p.requires_grad]
    n_adapter = sum(p.numel() for p in adapter)
    n_base = sum(p.numel() for p in model.parameters()) - n_adapter
    B, T, beta = 2 * PAIRS, c["T"], 0.1
    # the model sees T-1 positions, as a forward over T tokens predicts T-1
    model.cos, model.sin, model.mask = model.cos[: T - 1], model.sin[: T - 1], model.mask[: T - 1, : T - 1]
    tokens = torch.randint(3, c["vocab"], (B, T))

    def response_logp():
        logits = model(tokens[:, :-1])
        lp = torch.gather(F.log_softmax(logits, dim=-1), 2, tokens[:, 1:, None]).squeeze(-1)
        return lp[:, PROMPT - 1:].sum(1)  # the response tokens' log-probabilities

    for m in loras:
        m.enabled = False
    with torch.no_grad():
        ref = response_logp()
    for m in loras:
        m.enabled = True
    opt = torch.optim.RMSprop(adapter, lr=1e-6)

    def step():
        opt.zero_grad(set_to_none=True)
        logp = response_logp()
        margin = beta * ((logp[0::2] - ref[0::2]) - (logp[1::2] - ref[1::2]))
        loss = -F.logsigmoid(margin).mean()
        loss.backward()
        opt.step()
        return loss.item()

    def timed():
        t0, c0 = time.perf_counter(), time.process_time()
        loss = step()
        return time.perf_counter() - t0, time.process_time() - c0, loss

    loss0 = step()
    runs = [timed() for _ in range(reps)]
    times, cpus = [x[0] for x in runs], [x[1] for x in runs]
    med = statistics.median(times)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"RESULT peer=torch torch={torch.__version__} params={n_base} adapter={n_adapter} B={B} T={T} "
          f"threads={threads} median_s={med:.4f} min_s={min(times):.4f} cpu_s={statistics.median(cpus):.4f} "
          f"tok_per_s={B * T / med:.0f} loss0={loss0:.6f} loss={runs[-1][2]:.6f} peak_rss_mb={peak:.0f}")


if __name__ == "__main__":
    main()
