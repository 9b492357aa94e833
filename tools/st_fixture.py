#!/usr/bin/python3
"""Writes the fixtures of tests/test_checkpoint.c and tests/cli_checkpoint.sh
with Debian's PyTorch (run from the repository root):

    /usr/bin/python3 tools/st_fixture.py

tests/fixtures/st_dtypes.safetensors
    "x": float32 values chosen to exercise rounding (ties between 16-bit
    neighbours, F16 overflow at 65520, subnormals down to 2^-25, signed
    zeros, infinities, float32 subnormals) and random ones across the whole
    exponent range; "x_f16" = x.half() and "x_bf16" = x.bfloat16(), as
    PyTorch rounds them. emdpo's writer must give the same bits.

tests/fixtures/hf_tiny_sharded/
    A tiny random Llama (vocabulary 259, which emdpo's byte tokenizer
    covers; untied head) in bfloat16, split the way transformers'
    save_pretrained splits a checkpoint (state-dict order, a new shard when
    the next tensor would pass the size limit): three shards
    model-0000N-of-00003.safetensors and model.safetensors.index.json
    ({"metadata": {"total_size"}, "weight_map"}), with config.json
    (torch_dtype bfloat16).

safetensors files are written by tools/st_write.py (no `safetensors` package needed).
"""
import json
import os
import struct

import torch

from st_write import write_safetensors

def rounding_values():
    f32 = lambda bits: struct.unpack("<f", struct.pack("<I", bits))[0]
    v = [0.0, -0.0, float("inf"), float("-inf"), 1.0, -2.0, 65504.0, 65519.996, 65520.0, 65520.004, 70000.0,
         -65520.0, 2.0 ** -14, 2.0 ** -24, 2.0 ** -25, 1.5 * 2.0 ** -25, 3 * 2.0 ** -25, 2.0 ** -26,
         3.4028234663852886e38, -3.4028234663852886e38, 1e-40, -1e-45, 0.1, 1.0 / 3.0]
    # Exact ties and near-ties between neighbouring F16 and BF16 values, normal and subnormal.
    for bits in (0x3F800000, 0x3F808000, 0x3F818000, 0x477FE000, 0x38800000, 0x33800000, 0x387FC000, 0x40490FDB):
        for d in (-0x1001, -0x1000, -0xFFF, -1, 0, 1, 0xFFF, 0x1000, 0x1001, 0x2000, 0x3000, 0x7FFF, 0x8000,
                  0x8001, 0x18000):
            v.append(f32(bits + d))
    g = torch.Generator().manual_seed(15)
    mant = torch.rand(2000, generator=g, dtype=torch.float64) + 1
    expo = torch.randint(-30, 18, (2000,), generator=g).to(torch.float64)
    sign = torch.where(torch.rand(2000, generator=g) < 0.5, -1.0, 1.0).to(torch.float64)
    rnd = (sign * mant * 2.0 ** expo).to(torch.float32)
    wide = torch.randint(0, 1 << 31, (1000,), generator=g).to(torch.int32).view(torch.float32)
    wide = wide[torch.isfinite(wide)]
    return torch.cat([torch.tensor(v, dtype=torch.float32), rnd, wide])


def write_dtypes():
    x = rounding_values()
    write_safetensors("tests/fixtures/st_dtypes.safetensors",
                      [("x", x), ("x_f16", x.half()), ("x_bf16", x.bfloat16())],
                      {"format": "pt", "made_by": "tools/st_fixture.py, torch " + torch.__version__})
    return x.numel()


def write_sharded():
    C, H, L, V, NH, NKV = 16, 40, 2, 259, 4, 2
    kvd = NKV * (C // NH)
    g = torch.Generator().manual_seed(20250115)

    def rnd(*shape, scale=0.3):
        return (torch.randn(*shape, generator=g) * scale).bfloat16()

    sd = [("model.embed_tokens.weight", rnd(V, C))]
    for i in range(L):
        p = f"model.layers.{i}."
        sd += [(p + "self_attn.q_proj.weight", rnd(C, C)), (p + "self_attn.k_proj.weight", rnd(kvd, C)),
               (p + "self_attn.v_proj.weight", rnd(kvd, C)), (p + "self_attn.o_proj.weight", rnd(C, C)),
               (p + "mlp.gate_proj.weight", rnd(H, C)), (p + "mlp.up_proj.weight", rnd(H, C)),
               (p + "mlp.down_proj.weight", rnd(C, H)),
               (p + "input_layernorm.weight", (1 + rnd(C, scale=0.1).float()).bfloat16()),
               (p + "post_attention_layernorm.weight", (1 + rnd(C, scale=0.1).float()).bfloat16())]
    sd += [("model.norm.weight", (1 + rnd(C, scale=0.1).float()).bfloat16()), ("lm_head.weight", rnd(V, C))]

    # save_pretrained's split: tensors in state-dict order, a new shard when the next would pass max_shard_size.
    max_bytes = sum(t.numel() * 2 for _, t in sd) // 2 + 1
    shards, cur, size = [], [], 0
    for name, t in sd:
        b = t.numel() * 2
        if cur and size + b > max_bytes:
            shards.append(cur)
            cur, size = [], 0
        cur.append((name, t))
        size += b
    shards.append(cur)
    d = "tests/fixtures/hf_tiny_sharded"
    os.makedirs(d, exist_ok=True)
    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        total += write_safetensors(os.path.join(d, fname), shard, {"format": "pt"})
        weight_map.update({name: fname for name, _ in shard})
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
        f.write("\n")
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": C, "intermediate_size": H,
        "num_hidden_layers": L, "num_attention_heads": NH, "num_key_value_heads": NKV, "vocab_size": V,
        "max_position_embeddings": 64, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": False,
        "hidden_act": "silu", "attention_bias": False, "rope_scaling": None, "bos_token_id": 1, "eos_token_id": 2,
        "torch_dtype": "bfloat16", "transformers_version": "4.40.0",
    }
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    return len(shards)


def main():
    n = write_dtypes()
    k = write_sharded()
    print(f"wrote st_dtypes.safetensors ({n} values) and hf_tiny_sharded ({k} shards)")


if __name__ == "__main__":
    main()
