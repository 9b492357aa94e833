"""The Python package against a brute force, the C library's files and the
CLI: the same inputs through Python, C and ``emdpo`` give the same bits;
inputs are not copied; errors raise with the library's message and status.

Run from the repository root after ``make``:
    EMDPO_LIBRARY=build/libemdpo.so.0 EMDPO=build/emdpo python3 -m pytest python/tests
(with the package installed, or PYTHONPATH=python/src). Tests that need the
CLI, a checkpoint in ../shared or PyTorch skip without them.
"""
import json
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import emdpo

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.environ.get("EMDPO", os.path.join(ROOT, "build", "emdpo"))
MODELS = os.path.join(ROOT, "..", "shared", "data", "models")
need_cli = pytest.mark.skipif(not os.access(CLI, os.X_OK), reason="no emdpo CLI at %s" % CLI)


def run_cli(*args):
    return subprocess.run([CLI] + [str(a) for a in args], capture_output=True, text=True)


def ragged(rng, K, n_dec, n_annot, max_items=4, rank_share=0.25):
    n = rng.integers(2, max_items + 1, size=n_dec)
    off = np.concatenate([[0], np.cumsum(n)]).astype(np.int64)
    lr = rng.normal(0, 2, size=(K, off[-1]))
    ann = rng.integers(0, n_annot, size=n_dec).astype(np.int64)
    ann[:n_annot] = np.arange(n_annot)
    rank = rng.random(n_dec) < rank_share
    return lr, off, ann, rank


def brute(lr, off, ann, rank, beta, eta, n_annot):
    """Products of probabilities in long double."""
    p = np.tile(np.asarray(eta, dtype=np.longdouble), (n_annot, 1))
    for j in range(len(off) - 1):
        u = np.longdouble(beta) * lr[:, off[j]:off[j + 1]].astype(np.longdouble)
        stages = u.shape[1] - 1 if rank[j] else 1
        for t in range(stages):
            p[ann[j]] *= np.exp(u[:, t]) / np.exp(u[:, t:]).sum(axis=1)
    tot = p.sum(axis=1)
    return (p / tot[:, None]).astype(np.float64), float(np.log(tot).sum())


def write_jsonl(path, lr, off, ann, rank, names=None):
    with open(path, "w") as f:
        for j in range(len(off) - 1):
            rec = {"annotator": names[ann[j]] if names else "a%d" % ann[j],
                   "logratios": [[float(x) for x in lr[k, off[j]:off[j + 1]]] for k in range(lr.shape[0])]}
            if rank[j]:
                rec["ranking"] = True
            f.write(json.dumps(rec) + "\n")


def test_estep_brute_force():
    rng = np.random.default_rng(1)
    lr, off, ann, rank = ragged(rng, 3, 60, 11)
    eta = [0.5, 0.3, 0.2]
    g, e, ll = emdpo.estep(lr, off, ann, 1.3, eta, rank)
    bg, bll = brute(lr, off, ann, rank, 1.3, eta, 11)
    assert g.shape == (11, 3) and e.shape == (3,)
    assert np.max(np.abs(g - bg)) < 1e-13
    assert abs(ll - bll) < 1e-12 * abs(bll)
    assert np.array_equal(e, g.sum(axis=0) / 11) or np.max(np.abs(e - g.mean(axis=0))) < 1e-15


def test_same_bits_threads_order_and_slices():
    rng = np.random.default_rng(2)
    lr, off, ann, rank = ragged(rng, 4, 80000, 9000)
    emdpo.set_threads(1)
    g1, e1, l1 = emdpo.estep(lr, off, ann, 0.8, None, rank)
    emdpo.set_threads(2)
    g2, e2, l2 = emdpo.estep(lr, off, ann, 0.8, None, rank)
    assert np.array_equal(g1, g2) and np.array_equal(e1, e2) and l1 == l2
    wide = np.zeros((4, lr.shape[1] + 13))
    wide[:, 5:5 + lr.shape[1]] = lr
    g3, _, l3 = emdpo.estep(wide[:, 5:5 + lr.shape[1]], off, ann, 0.8, None, rank)
    assert np.array_equal(g1, g3) and l1 == l3
    # lists and float32 are converted; the answer is the same
    g4, _, _ = emdpo.estep(lr.tolist(), off.tolist(), ann.astype(np.int32), 0.8, None, rank.tolist())
    assert np.array_equal(g1, g4)


