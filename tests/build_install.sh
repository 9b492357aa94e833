#!/bin/sh
# `make install` into a scratch prefix, then what a user does with it: the
# files are where pkg-config says, the shared object exports emdpo_ names
# only under its soname, the examples build against the installed headers
# and library (shared and static) and run, and `make uninstall` removes
# everything it installed. Uses the build in $BUILD (default build/).
cd "$(dirname "$0")/.." || exit 2
BUILD=${BUILD:-build}
CC=${CC:-cc}
. tests/lib_cli.sh
P=$T/prefix # never empty: make install with an empty PREFIX writes to /
check_run "make install" make -s install BUILD="$BUILD" PREFIX="$P"
[ "$fail" -eq 0 ] || { finish build_install; exit; }
V=$(sed -n 's/^VERSION := //p' Makefile)
for f in lib/libemdpo.a "lib/libemdpo.so.$V" lib/libemdpo.so.0 lib/libemdpo.so include/emdpo.h include/emdpo/lm.h \
    include/emdpo/experimental.h lib/pkgconfig/emdpo.pc bin/emdpo share/man/man1/emdpo.1; do
    check_run "installed $f" test -e "$P/$f"
done
check_run "the headers' version is the Makefile's" grep -q "EMDPO_VERSION_STRING \"$V\"" "$P/include/emdpo/common.h"
check_run "emdpo --version" sh -c "'$P/bin/emdpo' --version | grep -qx 'emdpo $V'"
check_run "soname libemdpo.so.0" sh -c "readelf -d '$P/lib/libemdpo.so.$V' | grep -q 'SONAME.*\\[libemdpo.so.0\\]'"
nm -D --defined-only "$P/lib/libemdpo.so.$V" | awk '$2 ~ /^[TDBRV]$/ { print $3 }' >"$T/exports"
check_run "it exports functions" test "$(wc -l <"$T/exports")" -gt 200
check_run "it exports emdpo_ names only" sh -c "! grep -v '^emdpo_' '$T/exports'"
check_run "the man page reads" sh -c "! command -v man >/dev/null || MANWIDTH=80 man -l '$P/share/man/man1/emdpo.1' | grep -q EM-DPO"

if command -v pkg-config >/dev/null 2>&1; then
    export PKG_CONFIG_PATH="$P/lib/pkgconfig"
    check_run "pkg-config version" sh -c "pkg-config --modversion emdpo | grep -qx '$V'"
    CF=$(pkg-config --cflags emdpo)
    LIBS=$(pkg-config --libs emdpo)
    STATIC=$(pkg-config --static --libs-only-l emdpo | sed 's/-lemdpo//')
else
    echo "note: pkg-config is not installed; flags taken from the prefix"
    CF="-I$P/include"
    LIBS="-L$P/lib -lemdpo"
    STATIC="-lopenblas -lpcre2-8 -lutf8proc -lz -lgomp -lm -lpthread"
fi
# $CFLAGS carries the sanitizers of a sanitizer build, which the library needs at link time.
check_run "fit_loglinear builds (shared)" $CC -std=c99 -Wall -Wextra -Werror $CFLAGS $CF examples/fit_loglinear.c $LIBS -lm \
    -o "$T/fit_loglinear"
check_run "fit_loglinear runs" env LD_LIBRARY_PATH="$P/lib" "$T/fit_loglinear" "$T/fit"
check_run "fit_loglinear finds both types" sh -c "env LD_LIBRARY_PATH='$P/lib' '$T/fit_loglinear' '$T/fit2' |
    awk '/^type/ { n++; if (\$6 * \$8 < 0) ok++ } END { exit !(n == 2 && ok == 2) }'"
check_run "fit_loglinear builds (static)" $CC -std=c99 -Wall -Wextra -Werror $CFLAGS $CF examples/fit_loglinear.c \
    "$P/lib/libemdpo.a" $STATIC -o "$T/fit_static"
check_run "the static build runs without the shared object" "$T/fit_static" "$T/fit3"
check_run "static and shared give the same fit" cmp "$T/fit2/posterior.csv" "$T/fit3/posterior.csv"

# A checkpoint to score: a tokenizer and a fresh model trained two steps.
printf '{"prompt": "Pick one", "chosen": "a calm walk", "rejected": "a loud party"}\n{"prompt": "Pick one", "chosen": "tea", "rejected": ["coffee", "water"]}\n' >"$T/prefs.jsonl"
check_run "a tokenizer" "$P/bin/emdpo" tokenizer --data "$T/prefs.jsonl" --out "$T/tok.bin" --vocab 270 --min-count 1 --up-to
N=$(sed -n 's/^wrote .*: \([0-9]*\) entries.*/\1/p' "$T/out")
check_run "a model" "$P/bin/emdpo" sft --data "$T/prefs.jsonl" --tokenizer "$T/tok.bin" --config "dim=16,layers=1,heads=2,vocab=$N,seq_len=64" \
    --steps 2 --out "$T/model" --quiet
check_run "score_llama builds" $CC -std=c99 -Wall -Wextra -Werror $CFLAGS $CF examples/score_llama.c $LIBS -o "$T/score_llama"
check_run "score_llama runs" env LD_LIBRARY_PATH="$P/lib" "$T/score_llama" "$T/model" "$T/tok.bin" "$T/prefs.jsonl"
cp "$T/out" "$T/scores"
check_run "it scores five responses" test "$(grep -c '^example' "$T/scores")" -eq 5
"$P/bin/emdpo" score --model "$T/model" --tokenizer "$T/tok.bin" --data "$T/prefs.jsonl" >"$T/cli.csv" 2>/dev/null
check_run "as emdpo score does" sh -c "awk -F, 'NR > 1 { printf \"%.6f\\n\", \$5 }' '$T/cli.csv' >'$T/a' &&
    sed -n 's/.*logp \\(.*\\)/\\1/p' '$T/scores' >'$T/b' && cmp '$T/a' '$T/b'"

check_run "make uninstall" make -s uninstall BUILD="$BUILD" PREFIX="$P"
check_run "nothing left" sh -c "test -z \"\$(find '$P' -type f -o -type l)\""
finish build_install
