"""LoRA through the Python package against the CLI and the C library: SFT,
a LoRA DPO run and EM-DPO with LoRA types give the commands' bytes; an
adapter read and written back is byte-identical; merging gives the scores
of the base running the adapter; bad LoRA settings raise EmdpoError with
the library's message.

On a tiny model trained here from a byte-level tokenizer (the one
tests/lib_cli.sh's byte_tokenizer writes); the comparisons with the CLI
skip without it.
"""
import os
import struct
import subprocess

import numpy as np
import pytest

import emdpo

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.environ.get("EMDPO", os.path.join(ROOT, "build", "emdpo"))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
need_cli = pytest.mark.skipif(not os.access(CLI, os.X_OK), reason="no emdpo CLI at %s" % CLI)

CONFIG = "dim=16,layers=2,heads=2,vocab=259,seq_len=64"
SFT = '{"prompt": "ab", "response": "cd"}\n{"prompt": "ef", "response": "gh"}\n'
PREFS = ('{"annotator": "u1", "prompt": "ab", "chosen": "yes", "rejected": ["no", "nah"]}\n'
         '{"annotator": "u2", "prompt": "cd", "chosen": "yes", "rejected": "no"}\n'
         '{"annotator": "u1", "prompt": "ef", "ranking": ["yes", "ok", "no"]}\n'
         '{"annotator": "u3", "prompt": "gh", "chosen": "no", "rejected": "yes"}\n')
# emdpo dpo --lora-r 4 --lora-alpha 8 ... and the same through Python
DPO_FLAGS = ["--lora-r", 4, "--lora-alpha", 8, "--lr", 1e-2, "--batch", 3, "--beta", 0.5, "--optimizer", "adamw",
             "--steps", 8]
DPO_OPTIONS = dict(lr=1e-2, batch=3, beta=0.5, optimizer="adamw", steps=8)
LORA = emdpo.LoraConfig(r=4, lora_alpha=8)


