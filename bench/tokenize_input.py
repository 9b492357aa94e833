"""Writes the input of the tokenize benchmark: about MB megabytes of mixed
text, one JSON string per line, the same bytes on every run. It mixes the
paper's prose (../shared/seed), GlobalOpinionQA's questions and options in
many languages' survey wording (../shared/data/globalopinionqa), the C
sources of this repository (code), and the tokenizer parity strings (every
script, emoji, whitespace runs, special-token text).

usage: python3 bench/tokenize_input.py OUT.jsonl [MB]"""
import glob
import json
import os
import sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
shared = os.path.join(root, "..", "shared")
pools = []

paper = []
for f in sorted(glob.glob(os.path.join(shared, "seed", "*.txt"))):
    paper += [l.strip() for l in open(f, encoding="utf-8", errors="replace") if l.strip()]
pools.append(paper)

goqa = []
f = os.path.join(shared, "data", "globalopinionqa", "goqa_subset_4countries.jsonl")
if os.path.exists(f):
    for line in open(f, encoding="utf-8"):
        rec = json.loads(line)
        for v in rec.values():
            if isinstance(v, str) and len(v) > 20:
                goqa.append(v)
pools.append(goqa)

code = []
for f in sorted(glob.glob(os.path.join(root, "src", "**", "*.c"), recursive=True)):
    text = open(f, encoding="utf-8").read()
    code += [text[i:i + 400] for i in range(0, len(text), 400)]
pools.append(code)

nasty = [json.loads(l) for l in open(os.path.join(root, "tests", "fixtures", "tokenizer_parity", "strings.jsonl"),
                                      encoding="utf-8")]
pools.append(nasty)
pools = [p for p in pools if p]

want = float(sys.argv[2]) if len(sys.argv) > 2 else 4.0
size, i = 0, 0
with open(sys.argv[1], "w", encoding="utf-8") as out:
    while size < want * 1e6:
        pool = pools[i % len(pools)]
        s = pool[(i // len(pools)) % len(pool)]
        out.write(json.dumps(s, ensure_ascii=False) + "\n")
        size += len(s.encode("utf-8"))
        i += 1
print(f"{i} lines, {size / 1e6:.2f} MB of text")
