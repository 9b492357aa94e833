#!/bin/sh
# emdpo report on a hand-made run directory: exit 0, a well-formed page
# (every element closed and nested, checked by the awk below), each
# section's numbers, escaping, natural group order, NaN shown as "–",
# missing sections tolerated, malformed files exit 2 naming the file and
# leave no page. With chromium on the PATH, the page is also parsed as
# XHTML by the browser and rendered to a PNG (EMDPO_REPORT_PNG=FILE keeps
# the screenshot); without it those checks are skipped.
E=${1:-build/emdpo}
. tests/lib_cli.sh

# xhtml_ok FILE: elements closed and nested, one root, attributes
# double-quoted, every & an entity reference, no raw < or > in text.
xhtml_ok() {
    awk '
    function fail(msg) { if (err == "") err = msg " (tag " NR - 1 ")" }
    function entities(s) {
        gsub(/&(#[0-9]+|#x[0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);/, "", s)
        if (index(s, "&")) fail("bare &")
    }
    BEGIN { RS = "<" }
    NR == 1 { if ($0 != "") fail("text before the first tag"); next }
    {
        gt = index($0, ">")
        if (gt == 0) { fail("unterminated tag <" substr($0, 1, 30)); next }
        tag = substr($0, 1, gt - 1)
        text = substr($0, gt + 1)
        if (index(text, ">")) fail("raw > in text after <" tag ">")
        entities(text)
        if (tag ~ /^!DOCTYPE html$/) { if (NR != 2) fail("DOCTYPE not first"); next }
        if (tag ~ /^\//) {
            name = substr(tag, 2)
            if (depth == 0 || stack[depth] != name) fail("</" name "> closes <" stack[depth] ">")
            else depth--
            next
        }
        self = sub(/\/$/, "", tag)
        if (!match(tag, /^[A-Za-z][A-Za-z0-9]*/)) { fail("bad tag <" tag ">"); next }
        name = substr(tag, 1, RLENGTH)
        rest = substr(tag, RLENGTH + 1)
        while (match(rest, /^[ \t\n]+[A-Za-z_:][-A-Za-z0-9_:.]*="[^"<>]*"/)) {
            entities(substr(rest, 1, RLENGTH))
            rest = substr(rest, RLENGTH + 1)
        }
        if (rest !~ /^[ \t\n]*$/) fail("bad attributes in <" name ">: " rest)
        if (depth == 0 && roots++) fail("a second root element <" name ">")
        if (!self) stack[++depth] = name
    }
    END {
        if (err == "" && depth) err = "<" stack[depth] "> never closed"
        if (err == "" && !roots) err = "no element"
        if (err != "") { print FILENAME ": " err; exit 1 }
    }' "$1"
}

# The checker itself must reject what it is there to catch.
printf '<!DOCTYPE html>\n<html><p>a<br/>b &amp; c &#8211;</p><p x="1"/></html>\n' >"$T/good.html"
check "checker accepts well-formed markup" xhtml_ok "$T/good.html"
for markup in '<html><p><b>x</p></b></html>' '<html><p>a<br>b</p></html>' '<html><p a=b>x</p></html>' \
    '<html><p>a & b</p></html>' '<html><p>x</p>' '<html></html><html></html>' '<html><p>1 > 0</p></html>'; do
    printf '%s\n' "$markup" >"$T/bad.html"
    if xhtml_ok "$T/bad.html" >/dev/null; then bad "checker accepted $markup"; else ok; fi
done

# ---- a run directory by hand ----
R="$T/run"
mkdir -p "$R/em_tern" "$R/em_bin" "$R/notafit"
cat >"$R/run.json" <<'EOF'
{"title": "Demo <run> & \"co\"", "command": "tools/demo_lm.sh --steps 60",
 "config": {"annotators": 600, "lr": 0.001, "policy": "llama", "items": [2, 3], "extra": {"a": null}},
 "timings": [{"stage": "sft", "seconds": 12.3}, {"stage": "em_tern", "seconds": 221.05},
             {"stage": "skipped", "seconds": null}],
 "total_seconds": 240.5}
EOF
row() { printf '{"annotator": %s, "group": %s, "chosen": {"features": [1, 0]}, "rejected": [{"features": [0, 1]}]}\n' "$1" "$2"; }
{
    row '"a1"' '"<P1&>"'
    row '"a2"' '"<P1&>"'
    row '"a3"' '"P2"'
    row '"a4"' '"P2"'
    row 7 '"P10"'
    row '"c,1"' '"P10"'
    row '"a9"' null
} >"$R/data.jsonl"
cat >"$R/em_tern/fit.json" <<'EOF'
{"family": "llama", "k": 2, "eta": [0.55, 0.45], "iterations": 3, "converged": false,
 "loglik": -629.66680733, "loglik_trace": [-710.25, -670.5, null, -629.66680733],
 "elapsed_s": 221.05, "data": "../data.jsonl"}
EOF
printf 'annotator,gamma_1,gamma_2\na1,0.9,0.1\na2,0.7,0.3\na3,0.2,0.8\na4,0.4,0.6\n7,0.05,0.95\n"c,1",0.15,0.85\na9,0.5,0.5\nzz,0.5,0.5\n' \
    >"$R/em_tern/posterior.csv"
cat >"$R/em_bin/fit.json" <<'EOF'
{"family": "loglinear", "k": 2, "eta": [0.5, 0.5], "iterations": 2, "converged": true,
 "loglik": -18.0, "loglik_trace": [-20.5, -18.25, -18.0], "elapsed_s": 0.4, "data": "/nonexistent/emdpo/x.jsonl"}
EOF
printf 'annotator,gamma_1,gamma_2\na1,0.5,0.5\n' >"$R/em_bin/posterior.csv"
printf '{"k": 2}\n' >"$R/notafit/fit.json"
cat >"$R/table1.json" <<'EOF'
{"beta": 0.1, "groups": ["P2", "<P1&>"], "decisions": [40, 60],
 "methods": [
  {"name": "em_tern", "dir": "x", "policies": ["type_1", "type_2"], "max_mean_margin": [0.4321, 0.1234],
   "accuracy": [0.61, 0.55], "best": ["type_1", "type_2"],
   "policy_margin": [[0.4321, 0.1], [0.2, 0.1234]], "policy_accuracy": [[0.61, 0.5], [0.4, 0.55]]},
  {"name": "vanilla", "dir": "y", "policies": ["type_1"], "max_mean_margin": [-0.0397, null],
   "accuracy": [0.62, 0.5], "best": ["type_1", null], "policy_margin": [[-0.0397, null]],
   "policy_accuracy": [[0.62, 0.5]]}],
 "ari": 0.5, "ari_annotators": 100,
 "generation": {"samples_per_prompt": 5, "prompts": 40, "max_tokens": 64, "temperature": 1, "rep_n": 4,
  "seed": 1, "closed_set": 10, "policies": [
  {"name": "reference", "n": 200, "valid": 0.985, "valid_se": 0.009, "mean_tokens": 6.56, "mean_words": 6.5,
   "repetition": 0, "eos": 1, "kl": 0, "kl_se": 0},
  {"name": "em<tern>/type_1", "n": 200, "valid": null, "valid_se": null, "mean_tokens": 7.25, "mean_words": 7,
   "repetition": 0.125, "eos": 0.5, "kl": 0.326, "kl_se": 0.064}]}}
EOF
cat >"$R/table3_exact.json" <<'EOF'
{"beta": 0.1, "estimator": "exact", "types": ["type_1", "type_2"], "policies": [
  {"name": "mmra_ae", "path": "em_tern/mixture.json", "regret": [0.1, 0.2], "se": null, "max_regret": 0.2}]}
EOF
cat >"$R/table3.json" <<'EOF'
{"beta": 0.1, "estimator": "sampled", "types": ["type_1", "type_2"], "policies": [
  {"name": "mmra_ae", "path": "em_tern/mixture.json", "regret": [0.12, 0.25], "se": [0.01, 0.02], "max_regret": 0.25},
  {"name": "uniform", "path": "u", "regret": [0.5, 0.0], "se": null, "max_regret": 0.5},
  {"name": "vanilla", "path": "v", "regret": [null, 0.3], "se": null, "max_regret": null}]}
EOF
cat >"$R/select.json" <<'EOF'
{"rows": [
  {"k": 1, "loglik": -100.5, "aic": 203.0, "bic": 205.1, "icl": 205.1, "heldout_loglik_per_annotator": -1.25},
  {"k": 2, "loglik": -90.0, "aic": 188.0, "bic": 190.4, "icl": 192.0, "heldout_loglik_per_annotator": -1.1},
  {"k": 3, "loglik": -89.5, "aic": 191.0, "bic": 195.7, "icl": 199.0, "heldout_loglik_per_annotator": -1.12}],
 "best_k_bic": 2, "best_k_heldout": 2}
EOF

expect_exit 0 "report" "" "$E" report "$R"
P="$R/report.html"
check "default output RUN_DIR/report.html" test -s "$P"
check "prints the page's path" grep -qxF "$P" "$T/stdout"
check "well-formed" xhtml_ok "$P"
has() { grep -qF -- "$1" "$P"; }
lacks() { ! grep -qF -- "$1" "$P"; }
check "no script" lacks "<script"
check "no network reference" sh -c "! grep -o 'https\\?://[^\"]*' '$P' | grep -v -e '^http://www.w3.org/2000/svg\$' -e '^http://www.w3.org/1999/xhtml\$'"
check "title from run.json, escaped" has "<title>Demo &lt;run&gt; &amp; &quot;co&quot;</title>"
check "command" has "tools/demo_lm.sh --steps 60"
check "config number" has "<td class=\"text\">0.001</td>"
check "config array" has "<td class=\"text\">[2, 3]</td>"
check "generation quality table" has "<h3>Generation quality</h3>"
check "generation row, escaped" has "<th scope=\"row\">em&lt;tern&gt;/type_1</th><td>–</td><td>7.25</td>"
check "generation value with its error" has "<td>0.985 &#177; 0.009</td>"
check "Table 3 under the option-set estimator" has "Table 3, restricted to each decision"
check "config object" has "{&quot;a&quot;: null}"
check "timing bar label" has ">12.3 s</text>"
check "null timing shows a dash" has ">–</text>"
check "total time" has "Total: 240.5 s."
check "both fits listed" sh -c "grep -qF '>em_bin</th>' '$P' && grep -qF '>em_tern</th>' '$P'"
check "a fit.json without a trace is not a fit" lacks "notafit"
check "final log-likelihood" has "<td>-629.67</td>"
check "eta" has "<td>0.550, 0.450</td>"
check "elapsed" has "<td>221.1</td>"
check "trace chart has a line per fit" test "$(sed -n '/id="chart2-t"/,/<\/svg>/p' "$P" | grep -c '<path fill="none"')" -eq 2
check "null in a trace breaks the line" grep -q 'd="M[0-9. ]*L[0-9. ]*M[0-9. ]*"' "$P"
check "heat map: <P1&> mean gamma_1 (0.9 + 0.7) / 2" has ">0.80</text>"
check "heat map: P2 mean gamma_2 (0.8 + 0.6) / 2" has ">0.70</text>"
check "heat map: integer and quoted annotator ids join" has ">0.90</text>"
check "heat map: group sizes" has "P2 (n = 2)"
check "join counts" has "(6 joined; 1 not in the training data; 1 without a group)"
p2=$(grep -n 'P2 (n = 2)</text>' "$P" | head -n 1 | cut -d: -f1)
p10=$(grep -n 'P10 (n = 2)</text>' "$P" | head -n 1 | cut -d: -f1)
check "groups in natural order: P2 before P10" test "${p2:-0}" -gt 0 -a "${p10:-0}" -gt "${p2:-0}"
check "missing training data is a note" has "The training data /nonexistent/emdpo/x.jsonl is missing"
check "group name escaped" has "&lt;P1&amp;&gt;"
check "group name never raw" lacks "<P1&>"
check "table 1 margin, best in bold" has "<strong>0.4321</strong>"
check "table 1 negative margin" has "<td>-0.0397</td>"
check "table 1 best accuracy in bold" has "<td><strong>0.6200</strong></td>"
check "table 1 null margin is a dash" has "<td>–</td>"
check "table 1 best policies" has "<td>type_2</td>"
check "table 1 beta and decisions" has "β = 0.1. Decisions per group: &lt;P1&amp;&gt; 60, P2 40."
check "table 1 ARI" has "groups: 0.5000 (100 annotators)."
check "margins chart" has "<title id=\"chart4-t\">Max-mean reward margin by true group</title>"
check "table 3 regret with se" has "<td>0.1200 &#177; 0.0100</td>"
check "table 3 smallest max regret in bold" has "<td class=\"sep\"><strong>0.2500</strong></td>"
check "table 3 other max regret plain" has "<td class=\"sep\">0.5000</td>"
check "table 3 chart value label" has ">0.500</text>"
check "table 3 chart: a null max regret is labelled" test "$(sed -n '/id="chart5-t"/,/<\/svg>/p' "$P" | grep -c '>–</text>')" -eq 1
check "select: best BIC in bold" has "<strong>190.4</strong>"
check "select: marker" has ">best K by BIC = 2</text>"
check "table 2 missing is a note" has "table2.json: not in this run."
check "eight charts" test "$(grep -c '^<svg ' "$P")" -eq 8
check "every chart titled" test "$(grep -c '<title id="chart[0-9]*-t">' "$P")" -eq 8

expect_exit 0 "--title and --out" "" "$E" report "$R" --out "$T/other.html" --title "Mine & yours"
check "--title" grep -qF "<h1>Mine &amp; yours</h1>" "$T/other.html"

# The LM form of select.json.
L="$T/lm"
mkdir -p "$L"
printf '{"criterion": "cross-fitted validation reward margin", "rows": [{"k": 1, "value": 0.5, "crossfit": 0.375}, {"k": 2, "value": 0.75, "crossfit": 0.625}, {"k": 3, "value": 1.25, "crossfit": null}], "best_k": 2}\n' \
    >"$L/select.json"
expect_exit 0 "LM select.json" "" "$E" report "$L"
check "LM select: curve" grep -qF ">best K = 2</text>" "$L/report.html"
check "LM select: both margins" grep -qF "cross-fitted validation reward margin</th>" "$L/report.html"
check "LM select: best value of the criterion in bold" grep -qF "<strong>0.625</strong>" "$L/report.html"
check "LM select: the other column's K = 2 not in bold" grep -qF "<td>0.75</td>" "$L/report.html"
check "LM select: null value is a dash" grep -qF "<td>–</td>" "$L/report.html"
check "LM run well-formed" xhtml_ok "$L/report.html"

# Extreme and missing numbers: a dash or an exponent, never nan or inf in the drawing.
X="$T/extreme"
mkdir -p "$X"
printf '{"groups": ["a", "b"], "methods": [{"name": "m", "max_mean_margin": [1e308, -1e308], "accuracy": [null, 5e-324]}, {"name": "n", "max_mean_margin": [null, null], "accuracy": [null, null]}]}\n' \
    >"$X/table1.json"
printf '{"timings": [{"stage": "s", "seconds": 1e308}, {"stage": "t", "seconds": -1}]}\n' >"$X/run.json"
expect_exit 0 "extreme numbers" "" "$E" report "$X"
check "extreme numbers: no nan or inf" sh -c "! grep -Eqi '(^|[^a-z])(nan|inf)([^a-z]|\$)' '$X/report.html'"
check "extreme numbers: an exponent" grep -qF "<td><strong>1.000e+308</strong></td>" "$X/report.html"
check "extreme numbers well-formed" xhtml_ok "$X/report.html"

# Nothing but an empty directory: every section says it is missing.
mkdir -p "$T/empty"
expect_exit 0 "empty run directory" "" "$E" report "$T/empty"
check "six missing sections" test "$(grep -c 'not in this run' "$T/empty/report.html")" -eq 6
check "empty run well-formed" xhtml_ok "$T/empty/report.html"

# Malformed files: exit 2 naming the file in one message, and no page.
one_message() { check "$1: one message" test "$(wc -l <"$T/stderr")" -eq 1; }
B="$T/broken"
mkdir -p "$B"
printf '{"groups": ["a"],\n "methods": [\n' >"$B/table1.json"
expect_exit 2 "truncated table1.json" "table1.json:3:" "$E" report "$B"
one_message "truncated table1.json"
check "no page after an error" test ! -e "$B/report.html"
printf '{"groups": ["a", "b"], "methods": [{"name": "m", "max_mean_margin": [1], "accuracy": [1, 1]}]}\n' \
    >"$B/table1.json"
expect_exit 2 "table1.json: margins of the wrong length" "table1.json: \"methods[0].max_mean_margin\" has 1 entries, expected 2" \
    "$E" report "$B"
printf '{"groups": ["a"], "methods": [], "generation": {"policies": [{"name": "r", "valid": "high"}]}}\n' \
    >"$B/table1.json"
expect_exit 2 "table1.json: a string validity" "table1.json: \"generation.policies[0].valid\"" "$E" report "$B"
printf '{"types": ["t"], "policies": [{"name": "p", "regret": ["x"]}]}\n' >"$B/table3.json"
rm "$B/table1.json"
expect_exit 2 "table3.json: a string regret" "table3.json: \"policies[0].regret\"[0] must be a number" "$E" report "$B"
rm "$B/table3.json"
mkdir -p "$B/f"
cp "$R/em_tern/fit.json" "$B/f/fit.json"
cp "$R/data.jsonl" "$B/data.jsonl"
printf 'annotator,gamma_1,gamma_2\na1,0.9,0.1\na2,zero,1\n' >"$B/f/posterior.csv"
expect_exit 2 "posterior.csv: a bad number" "posterior.csv:3: gamma_1 is not a number" "$E" report "$B"
one_message "posterior.csv: a bad number"
printf 'annotator,gamma_1,gamma_2,gamma_3\n' >"$B/f/posterior.csv"
expect_exit 2 "posterior.csv: K disagrees with fit.json" "posterior.csv:1: 3 gamma columns, but fit.json has k = 2" \
    "$E" report "$B"
one_message "posterior.csv: K disagrees with fit.json"
printf '{"annotator": "a1", "chosen": {"features": [1]}, "rejected": [{"features": [0, 1]}]}\n' >"$B/data.jsonl"
expect_exit 2 "malformed training data" "data.jsonl:1:" "$E" report "$B"
one_message "malformed training data"
rm -r "$B/f"
printf '[1, 2]\n' >"$B/run.json"
expect_exit 2 "run.json not an object" "run.json: expected a JSON object" "$E" report "$B"
check "no page after errors" test ! -e "$B/report.html"
check "no temporary files left" test -z "$(find "$T" -name '*.tmp.*')"
expect_exit 2 "missing RUN_DIR" "missing RUN_DIR" "$E" report
expect_exit 2 "RUN_DIR not a directory" "not a directory" "$E" report "$T/nonexistent"

# ---- the browser ----
if command -v chromium >/dev/null 2>&1; then
    # One launch (each costs seconds): as .xhtml the page goes through the
    # browser's XML parser, which reports any well-formedness error as a
    # <parsererror> element in the DOM, and is rendered to a PNG.
    cp "$P" "$T/report.xhtml"
    timeout 120 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$T/chromium" --dump-dom \
        --screenshot="$T/x.png" --window-size=1200,3000 "file://$T/report.xhtml" >"$T/dom.html" 2>/dev/null
    check "browser: XML parse without errors" sh -c "test -s '$T/dom.html' && ! grep -q parsererror '$T/dom.html'"
    check "browser: every svg in the DOM" test "$(grep -o '<svg' "$T/dom.html" | wc -l)" -eq 8
    check "browser: svg text in the DOM" grep -q '<text [^>]*>best K by BIC = 2</text>' "$T/dom.html"
    check "browser: escaped group text in the DOM" grep -qF "&lt;P1&amp;&gt;" "$T/dom.html"
    check "browser: screenshot is a PNG" sh -c "head -c 4 '$T/x.png' | od -An -c | grep -q 'P   N   G'"
    check "browser: screenshot is not blank" test "$(wc -c <"$T/x.png" 2>/dev/null || echo 0)" -gt 60000
    if [ -n "${EMDPO_REPORT_PNG:-}" ]; then cp "$T/x.png" "$EMDPO_REPORT_PNG"; fi
else
    echo "note: chromium is not on the PATH; the browser checks are skipped"
fi

finish cli_report
