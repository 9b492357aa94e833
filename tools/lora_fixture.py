#!/usr/bin/python3
"""Writes the PEFT LoRA fixtures used by tests/test_peft.c (reading, writing,
merging) and tests/test_lora_torch.c (the engine's LoRA forward and DPO
gradient).

Run from the repository root with Debian's PyTorch (no peft or transformers
needed: what they do is mirrored here):
    /usr/bin/python3 tools/lora_fixture.py

The bases are two checkpoints of tools/hf_family_fixture.py, regenerated from
its seeds and checked to be byte-identical to the committed
tests/fixtures/hf_families/{llama3,qwen2}/model.safetensors, so they are not
stored twice. For each case below it draws a LoRA adapter with random nonzero
A and B (r = 4, lora_alpha = 8), saved as peft.PeftModel.save_pretrained
saves one (PEFT 0.18):

  DIR/adapter_config.json        every LoraConfig field, json.dumps(indent=2,
                                 sort_keys=True), target_modules as a list
                                 (PEFT turns its set into one) or a regex
  DIR/adapter_model.safetensors  "base_model.model.<module>.lora_A.weight" (r, in)
                                 and "...lora_B.weight" (out, r) for every
                                 module the config targets, metadata
                                 {"format": "pt"}

The targeted modules are found as PEFT's check_target_module_exists finds them
over the module names of a transformers CausalLM (a list entry matches a name
equal to it or ending in "." + entry; a string is re.fullmatch'ed). Cases:

  llama3_all         llama3 base, all seven projections, F32
  qwen2_rslora       qwen2 base (q/k/v biases, tied head), q_proj, v_proj and
                     down_proj, use_rslora (scaling alpha / sqrt(r)), F32
  llama3_regex_bf16  llama3 base, the regex r".*\\.layers\\.1\\.(self_attn\\.k_proj|mlp\\.up_proj)"
                     (layer 1 only), tensors stored as BF16 (the reference
                     uses the rounded values)
  qwen2_gguf_attn    the base tests/fixtures/gguf/qwen2_hf (the HF twin of
                     tests/fixtures/gguf/qwen2.gguf), q/k/v/o_proj, F16
                     tensors, no reference file (its vocabulary of 348 would
                     make it large): for merging a GGUF base
  mistral_qko        mistral base (head_dim 12: q_proj is 24 x 16, not square),
                     q_proj (as "self_attn.q_proj"), k_proj and o_proj, F32

and (but the last) a reference tests/fixtures/lora/NAME_ref.safetensors holding, computed in
float64 (PEFT's forward: base(x) + lora_B(lora_A(x)) * scaling, dropout 0)
and rounded to float32:
  "logits.i"       (T_i, V): the logits of sequence i with the adapter
  "base_logits.i"  (T_i, V): the same without it
  "grad.<tensor>"  for every adapter tensor (PEFT's name, PEFT's (HF's)
                   layout): the gradient of one DPO step's loss
                   -log sigmoid(beta ((lc - ref_c) - (lr - ref_r))) on the
                   chosen/rejected pair (sequences 0 and 1), lc and lr the
                   completion tokens' summed log-probabilities with the
                   adapter, ref_c and ref_r the same of the base (the
                   adapter off), as tools/hf_family_fixture.py's DPO step
and metadata: "seq.i" (token ids), "n_seqs", "prompt_len", "beta",
"ref_chosen", "ref_rejected", "policy_chosen", "policy_rejected", "loss",
"scaling", "base" (the base's directory).

safetensors files are written by tools/st_write.py, read by tools/hf_check.py.

    /usr/bin/python3 tools/lora_fixture.py --check-merged DIR CASE

checks instead that the Hugging Face directory DIR (emdpo merge's output for
CASE's base and adapter) computes what the base with the adapter computes in
PyTorch: the same tensor names and shapes as the base, the logits of every
sequence within 1e-4 of the largest (float32 weights), and not the base's.
Prints "ok: ..." and exits 0, or says what differs and exits 1.
"""
import json
import math
import os
import re
import tempfile

import torch

import sys

import hf_family_fixture as fam
from hf_check import read_safetensors
from st_write import write_safetensors

OUT = "tests/fixtures/lora"
R, ALPHA = 4, 8
PROJ = [("self_attn", "q_proj"), ("self_attn", "k_proj"), ("self_attn", "v_proj"), ("self_attn", "o_proj"),
        ("mlp", "gate_proj"), ("mlp", "up_proj"), ("mlp", "down_proj")]
