#!/usr/bin/python3
"""The safetensors load benchmark's model and PyTorch peer (bench/st_load.sh).

    st_model.py write DIR    a SmolLM2-135M-shaped Llama (dim 576, 30 layers, 9 heads,
                             3 kv heads, hidden 1536, vocab 49152, tied embeddings) with
                             random bfloat16 weights: DIR/config.json, DIR/model.safetensors
    st_model.py load FILE MODE   PyTorch loading FILE into a state dict as the safetensors
                             library's load_file does (mmap, one copy per tensor): MODE bf16
                             keeps the file's dtype, f32 converts each tensor to float32
                             (what training in float32 holds). Prints a RESULT line: seconds
                             and peak RSS above the RSS before loading, in MiB.
"""
import json
import mmap
import warnings
import os
import resource
import struct
import sys
import time

import torch

C, L, NH, NKV, H, V = 576, 30, 9, 3, 1536, 49152


def write(d):
    os.makedirs(d, exist_ok=True)
    hs = C // NH
    shapes = [("model.embed_tokens.weight", [V, C]), ("model.norm.weight", [C])]
    for i in range(L):
        p = f"model.layers.{i}."
        shapes += [(p + "input_layernorm.weight", [C]), (p + "post_attention_layernorm.weight", [C]),
                   (p + "self_attn.q_proj.weight", [C, C]), (p + "self_attn.k_proj.weight", [NKV * hs, C]),
                   (p + "self_attn.v_proj.weight", [NKV * hs, C]), (p + "self_attn.o_proj.weight", [C, C]),
                   (p + "mlp.gate_proj.weight", [H, C]), (p + "mlp.up_proj.weight", [H, C]),
                   (p + "mlp.down_proj.weight", [C, H])]
    g = torch.Generator().manual_seed(135)
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in shapes:
        n = 2
        for s in shape:
            n *= s
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [off, off + n]}
        off += n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name, shape in shapes:
            t = (torch.randn(shape, generator=g) * 0.02).bfloat16()
            f.write(t.view(torch.int16).numpy().tobytes())
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": C,
              "intermediate_size": H, "num_hidden_layers": L, "num_attention_heads": NH,
              "num_key_value_heads": NKV, "vocab_size": V, "max_position_embeddings": 8192,
              "rms_norm_eps": 1e-05, "rope_theta": 100000.0, "tie_word_embeddings": True, "hidden_act": "silu",
              "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16"}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    write_vocab(os.path.join(d, "tokenizer.bin"))


def write_vocab(path):
    """A llama2.c tokenizer.bin of V pieces (<unk>, BOS, EOS, the 256 byte
    pieces, then made-up ones), so that `emdpo convert` can write the model
    as a GGUF file with a vocabulary of its size."""
    pieces = [b"<unk>", b"\n<s>\n", b"\n</s>\n"] + [b"<0x%02X>" % i for i in range(256)]
    pieces += [b"p%d" % i for i in range(V - len(pieces))]
    with open(path, "wb") as f:
        f.write(struct.pack("<i", max(len(p) for p in pieces)))
        for i, p in enumerate(pieces):
            f.write(struct.pack("<fi", 0.0 if i < 259 else -float(i), len(p)) + p)


def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load(path, mode):
    warnings.filterwarnings("ignore", message="The given buffer is not writable")
    base = rss_mib()
    t0 = time.perf_counter()
    dtypes = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        (n,) = struct.unpack("<Q", mm[:8])
        header = json.loads(mm[8:8 + n])
        header.pop("__metadata__", None)
        sd = {}
        for name, t in header.items():
            b, e = t["data_offsets"]
            dt = dtypes[t["dtype"]]
            size = torch.empty((), dtype=dt).element_size()
            x = torch.frombuffer(mm, dtype=dt, count=(e - b) // size, offset=8 + n + b).reshape(t["shape"])
            sd[name] = x.float() if mode == "f32" else x.clone()
        del x
        mm.close()
    dt = time.perf_counter() - t0
    numel = sum(t.numel() for t in sd.values())
    print(f"RESULT torch_{mode}_s={dt:.4f} torch_{mode}_peak_mib={rss_mib() - base:.1f} params={numel}")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "write":
        write(sys.argv[2])
    elif len(sys.argv) >= 4 and sys.argv[1] == "load":
        load(sys.argv[2], sys.argv[3])
    else:
        print(__doc__)
        sys.exit(2)