def test_no_copy_of_the_input():
    rng = np.random.default_rng(3)
    K, n_dec = 8, 1_000_000
    lr = rng.normal(size=(K, 3 * n_dec))
    off = np.arange(0, 3 * n_dec + 1, 3, dtype=np.int64)
    ann = np.repeat(np.arange(n_dec // 10, dtype=np.int64), 10)
    emdpo.estep(lr, off, ann, 1.0)
    tracemalloc.start()
    emdpo.estep(lr, off, ann, 1.0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 0.05 * lr.nbytes, "peak %d bytes for a %d-byte input" % (peak, lr.nbytes)


def test_weights():
    rng = np.random.default_rng(4)
    lr, off, ann, rank = ragged(rng, 2, 50, 7)
    g, _, _ = emdpo.estep(lr, off, ann, 1.0)
    w = emdpo.weights(g, ann)
    assert np.array_equal(w, g[ann])
    wn = emdpo.weights(g, ann, normalize=True)
    assert np.allclose(wn.mean(axis=0), 1.0, atol=1e-14)
    assert np.allclose(wn / w, (wn / w)[0], rtol=1e-14)


def test_errors_carry_the_library_message():
    lr = np.zeros((2, 5))
    with pytest.raises(emdpo.EmdpoError) as e:
        emdpo.estep(lr, [0, 1, 5], [0, 0], 1.0)
    assert e.value.status_name == "invalid argument" and "decision 0 has 1 items" in str(e.value)
    with pytest.raises(emdpo.EmdpoError) as e:
        emdpo.estep(lr, [0, 2, 5], [0, 0], 1.0, eta=[0.5, 0.4])
    assert "eta sums to" in e.value.message
    with pytest.raises(emdpo.EmdpoError) as e:
        emdpo.estep(lr, [0, 2, 5], [0, 2], 1.0, n_annotators=2)
    assert "decision 1: annotator 2" in str(e.value)
    bad = lr.copy()
    bad[1, 3] = np.nan
    with pytest.raises(emdpo.EmdpoError) as e:
        emdpo.estep(bad, [0, 2, 5], [0, 0], 1.0)
    assert "decision 1 has a log-ratio that is not finite" in str(e.value)
    with pytest.raises(emdpo.EmdpoError) as e:
        emdpo.mmra_ae([[0, 1], [1, 0], [2, 2]] * 2)
    assert "regret matrix" in str(e.value)
    with pytest.raises(ValueError):
        emdpo.estep(lr, [0, 2, 5], [0, 0], 1.0, eta=[1.0])


def test_file_errors_name_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"annotator": "a", "logratios": [[0, 1], [1, 0]]}\n'
                 '{"annotator": "b", "logratios": [[0, 1, 2], [1, 0]]}\n')
    with pytest.raises(emdpo.EmdpoError) as e:
        emdpo.read_logratios(str(p))
    assert e.value.status_name == "parse error" and e.value.line == 2 and e.value.file.endswith("bad.jsonl")
    assert "bad.jsonl:2: ragged types" in str(e.value)


def test_library_not_found_lists_what_was_tried():
    env = dict(os.environ, EMDPO_LIBRARY="/nonexistent/libemdpo.so.0", LD_LIBRARY_PATH="")
    r = subprocess.run([sys.executable, "-c", "import emdpo"], capture_output=True, text=True, env=env)
    assert r.returncode != 0
    assert "EMDPO_LIBRARY=/nonexistent/libemdpo.so.0" in r.stderr and "libemdpo.so.0 through the dynamic loader" in r.stderr


@need_cli
def test_python_c_and_cli_give_the_same_bits(tmp_path):
    rng = np.random.default_rng(5)
    lr, off, ann, rank = ragged(rng, 3, 400, 40)
    path = tmp_path / "lr.jsonl"
    write_jsonl(path, lr, off, ann, rank)
    eta = [0.2, 0.5, 0.3]
    r = run_cli("estep", "--logratios", path, "--beta", 0.7, "--eta", "0.2,0.5,0.3", "--normalize", "--out",
                tmp_path / "cli", "--quiet")
    assert r.returncode == 0, r.stderr
    # the file through the C reader, then numpy arrays built in Python: one answer
    g_file, e_file, l_file = emdpo.estep_file(str(path), 0.7, str(tmp_path / "py"), eta, normalize=True)
    g_np, e_np, l_np = emdpo.estep(lr, off, ann, 0.7, eta, rank)
    order = [int(a[1:]) for a in emdpo.read_logratios(str(path)).annotators]
    assert np.array_equal(g_file, g_np[order]) and np.array_equal(e_file, e_np) and l_file == l_np
    for name in ("posterior.csv", "weights.csv"):
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "py" / name).read_bytes()
    cli = json.loads((tmp_path / "cli" / "estep.json").read_text())
    assert cli["loglik"] == l_np and cli["eta"] == list(e_np)
    post = np.loadtxt(tmp_path / "cli" / "posterior.csv", delimiter=",", skiprows=1, usecols=(1, 2, 3))
    assert np.array_equal(post, g_file)


