"""Writes the GGUF fuzzer's seeds: fuzz/corpus/gguf/llama_small.gguf, a
269-token "llama" vocabulary (<unk>, BOS, EOS, the 256 byte pieces, ten text
pieces with U+2581 and one control token), with scores, token types, a BOS
id and add_space_prefix; and fuzz/corpus/gguf/gpt2_small.gguf, a byte-level
"gpt2" vocabulary (GPT-2's 256 byte characters, a few merges, a control
token) with pre "gpt-2", BOS/EOS ids and add_bos_token.
and fuzz/corpus/gguf_model/: a tiny qwen2 model and a file of one tensor of each
dequantised type, for fuzz_gguf_model.
Run from the repository root: python3 fuzz/gguf_seed.py"""
import struct


def s(x):
    b = x.encode()
    return struct.pack('<Q', len(b)) + b


extra = ["\u2581", "a", "b", "\u2581a", "ab", "\u2581ab", "<ctl>", "he", "llo", "\u2581hello"]
toks = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)] + extra
n = len(toks)
types = [2, 3, 3] + [6] * 256 + [1] * len(extra)
types[259 + extra.index("<ctl>")] = 3
out = b'GGUF' + struct.pack('<IQQ', 3, 0, 6)
out += s("tokenizer.ggml.model") + struct.pack('<I', 8) + s("llama")
out += s("tokenizer.ggml.tokens") + struct.pack('<IIQ', 9, 8, n) + b''.join(s(t) for t in toks)
out += s("tokenizer.ggml.scores") + struct.pack('<IIQ', 9, 6, n)
out += b''.join(struct.pack('<f', 0 if i < 259 else i / 10) for i in range(n))
out += s("tokenizer.ggml.token_type") + struct.pack('<IIQ', 9, 5, n) + b''.join(struct.pack('<i', t) for t in types)
out += s("tokenizer.ggml.bos_token_id") + struct.pack('<II', 4, 1)
out += s("tokenizer.ggml.add_space_prefix") + struct.pack('<IB', 7, 1)
with open('fuzz/corpus/gguf/llama_small.gguf', 'wb') as f:
    f.write(out)


def byte_chars():
    keep = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    out, n = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return [out[b] for b in range(256)]


chars = byte_chars()
merges = [("\u0120", "t"), ("h", "e"), ("\u0120t", "he"), ("l", "l"), ("ll", "o")]
toks = chars + [a + b for a, b in merges] + ["<|endoftext|>"]
n = len(toks)
types = [1] * (n - 1) + [3]
out = b'GGUF' + struct.pack('<IQQ', 3, 0, 8)
out += s("tokenizer.ggml.model") + struct.pack('<I', 8) + s("gpt2")
out += s("tokenizer.ggml.pre") + struct.pack('<I', 8) + s("gpt-2")
out += s("tokenizer.ggml.tokens") + struct.pack('<IIQ', 9, 8, n) + b''.join(s(t) for t in toks)
out += s("tokenizer.ggml.token_type") + struct.pack('<IIQ', 9, 5, n) + b''.join(struct.pack('<i', t) for t in types)
out += s("tokenizer.ggml.merges") + struct.pack('<IIQ', 9, 8, len(merges)) + b''.join(s(a + " " + b) for a, b in merges)
out += s("tokenizer.ggml.bos_token_id") + struct.pack('<II', 4, n - 1)
out += s("tokenizer.ggml.eos_token_id") + struct.pack('<II', 4, n - 1)
out += s("tokenizer.ggml.add_bos_token") + struct.pack('<IB', 7, 1)
with open('fuzz/corpus/gguf/gpt2_small.gguf', 'wb') as f:
    f.write(out)


def tensor_file(name, kvs, tensors):
    """tensors: (name, ne, ggml type, raw bytes); data aligned to 32."""
    out = b'GGUF' + struct.pack('<IQQ', 3, len(tensors), len(kvs)) + b''.join(kvs)
    data = b''
    for tname, ne, ty, raw in tensors:
        off = (len(data) + 31) // 32 * 32
        data += b'\0' * (off - len(data)) + raw
        out += s(tname) + struct.pack('<I', len(ne)) + b''.join(struct.pack('<Q', x) for x in ne)
        out += struct.pack('<IQ', ty, off)
    out += b'\0' * ((len(out) + 31) // 32 * 32 - len(out))
    with open('fuzz/corpus/gguf_model/' + name, 'wb') as f:
        f.write(out + data)


def kv_u32(k, v):
    return s(k) + struct.pack('<II', 4, v)


def f32s(n, scale=0.1):
    return b''.join(struct.pack('<f', ((i * 7919) % 17 - 8) * scale) for i in range(n))


# fuzz/corpus/gguf_model/: a tiny qwen2 model (dim 8, 2 heads, 1 KV head, hidden
# 8, 1 layer, vocab 4, q/k/v biases, tied head) in F32, and a file of one
# tensor of each dequantised type (F16, BF16, Q8_0, Q4_0, Q4_K).
import os
os.makedirs('fuzz/corpus/gguf_model', exist_ok=True)
C, H, V, kvd = 8, 8, 4, 4
kvs = [s("general.architecture") + struct.pack('<I', 8) + s("qwen2"), kv_u32("qwen2.context_length", 64),
       kv_u32("qwen2.embedding_length", C), kv_u32("qwen2.block_count", 1), kv_u32("qwen2.feed_forward_length", H),
       kv_u32("qwen2.attention.head_count", 2), kv_u32("qwen2.attention.head_count_kv", 1),
       s("qwen2.attention.layer_norm_rms_epsilon") + struct.pack('<If', 6, 1e-6)]
T = [("token_embd.weight", [C, V]), ("blk.0.attn_norm.weight", [C]), ("blk.0.attn_q.weight", [C, C]),
     ("blk.0.attn_k.weight", [C, kvd]), ("blk.0.attn_v.weight", [C, kvd]), ("blk.0.attn_output.weight", [C, C]),
     ("blk.0.attn_q.bias", [C]), ("blk.0.attn_k.bias", [kvd]), ("blk.0.attn_v.bias", [kvd]),
     ("blk.0.ffn_norm.weight", [C]), ("blk.0.ffn_gate.weight", [C, H]), ("blk.0.ffn_up.weight", [C, H]),
     ("blk.0.ffn_down.weight", [H, C]), ("output_norm.weight", [C])]
tensor_file("qwen2_tiny.gguf", kvs, [(n, ne, 0, f32s(eval('*'.join(map(str, ne))))) for n, ne in T])
tensor_file("types.gguf", [], [("f16", [4], 1, b'\x00\x3c' * 4), ("bf16", [4], 30, b'\x80\x3f' * 4),
                               ("q8_0", [32], 8, b'\x00\x38' + bytes(range(32))),
                               ("q4_0", [32], 2, b'\x00\x38' + bytes(range(16))),
                               ("q4_k", [256], 12, b'\x00\x3c\x00\x38' + bytes(range(12)) + bytes(range(128)))])
