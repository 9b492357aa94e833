#!/usr/bin/python3
"""Writes the tiny Hugging Face Llama fixture used by tests/test_safetensors.c.

Run from the repository root with Debian's PyTorch: /usr/bin/python3 tools/hf_fixture.py

It draws random weights in the interleaved-pair RoPE layout of Meta's and
llama2.c's checkpoints (emdpo's layout), converts q_proj and k_proj with the
exact permute() of transformers' convert_llama_weights_to_hf.py, and checks in
PyTorch that a forward pass written the HF way (rotate_half RoPE) on the HF
weights gives the same logits as one written the llama2.c way (rotation of
pairs 2i, 2i+1) on the original weights. It then writes:

  tests/fixtures/hf_tiny/config.json        HF config (untied head, GQA)
  tests/fixtures/hf_tiny/model.safetensors  HF names and layout, float32
  tests/fixtures/hf_tiny_ref.safetensors    the same weights in emdpo's layout
      (tensors tok_emb, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3,
      rms_final, lm_head as in src/llama.h) plus "logits" (T, V): float64
      reference logits for the token ids in metadata "tokens", rounded to float32.

safetensors files are written by tools/st_write.py (no `safetensors` package needed).
"""
import json
import os

import torch

from st_write import write_safetensors

CFG = dict(dim=16, hidden_dim=40, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=48,
           max_seq_len=32, norm_eps=1e-5, rope_theta=10000.0)
TOKENS = [1, 7, 30, 2, 45, 11, 11, 0, 19]


def permute(w, n_heads, dim1, dim2):
    """transformers/models/llama/convert_llama_weights_to_hf.py, verbatim."""
    return w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)


def rmsnorm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rope_hf(x, pos, theta):
    """transformers' LlamaRotaryEmbedding + apply_rotary_pos_emb."""
    hs = x.shape[-1]
    inv_freq = 1.0 / (theta ** (torch.arange(0, hs, 2, dtype=torch.float64) / hs))
    freqs = torch.outer(pos, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[:, None, :], emb.sin()[:, None, :]
    x1, x2 = x[..., : hs // 2], x[..., hs // 2:]
    rot = torch.cat((-x2, x1), dim=-1)
    return x * cos + rot * sin


def rope_pairs(x, pos, theta):
    """llama2.c: rotate each pair (2i, 2i+1) by pos * theta^(-2i/hs)."""
    hs = x.shape[-1]
    inv_freq = 1.0 / (theta ** (torch.arange(0, hs, 2, dtype=torch.float64) / hs))
    ang = torch.outer(pos, inv_freq)[:, None, :]
    c, s = ang.cos(), ang.sin()
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


def forward(layers, emb, norm, head, tokens, rope):
    c = CFG
    nh, nkv, hs = c["n_heads"], c["n_kv_heads"], c["dim"] // c["n_heads"]
    T = len(tokens)
    pos = torch.arange(T, dtype=torch.float64)
    x = emb[torch.tensor(tokens)]
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    for ly in layers:
        h = rmsnorm(x, ly["att_norm"], c["norm_eps"])
        q = rope((h @ ly["q"].T).view(T, nh, hs), pos, c["rope_theta"])
        k = rope((h @ ly["k"].T).view(T, nkv, hs), pos, c["rope_theta"])
        v = (h @ ly["v"].T).view(T, nkv, hs)
        k = k.repeat_interleave(nh // nkv, dim=1)
        v = v.repeat_interleave(nh // nkv, dim=1)
        att = torch.einsum("thd,shd->hts", q, k) / hs ** 0.5 + mask
        y = torch.einsum("hts,shd->thd", att.softmax(-1), v).reshape(T, c["dim"])
        x = x + y @ ly["o"].T
        h = rmsnorm(x, ly["ffn_norm"], c["norm_eps"])
        x = x + (torch.nn.functional.silu(h @ ly["gate"].T) * (h @ ly["up"].T)) @ ly["down"].T
    return rmsnorm(x, norm, c["norm_eps"]) @ head.T


def main():
    c = CFG
    C, H, L, V = c["dim"], c["hidden_dim"], c["n_layers"], c["vocab_size"]
    nh, nkv = c["n_heads"], c["n_kv_heads"]
    kvd = nkv * (C // nh)
    g = torch.Generator().manual_seed(20240611)

    def rnd(*shape, scale=0.3):
        return (torch.randn(*shape, generator=g) * scale).to(torch.float32).to(torch.float64)

    emb, head = rnd(V, C), rnd(V, C)
    norm = 1 + rnd(C, scale=0.1)
    layers = [dict(att_norm=1 + rnd(C, scale=0.1), q=rnd(C, C), k=rnd(kvd, C), v=rnd(kvd, C),
                   o=rnd(C, C), ffn_norm=1 + rnd(C, scale=0.1), gate=rnd(H, C), down=rnd(C, H),
                   up=rnd(H, C)) for _ in range(L)]
    hf_layers = [dict(ly, q=permute(ly["q"], nh, C, C), k=permute(ly["k"], nkv, kvd, C)) for ly in layers]

    ours = forward(layers, emb, norm, head, TOKENS, rope_pairs)
    theirs = forward(hf_layers, emb, norm, head, TOKENS, rope_hf)
    err = (ours - theirs).abs().max().item()
    assert err < 1e-12, f"the permutation does not carry pair RoPE to rotate-half RoPE: {err}"

    os.makedirs("tests/fixtures/hf_tiny", exist_ok=True)
    hf = [("model.embed_tokens.weight", emb)]
    names = ["input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
             "self_attn.o_proj", "post_attention_layernorm", "mlp.gate_proj", "mlp.down_proj",
             "mlp.up_proj"]
    keys = ["att_norm", "q", "k", "v", "o", "ffn_norm", "gate", "down", "up"]
    for i, ly in enumerate(hf_layers):
        hf += [(f"model.layers.{i}.{n}.weight", ly[k]) for n, k in zip(names, keys)]
    hf += [("model.norm.weight", norm), ("lm_head.weight", head)]
    write_safetensors("tests/fixtures/hf_tiny/model.safetensors", sorted(hf), {"format": "pt"})

    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": C,
        "intermediate_size": H, "num_hidden_layers": L, "num_attention_heads": nh,
        "num_key_value_heads": nkv, "vocab_size": V, "max_position_embeddings": c["max_seq_len"],
        "rms_norm_eps": c["norm_eps"], "rope_theta": c["rope_theta"], "tie_word_embeddings": False,
        "hidden_act": "silu", "attention_bias": False, "rope_scaling": None, "bos_token_id": 1,
        "eos_token_id": 2, "torch_dtype": "float32", "transformers_version": "4.40.0",
    }
    with open("tests/fixtures/hf_tiny/config.json", "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")

    def stack(k):
        return torch.stack([ly[k] for ly in layers])

    ref = [("tok_emb", emb), ("rms_att", stack("att_norm")), ("wq", stack("q")), ("wk", stack("k")),
           ("wv", stack("v")), ("wo", stack("o")), ("rms_ffn", stack("ffn_norm")), ("w1", stack("gate")),
           ("w2", stack("down")), ("w3", stack("up")), ("rms_final", norm), ("lm_head", head),
           ("logits", ours)]
    write_safetensors("tests/fixtures/hf_tiny_ref.safetensors", ref,
                      {"tokens": " ".join(map(str, TOKENS)), "max_abs_diff_hf_vs_pairs": repr(err)})
    print(f"wrote the fixture; HF vs pair RoPE logits differ by {err:.3g}")


if __name__ == "__main__":
    main()
