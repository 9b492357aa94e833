# Helpers for the shell tests (sourced). Each test script prints one
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

# check_run NAME CMD...: CMD succeeds; its output (in $T/out) is shown when
# it does not.
check_run() {
    name=$1
    shift
    if "$@" >"$T/out" 2>&1; then
        ok
    else
        bad "$name"
        sed 's/^/    /' "$T/out" | tail -20
    fi
}

# byte_tokenizer FILE: a llama2.c tokenizer.bin of <unk>, BOS, EOS and the 256
# byte pieces (vocabulary 259), for tiny models trained in the tests.
byte_tokenizer() {
    {
        printf '\020\000\000\000'
        printf '\000\000\000\000\005\000\000\000<unk>'
        printf '\000\000\000\000\005\000\000\000\n<s>\n'
        printf '\000\000\000\000\006\000\000\000\n</s>\n'
        b=0
        while [ $b -lt 256 ]; do
            printf '\000\000\000\000\006\000\000\000<0x%02X>' $b
            b=$((b + 1))
        done
    } >"$1"
}

finish() {
    echo "$1: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
}

# mpi_or_skip NAME: ends the test NAME as skipped unless $E is an MPI build
# and mpirun is here (as in `make test`); else sets MPIRUN. CI runs as
# root, which Open MPI refuses unless told.
mpi_or_skip() {
    if ! command -v mpirun >/dev/null 2>&1 || [ ! -x "$E" ] || ! ldd "$E" 2>/dev/null | grep -q libmpi; then
        echo "$1: skipped ($E is not an MPI build, or mpirun is missing)" >&2
        echo "$1: 0 passed, 0 failed"
        exit 0
    fi
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    MPIRUN="timeout 300 mpirun --oversubscribe"
}

# two_group_prefs FILE N PROMPT...: two groups of N annotators (A1..AN
# choose "yes" over "no", B1..BN the reverse) with one decision on each
# PROMPT, written to FILE.
two_group_prefs() {
    out=$1 n=$2
    shift 2
    for g in A B; do
        i=1
        while [ $i -le "$n" ]; do
            for p in "$@"; do
                if [ $g = A ]; then c=yes r=no; else c=no r=yes; fi
                printf '{"annotator": "%s%d", "group": "%s", "prompt": "%s", "chosen": "%s", "rejected": "%s"}\n' \
                    $g $i $g "$p" $c $r
            done
            i=$((i + 1))
        done
    done >"$out"
}
