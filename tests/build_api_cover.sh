#!/bin/sh
# Every EMDPO_API function of the public headers is one that
# tests/api/test_api_null.c calls (tools/gen_api_null_test.py writes it):
# a function added to a header without regenerating the test fails here.
cd "$(dirname "$0")/.." || exit 2
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
# Declarations may span lines: join each header, then split at ';'.
for h in include/emdpo/*.h; do tr '\n' ' ' <"$h" | tr ';' '\n'; done |
    grep 'EMDPO_API' | sed -n 's/.*\b\(emdpo_[a-z0-9_]*\) *(.*/\1/p' | sort -u >"$T/headers"
sed -n 's/^ \*   \(emdpo_[a-z0-9_]*\)$/\1/p' tests/api/test_api_null.c | sort -u >"$T/covered"
passed=0
failed=0
for f in $(comm -23 "$T/headers" "$T/covered"); do
    echo "FAIL: $f is public but tests/api/test_api_null.c does not call it (run tools/gen_api_null_test.py)"
    failed=$((failed + 1))
done
for f in $(comm -13 "$T/headers" "$T/covered"); do
    echo "FAIL: tests/api/test_api_null.c calls $f, which no public header declares"
    failed=$((failed + 1))
done
[ "$failed" -eq 0 ] && passed=$(wc -l <"$T/headers")
echo "build_api_cover: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
