#!/usr/bin/python3
"""Prints the RoPE inverse frequencies that transformers computes for
Llama 3.1/3.2's rope_scaling ("rope_type": "llama3") and for "linear", as C
arrays for tests/test_llama_ops.c. Written from the formula transformers'
_compute_llama3_parameters documents (float32 like it): frequencies whose
wavelength exceeds original_max_position_embeddings / low_freq_factor are
divided by factor, those shorter than ... / high_freq_factor are kept, and
those between are blended with smooth = (old_len / wavelen - low) / (high -
low). Run with Debian's PyTorch: /usr/bin/python3 tools/rope_fixture.py"""
import math

import torch

HS, THETA = 64, 500000.0
FACTOR, LOW, HIGH, OLD = 32.0, 1.0, 4.0, 8192


def base():
    return 1.0 / (THETA ** (torch.arange(0, HS, 2, dtype=torch.int64).float() / HS))


def llama3():
    f = base()
    wavelen = 2 * math.pi / f
    low_wavelen, high_wavelen = OLD / LOW, OLD / HIGH
    out = torch.where(wavelen > low_wavelen, f / FACTOR, f)
    smooth = (OLD / wavelen - LOW) / (HIGH - LOW)
    blended = (1 - smooth) * out / FACTOR + smooth * out
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return torch.where(medium, blended, out)


def c_array(name, t):
    vals = ", ".join("%.9e" % v for v in t.tolist())
    return "static const double %s[%d] = {%s};" % (name, t.numel(), vals)


print(c_array("rope_llama3_ref", llama3()))
print(c_array("rope_linear_ref", base() / 4.0))
