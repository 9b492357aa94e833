#!/bin/sh
# The public headers compile on their own, in any order, as C99, C11 and
# C++ (when a C++ compiler is installed), warning-free under -Wall -Wextra
# -pedantic, and declare nothing but emdpo_/EMDPO_ names.
cd "$(dirname "$0")/.." || exit 2
CC=${CC:-cc}
. tests/lib_cli.sh
for h in emdpo.h emdpo/common.h emdpo/data.h emdpo/em.h emdpo/loglinear.h emdpo/fitfile.h emdpo/lm.h emdpo/mmra.h \
    emdpo/report.h emdpo/experimental.h; do
    printf '#include <%s>\n#include <%s>\nint main(void) { return 0; }\n' "$h" "$h" >"$T/one.c"
    for std in c99 c11; do
        check_run "$h alone (and twice) as $std" $CC -std=$std -pedantic -Wall -Wextra -Werror -Iinclude -c "$T/one.c" -o "$T/one.o"
    done
done
printf '#include <emdpo/experimental.h>\n#include <emdpo.h>\n#include <stdio.h>\nint main(void) { printf("%%s\\n", emdpo_version()); return 0; }\n' >"$T/all.c"
check_run "all headers as C99" $CC -std=c99 -pedantic -Wall -Wextra -Werror -Iinclude -c "$T/all.c" -o "$T/all.o"
if command -v c++ >/dev/null 2>&1; then
    cp "$T/all.c" "$T/all.cc"
    check_run "all headers as C++11" c++ -std=c++11 -pedantic -Wall -Wextra -Werror -Iinclude -c "$T/all.cc" -o "$T/allcc.o"
else
    echo "note: no C++ compiler; the C++ check is skipped"
fi
# Every name a header defines at file scope: functions, types, macros.
names=$(cat include/emdpo.h include/emdpo/*.h | sed 's|/\*.*\*/||' |
    sed -n -e 's/^#define \([A-Za-z_][A-Za-z0-9_]*\).*/\1/p' -e 's/^typedef .*[ *]\([A-Za-z_][A-Za-z0-9_]*\);$/\1/p' \
        -e 's/^} \([A-Za-z_][A-Za-z0-9_]*\);$/\1/p' -e 's/^EMDPO_API [^(]*[ *]\([A-Za-z_][A-Za-z0-9_]*\)(.*/\1/p' | sort -u)
for n in $names; do
    case $n in
    emdpo_* | EMDPO_*) ok ;;
    *) fail=$((fail + 1)); echo "FAIL: a public header defines $n" ;;
    esac
done
finish build_headers
