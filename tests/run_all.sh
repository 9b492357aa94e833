#!/bin/sh
# Runs each test binary given as an argument, each tests/cli_*.sh script (the
# CLI), each tests/build_*.sh script (headers, install, API coverage) and
# the layering check (tools/check_layers.sh on $BUILD), then prints one
# closing line "N passed, N failed" over all of them.
passed=0
failed=0
broken=""
tally() { # $1 = name, $2 = output file, $3 = exit code
    line=$(grep -E '^[A-Za-z0-9_.-]+: [0-9]+ passed, [0-9]+ failed' "$2" | tail -n 1)
    if [ -z "$line" ]; then
        failed=$((failed + 1)); broken="$broken $1"
        cat "$2"
        return
    fi
    p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    passed=$((passed + p)); failed=$((failed + f))
    echo "$line"
    if [ "$3" -ne 0 ] && [ "$f" -eq 0 ]; then failed=$((failed + 1)); broken="$broken $1"; fi
    if [ "$f" -ne 0 ] || [ "$3" -ne 0 ]; then cat "$2"; fi
}
out=$(mktemp)
for t in "$@"; do
    "$t" >"$out" 2>&1; rc=$?
    tally "$t" "$out" $rc
done
for s in tests/cli_*.sh tests/build_*.sh; do
    [ -f "$s" ] || continue
    sh "$s" "${EMDPO:-build/emdpo}" >"$out" 2>&1; rc=$?
    tally "$s" "$out" $rc
done
sh tools/check_layers.sh "${BUILD:-build}" >"$out" 2>&1; rc=$?
tally layers "$out" $rc
rm -f "$out"
[ -n "$broken" ] && echo "broken:$broken"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
