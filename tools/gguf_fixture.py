"""Writes the tiny random GGUF models of emdpo's GGUF tests and their Hugging
Face twins (the same weights as config.json + model.safetensors), into
tests/fixtures/gguf/:

  llama3_rope.gguf / llama3_rope_hf/   llama with Llama 3.1's RoPE scaling
      (rope_theta 500000, factor 32, low/high_freq_factor 1/4, original
      context 8192: llama.cpp's converter turns it into the rope_freqs
      tensor), grouped-query attention, a separate output head;
  qwen2.gguf / qwen2_hf/               qwen2: q/k/v biases, tied head;
  qwen3.gguf / qwen3_hf/               qwen3: head_dim 16 on dim 16 with 2 heads
      (q projection 32 wide), q_norm/k_norm, a separate head.

Every model shares one 348-token SentencePiece-style "llama" vocabulary
(<unk>, <s>, </s>, the 256 byte pieces, 41 text pieces, the other letters). Weights are float32
drawn from numpy's seeded generator, in Hugging Face's layout; the GGUF files
store them as llama.cpp's convert_hf_to_gguf.py does: ggml's dimension order
(ne[0] innermost, so the bytes are PyTorch's row-major (out, in)), llama's
q/k rows permuted to interleaved-pair RoPE (its LlamaModel.permute), qwen's
left in rotate-half order, 1-D tensors F32.

Run from the repository root with Debian's python3 (numpy):
  /usr/bin/python3 tools/gguf_fixture.py
then tools/gguf_fixture_ids.sh for llama.cpp's greedy tokens."""
import json
import math
import os
import struct

import numpy as np

OUT = 'tests/fixtures/gguf'

PIECES = ["\u2581", "e", "t", "a", "o", "\u2581t", "he", "\u2581the", "in", "\u2581a", "er", "on", "re", "\u2581w",
          "or", "ld", "\u2581wor", "\u2581world", "ll", "\u2581He", "llo", "\u2581Hello", "\u2581c", "at",
          "\u2581cat", "\u2581s", "\u2581sat", "\u2581on", "\u2581m", "\u2581mat", "\u2581O", "nce", "\u2581Once",
          "\u2581up", "\u2581upon", "\u2581ti", "me", "\u2581time", ",", ".", "\u2581is"]
# Every letter is a piece too, as in real SentencePiece vocabularies (llama.cpp merges
# characters that are not pieces, where emdpo, like llama2.c, falls back to bytes).
LETTERS = [c for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in PIECES]
TOKENS = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)] + PIECES + LETTERS
TYPES = [2, 3, 3] + [6] * 256 + [1] * (len(PIECES) + len(LETTERS))
SCORES = [0.0] * 259 + [-float(i) for i in range(len(PIECES))] + [-100.0 - i for i in range(len(LETTERS))]
V = len(TOKENS)

# ---- GGUF ------------------------------------------------------------------


def s(x):
    b = x.encode()
    return struct.pack('<Q', len(b)) + b


def kv_str(k, v):
    return s(k) + struct.pack('<I', 8) + s(v)


def kv_u32(k, v):
    return s(k) + struct.pack('<II', 4, v)


def kv_f32(k, v):
    return s(k) + struct.pack('<If', 6, v)


def kv_bool(k, v):
    return s(k) + struct.pack('<IB', 7, 1 if v else 0)


def kv_arr(k, et, vals):
    out = s(k) + struct.pack('<IIQ', 9, et, len(vals))
    if et == 8:
        return out + b''.join(s(x) for x in vals)
    fmt = {5: '<i', 6: '<f'}[et]
    return out + b''.join(struct.pack(fmt, x) for x in vals)