def run_cli(*args):
    r = subprocess.run([CLI] + [str(a) for a in args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


def read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A byte tokenizer, SFT and preference data, and a base model trained
    by emdpo.sft (two steps from a fresh model)."""
    d = tmp_path_factory.mktemp("lora")
    tok = d / "tok.bin"
    b = struct.pack("<i", 16)
    for piece in [b"<unk>", b"\n<s>\n", b"\n</s>\n"] + [("<0x%02X>" % i).encode() for i in range(256)]:
        b += struct.pack("<fi", 0.0, len(piece)) + piece
    tok.write_bytes(b)
    (d / "sft.jsonl").write_text(SFT)
    (d / "prefs.jsonl").write_text(PREFS)
    emdpo.set_threads(1)
    r = emdpo.sft(d / "sft.jsonl", d / "base", tok, config=CONFIG, steps=2)
    assert r.steps == 2 and r.n_sequences == 2
    return d


@need_cli
def test_sft_equals_the_cli(tiny):
    run_cli("sft", "--data", tiny / "sft.jsonl", "--config", CONFIG, "--tokenizer", tiny / "tok.bin", "--out",
            tiny / "base_cli", "--steps", 2, "--threads", 1, "--quiet")
    assert read(tiny / "base" / "model.safetensors") == read(tiny / "base_cli" / "model.safetensors")


@need_cli
def test_lora_dpo_equals_the_cli(tiny):
    seen = []
    r = emdpo.dpo(tiny / "prefs.jsonl", tiny / "py", tiny / "tok.bin", tiny / "base", lora=LORA,
                  log=tiny / "py.log", merge=tiny / "py_merged", progress=lambda m, total, eps: seen.append(m),
                  **DPO_OPTIONS)
    run_cli("dpo", "--data", tiny / "prefs.jsonl", "--model", tiny / "base", "--tokenizer", tiny / "tok.bin", "--out",
            tiny / "cli", "--log", tiny / "cli.log", "--merge", tiny / "cli_merged", "--threads", 1, "--quiet",
            *DPO_FLAGS)
    for name in ("adapter_model.safetensors", "adapter_config.json", "trainer.bin"):
        assert read(tiny / "py" / name) == read(tiny / "cli" / name), name
    assert read(tiny / "py_merged" / "model.safetensors") == read(tiny / "cli_merged" / "model.safetensors")
    # activation checkpointing: the same gradients, so the same adapter
    emdpo.dpo(tiny / "prefs.jsonl", tiny / "py_ckpt", tiny / "tok.bin", tiny / "base", lora=LORA,
              grad_checkpoint=True, **DPO_OPTIONS)
    assert read(tiny / "py_ckpt" / "adapter_model.safetensors") == read(tiny / "py" / "adapter_model.safetensors")
    assert not (tiny / "py" / "model.safetensors").exists()
    assert r.steps == 8 and [m.step for m in seen] == list(range(1, 9)) and seen[-1] == r.last
    # the log's losses are the callback's
    logged = [float(line.split('"loss": ')[1].split(",")[0]) for line in (tiny / "cli.log").read_text().splitlines()]
    assert logged == [m.loss for m in seen]


def test_adapter_read_write_round_trip(tiny):
    if not (tiny / "py").exists():
        emdpo.dpo(tiny / "prefs.jsonl", tiny / "py", tiny / "tok.bin", tiny / "base", lora=LORA, **DPO_OPTIONS)
    base = emdpo.Llama(tiny / "base")
    a = emdpo.Adapter.read(tiny / "py", base)
    assert a.rank == 4 and a.alpha == 8 and a.scale == 2
    # A (r, in) and B (out, r) on all seven projections of 2 layers: dim 16, kv 16, hidden 64
    per_layer = 4 * (16 + 16) * 4 + 3 * 4 * (16 + 64)
    assert a.n_params == 2 * per_layer
    cfg = (tiny / "py" / "adapter_config.json").read_text()
    base_path = cfg.split('"base_model_name_or_path": "')[1].split('"')[0]
    a.write(tiny / "back", base_model=base_path)
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        assert read(tiny / "back" / name) == read(tiny / "py" / name), name
    a.write(tiny / "back16", dtype="bf16")
    assert read(tiny / "back16" / "adapter_model.safetensors") != read(tiny / "py" / "adapter_model.safetensors")
    # an adapter PEFT wrote (tools/lora_fixture.py): what emdpo writes of it reads back to the same bytes
    peft_base = emdpo.Llama(os.path.join(FIXTURES, "hf_families", "llama3"))
    p = emdpo.Adapter.read(os.path.join(FIXTURES, "lora", "llama3_all"), peft_base)
    p.write(tiny / "peft1")
    emdpo.Adapter.read(tiny / "peft1", peft_base).write(tiny / "peft2")
    assert read(tiny / "peft1" / "adapter_model.safetensors") == read(tiny / "peft2" / "adapter_model.safetensors")


def test_merge_gives_the_scores_of_base_and_adapter(tiny):
    if not (tiny / "py").exists():
        emdpo.dpo(tiny / "prefs.jsonl", tiny / "py", tiny / "tok.bin", tiny / "base", lora=LORA, **DPO_OPTIONS)
    base = emdpo.Llama(tiny / "base", frozen=True)
    tok = emdpo.Tokenizer(tiny / "tok.bin", base.vocab_size)
    data = emdpo.read_data(tiny / "prefs.jsonl")
    a = emdpo.Adapter.read(tiny / "py", base)
    unmerged = base.score(tok, data, adapter=a)
    assert np.array_equal(a.score(tok, data), unmerged)
    assert np.max(np.abs(unmerged - base.score(tok, data))) > 1e-3  # the adapter matters
    m = emdpo.Llama(tiny / "base")
    a.merge_into(m)
    merged = m.score(tok, data)
    assert np.max(np.abs(merged - unmerged)) < 1e-5
    emdpo.merge(tiny / "base", tiny / "py", tiny / "merged")
    assert np.array_equal(emdpo.Llama(tiny / "merged").score(tok, data), merged)
    # a model held in 16 bits is never written: merging into it is refused
    emdpo.merge(tiny / "base", tiny / "py", tiny / "merged16", dtype="bf16")
    m16 = emdpo.Llama(tiny / "merged16", frozen=True)
    assert m16.frozen and not base.frozen
    with pytest.raises(emdpo.EmdpoError) as e:
        a.merge_into(m16)
    assert "frozen" in str(e.value)
    lr = emdpo.logratios([a, m], base, tok, data)
    assert lr.shape == (2, data.n_items) and np.max(np.abs(lr[0] - lr[1])) < 1e-5
    # an adapter directory loads as its base with the adapter merged
    assert np.array_equal(emdpo.Llama(tiny / "py").score(tok, data), merged)
    if os.access(CLI, os.X_OK):
        r = run_cli("score", "--model", tiny / "base", "--adapter", tiny / "py", "--tokenizer", tiny / "tok.bin",
                    "--data", tiny / "prefs.jsonl")
        rows = [line.split(",") for line in r.stdout.strip().splitlines()]
        col = rows[0].index("logp")
        assert [float(x[col]) for x in rows[1:]] == list(unmerged)
    g = emdpo.generate(str(tiny / "base"), str(tiny / "tok.bin"), "ab", temperature=0, max_tokens=12,
                       adapter=str(tiny / "py"))
    assert g == emdpo.generate(str(tiny / "merged"), str(tiny / "tok.bin"), "ab", temperature=0, max_tokens=12)


@need_cli
def test_fit_llama_with_lora_types_equals_the_cli(tiny):
    etas = []
    fit = emdpo.fit_llama(tiny / "base", tiny / "tok.bin", tiny / "prefs.jsonl", 2, lora=LORA, steps=2, lr=1e-2,
                          max_iter=2, progress=lambda s, it, ll, eta: etas.append(eta))
    fit.write(tiny / "fit_py")
    run_cli("fit", "--policy", "llama", "--model", tiny / "base", "--tokenizer", tiny / "tok.bin", "--data",
            tiny / "prefs.jsonl", "--k", 2, "--lora-r", 4, "--lora-alpha", 8, "--steps", 2, "--lr", 1e-2,
            "--max-iter", 2, "--out", tiny / "fit_cli", "--threads", 1, "--quiet")
    for name in ("posterior.csv", "type_1/adapter_model.safetensors", "type_2/adapter_model.safetensors",
                 "type_1/adapter_config.json"):
        assert read(tiny / "fit_py" / name) == read(tiny / "fit_cli" / name), name
    assert fit.k == 2 and fit.posterior.shape == (3, 2) and len(etas) == len(fit.trace)
    assert np.allclose(fit.posterior.sum(axis=1), 1) and fit.loglik == max(fit.trace)
    # a type's adapter, loaded on the base, is a policy to score with
    base = emdpo.Llama(tiny / "base", frozen=True)
    a = emdpo.Adapter.read(tiny / "fit_py" / "type_1", base)
    tok = emdpo.Tokenizer(tiny / "tok.bin", base.vocab_size)
    assert a.rank == 4 and np.all(np.isfinite(a.score(tok, emdpo.read_data(tiny / "prefs.jsonl"))))


def test_bad_lora_settings_raise_the_library_message(tiny):
    args = (tiny / "prefs.jsonl", tiny / "bad", tiny / "tok.bin", tiny / "base")
    message = "LoRA: r must be >= 1, alpha finite, dropout in [0, 1), some targets"
    for bad in (emdpo.LoraConfig(r=-2), emdpo.LoraConfig(lora_dropout=1.0), emdpo.LoraConfig(lora_alpha=float("nan"))):
        with pytest.raises(emdpo.EmdpoError) as e:
            emdpo.dpo(*args, lora=bad, steps=1)
        assert e.value.status_name == "invalid argument" and e.value.message == message, bad
        with pytest.raises(emdpo.EmdpoError) as e:
            emdpo.fit_llama(tiny / "base", tiny / "tok.bin", tiny / "prefs.jsonl", 2, lora=bad, steps=1)
        assert e.value.message == message, bad
    assert not (tiny / "bad").exists()
    with pytest.raises(emdpo.EmdpoError) as e:
        emdpo.dpo(*args, lora=emdpo.LoraConfig(target_modules=["q_proj", "lm_head"]))
    assert e.value.status_name == "invalid argument" and "down_proj" in str(e.value)
    with pytest.raises(emdpo.EmdpoError) as e:
        emdpo.dpo(*args, lora=emdpo.LoraConfig(r=0))
    assert "r must be >= 1" in str(e.value)
    with pytest.raises(emdpo.EmdpoError) as e:
        emdpo.dpo(tiny / "prefs.jsonl", tiny / "bad", tiny / "tok.bin", config=CONFIG, lora=LORA)
    assert "a LoRA adapter needs the model it adapts" in str(e.value)
    with pytest.raises(emdpo.EmdpoError) as e:
        emdpo.sft(tiny / "sft.jsonl", tiny / "bad", tiny / "tok.bin", tiny / "base", merge=tiny / "m")
    assert "merge needs a LoRA adapter" in str(e.value)
    with pytest.raises(ValueError):
        emdpo.dpo(*args, lora=LORA, optimizer="sgd")
    with pytest.raises(TypeError):
        emdpo.sft(tiny / "sft.jsonl", tiny / "bad", tiny / "tok.bin", tiny / "base", beta=0.1)
    # adapters: a missing directory, one made for another shape, scoring on the wrong model
    base = emdpo.Llama(tiny / "base")
    with pytest.raises(emdpo.EmdpoError) as e:
        emdpo.Adapter.read(tiny / "none", base)
    assert "none" in e.value.file or "none" in e.value.message
    with pytest.raises(emdpo.EmdpoError) as e:
        emdpo.Adapter.read(os.path.join(FIXTURES, "lora", "llama3_all"), base)
    assert e.value.status_name == "parse error" and "lora_A.weight" in str(e.value)
    peft = emdpo.Adapter.read(os.path.join(FIXTURES, "lora", "llama3_all"),
                              emdpo.Llama(os.path.join(FIXTURES, "hf_families", "llama3")))
    tok = emdpo.Tokenizer(tiny / "tok.bin", base.vocab_size)
    with pytest.raises(emdpo.EmdpoError) as e:
        base.score(tok, emdpo.read_data(tiny / "prefs.jsonl"), adapter=peft)
    assert e.value.status_name == "invalid argument"
    with pytest.raises(emdpo.EmdpoError) as e:
        peft.merge_into(base)
    assert "the adapter was made for a model of" in str(e.value)
