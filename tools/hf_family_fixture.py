#!/usr/bin/python3
"""Writes the Hugging Face family fixtures used by tests/test_hf_families.c.

Run from the repository root with Debian's PyTorch:
    /usr/bin/python3 tools/hf_family_fixture.py

For each family below it draws a tiny random checkpoint in the exact layout
and naming of transformers (config.json + model.safetensors, q/k rows in HF's
rotate-half order) and runs, in float64, a forward pass written after
transformers' modelling code of that family:

  llama3      LlamaForCausalLM, rope_scaling {"rope_type": "llama3"} (Llama 3.1/3.2)
  llama_bias  LlamaForCausalLM with attention_bias (q/k/v/o biases), linear RoPE
              scaling, tied head
  mistral     MistralForCausalLM, sliding_window, an explicit head_dim (qd != C)
  qwen2       Qwen2ForCausalLM: q/k/v biases, tied head
  qwen3       Qwen3ForCausalLM: per-head q_norm/k_norm before RoPE, head_dim 16 on
              a width of 16 with 2 heads (qd = 32), tied head

It writes tests/fixtures/hf_families/NAME/{config.json,model.safetensors} and
tests/fixtures/hf_families/NAME_ref.safetensors holding:
  "logits"        (T, V): the logits of the chosen sequence
  "grad.<tensor>" for every tensor of the checkpoint: the gradient of
                  the DPO loss -log sigmoid(beta ((lc - ref_c) - (lr - ref_r)))
                  of one chosen/rejected pair, lc and lr the completion tokens'
                  summed log-probabilities
(float64 results rounded to float32) and metadata: "chosen", "rejected" (token ids), "prompt_len", "beta",
"ref_chosen", "ref_rejected", "loss" (repr of Python floats).

safetensors files are written by tools/st_write.py.
"""
import json
import math
import os

import torch

from st_write import write_safetensors

OUT = "tests/fixtures/hf_families"
BASE = dict(hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, vocab_size=40, rms_norm_eps=1e-6, hidden_act="silu")
FAMILIES = {
    "llama3": dict(model_type="llama", architectures=["LlamaForCausalLM"], max_position_embeddings=256,
                   rope_theta=500000.0, tie_word_embeddings=False, attention_bias=False, mlp_bias=False,
                   rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                     high_freq_factor=4.0, original_max_position_embeddings=64)),
    "llama_bias": dict(model_type="llama", architectures=["LlamaForCausalLM"], max_position_embeddings=64,
                       rope_theta=10000.0, tie_word_embeddings=True, attention_bias=True, mlp_bias=False,
                       rope_scaling=dict(type="linear", factor=2.0)),
    "mistral": dict(model_type="mistral", architectures=["MistralForCausalLM"], max_position_embeddings=64,
                    rope_theta=1000000.0, tie_word_embeddings=False, sliding_window=16, head_dim=12),
    "qwen2": dict(model_type="qwen2", architectures=["Qwen2ForCausalLM"], max_position_embeddings=128,
                  rope_theta=1000000.0, tie_word_embeddings=True, use_sliding_window=False,
                  sliding_window=32, max_window_layers=2),
    "qwen3": dict(model_type="qwen3", architectures=["Qwen3ForCausalLM"], max_position_embeddings=128,
                  rope_theta=1000000.0, tie_word_embeddings=True, attention_bias=False, head_dim=16,
                  use_sliding_window=False, sliding_window=None, max_window_layers=2),
}
PROMPT = [3, 17, 9, 30, 5]
CHOSEN = PROMPT + [22, 8, 8, 39, 1, 14]
REJECTED = PROMPT + [11, 0, 27, 6]
BETA = 0.5