ALL = [p for _, p in PROJ]
CASES = [
    dict(name="llama3_all", base="llama3", target_modules=ALL, use_rslora=False, dtype=torch.float32),
    dict(name="qwen2_rslora", base="qwen2", target_modules=["q_proj", "v_proj", "down_proj"], use_rslora=True,
         dtype=torch.float32),
    dict(name="llama3_regex_bf16", base="llama3",
         target_modules=r".*\.layers\.1\.(self_attn\.k_proj|mlp\.up_proj)", use_rslora=False, dtype=torch.bfloat16),
    dict(name="qwen2_gguf_attn", base="tests/fixtures/gguf/qwen2_hf", target_modules=ALL[:4], use_rslora=False,
         dtype=torch.float16, ref=False),
    dict(name="mistral_qko", base="mistral", target_modules=["self_attn.q_proj", "k_proj", "o_proj"], use_rslora=False,
         dtype=torch.float32),
]
SEQS = [fam.CHOSEN, fam.REJECTED, fam.PROMPT + [7, 33, 2]]


def base_of(name):
    """The config and float64 weights of a family of tools/hf_family_fixture.py,
    regenerated from its seed, or of a directory; and the directory."""
    if name not in fam.FAMILIES:
        with open(os.path.join(name, "config.json")) as f:
            cfg = json.load(f)
        p = {k: t.to(torch.float64) for k, t in read_safetensors(os.path.join(name, "model.safetensors")).items()}
        return cfg, p, name
    seed = list(fam.FAMILIES).index(name)
    cfg = dict(fam.BASE, **fam.FAMILIES[name])
    p = fam.tensors(cfg, torch.Generator().manual_seed(20261207 + seed))
    committed = os.path.join(fam.OUT, name, "model.safetensors")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.safetensors")
        write_safetensors(path, sorted(p.items()), {"format": "pt"})
        with open(path, "rb") as a, open(committed, "rb") as b:
            assert a.read() == b.read(), committed + " is not what tools/hf_family_fixture.py writes"
    return cfg, p, os.path.join(fam.OUT, name)


def module_names(cfg):
    """named_modules() of a transformers LlamaForCausalLM / Qwen2ForCausalLM,
    without the root."""
    names = ["model", "model.embed_tokens", "model.layers"]
    for l in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{l}"
        names += [pre, pre + ".self_attn"] + [f"{pre}.self_attn.{p}" for p in ALL[:4]]
        names += [pre + ".mlp"] + [f"{pre}.mlp.{p}" for p in ALL[4:]] + [pre + ".mlp.act_fn"]
        names += [pre + ".input_layernorm", pre + ".post_attention_layernorm"]
    return names + ["model.norm", "model.rotary_emb", "lm_head"]


def targeted(target_modules, key):
    """PEFT's check_target_module_exists without exclusions or layer indices."""
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, key) is not None
    return key in target_modules or any(key.endswith("." + t) for t in target_modules)


def proj_shape(cfg, module):
    """(out, in) of a projection, as nn.Linear stores its weight."""
    C, H = cfg["hidden_size"], cfg["intermediate_size"]
    hs = fam.head_dim(cfg)
    qd, kvd = cfg["num_attention_heads"] * hs, cfg["num_key_value_heads"] * hs
    return {"q_proj": (qd, C), "k_proj": (kvd, C), "v_proj": (kvd, C), "o_proj": (C, qd),
            "gate_proj": (H, C), "up_proj": (H, C), "down_proj": (C, H)}[module.rsplit(".", 1)[1]]


def adapter_config(case, base_dir):
    """LoraConfig.to_dict() of PEFT 0.18 for the case, runtime_config popped."""
    return {
        "alora_invocation_tokens": None, "alpha_pattern": {}, "arrow_config": None, "auto_mapping": None,
        "base_model_name_or_path": base_dir, "bias": "none", "corda_config": None, "ensure_weight_tying": False,
        "eva_config": None, "exclude_modules": None, "fan_in_fan_out": False, "inference_mode": True,
        "init_lora_weights": True, "layer_replication": None, "layers_pattern": None, "layers_to_transform": None,
        "loftq_config": {}, "lora_alpha": ALPHA, "lora_bias": False, "lora_dropout": 0.0, "megatron_config": None,
        "megatron_core": "megatron.core", "modules_to_save": None, "peft_type": "LORA", "peft_version": "0.18.1",
        "qalora_group_size": 16, "r": R, "rank_pattern": {}, "revision": None,
        "target_modules": case["target_modules"], "target_parameters": None, "task_type": "CAUSAL_LM",
        "trainable_token_indices": None, "use_dora": False, "use_qalora": False, "use_rslora": case["use_rslora"],
    }


def completion_logp(cfg, p, tokens, lora):
    lp = fam.forward(cfg, p, tokens, lora).log_softmax(-1)
    return sum(lp[t - 1, tokens[t]] for t in range(len(fam.PROMPT), len(tokens)))


