# Helpers for the CLI shell tests (sourced). Each test script prints one
# closing line "NAME: N passed, M failed" and exits non-zero on failure.
pass=0
fail=0
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

ok() { pass=$((pass + 1)); }
bad() {
    fail=$((fail + 1))
    echo "FAIL: $*"
}

# expect_exit CODE NAME PATTERN CMD...: CMD exits with CODE and its stderr
# contains PATTERN (a fixed string; empty matches anything).
expect_exit() {
    code=$1 name=$2 pat=$3
    shift 3
    "$@" >"$T/stdout" 2>"$T/stderr"
    rc=$?
    if [ "$rc" -ne "$code" ]; then
        bad "$name: exit $rc, expected $code"
        sed 's/^/    /' "$T/stderr"
    elif [ -n "$pat" ] && ! grep -qF -- "$pat" "$T/stderr"; then
        bad "$name: stderr lacks '$pat'"
        sed 's/^/    /' "$T/stderr"
    else
        ok
    fi
}

check() { # NAME CONDITION-COMMAND...
    name=$1
    shift
    if "$@"; then ok; else bad "$name"; fi
}

finish() {
    echo "$1: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
}
