#!/bin/sh
# examples/python/emdpo_torch.py, the EM-DPO loop in plain PyTorch around
# emdpo.estep, emdpo.weights and emdpo.mmra_ae, on MPI-style ternary data
# that emdpo simulates: it must recover the true types as well as emdpo fit
# --policy llama does on the same data (adjusted Rand index within 0.05),
# and end with an MMRA-AE mixture whose duality gap is small. About two
# minutes on 2 cores. Skips without Debian's python3 with numpy and torch,
# and on sanitizer builds (an ASan library cannot be loaded into Python).
E=${1:-build/emdpo}
. tests/lib_cli.sh
. tests/lib_python.sh
py_require cli_torch_example numpy torch
export PYTHONPATH="$(pwd)/python/src" EMDPO_LIBRARY="$LIB"

# The data and tokenizer of the example's docstring; 12 ternary choices per annotator.
"$E" simulate --preset personalities --phrases 10 --annotators 240 --decisions 12 --items 3 --seed 1 \
    --out "$T/tern.jsonl" >/dev/null
"$E" tokenizer --data "$T/tern.jsonl" --vocab 400 --up-to --out "$T/tok.bin" >/dev/null
check "data and tokenizer" test -s "$T/tok.bin"

# The reference: emdpo's own EM-DPO on Llama policies, the same DPO settings.
"$E" sft --data "$T/tern.jsonl" --config dim=32,layers=1,heads=2,vocab=400,seq_len=64 --tokenizer "$T/tok.bin" \
    --threads 1 --quiet --batch 16 --lr 3e-3 --steps 300 --seed 1 --out "$T/sft"
expect_exit 0 "emdpo fit --policy llama" "" "$E" fit --policy llama --model "$T/sft" --tokenizer "$T/tok.bin" \
    --threads 1 --beta 1 --lr 3e-4 --batch 8 --warmup 20 --rpo-alpha 10 --k 3 --init kmeans-tokens --steps 150 \
    --max-iter 4 --seed 1 --data "$T/tern.jsonl" --out "$T/fit" --quiet

check_run "the example runs" "$PY" examples/python/emdpo_torch.py --data "$T/tern.jsonl" --tokenizer "$T/tok.bin" \
    --out "$T/torch"
cp "$T/out" "$T/example.log"
cat "$T/example.log"
check "the example prints its MMRA-AE mixture" grep -q '^MMRA-AE: mixture' "$T/example.log"
check "Hedge's duality gap below 1e-3" "$PY" -c "
import re, sys
gap = float(re.search(r'duality gap ([0-9.e+-]+)', open(sys.argv[1]).read()).group(1))
sys.exit(not gap < 1e-3)" "$T/example.log"
check_run "ARI within 0.05 of emdpo fit --policy llama's" "$PY" -c "
import csv, json, sys
sys.path.insert(0, 'examples/python')
from emdpo_torch import adjusted_rand_index
truth = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    truth[r['annotator']] = r['group']
def ari(path):
    rows = list(csv.reader(open(path)))[1:]
    return adjusted_rand_index([truth[r[0]] for r in rows],
                               [max(range(len(r) - 1), key=lambda k: float(r[k + 1])) for r in rows])
a_emdpo, a_torch = ari(sys.argv[2]), ari(sys.argv[3])
print('ARI: emdpo fit --policy llama %.4f, the PyTorch example %.4f' % (a_emdpo, a_torch))
sys.exit(not (a_torch >= a_emdpo - 0.05 and a_emdpo > 0.5))" "$T/tern.jsonl" "$T/fit/posterior.csv" "$T/torch/posterior.csv"
cat "$T/out"
echo "cli_torch_example: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
