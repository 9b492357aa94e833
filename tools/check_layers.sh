#!/bin/sh
# The layering check (docs/ARCHITECTURE.md): every #include "..." in src/
# and cli/ points to the same folder or to a folder its own folder may use,
# cli/ sees only the public headers (include/) and its own, the public
# headers see nothing of src/, and no circle runs through the modules (a
# module is x.c with x.h). With a build directory (the argument, default
# build/), the same rules hold for the calls between the library's objects,
# and no two of them call each other round a circle.
# Prints each violation and exits 1 when there is one; prints "layers: N
# passed, M failed" in the test suite's form.
cd "$(dirname "$0")/.." || exit 2

# folder: the folders it may include besides itself (bottom layer first).
rules='
base:
data: base
core: data base
loglinear: core data base
lm/engine: base
lm/io: lm/engine data base
lm: lm/io lm/engine core data base
lm/mmra: lm lm/io lm/engine core data base
experiments: loglinear core data base
fitfile: lm/mmra lm lm/io lm/engine loglinear core data base
drivers: fitfile lm/mmra lm lm/io lm/engine loglinear core data base
report: fitfile lm/mmra lm lm/io lm/engine loglinear core data base
'

obj=${1:-build}/obj
{
    find src cli include -name '*.[ch]' | sort | while read -r f; do
        grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" |
            sed "s|^\([0-9]*\):.*\"\(.*\)\".*|$f \1 \2|"
    done
    # Calls, from the built objects when there are any: a source file sees
    # every public prototype through "emdpo.h", so includes alone cannot
    # show that data/ calls up into lm/, nor that two files call each other.
    # Lines "SYM symbol folder module def|use" (a module: its path from src/
    # without .c).
    if [ -d "$obj" ]; then
        find src -name '*.c' | sort | while read -r c; do
            o=$obj/${c#src/}
            o=${o%.c}.o
            [ -f "$o" ] || continue
            m=${c#src/}
            m=${m%.c}
            d=${m%/*}
            nm "$o" | awk -v d="$d" -v m="$m" '
                $1 == "U" && $2 ~ /^emdpo_/ { print "SYM " $2 " " d " " m " use" }
                NF == 3 && $2 ~ /^[TDBR]$/ && $3 ~ /^emdpo_/ { print "SYM " $3 " " d " " m " def" }'
        done
    fi
} | awk -v rules="$rules" '
BEGIN {
    n = split(rules, lines, "\n")
    for (i = 1; i <= n; i++) {
        if (lines[i] == "") continue
        split(lines[i], kv, ":")
        known[kv[1]] = 1
        m = split(kv[2], deps, " ")
        for (j = 1; j <= m; j++) allowed[kv[1], deps[j]] = 1
    }
    bad = 0; good = 0
}
function folder(path,    d) {
    d = path
    sub(/\/[^\/]*$/, "", d)
    return d
}
function fail(msg) { print "layers: " msg; bad++ }
$1 == "SYM" {
    if ($5 == "def") { home[$2] = $3; home_mod[$2] = $4 }
    else { n_use++; use_sym[n_use] = $2; use_dir[n_use] = $3; use_mod[n_use] = $4 }
    next
}
{
    file = $1; line = $2; inc = $3
    from = folder(file)
    if (file ~ /^include\//) {
        if (inc ~ /^emdpo(\/|\.h$)/) good++
        else fail(file ":" line ": a public header includes \"" inc "\"")
        next
    }
    if (file ~ /^cli\//) {
        if (inc ~ /^emdpo(\/[a-z_]+)?\.h$/ || (inc !~ /\// && system("test -f cli/" inc) == 0)) good++
        else fail(file ":" line ": cli/ includes \"" inc "\"; it may use only the public headers and its own")
        next
    }
    # src/: the target is a path from src/, or the public umbrella
    if (inc ~ /^emdpo(\/[a-z_]+)?\.h$/) { good++; next }
    if (system("test -f src/" inc) != 0) { fail(file ":" line ": \"" inc "\" is not a path under src/"); next }
    to = folder("src/" inc)
    sub(/^src\//, "", from); sub(/^src\//, "", to)
    if (!(from in known)) { fail(file ": folder src/" from " has no place in the layers"); next }
    if (to == from || allowed[from, to]) good++
    else fail(file ":" line ": src/" from " may not include src/" inc " (a higher or sibling layer)")
    # module graph for the circle check: src/a/x.c and src/a/x.h are module a/x
    mf = file; sub(/^src\//, "", mf); sub(/\.[ch]$/, "", mf)
    mt = inc; sub(/\.[ch]$/, "", mt)
    if (mf != mt) { edge[mf] = edge[mf] " " mt; nodes[mf] = 1; nodes[mt] = 1 }
}
# Depth-first search of graph g (node -> its targets) from u; what kind of
# arrow (include, call) makes the circle goes into the message.
function visit(g, state, u, kind,    nb, m, i, v) {
    state[u] = 1
    m = split(g[u], nb, " ")
    for (i = 1; i <= m; i++) {
        v = nb[i]
        if (state[v] == 1) fail("a circle of " kind " through " u " and " v)
        else if (state[v] == 0) visit(g, state, v, kind)
    }
    state[u] = 2
}
END {
    for (i = 1; i <= n_use; i++) {
        from = use_dir[i]; to = home[use_sym[i]]
        if (to == "" || to == from || allowed[from, to]) good++
        else fail("src/" from " calls " use_sym[i] " of src/" to " (a higher or sibling layer)")
        # files, not headers, are the nodes of the call graph: one header may
        # serve several files
        mf = use_mod[i]; mt = home_mod[use_sym[i]]
        if (mt != "" && mf != mt && !seen_call[mf, mt]++) { cedge[mf] = cedge[mf] " " mt; cnodes[mf] = 1; cnodes[mt] = 1 }
    }
    for (u in nodes) state[u] = 0
    for (u in nodes) if (state[u] == 0) visit(edge, state, u, "includes")
    for (u in cnodes) cstate[u] = 0
    for (u in cnodes) if (cstate[u] == 0) visit(cedge, cstate, u, "calls")
    if (bad == 0) good++
    print "layers: " good " passed, " bad " failed"
    exit bad ? 1 : 0
}'
