#!/usr/bin/python3
"""Checks that a Hugging Face Llama directory loads as transformers loads it.

    /usr/bin/python3 tools/hf_check.py DIR [--like REF_DIR] [--dtype bfloat16]

With transformers installed, AutoModelForCausalLM.from_pretrained(DIR) and
(when DIR has tokenizer files) AutoTokenizer.from_pretrained(DIR) load it, and
the logits of its forward pass are compared with the one below. Without it
(Debian has no python3-transformers; pip has no network here), the script does
by hand what from_pretrained does with the files, with PyTorch and its own
safetensors reader (the format is an 8-byte length, a JSON header, the data):

- config.json: a LlamaConfig (model_type llama, the sizes, silu, no biases);
- weights: model.safetensors, else model.safetensors.index.json and its shards
  (transformers' order of preference); every header checked as the
  safetensors library checks it (dtypes, shapes against byte spans, tensors
  tiling the data buffer), metadata "format" "pt" (transformers refuses
  files without it); the state dict's names and shapes exactly those
  LlamaForCausalLM has for the config, every tensor of config's torch_dtype;
- generation_config.json: bos/eos ids within the vocabulary;
- tokenizer files: tokenizer.json (valid JSON with a model) and
  tokenizer_config.json, or a llama2.c tokenizer.bin;
- a forward pass (the HF modelling code's: rotate-half RoPE, GQA, SwiGLU) in
  float32 gives finite logits.

--like REF_DIR: every tensor equals REF_DIR's (same dtype, same bits) and
so do the logits. --dtype: the dtype the tensors must have.
Prints "ok: ..." and exits 0, or prints what is wrong and exits 1.
"""
import json
import os
import struct
import sys

import torch

DTYPES = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2),
          "F64": (torch.float64, 8)}
TORCH_NAMES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class Bad(Exception):
    pass


def need(cond, msg):
    if not cond:
        raise Bad(msg)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    need(len(data) >= 8, f"{path}: shorter than 8 bytes")
    (n,) = struct.unpack("<Q", data[:8])
    need(8 + n <= len(data), f"{path}: header runs past the end")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", None)
    need(meta is not None and meta.get("format") == "pt", f"{path}: metadata format is not \"pt\"")
    buf = data[8 + n:]
    spans, out = [], {}
    for name, t in header.items():
        need(set(t) == {"dtype", "shape", "data_offsets"}, f"{path}: {name}: keys {sorted(t)}")
        need(t["dtype"] in DTYPES, f"{path}: {name}: dtype {t['dtype']}")
        dt, size = DTYPES[t["dtype"]]
        b, e = t["data_offsets"]
        numel = 1
        for d in t["shape"]:
            numel *= d
        need(e - b == numel * size, f"{path}: {name}: {e - b} bytes for shape {t['shape']}")
        spans.append((b, e, name))
        raw = bytearray(buf[b:e])
        out[name] = torch.frombuffer(raw, dtype=dt).reshape(t["shape"]) if numel else torch.empty(t["shape"], dtype=dt)
    at = 0
    for b, e, name in sorted(spans):
        need(b == at, f"{path}: {name} does not start where the previous tensor ended")
        at = e
    need(at == len(buf), f"{path}: {len(buf) - at} bytes after the last tensor")
    return out


def load_weights(d):
    single = os.path.join(d, "model.safetensors")
    if os.path.exists(single):
        return read_safetensors(single), "model.safetensors"
    with open(os.path.join(d, "model.safetensors.index.json")) as f:
        index = json.load(f)
    sd = {}
    for shard in sorted(set(index["weight_map"].values())):
        need("/" not in shard and shard not in (".", ".."), f"shard {shard} leaves the directory")
        part = read_safetensors(os.path.join(d, shard))
        for name in part:
            need(index["weight_map"].get(name) == shard, f"{shard} holds {name}, mapped elsewhere")
        sd.update(part)
    need(set(sd) == set(index["weight_map"]), "the index names tensors its shards lack")
    return sd, "model.safetensors.index.json"


def expected_shapes(cfg):
    need(cfg.get("model_type") == "llama", f"model_type {cfg.get('model_type')}")
    need(cfg.get("hidden_act", "silu") == "silu", "hidden_act")
    need(not cfg.get("attention_bias", False) and not cfg.get("mlp_bias", False), "biases")
    C, H, L, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    NH = cfg["num_attention_heads"]
    NKV = cfg.get("num_key_value_heads", NH)
    hs = cfg.get("head_dim") or C // NH
    shapes = {"model.embed_tokens.weight": [V, C], "model.norm.weight": [C]}
    if not cfg.get("tie_word_embeddings", True):
        shapes["lm_head.weight"] = [V, C]
    for i in range(L):
        p = f"model.layers.{i}."
        shapes.update({p + "self_attn.q_proj.weight": [NH * hs, C], p + "self_attn.k_proj.weight": [NKV * hs, C],
                       p + "self_attn.v_proj.weight": [NKV * hs, C], p + "self_attn.o_proj.weight": [C, NH * hs],
                       p + "mlp.gate_proj.weight": [H, C], p + "mlp.up_proj.weight": [H, C],
                       p + "mlp.down_proj.weight": [C, H], p + "input_layernorm.weight": [C],
                       p + "post_attention_layernorm.weight": [C]})
    return shapes