def write_gguf(path, kvs, tensors):
    """tensors: (name, float32 array in PyTorch's shape)."""
    head = b'GGUF' + struct.pack('<IQQ', 3, len(tensors), len(kvs)) + b''.join(kvs)
    infos, data = b'', b''
    for name, a in tensors:
        a = np.ascontiguousarray(a, dtype='<f4')
        ne = list(reversed(a.shape))
        off = (len(data) + 31) // 32 * 32
        data += b'\0' * (off - len(data))
        infos += s(name) + struct.pack('<I', len(ne)) + b''.join(struct.pack('<Q', n) for n in ne)
        infos += struct.pack('<IQ', 0, off)
        data += a.tobytes()
    blob = head + infos
    blob += b'\0' * ((len(blob) + 31) // 32 * 32 - len(blob))
    with open(path, 'wb') as f:
        f.write(blob + data)


def vocab_kvs():
    return [kv_str("tokenizer.ggml.model", "llama"), kv_arr("tokenizer.ggml.tokens", 8, TOKENS),
            kv_arr("tokenizer.ggml.scores", 6, SCORES), kv_arr("tokenizer.ggml.token_type", 5, TYPES),
            kv_u32("tokenizer.ggml.bos_token_id", 1), kv_u32("tokenizer.ggml.eos_token_id", 2),
            kv_u32("tokenizer.ggml.unknown_token_id", 0), kv_bool("tokenizer.ggml.add_bos_token", True),
            kv_bool("tokenizer.ggml.add_eos_token", False)]

# ---- safetensors -----------------------------------------------------------


def write_safetensors(path, tensors):
    header, data = {"__metadata__": {"format": "pt"}}, b''
    for name, a in tensors:
        b = np.ascontiguousarray(a, dtype='<f4').tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [len(data), len(data) + len(b)]}
        data += b
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + data)

# ---- models ----------------------------------------------------------------


