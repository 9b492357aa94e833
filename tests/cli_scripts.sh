#!/bin/sh
# run.sh under dash and bash: no argument runs the documented default (the
# demo), extra or unknown arguments are refused with a usage message and
# exit 2 before any work. A stand-in `make` on PATH records what run.sh
# would build instead of building it.
. tests/lib_cli.sh
mkdir -p "$T/bin"
printf '#!/bin/sh\necho "make $*" >>"%s/made"\n' "$T" >"$T/bin/make"
chmod +x "$T/bin/make"

for sh in dash bash; do
    if ! command -v $sh >/dev/null 2>&1; then
        echo "cli_scripts: $sh not installed, its cases skipped"
        continue
    fi
    rm -f "$T/made"
    check_run "$sh: no argument" env PATH="$T/bin:$PATH" $sh run.sh
    check "$sh: no argument runs the demo" grep -qx 'make -j[0-9]* demo' "$T/made"
    rm -f "$T/made"
    check_run "$sh: test" env PATH="$T/bin:$PATH" $sh run.sh test
    check "$sh: test runs make test" grep -qx 'make -j[0-9]* test' "$T/made"
    rm -f "$T/made"
    expect_exit 2 "$sh: demo extra" "one target at most, got 2: demo extra" env PATH="$T/bin:$PATH" $sh run.sh demo extra
    check "$sh: demo extra: usage" grep -q '^usage: sh run.sh' "$T/stderr"
    check "$sh: demo extra: nothing built" test ! -e "$T/made"
    expect_exit 2 "$sh: unknown target" "unknown target 'demoo'" env PATH="$T/bin:$PATH" $sh run.sh demoo
    check "$sh: unknown target: nothing built" test ! -e "$T/made"
    expect_exit 0 "$sh: --help" "usage: sh run.sh" env PATH="$T/bin:$PATH" $sh run.sh --help
done
finish cli_scripts
