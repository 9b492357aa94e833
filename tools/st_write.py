"""Writes safetensors files by hand (8-byte header length, JSON header padded
with spaces to a multiple of 8, data), so that the fixture generators in
tools/ need no `safetensors` package. Tensors keep their dtype: float32,
float16 or bfloat16; anything else (a float64 result) is rounded to float32."""
import json
import struct

import torch

DTYPE_NAME = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def tensor_bytes(t):
    t = t.detach().contiguous()
    if t.dtype not in DTYPE_NAME:
        t = t.to(torch.float32)
    if t.dtype == torch.float32:
        return t.view(torch.int32).numpy().astype("<i4").tobytes()
    return t.view(torch.int16).numpy().astype("<i2").tobytes()


def write_safetensors(path, tensors, metadata=None):
    """tensors: (name, torch tensor) pairs, in file order. Returns the size
    of the data section."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors:
        b = tensor_bytes(t)
        dtype = DTYPE_NAME.get(t.dtype, "F32")
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    return off
