#!/bin/sh
# Entry point of the README's commands: installs what the build needs
# (when root, on Debian), then runs `make TARGET`.
#   sh run.sh demo       build and run the main job on built-in data
#   sh run.sh test       build and run the test suite
#   sh run.sh sanitize   the tests under AddressSanitizer + UBSan
#   sh run.sh bench      benchmarks (see docs/BENCHMARKS.md)
# With no argument it runs the demo. One argument at most: anything more is
# refused before any work (`shift` with no argument is fatal under dash, so
# the count is checked instead).
set -eu
usage() {
    echo "usage: sh run.sh [TARGET]   TARGET: demo (default), demo-loglinear, demo-goqa, test, sanitize, bench, fuzz," >&2
    echo "                            fuzz-smoke, all, lib, install, uninstall, clean" >&2
}
if [ $# -gt 1 ]; then
    echo "run.sh: one target at most, got $#: $*" >&2
    usage
    exit 2
fi
target=${1:-demo}
case $target in
demo | demo-loglinear | demo-goqa | test | sanitize | bench | fuzz | fuzz-smoke | all | lib | install | uninstall | clean) ;;
-h | --help | help)
    usage
    exit 0
    ;;
*)
    echo "run.sh: unknown target '$target'" >&2
    usage
    exit 2
    ;;
esac

# Debian packages the build needs: a C compiler with OpenMP, make, OpenBLAS,
# PCRE2 (tokenizers' split regexes), utf8proc (Unicode normalization) and
# zlib (gzip-compressed data).
missing=""
command -v cc >/dev/null 2>&1 || missing="$missing gcc"
command -v make >/dev/null 2>&1 || missing="$missing make"
if command -v cc >/dev/null 2>&1 && ! printf '#include <omp.h>\nint main(void){return 0;}\n' |
    cc -fopenmp -x c - -o /dev/null >/dev/null 2>&1; then
    missing="$missing libgomp1 libc6-dev"
fi
if command -v cc >/dev/null 2>&1 && ! printf '#include <cblas.h>\nint main(void){return 0;}\n' |
    cc -x c - -lopenblas -o /dev/null >/dev/null 2>&1; then
    missing="$missing libopenblas-dev"
fi
if command -v cc >/dev/null 2>&1 && ! printf '#define PCRE2_CODE_UNIT_WIDTH 8\n#include <pcre2.h>\nint main(void){return 0;}\n' |
    cc -x c - -lpcre2-8 -o /dev/null >/dev/null 2>&1; then
    missing="$missing libpcre2-dev"
fi
if command -v cc >/dev/null 2>&1 && ! printf '#include <utf8proc.h>\nint main(void){return 0;}\n' |
    cc -x c - -lutf8proc -o /dev/null >/dev/null 2>&1; then
    missing="$missing libutf8proc-dev"
fi
if command -v cc >/dev/null 2>&1 && ! printf '#include <zlib.h>\nint main(void){return 0;}\n' |
    cc -x c - -lz -o /dev/null >/dev/null 2>&1; then
    missing="$missing zlib1g-dev"
fi
if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing:$missing" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential $missing >/dev/null
    else
        echo "missing Debian packages:$missing (as root: apt-get install build-essential$missing)" >&2
        exit 2
    fi
fi
jobs=$(nproc 2>/dev/null || echo 2)
exec make -j"$jobs" "$target"
