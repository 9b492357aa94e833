#!/usr/bin/python3
"""Writes tests/fixtures/llama_grad.bin: tiny Llama models evaluated in
PyTorch (float64) for tests/test_llama_grad.c to compare against.

The model is written here from the definitions, independently of the C code:
RMSNorm (eps 1e-5), RoPE with llama2.c's pairing (x[2i], x[2i+1]) turned by
pos * theta^(-2i/hs) inside each head, grouped-query causal attention, SwiGLU
(w2(silu(w1 x) * w3 x)), final RMSNorm, tied or separate head. Each case
holds a batch with one padded sequence; the loss is sum over real positions
of c[b][t] * log p(tokens[b][t+1] | tokens[b][..t]) with fixed random c.

Run with the system interpreter that has PyTorch: /usr/bin/python3
tools/llama_fixture.py [out]. Layout (little-endian):
  "EMLG", int32 version 1, int32 n_cases, then per case:
  int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
        max_seq_len, tied, B, T; float32 norm_eps, rope_theta;
  int32 tokens (B, T); int32 lens (B); float32 c (B, T), 0 where masked;
  float32 logp (B, T), 0 where masked; float64 loss;
  float32 params (num_params); float32 grads (num_params);
params and grads in emdpo_llama_params order (lm_head only when untied).
"""
import struct
import sys

import torch

EPS = 1e-5
THETA = 10000.0


def make_params(cfg, gen):
    C, H, L, NH, NKV, V = (cfg[k] for k in ("dim", "hidden", "layers", "heads", "kv_heads", "vocab"))
    kvd = NKV * (C // NH)

    def mat(*shape):
        return torch.randn(*shape, generator=gen) / shape[-1] ** 0.5

    def norm(*shape):
        return 1.0 + 0.2 * torch.randn(*shape, generator=gen)

    p = {
        "tok_emb": torch.randn(V, C, generator=gen),
        "rms_att": norm(L, C),
        "wq": mat(L, C, C),
        "wk": mat(L, kvd, C),
        "wv": mat(L, kvd, C),
        "wo": mat(L, C, C),
        "rms_ffn": norm(L, C),
        "w1": mat(L, H, C),
        "w2": mat(L, C, H),
        "w3": mat(L, H, C),
        "rms_final": norm(C),
    }
    if not cfg["tied"]:
        p["lm_head"] = mat(V, C)
    # Stored as float32; computed in float64 from exactly those values.
    return {k: v.float().double().requires_grad_(True) for k, v in p.items()}


def rmsnorm(x, w):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + EPS) * w


def rope(x, T, hs):
    # x (B, T, heads, hs): pair (2i, 2i+1) turns by t * theta^(-2i/hs)
    i = torch.arange(hs // 2, dtype=torch.float64)
    freq = THETA ** (-2.0 * i / hs)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * freq[None, :]  # (T, hs/2)
    cos, sin = torch.cos(ang)[None, :, None, :], torch.sin(ang)[None, :, None, :]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x0 * cos - x1 * sin
    out[..., 1::2] = x0 * sin + x1 * cos
    return out


def forward(cfg, p, tokens):
    C, L, NH, NKV = cfg["dim"], cfg["layers"], cfg["heads"], cfg["kv_heads"]
    hs = C // NH
    B, T = tokens.shape
    x = p["tok_emb"][tokens]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(L):
        h = rmsnorm(x, p["rms_att"][l])
        q = rope((h @ p["wq"][l].T).view(B, T, NH, hs), T, hs)
        k = rope((h @ p["wk"][l].T).view(B, T, NKV, hs), T, hs)
        v = (h @ p["wv"][l].T).view(B, T, NKV, hs)
        rep = NH // NKV  # query head j reads key/value head j // rep
        k = k.repeat_interleave(rep, dim=2)
        v = v.repeat_interleave(rep, dim=2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, NH, T, hs)
        s = (q @ k.transpose(-1, -2)) / hs ** 0.5
        s = s.masked_fill(~causal, float("-inf"))
        y = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ p["wo"][l].T
        h = rmsnorm(x, p["rms_ffn"][l])
        g = h @ p["w1"][l].T
        x = x + (g * torch.sigmoid(g) * (h @ p["w3"][l].T)) @ p["w2"][l].T
    x = rmsnorm(x, p["rms_final"])
    head = p["tok_emb"] if cfg["tied"] else p["lm_head"]
    return torch.log_softmax(x @ head.T, -1)


def case(cfg, seed, lens):
    gen = torch.Generator().manual_seed(seed)
    p = make_params(cfg, gen)
    B, T, V = len(lens), cfg["T"], cfg["vocab"]
    tokens = torch.randint(0, V, (B, T), generator=gen)
    mask = torch.zeros(B, T, dtype=torch.float64)
    for b, n in enumerate(lens):
        mask[b, : n - 1] = 1.0  # positions with a next token
    c = torch.randn(B, T, generator=gen).float().double() * mask  # exactly the stored float32 values
    logprobs = forward(cfg, p, tokens)
    nxt = torch.cat([tokens[:, 1:], torch.zeros(B, 1, dtype=torch.long)], 1)
    logp = logprobs.gather(-1, nxt[..., None])[..., 0] * mask
    loss = (c * logp).sum()
    loss.backward()
    order = ["tok_emb", "rms_att", "wq", "wk", "wv", "wo", "rms_ffn", "w1", "w2", "w3", "rms_final"]
    if not cfg["tied"]:
        order.append("lm_head")
    out = struct.pack(
        "<10i2f",
        cfg["dim"], cfg["hidden"], cfg["layers"], cfg["heads"], cfg["kv_heads"], V,
        cfg["max_seq_len"], cfg["tied"], B, T, EPS, THETA,
    )
    f32 = lambda t: t.detach().double().flatten().float().numpy().astype("<f4").tobytes()
    out += tokens.flatten().numpy().astype("<i4").tobytes()
    out += struct.pack("<%di" % B, *lens)
    out += f32(c) + f32(logp) + struct.pack("<d", loss.item())
    out += b"".join(f32(p[k]) for k in order)
    out += b"".join(f32(p[k].grad) for k in order)
    return out


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/llama_grad.bin"
    cases = [
        # tied head, GQA with 2 query heads per key/value head
        (dict(dim=32, hidden=48, layers=2, heads=4, kv_heads=2, vocab=48, max_seq_len=16, tied=1, T=9), 1, [9, 6]),
        # separate head, smaller, 4 query heads per key/value head
        (dict(dim=16, hidden=24, layers=2, heads=4, kv_heads=1, vocab=40, max_seq_len=9, tied=0, T=9), 2, [4, 9]),
    ]
    data = b"EMLG" + struct.pack("<2i", 1, len(cases))
    data += b"".join(case(*c) for c in cases)
    with open(path, "wb") as f:
        f.write(data)
    print("%s: %d bytes" % (path, len(data)))


if __name__ == "__main__":
    main()
