#!/bin/sh
# A random parity sweep of emdpo tokenize against HF tokenizers (npm
# tokenizers@0.23.2), beyond the committed fixtures: N random strings drawn
# from every script, emoji, combining marks, whitespace kinds, digits,
# punctuation and special-token texts (seeded), encoded by both with and
# without special tokens, and random id sequences decoded by both, for each
# tokenizer.json in ../shared. Prints one line per tokenizer and mode.
#   sh tools/tokenizer_parity/sweep.sh [build/emdpo] [N] [SEED]
# TOKENIZERS_NPM: the tokenizers package (default: installed into a temp dir).
set -eu
E=${1:-build/emdpo}
N=${2:-20000}
SEED=${3:-7}
S=${TOKENIZERS_DIR:-../shared/data/tokenizers}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
if [ -z "${TOKENIZERS_NPM:-}" ]; then
    (cd "$W" && npm install --silent tokenizers@0.23.2 >/dev/null 2>&1)
    TOKENIZERS_NPM="$W/node_modules/tokenizers"
fi
export TOKENIZERS_NPM
python3 - "$N" "$SEED" >"$W/strings.jsonl" <<'PY'
import json, random, sys
n, seed = int(sys.argv[1]), int(sys.argv[2])
random.seed(seed)
pools = ["abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789",
         " \t\n\r\u00a0\u2000\u3000\u0085\u2028", "'sS'tT're've'm'll'd\u2019",
         ".,;:!?-_()[]{}<>/\\|@#$%^&*+=~`\"", "éèêëàâäôöûüçñßøåæœ", "αβγδεζηθλμπσςωΑΣΩ",
         "абвгдежзийклмнопрстуфхцчшщыэюяАБВ", "אבגדהוזחטיכלמנסעפצקרשת", "مرحبا بالعالم",
         "日本語中文字漢字의한국어ひらがなカタカナ", "ทดสอบภาษาไทย", "हिन्दीभाषा",
         "😀😃😄👍🏽👨‍👩‍👧‍👦🇫🇷🏳️‍🌈1️⃣", "\u0301\u0308\u0327\u20dd", "ﬁﬂＡＢＣ１２３²³½", "▁ĠĊ"]
specials = ["<s>", "</s>", "<unk>", "<|begin_of_text|>", "<|eot_id|>", "<|im_start|>", "<|im_end|>",
            "<|endoftext|>", "<think>", "</think>"]
for _ in range(n):
    s = []
    for _ in range(random.randint(0, 40)):
        r = random.random()
        if r < 0.03:
            s.append(random.choice(specials))
        elif r < 0.1:
            s.append(" " * random.randint(1, 5))
        else:
            p = random.choice(pools)
            s.append("".join(random.choice(p) for _ in range(random.randint(1, 6))))
    print(json.dumps("".join(s), ensure_ascii=False))
PY
cat >"$W/decode.js" <<'JS'
const { Tokenizer } = require(process.env.TOKENIZERS_NPM);
const fs = require('fs');
(async () => {
  const tok = Tokenizer.fromFile(process.argv[2]);
  const lines = fs.readFileSync(0, 'utf8').split('\n').filter((l) => l.length).map((l) => JSON.parse(l));
  const out = [];
  for (const ids of lines) out.push(JSON.stringify(await tok.decode(ids, false)));
  fs.writeSync(1, out.join('\n') + '\n');
})();
JS
for tk in llama2 llama3 qwen3 mistral gpt2-hf; do
    J="$S/$tk/tokenizer.json"
    [ -f "$J" ] || continue
    for sp in "" --special; do
        "$E" tokenize --tokenizer "$S/$tk" $sp <"$W/strings.jsonl" >"$W/e"
        node bench/tokenize_hf.js "$J" $sp <"$W/strings.jsonl" >"$W/h"
        if cmp -s "$W/e" "$W/h"; then r=identical; else r="DIFFER in $(diff "$W/e" "$W/h" | grep -c '^<') lines"; fi
        echo "$tk encode${sp:+ $sp}: $N strings, $r"
    done
    python3 - "$J" "$SEED" >"$W/ids.jsonl" <<'PY'
import json, random, sys
j = json.load(open(sys.argv[1]))
V = max(max(j["model"]["vocab"].values()), max([a["id"] for a in j["added_tokens"]] or [0])) + 1
random.seed(int(sys.argv[2]))
for _ in range(3000):
    print(json.dumps([random.choice([random.randrange(V), random.randrange(min(V, 600)), random.randrange(259)])
                      for _ in range(random.randint(0, 30))]))
PY
    "$E" tokenize --tokenizer "$S/$tk" --decode <"$W/ids.jsonl" >"$W/e"
    node "$W/decode.js" "$J" <"$W/ids.jsonl" >"$W/h"
    python3 - "$W/e" "$W/h" "$tk" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
bad = sum(x != y for x, y in zip(a, b)) + abs(len(a) - len(b))
print(f"{sys.argv[3]} decode: {len(b)} id sequences, {'identical' if not bad else f'DIFFER in {bad}'}")
PY
done