def permute(w, n_head):
    """llama.cpp's LlamaModel.permute: HF's rotate-half rows to interleaved pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_factors(base, hs, factor, lo, hi, orig):
    """convert_hf_to_gguf.py's rope_freqs for rope_type llama3 (float32 frequencies, as torch)."""
    freqs = 1.0 / (np.float32(base) ** (np.arange(0, hs, 2, dtype=np.float32) / np.float32(hs)))
    out = []
    for freq in freqs.astype(np.float32):
        wavelen = 2 * math.pi / float(freq)
        if wavelen < orig / hi:
            out.append(1.0)
        elif wavelen > orig / lo:
            out.append(factor)
        else:
            smooth = (orig / wavelen - lo) / (hi - lo)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def make(name, arch, C, H, L, NH, NKV, hs, tied, bias, qk_norm, theta, rope_scaling, seed):
    rng = np.random.default_rng(seed)

    def rnd(*shape, std=0.35):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def norm(n):
        return (1.0 + rng.standard_normal(n) * 0.1).astype(np.float32)
    qd, kvd = NH * hs, NKV * hs
    hf = [("model.embed_tokens.weight", rnd(V, C, std=1.0))]
    layers = []
    for i in range(L):
        p = f"model.layers.{i}."
        t = {"input_layernorm.weight": norm(C), "self_attn.q_proj.weight": rnd(qd, C),
             "self_attn.k_proj.weight": rnd(kvd, C), "self_attn.v_proj.weight": rnd(kvd, C),
             "self_attn.o_proj.weight": rnd(C, qd), "post_attention_layernorm.weight": norm(C),
             "mlp.gate_proj.weight": rnd(H, C), "mlp.up_proj.weight": rnd(H, C), "mlp.down_proj.weight": rnd(C, H)}
        if bias:
            t["self_attn.q_proj.bias"] = rnd(qd, std=0.2)
            t["self_attn.k_proj.bias"] = rnd(kvd, std=0.2)
            t["self_attn.v_proj.bias"] = rnd(kvd, std=0.2)
        if qk_norm:
            t["self_attn.q_norm.weight"] = norm(hs)
            t["self_attn.k_norm.weight"] = norm(hs)
        layers.append(t)
        hf += [(p + k, v) for k, v in t.items()]
    hf.append(("model.norm.weight", norm(C)))
    if not tied:
        hf.append(("lm_head.weight", rnd(V, C, std=1.0)))

    d = os.path.join(OUT, name + "_hf")
    os.makedirs(d, exist_ok=True)
    write_safetensors(os.path.join(d, "model.safetensors"), hf)
    cfg = {"architectures": [{"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
                              "qwen3": "Qwen3ForCausalLM"}[arch]],
           "model_type": arch, "hidden_size": C, "intermediate_size": H, "num_hidden_layers": L,
           "num_attention_heads": NH, "num_key_value_heads": NKV, "vocab_size": V, "max_position_embeddings": 4096,
           "rms_norm_eps": 1e-5, "rope_theta": theta, "tie_word_embeddings": tied, "hidden_act": "silu",
           "rope_scaling": rope_scaling, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"}
    if arch == "qwen3":
        cfg["head_dim"] = hs
        cfg["attention_bias"] = False
    if arch == "qwen2":
        cfg["use_sliding_window"] = False
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)

    kvs = [kv_str("general.architecture", arch), kv_str("general.name", name), kv_u32("general.file_type", 0),
           kv_u32(arch + ".context_length", 4096), kv_u32(arch + ".embedding_length", C),
           kv_u32(arch + ".block_count", L), kv_u32(arch + ".feed_forward_length", H),
           kv_u32(arch + ".attention.head_count", NH), kv_u32(arch + ".attention.head_count_kv", NKV),
           kv_f32(arch + ".attention.layer_norm_rms_epsilon", 1e-5), kv_f32(arch + ".rope.freq_base", theta),
           kv_u32(arch + ".rope.dimension_count", hs)]
    if arch == "qwen3":
        kvs += [kv_u32(arch + ".attention.key_length", hs), kv_u32(arch + ".attention.value_length", hs)]
    if arch == "llama":
        kvs.append(kv_u32(arch + ".vocab_size", V))
    kvs += vocab_kvs()
    g = [("token_embd.weight", hf[0][1])]
    if rope_scaling:
        g.append(("rope_freqs.weight", llama3_factors(theta, hs, rope_scaling["factor"],
                                                      rope_scaling["low_freq_factor"],
                                                      rope_scaling["high_freq_factor"],
                                                      rope_scaling["original_max_position_embeddings"])))
    for i, t in enumerate(layers):
        b = f"blk.{i}."
        q, k = t["self_attn.q_proj.weight"], t["self_attn.k_proj.weight"]
        if arch == "llama":
            q, k = permute(q, NH), permute(k, NKV)
        g += [(b + "attn_norm.weight", t["input_layernorm.weight"]), (b + "attn_q.weight", q),
              (b + "attn_k.weight", k), (b + "attn_v.weight", t["self_attn.v_proj.weight"]),
              (b + "attn_output.weight", t["self_attn.o_proj.weight"]),
              (b + "ffn_norm.weight", t["post_attention_layernorm.weight"]),
              (b + "ffn_gate.weight", t["mlp.gate_proj.weight"]), (b + "ffn_up.weight", t["mlp.up_proj.weight"]),
              (b + "ffn_down.weight", t["mlp.down_proj.weight"])]
        if bias:
            g += [(b + "attn_q.bias", t["self_attn.q_proj.bias"]), (b + "attn_k.bias", t["self_attn.k_proj.bias"]),
                  (b + "attn_v.bias", t["self_attn.v_proj.bias"])]
        if qk_norm:
            g += [(b + "attn_q_norm.weight", t["self_attn.q_norm.weight"]),
                  (b + "attn_k_norm.weight", t["self_attn.k_norm.weight"])]
    g.append(("output_norm.weight", dict(hf)["model.norm.weight"]))
    if not tied:
        g.append(("output.weight", dict(hf)["lm_head.weight"]))
    write_gguf(os.path.join(OUT, name + ".gguf"), kvs, g)


os.makedirs(OUT, exist_ok=True)
make("llama3_rope", "llama", C=32, H=64, L=2, NH=2, NKV=1, hs=16, tied=False, bias=False, qk_norm=False,
     theta=500000.0, rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}, seed=1)
make("qwen2", "qwen2", C=16, H=32, L=2, NH=2, NKV=1, hs=8, tied=True, bias=True, qk_norm=False,
     theta=1000000.0, rope_scaling=None, seed=2)
make("qwen3", "qwen3", C=16, H=32, L=2, NH=2, NKV=1, hs=16, tied=False, bias=False, qk_norm=True,
     theta=1000000.0, rope_scaling=None, seed=3)