def forward(cfg, sd, tokens):
    """LlamaForCausalLM's forward (default RoPE), float32."""
    w = {k: v.float() for k, v in sd.items()}
    C, L, NH = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]
    NKV = cfg.get("num_key_value_heads", NH)
    hs = cfg.get("head_dim") or C // NH
    eps, theta = cfg.get("rms_norm_eps", 1e-6), cfg.get("rope_theta", 10000.0)
    T = len(tokens)

    def norm(x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * g

    inv = 1.0 / (theta ** (torch.arange(0, hs, 2, dtype=torch.float32) / hs))
    emb = torch.cat([torch.outer(torch.arange(T, dtype=torch.float32), inv)] * 2, dim=-1)
    cos, sin = emb.cos()[:, None, :], emb.sin()[:, None, :]

    def rope(x):
        return x * cos + torch.cat((-x[..., hs // 2:], x[..., :hs // 2]), dim=-1) * sin

    x = w["model.embed_tokens.weight"][torch.tensor(tokens)]
    mask = torch.full((T, T), float("-inf")).triu(1)
    for i in range(L):
        p = f"model.layers.{i}."
        h = norm(x, w[p + "input_layernorm.weight"])
        q = rope((h @ w[p + "self_attn.q_proj.weight"].T).view(T, NH, hs))
        k = rope((h @ w[p + "self_attn.k_proj.weight"].T).view(T, NKV, hs)).repeat_interleave(NH // NKV, 1)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).view(T, NKV, hs).repeat_interleave(NH // NKV, 1)
        att = (torch.einsum("thd,shd->hts", q, k) / hs ** 0.5 + mask).softmax(-1)
        x = x + torch.einsum("hts,shd->thd", att, v).reshape(T, NH * hs) @ w[p + "self_attn.o_proj.weight"].T
        h = norm(x, w[p + "post_attention_layernorm.weight"])
        g, u = h @ w[p + "mlp.gate_proj.weight"].T, h @ w[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ w[p + "mlp.down_proj.weight"].T
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return norm(x, w["model.norm.weight"]) @ head.T


def check_dir(d, dtype=None):
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    shapes = expected_shapes(cfg)
    sd, source = load_weights(d)
    missing, unexpected = sorted(set(shapes) - set(sd)), sorted(set(sd) - set(shapes))
    need(not missing and not unexpected, f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    for name, shape in shapes.items():
        need(list(sd[name].shape) == shape, f"{name}: shape {list(sd[name].shape)}, config says {shape}")
    want = TORCH_NAMES[cfg.get("torch_dtype", "float32")]
    need(dtype is None or want == TORCH_NAMES[dtype], f"torch_dtype {cfg.get('torch_dtype')}, expected {dtype}")
    for name, t in sd.items():
        need(t.dtype == want, f"{name} is {t.dtype}; config.json's torch_dtype is {cfg.get('torch_dtype')}")
    V = cfg["vocab_size"]
    gen = os.path.join(d, "generation_config.json")
    if os.path.exists(gen):
        with open(gen) as f:
            g = json.load(f)
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            ids = g.get(key)
            ids = ids if isinstance(ids, list) else [] if ids is None else [ids]
            need(all(isinstance(i, int) and 0 <= i < V for i in ids), f"generation_config {key} {g.get(key)}")
    tok = os.path.join(d, "tokenizer.json")
    if os.path.exists(tok):
        with open(tok) as f:
            need("model" in json.load(f), "tokenizer.json has no model")
    tokens = [1, 7, 30, 2, 45, 11, 11, 0, 19]
    tokens = [t % V for t in tokens]
    logits = forward(cfg, sd, tokens)
    need(torch.isfinite(logits).all().item(), "logits are not finite")
    return cfg, sd, logits, source


def main():
    args = sys.argv[1:]
    like = dtype = None
    if "--like" in args:
        i = args.index("--like")
        like = args[i + 1]
        del args[i:i + 2]
    if "--dtype" in args:
        i = args.index("--dtype")
        dtype = args[i + 1]
        del args[i:i + 2]
    if len(args) != 1:
        print(__doc__)
        return 2
    d = args[0]
    try:
        cfg, sd, logits, source = check_dir(d, dtype)
        if like:
            _, ref, ref_logits, _ = check_dir(like)
            need(set(ref) == set(sd), "tensor names differ from the reference directory's")
            for name in ref:
                need(ref[name].dtype == sd[name].dtype and torch.equal(ref[name], sd[name]),
                     f"{name} differs from the reference directory's")
            need(torch.equal(logits, ref_logits), "logits differ from the reference directory's")
    except (Bad, OSError, ValueError, KeyError) as e:
        print(f"{d}: {e}")
        return 1
    try:
        import transformers  # noqa: F401
    except ImportError:
        how = "transformers is not installed: checked with the reader above"
    else:
        model = transformers.AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32)
        tokens = torch.tensor([[t % cfg["vocab_size"] for t in [1, 7, 30, 2, 45, 11, 11, 0, 19]]])
        theirs = model(tokens).logits[0].detach()
        err = (theirs - logits).abs().max().item()
        need(err <= 1e-4 * max(1.0, logits.abs().max().item()), f"transformers' logits differ by {err}")
        if os.path.exists(os.path.join(d, "tokenizer.json")):
            transformers.AutoTokenizer.from_pretrained(d)
        how = "transformers loads it, logits within %.2g" % err
    print(f"ok: {d} ({source}, {len(sd)} tensors, {cfg.get('torch_dtype')}); {how}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