@need_cli
def test_mmra_and_select_match_the_cli(tmp_path):
    R = np.array([[0.0, 1.0, 2.5], [1.0, 0.0, 1.0], [2.0, 2.0, 0.0]])
    (tmp_path / "R.json").write_text(json.dumps(R.tolist()))
    r = run_cli("aggregate", "--regrets", tmp_path / "R.json", "--json")
    assert r.returncode == 0, r.stderr
    cli = json.loads(r.stdout)
    res = emdpo.mmra_ae_result(R)
    w, mx, gap = emdpo.mmra_ae(R)
    assert list(w) == cli["w"] and mx == cli["max_regret"] and gap == cli["duality_gap"]
    assert res.lp_value == cli["lp_value"] and mx - gap <= res.lp_value + 1e-12 <= mx + 1e-12
    assert np.array_equal(emdpo.mmra_ae(np.vstack([np.zeros(3), R]))[0], w)
    assert np.array_equal(emdpo.read_regrets(str(tmp_path / "R.json")), R)
    rng = np.random.default_rng(6)
    ann = rng.integers(0, 30, size=200).astype(np.int64)
    ann[:30] = np.arange(30)  # the file numbers annotators by first appearance: the same numbers
    cands = [rng.normal(size=(200, k)) for k in (1, 2, 3)]
    with open(tmp_path / "m.jsonl", "w") as f:
        for m in cands:
            for j in range(200):
                f.write(json.dumps({"k": m.shape[1], "annotator": "a%d" % ann[j], "margins": m[j].tolist()}) + "\n")
    r = run_cli("select", "--margins", tmp_path / "m.jsonl", "--json", "--criterion", "crossfit")
    assert r.returncode == 0, r.stderr
    cli = json.loads(r.stdout)
    s = emdpo.select_k(cands, ann, criterion="crossfit")
    assert s.best_k == cli["best_k"]
    assert [row["margin"] for row in cli["rows"]] == s.margin and [row["crossfit"] for row in cli["rows"]] == s.crossfit
    back = emdpo.read_margins(str(tmp_path / "m.jsonl"))
    assert all(np.array_equal(b[0], m) for b, m in zip(back, cands))


def test_fit_loglinear_posterior_from_its_logratios(tmp_path):
    theta = "2,0,-1.5;-2,1.5,1"
    path = tmp_path / "d.jsonl"
    if os.access(CLI, os.X_OK):
        assert run_cli("simulate", "--out", path, "--annotators", 500, "--decisions", 3, "--items", 3, "--design",
                       "gaussian", "--theta", theta, "--response", "ranking", "--seed", 9).returncode == 0
        data = emdpo.read_data(str(path))
    else:
        rng = np.random.default_rng(9)
        data = emdpo.Data.from_arrays(["a%d" % (j // 3) for j in range(1500)], [3] * 1500,
                                      features=rng.normal(size=(4500, 2)))
    fit = emdpo.fit_loglinear(data, 2, beta=0.5)
    lr = fit.logratios(data)
    g, _, ll = emdpo.estep(lr, data.offsets, data.annotator, fit.beta, fit.eta, data.ranking)
    assert np.max(np.abs(g - fit.posterior)) <= 1e-12 and abs(ll - fit.loglik) <= 1e-12 * abs(fit.loglik)
    assert fit.trace[-1] <= fit.loglik + 1e-9 and fit.k == 2 and fit.theta.shape == (2, data.n_features)
    data.write(str(tmp_path / "back.csv"))
    back = emdpo.read_data(str(tmp_path / "back.csv"))
    assert np.array_equal(back.features, data.features) and back.annotators == data.annotators
    if os.access(CLI, os.X_OK):
        r = run_cli("fit", "--data", path, "--k", 2, "--out", tmp_path / "fit", "--quiet")
        assert r.returncode == 0, r.stderr
        assert json.loads((tmp_path / "fit" / "fit.json").read_text())["loglik"] == \
            emdpo.fit_loglinear(data, 2).loglik


@pytest.mark.skipif(not os.path.exists(os.path.join(MODELS, "stories260K.bin")), reason="no ../shared checkpoint")
@need_cli
def test_llama_scoring_and_generation(tmp_path):
    ckpt, tokp = os.path.join(MODELS, "stories260K.bin"), os.path.join(MODELS, "tok512.bin")
    m = emdpo.Llama(ckpt)
    tok = emdpo.Tokenizer(tokp, m.vocab_size)
    path = tmp_path / "p.jsonl"
    path.write_text('{"annotator": "a", "prompt": "Once upon a time", "chosen": " there was a cat.", '
                    '"rejected": [" the end.", " a dog ran."]}\n'
                    '{"annotator": "b", "prompt": "Lily", "chosen": " went home.", "rejected": " sat."}\n')
    data = emdpo.read_data(str(path))
    logp = m.score(tok, data)
    r = run_cli("score", "--model", ckpt, "--tokenizer", tokp, "--data", path)
    assert r.returncode == 0, r.stderr
    rows = [l.split(",") for l in r.stdout.strip().splitlines()]
    col = rows[0].index("logp")
    assert [float(x[col]) for x in rows[1:]] == list(logp)
    lr = emdpo.logratios([m, m], m, tok, data)
    assert lr.shape == (2, 5) and not lr.any()
    text = emdpo.generate(ckpt, tokp, "Once upon a time", temperature=0, max_tokens=20)
    r = run_cli("generate", "--model", ckpt, "--tokenizer", tokp, "--prompt", "Once upon a time", "--temperature", 0,
                "--max-tokens", 20)
    assert r.returncode == 0 and text[0] in r.stdout
