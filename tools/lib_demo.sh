# Helpers for the demo scripts (sourced after they cd into their run
# directory): timed stages and side-by-side lanes. The caller sets DEMO to
# its name for error messages.
export OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=passive

start=$(date +%s)
: >timings.txt
# stage NAME CMD...: runs CMD with its output in NAME.log and appends its
# seconds to timings.txt (lanes run in subshells, so a file collects them).
stage() {
    name=$1
    shift
    t0=$(date +%s)
    if ! "$@" >"$name.log" 2>&1; then
        echo "$DEMO: stage $name failed; its log:" >&2
        cat "$name.log" >&2
        return 1
    fi
    t=$(($(date +%s) - t0))
    echo "{\"stage\": \"$name\", \"seconds\": $t}" >>timings.txt
    printf '  %-10s %4d s   (at %d s)\n' "$name" "$t" "$(($(date +%s) - start))"
}
# lanes "A B" "C D": the functions of each quoted list run in order, the
# lists side by side; fails when any stage failed.
lanes() {
    pids=""
    for l in "$@"; do
        (for f in $l; do $f || exit 1; done) &
        pids="$pids $!"
    done
    ok=1
    for p in $pids; do wait "$p" || ok=0; done
    [ $ok -eq 1 ]
}
