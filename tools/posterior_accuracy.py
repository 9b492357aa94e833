#!/usr/bin/env python3
"""Posterior accuracy of an EM-DPO fit on simulated data: the share of
annotators whose most probable type (posterior.csv) is their true group's
("group" in the data's JSONL), under the labelling of types by groups that
makes it largest. Used to compare fits (docs/RESULTS.md, LoRA types vs full
copies).

    python3 tools/posterior_accuracy.py DATA.jsonl FIT_DIR/posterior.csv
"""
import csv
import itertools
import json
import sys


def main(data, posterior):
    group = {}
    with open(data, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            group[r["annotator"]] = r["group"]
    with open(posterior, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:]
    k = len(rows[0]) - 1
    groups = sorted(set(group.values()))
    top = [max(range(k), key=lambda t: float(r[1 + t])) for r in rows]
    best = 0.0
    for perm in itertools.permutations(range(k), min(k, len(groups))):
        label = dict(zip(groups, perm))
        hits = sum(1 for r, t in zip(rows, top) if label.get(group[r[0]]) == t)
        best = max(best, hits / len(rows))
    print(f"{best:.4f}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
