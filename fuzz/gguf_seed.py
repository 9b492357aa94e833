"""Writes the GGUF fuzzer's seeds: fuzz/corpus/gguf/llama_small.gguf, a
269-token "llama" vocabulary (<unk>, BOS, EOS, the 256 byte pieces, ten text
pieces with U+2581 and one control token), with scores, token types, a BOS
id and add_space_prefix; and fuzz/corpus/gguf/gpt2_small.gguf, a byte-level
"gpt2" vocabulary (GPT-2's 256 byte characters, a few merges, a control
token) with pre "gpt-2", BOS/EOS ids and add_bos_token.
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
