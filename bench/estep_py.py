#!/usr/bin/python3
"""The E-step of EM-DPO through the Python package against the same
computation in numpy, in one run: time and peak memory.

  PYTHONPATH=python/src EMDPO_LIBRARY=build/libemdpo.so.0 \\
      /usr/bin/python3 bench/estep_py.py [--decisions 10000000] [--k 8] [--threads 2] [--repeat 3]

N decisions of 3 items (top choices) by N/10 annotators (10 decisions
each, in order), K types, log-ratios float64 (K, 3N) ~ N(0, 1), beta 1,
uniform eta. Each method runs in its own process on the same input (made
from the same seed there): the time is the best of --repeat calls, the
peak memory the process's peak resident memory during the calls above
what it held before them (Linux: VmHWM after resetting it through
/proc/self/clear_refs), so the input itself does not count. The two
results must agree to 1e-9 (the numpy version is written for this fixed
layout, the most favourable case for it; emdpo takes any ragged layout).
"""
import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np


def make_input(n_dec, K, seed=1):
    rng = np.random.default_rng(seed)
    lr = rng.standard_normal((K, 3 * n_dec))
    off = np.arange(0, 3 * n_dec + 1, 3, dtype=np.int64)
    ann = np.repeat(np.arange(n_dec // 10, dtype=np.int64), 10)
    return lr, off, ann


def estep_numpy(lr, ann, beta, n_annot):
    """The same E-step in numpy, numerically safe (shifted by the maximum)."""
    K = lr.shape[0]
    u = beta * lr.reshape(K, -1, 3)
    u0, u1, u2 = u[:, :, 0], u[:, :, 1], u[:, :, 2]
    m = np.maximum(np.maximum(u0, u1), u2)
    lp = u0 - m - np.log(np.exp(u0 - m) + np.exp(u1 - m) + np.exp(u2 - m))  # (K, n_dec)
    del u, m
    s = np.empty((n_annot, K))
    for k in range(K):
        s[:, k] = np.bincount(ann, weights=lp[k], minlength=n_annot)
    s += np.log(1.0 / K)
    mx = s.max(axis=1, keepdims=True)
    lse = mx[:, 0] + np.log(np.exp(s - mx).sum(axis=1))
    gamma = np.exp(s - lse[:, None])
    return gamma, gamma.mean(axis=0), float(lse.sum())


def vm(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def worker(method, n_dec, K, threads, repeat):
    lr, off, ann = make_input(n_dec, K)
    n_annot = n_dec // 10
    if method == "emdpo":
        import emdpo
        emdpo.set_threads(threads)
        run = lambda: emdpo.estep(lr, off, ann, 1.0, None, None, n_annot)
    else:
        run = lambda: estep_numpy(lr, ann, 1.0, n_annot)
    base = vm("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        gamma, eta, ll = run()
        times.append(time.perf_counter() - t)
    peak = vm("VmHWM") - base
    np.save(os.environ["ESTEP_BENCH_OUT"] + "_%s.npy" % method, gamma[:1000])
    print(json.dumps({"method": method, "seconds": min(times), "all_seconds": times, "peak_extra_bytes": peak,
                      "input_bytes": lr.nbytes, "loglik": ll}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--decisions", type=int, default=10_000_000)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--worker")
    a = ap.parse_args()
    if a.worker:
        return worker(a.worker, a.decisions, a.k, a.threads, a.repeat)
    out = "/tmp/estep_bench_%d" % os.getpid()
    env = dict(os.environ, ESTEP_BENCH_OUT=out)
    res = {}
    for method in ("emdpo", "numpy"):
        r = subprocess.run([sys.executable, __file__, "--worker", method, "--decisions", str(a.decisions), "--k",
                            str(a.k), "--threads", str(a.threads), "--repeat", str(a.repeat)], env=env,
                           capture_output=True, text=True)
        if r.returncode:
            sys.exit(r.stderr)
        res[method] = json.loads(r.stdout)
    g1, g2 = np.load(out + "_emdpo.npy"), np.load(out + "_numpy.npy")
    for m in ("emdpo", "numpy"):
        os.remove(out + "_%s.npy" % m)
    diff = float(np.max(np.abs(g1 - g2)))
    lld = abs(res["emdpo"]["loglik"] - res["numpy"]["loglik"]) / abs(res["numpy"]["loglik"])
    if diff > 1e-9 or lld > 1e-9:
        sys.exit("the two E-steps disagree: gamma by %g, loglik by %g (relative)" % (diff, lld))
    e, n = res["emdpo"], res["numpy"]
    print("E-step, %d decisions x K = %d (3 items each), %d annotators; input %.2f GB float64" %
          (a.decisions, a.k, a.decisions // 10, e["input_bytes"] / 1e9))
    print("%-28s %10s %22s" % ("", "time (s)", "peak memory above input"))
    print("%-28s %10.3f %19.1f MB" % ("emdpo.estep (%d threads)" % a.threads, e["seconds"], e["peak_extra_bytes"] / 1e6))
    print("%-28s %10.3f %19.1f MB" % ("numpy", n["seconds"], n["peak_extra_bytes"] / 1e6))
    print("speed-up %.1fx; results agree (gamma within %.1g)" % (n["seconds"] / e["seconds"], diff))


if __name__ == "__main__":
    main()