def main():
    os.makedirs(OUT, exist_ok=True)
    for seed, case in enumerate(CASES):
        cfg, p, base_dir = base_of(case["base"])
        g = torch.Generator().manual_seed(20261208 + seed)
        scaling = ALPHA / math.sqrt(R) if case["use_rslora"] else ALPHA / R
        lora, tensors = {}, []
        for key in module_names(cfg):
            if not targeted(case["target_modules"], key):
                continue
            assert key.rsplit(".", 1)[1] in ALL, key + ": PEFT would refuse a target that is not a Linear"
            out, inp = proj_shape(cfg, key)
            A = (torch.randn(R, inp, generator=g) * 0.3).to(case["dtype"])
            B = (torch.randn(out, R, generator=g) * 0.3).to(case["dtype"])
            tensors += [(f"base_model.model.{key}.lora_A.weight", A), (f"base_model.model.{key}.lora_B.weight", B)]
            lora[key] = (A.to(torch.float64).requires_grad_(True), B.to(torch.float64).requires_grad_(True), scaling)
        assert lora, case["name"] + ": no module targeted"
        d = os.path.join(OUT, case["name"])
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "adapter_config.json"), "w") as f:
            f.write(json.dumps(adapter_config(case, base_dir), indent=2, sort_keys=True))
        write_safetensors(os.path.join(d, "adapter_model.safetensors"), sorted(tensors), {"format": "pt"})
        if not case.get("ref", True):
            print(f"{case['name']}: {len(lora)} modules")
            continue

        ref = []
        with torch.no_grad():
            for i, seq in enumerate(SEQS):
                ref += [(f"logits.{i}", fam.forward(cfg, p, seq, lora)), (f"base_logits.{i}", fam.forward(cfg, p, seq))]
            ref_c = float(completion_logp(cfg, p, SEQS[0], None))
            ref_r = float(completion_logp(cfg, p, SEQS[1], None))
        lc, lr = completion_logp(cfg, p, SEQS[0], lora), completion_logp(cfg, p, SEQS[1], lora)
        loss = -torch.nn.functional.logsigmoid(fam.BETA * ((lc - ref_c) - (lr - ref_r)))
        loss.backward()
        for key, (A, B, _) in lora.items():
            ref += [(f"grad.base_model.model.{key}.lora_A.weight", A.grad),
                    (f"grad.base_model.model.{key}.lora_B.weight", B.grad)]
        meta = {"n_seqs": str(len(SEQS)), "prompt_len": str(len(fam.PROMPT)), "beta": repr(fam.BETA),
                "ref_chosen": repr(ref_c), "ref_rejected": repr(ref_r), "policy_chosen": repr(float(lc)),
                "policy_rejected": repr(float(lr)), "loss": repr(float(loss)), "scaling": repr(scaling),
                "base": base_dir}
        meta.update({f"seq.{i}": " ".join(map(str, s)) for i, s in enumerate(SEQS)})
        write_safetensors(os.path.join(OUT, case["name"] + "_ref.safetensors"), ref, meta)
        print(f"{case['name']}: {len(lora)} modules, loss {float(loss):.6f}")


def check_merged(out_dir, name):
    """emdpo merge's output for case name against PyTorch's base + adapter."""
    case = next(c for c in CASES if c["name"] == name)
    cfg, p, _ = base_of(case["base"])
    d = os.path.join(OUT, name)
    with open(os.path.join(d, "adapter_config.json")) as f:
        ac = json.load(f)
    scaling = ac["lora_alpha"] / (math.sqrt(ac["r"]) if ac.get("use_rslora") else ac["r"])
    lora, tensors = {}, read_safetensors(os.path.join(d, "adapter_model.safetensors"))
    for key in module_names(cfg):
        a = tensors.get(f"base_model.model.{key}.lora_A.weight")
        if a is not None:
            lora[key] = (a.to(torch.float64), tensors[f"base_model.model.{key}.lora_B.weight"].to(torch.float64),
                         scaling)
    merged = {k: t.to(torch.float64) for k, t in read_safetensors(os.path.join(out_dir, "model.safetensors")).items()}
    if {k: tuple(t.shape) for k, t in merged.items()} != {k: tuple(t.shape) for k, t in p.items()}:
        print(f"{out_dir}: tensors other than the base's")
        return 1
    worst = 0.0
    for seq in SEQS:
        want, base = fam.forward(cfg, p, seq, lora), fam.forward(cfg, p, seq)
        got = fam.forward(cfg, merged, seq)
        scale = float(want.abs().max())
        worst = max(worst, float((got - want).abs().max()) / scale)
        if float((base - want).abs().max()) / scale < 1e-2:
            print(f"{name}: the adapter hardly changes the logits")
            return 1
    if worst > 1e-4:
        print(f"{out_dir}: logits off by {worst:.3g} of the largest")
        return 1
    print(f"ok: {out_dir} computes {name}'s base with its adapter (logits within {worst:.2g})")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--check-merged":
        sys.exit(check_merged(sys.argv[2], sys.argv[3]))
    main()