def head_dim(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def inv_freq(cfg):
    """transformers' ROPE_INIT_FUNCTIONS: default, linear, llama3."""
    hs, theta = head_dim(cfg), cfg["rope_theta"]
    f = 1.0 / (theta ** (torch.arange(0, hs, 2, dtype=torch.float64) / hs))
    s = cfg.get("rope_scaling")
    if not s:
        return f
    kind = s.get("rope_type", s.get("type"))
    if kind == "linear":
        return f / s["factor"]
    assert kind == "llama3"
    factor, low, high, old = (s["factor"], s["low_freq_factor"], s["high_freq_factor"],
                              s["original_max_position_embeddings"])
    wavelen = 2 * math.pi / f
    out = torch.where(wavelen > old / low, f / factor, f)
    smooth = (old / wavelen - low) / (high - low)
    blended = (1 - smooth) * out / factor + smooth * out
    medium = ~(wavelen < old / high) & ~(wavelen > old / low)
    return torch.where(medium, blended, out)


def rmsnorm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def forward(cfg, p, tokens, lora=None):
    """The family's causal LM forward over one sequence: logits (T, V).
    lora: {module name ("model.layers.0.self_attn.q_proj"): (A, B, scaling)}
    adds PEFT's LoRA branch, lora_B(lora_A(x)) * scaling, to those
    projections' outputs (tools/lora_fixture.py)."""
    T, nh, nkv, hs = len(tokens), cfg["num_attention_heads"], cfg["num_key_value_heads"], head_dim(cfg)
    eps = cfg["rms_norm_eps"]
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq(cfg))
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[None], emb.sin()[None]
    i = torch.arange(T)
    allowed = i[None, :] <= i[:, None]
    window = cfg.get("sliding_window") if cfg["model_type"] == "mistral" else None
    if window:
        allowed &= i[None, :] > i[:, None] - window
    mask = torch.zeros(T, T, dtype=torch.float64).masked_fill(~allowed, float("-inf"))
    x = p["model.embed_tokens.weight"][torch.tensor(tokens)]
    for l in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{l}."
        h = rmsnorm(x, p[pre + "input_layernorm.weight"], eps)

        def proj(name, inp):
            y = inp @ p[pre + name + ".weight"].T
            b = p.get(pre + name + ".bias")
            y = y if b is None else y + b
            if lora and pre + name in lora:
                A, B, scaling = lora[pre + name]
                y = y + (inp @ A.T) @ B.T * scaling
            return y

        q = proj("self_attn.q_proj", h).view(T, nh, hs).transpose(0, 1)
        k = proj("self_attn.k_proj", h).view(T, nkv, hs).transpose(0, 1)
        v = proj("self_attn.v_proj", h).view(T, nkv, hs).transpose(0, 1)
        if cfg["model_type"] == "qwen3":
            q = rmsnorm(q, p[pre + "self_attn.q_norm.weight"], eps)
            k = rmsnorm(k, p[pre + "self_attn.k_norm.weight"], eps)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(nh // nkv, dim=0)
        v = v.repeat_interleave(nh // nkv, dim=0)
        att = (q @ k.transpose(1, 2)) / math.sqrt(hs) + mask
        y = (att.softmax(-1) @ v).transpose(0, 1).reshape(T, nh * hs)
        x = x + proj("self_attn.o_proj", y)
        h = rmsnorm(x, p[pre + "post_attention_layernorm.weight"], eps)
        x = x + proj("mlp.down_proj", torch.nn.functional.silu(proj("mlp.gate_proj", h)) * proj("mlp.up_proj", h))
    x = rmsnorm(x, p["model.norm.weight"], eps)
    head = p["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else p["lm_head.weight"]
    return x @ head.T


def completion_logp(cfg, p, tokens):
    lp = forward(cfg, p, tokens).log_softmax(-1)
    return sum(lp[t - 1, tokens[t]] for t in range(len(PROMPT), len(tokens)))


def tensors(cfg, g):
    """Random weights in HF naming, rounded to float32 values."""
    C, H, V, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    hs, nh, nkv = head_dim(cfg), cfg["num_attention_heads"], cfg["num_key_value_heads"]
    qd, kvd = nh * hs, nkv * hs
    bias_qkv = cfg["model_type"] == "qwen2" or cfg.get("attention_bias")
    bias_o = cfg.get("attention_bias")

    def rnd(*shape, scale=0.3, mean=0.0):
        return (mean + torch.randn(*shape, generator=g) * scale).to(torch.float32).to(torch.float64)

    p = {"model.embed_tokens.weight": rnd(V, C), "model.norm.weight": rnd(C, scale=0.1, mean=1.0)}
    if not cfg["tie_word_embeddings"]:
        p["lm_head.weight"] = rnd(V, C)
    for l in range(L):
        pre = f"model.layers.{l}."
        p[pre + "input_layernorm.weight"] = rnd(C, scale=0.1, mean=1.0)
        p[pre + "post_attention_layernorm.weight"] = rnd(C, scale=0.1, mean=1.0)
        for name, rows, cols in [("q_proj", qd, C), ("k_proj", kvd, C), ("v_proj", kvd, C), ("o_proj", C, qd)]:
            p[pre + "self_attn." + name + ".weight"] = rnd(rows, cols)
        for name in ["q_proj", "k_proj", "v_proj"] if bias_qkv else []:
            p[pre + "self_attn." + name + ".bias"] = rnd(qd if name == "q_proj" else kvd, scale=0.2)
        if bias_o:
            p[pre + "self_attn.o_proj.bias"] = rnd(C, scale=0.2)
        if cfg["model_type"] == "qwen3":
            p[pre + "self_attn.q_norm.weight"] = rnd(hs, scale=0.2, mean=1.0)
            p[pre + "self_attn.k_norm.weight"] = rnd(hs, scale=0.2, mean=1.0)
        p[pre + "mlp.gate_proj.weight"] = rnd(H, C)
        p[pre + "mlp.up_proj.weight"] = rnd(H, C)
        p[pre + "mlp.down_proj.weight"] = rnd(C, H)
    return p


def main():
    os.makedirs(OUT, exist_ok=True)
    for seed, (name, extra) in enumerate(FAMILIES.items()):
        cfg = dict(BASE, **extra)
        g = torch.Generator().manual_seed(20261207 + seed)
        p = tensors(cfg, g)
        for t in p.values():
            t.requires_grad_(True)
        logits = forward(cfg, p, CHOSEN).detach()
        with torch.no_grad():
            ref_c = float(completion_logp(cfg, p, CHOSEN)) - 0.25
            ref_r = float(completion_logp(cfg, p, REJECTED)) + 0.5
        lc, lr = completion_logp(cfg, p, CHOSEN), completion_logp(cfg, p, REJECTED)
        loss = -torch.nn.functional.logsigmoid(BETA * ((lc - ref_c) - (lr - ref_r)))
        loss.backward()
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        config = dict(cfg, bos_token_id=1, eos_token_id=2, torch_dtype="float32", transformers_version="4.51.0")
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(config, f, indent=2)
            f.write("\n")
        write_safetensors(os.path.join(d, "model.safetensors"), sorted(p.items()), {"format": "pt"})
        ref = [("logits", logits)] + [("grad." + k, t.grad) for k, t in sorted(p.items())]
        meta = {"chosen": " ".join(map(str, CHOSEN)), "rejected": " ".join(map(str, REJECTED)),
                "prompt_len": str(len(PROMPT)), "beta": repr(BETA), "ref_chosen": repr(ref_c),
                "ref_rejected": repr(ref_r), "loss": repr(float(loss))}
        write_safetensors(os.path.join(OUT, name + "_ref.safetensors"), ref, meta)
        print(f"{name}: loss {float(loss):.6f}")


if __name__ == "__main__":
    main()
