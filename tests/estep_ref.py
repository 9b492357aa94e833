#!/usr/bin/env python3
"""Reference computations for tests/cli_estep.sh, in plain Python (no
numpy): the E-step by products of probabilities in 50-digit decimals, a
log-linear fit's log-ratios, random log-ratio files, and comparisons of
CSV tables.

  estep_ref.py brute LR.jsonl BETA [E1,E2,...]   posterior rows and loglik
  estep_ref.py fit2lr DATA.jsonl FIT.json OUT      OUT.jsonl and OUT.csv: theta_k . x / beta
  estep_ref.py random N K SEED OUT                 OUT.jsonl, OUT.csv: N decisions (rankings too)
  estep_ref.py compare A.csv B.csv TOL             same rows and first column, numbers within TOL
"""
import decimal
import json
import random
import sys

D = decimal.Decimal
decimal.getcontext().prec = 50


def read_lr(path):
    decs = []
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                decs.append((str(r["annotator"]), r["logratios"], bool(r.get("ranking", False))))
    return decs


def brute(path, beta, eta):
    decs = read_lr(path)
    K = len(decs[0][1])
    eta = [D(e) for e in eta] if eta else [D(1) / K] * K
    beta = D(beta)
    order, prod = [], {}
    for a, lr, ranking in decs:
        if a not in prod:
            order.append(a)
            prod[a] = list(eta)
        for k in range(K):
            u = [beta * D(repr(x)) for x in lr[k]]
            stages = len(u) - 1 if ranking else 1
            p = D(1)
            for t in range(stages):
                p *= u[t].exp() / sum(v.exp() for v in u[t:])
            prod[a][k] *= p
    ll = D(0)
    print("annotator," + ",".join("gamma_%d" % (k + 1) for k in range(K)))
    for a in order:
        tot = sum(prod[a])
        ll += tot.ln()
        print(a + "," + ",".join(repr(float(p / tot)) for p in prod[a]))
    print("loglik," + repr(float(ll)), file=sys.stderr)


def fit2lr(data, fitjson, out):
    fit = json.load(open(fitjson))
    theta, beta = fit["theta"], fit.get("beta", 1.0)
    K = len(theta)
    with open(data) as f, open(out + ".jsonl", "w") as jl, open(out + ".csv", "w") as cs:
        cs.write("annotator,decision,type,item,logratio\n")
        for j, line in enumerate(f):
            r = json.loads(line)
            if "ranking" in r:
                items, ranking = r["ranking"], True
            else:
                rej = r["rejected"] if isinstance(r["rejected"], list) else [r["rejected"]]
                items, ranking = [r["chosen"]] + rej, False
            lr = [[sum(t * x for t, x in zip(theta[k], it["features"])) / beta for it in items] for k in range(K)]
            rec = {"annotator": r["annotator"], "logratios": lr}
            if ranking:
                rec["ranking"] = True
            jl.write(json.dumps(rec) + "\n")
            for k in range(K):
                for q, v in enumerate(lr[k]):
                    cs.write("%s,%d,%d,%d,%r\n" % (r["annotator"], j, k + 1, q, v))


def rand_file(n, K, seed, out):
    rng = random.Random(seed)
    with open(out + ".jsonl", "w") as jl, open(out + ".csv", "w") as cs:
        cs.write("annotator,decision,type,item,logratio,ranking\n")
        for j in range(n):
            a = "u%d" % rng.randrange(max(1, n // 8))
            m = rng.choice((2, 3, 3, 4))
            ranking = rng.random() < 0.2
            lr = [[round(rng.gauss(0, 2), 6) for _ in range(m)] for _ in range(K)]
            rec = {"annotator": a, "logratios": lr}
            if ranking:
                rec["ranking"] = True
            jl.write(json.dumps(rec) + "\n")
            for k in range(K):
                for q, v in enumerate(lr[k]):
                    cs.write("%s,d%d,%d,%d,%r,%d\n" % (a, j, k + 1, q, v, ranking))


def compare(a, b, tol):
    ra = [l.rstrip("\n").split(",") for l in open(a)]
    rb = [l.rstrip("\n").split(",") for l in open(b)]
    if len(ra) != len(rb) or ra[0] != rb[0]:
        sys.exit("%s and %s differ in rows or header" % (a, b))
    worst = 0.0
    for x, y in zip(ra[1:], rb[1:]):
        if x[0] != y[0] or len(x) != len(y):
            sys.exit("row %s vs %s" % (x[0], y[0]))
        worst = max([worst] + [abs(float(p) - float(q)) for p, q in zip(x[1:], y[1:])])
    if worst > tol:
        sys.exit("%s and %s differ by %g > %g" % (a, b, worst, tol))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "brute":
        brute(sys.argv[2], sys.argv[3], sys.argv[4].split(",") if len(sys.argv) > 4 else None)
    elif cmd == "fit2lr":
        fit2lr(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "random":
        rand_file(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    elif cmd == "compare":
        compare(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    else:
        sys.exit(__doc__)
