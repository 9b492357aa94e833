#!/bin/sh
# Regenerate tests/fixtures/tokenizer_parity/* (and synthetic/) with the official Hugging Face
# tokenizers (npm package, native bindings), pinned below.
#   tools/tokenizer_parity/regenerate.sh [TOKENIZERS_DIR]
# TOKENIZERS_DIR defaults to $TOKENIZERS_DIR, else <repo>/../shared/data/tokenizers.
# Set NOTES=1 to also print the experiments behind NOTES.md.
set -eu
VERSION=0.23.2
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tokdir=${1:-${TOKENIZERS_DIR:-$root/../shared/data/tokenizers}}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tok-npm.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
(cd "$tmp" && npm init -y >/dev/null && npm install --no-audit --no-fund "tokenizers@$VERSION" >/dev/null)
got=$(node -p "require('$tmp/node_modules/tokenizers/package.json').version")
[ "$got" = "$VERSION" ] || { echo "regenerate.sh: got tokenizers $got, want $VERSION" >&2; exit 1; }
python3 "$here/make_strings.py" "$root/tests/fixtures/tokenizer_parity/strings.jsonl"
NODE_PATH="$tmp/node_modules" node "$here/expected.js" "$tokdir" "$root/tests/fixtures/tokenizer_parity"
# synthetic tokenizers (normalizers, pre-tokenizers, decoders, added-token flags, post-processors, BPE options)
NODE_PATH="$tmp/node_modules" node "$here/synthetic.js" "$root/tests/fixtures/tokenizer_parity"
if [ "${NOTES:-0}" = 1 ]; then
  NODE_PATH="$tmp/node_modules" node "$here/notes_experiments.js" "$tokdir"
fi
ls -l "$root/tests/fixtures/tokenizer_parity"
