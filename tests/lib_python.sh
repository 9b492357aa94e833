# Sourced by the tests that load the library into Python: LIB (the shared
# object just built), PY (Debian's python3), and py_require NAME MODULE...,
# which ends the test as skipped (its closing line, exit 0) when there is no
# library, on sanitizer builds (an ASan library cannot be loaded into a
# plain interpreter) or when PY lacks one of the modules.
B=${BUILD:-build}
LIB=$( (cd "$B" 2>/dev/null && pwd) || echo "$B")/libemdpo.so.0
PY=${PYTHON:-/usr/bin/python3}
[ -x "$PY" ] || PY=python3
py_skip() {
    echo "$1: skipped: $2"
    echo "$1: 0 passed, 0 failed"
    exit 0
}
py_require() {
    name=$1
    shift
    [ -f "$LIB" ] || py_skip "$name" "no $LIB"
    nm -D "$LIB" 2>/dev/null | grep -q __asan && py_skip "$name" "sanitizer build"
    for m in "$@"; do
        "$PY" -c "import $m" 2>/dev/null || py_skip "$name" "$PY lacks $m"
    done
}
