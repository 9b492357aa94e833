#!/bin/sh
# The Python package (python/): installed as the README says (pip, offline,
# no build isolation, into a scratch --target), then its tests with pytest
# against the library and the CLI just built (among them the check of the
# package's ctypes struct mirrors against the C compiler's layout, which
# builds a C program with $CC). Skips cleanly without Debian's
# python3 with numpy, pip, setuptools and pytest, and on sanitizer builds
# (an ASan library cannot be loaded into a plain interpreter).
E=${1:-build/emdpo}
. tests/lib_cli.sh
. tests/lib_python.sh
py_require cli_python numpy pytest setuptools pip

# A copy, so that pip's build files stay out of the source tree.
cp -r python "$T/src"
check_run "pip install --target" "$PY" -m pip install --no-deps --no-build-isolation --no-index --quiet \
    --target "$T/site" "$T/src"
check "installed package" test -f "$T/site/emdpo/__init__.py"
PYTHONPATH="$T/site" EMDPO_LIBRARY="$LIB" EMDPO="$E" "$PY" -m pytest -q -p no:cacheprovider python/tests \
    >"$T/pytest.out" 2>&1
rc=$?
summary=$(tail -n 1 "$T/pytest.out")
np=$(echo "$summary" | sed -n 's/.* \([0-9][0-9]*\) passed.*/\1/p; s/^\([0-9][0-9]*\) passed.*/\1/p' | head -1)
nf=$(echo "$summary" | sed -n 's/.* \([0-9][0-9]*\) failed.*/\1/p; s/^\([0-9][0-9]*\) failed.*/\1/p' | head -1)
pass=$((pass + ${np:-0}))
fail=$((fail + ${nf:-0}))
if [ "$rc" -ne 0 ]; then
    [ -z "$nf" ] && fail=$((fail + 1))
    tail -n 40 "$T/pytest.out"
fi
echo "cli_python: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
