#!/bin/sh
# Distributed log-linear fits (an MPI build, `make MPI=1`, run by .ci/run as
# `sh tests/cli_mpi.sh build-mpi/emdpo`): mpirun -np 1, 2 and 3, each
# process fitting its share of the annotators (k-means, E-step, M-step and
# standard errors; posterior rows sent to rank 0), write the fit.json and
# posterior.csv of one plain process (the same bits: sums over annotators
# are exact and reduced by an integer all-reduce, whatever the number of
# processes), with standard errors, random starts, threads, processes with
# no annotators, and select (on shares too); bad input on one process ends the whole job with exit 2 and that
# process's message, within a timeout rather than hanging; commands that
# do not run distributed are refused. Skipped where mpirun is missing or
# the binary was built without MPI (as in `make test`).
E=${1:-build-mpi/emdpo}
. tests/lib_cli.sh

mpi_or_skip cli_mpi

# fit.json without its wall-clock time, which differs from run to run.
stripped() { grep -v '"elapsed_s"' "$1"; }
same_fit() { # DIR_A DIR_B
    stripped "$1/fit.json" >"$T/a.json" && stripped "$2/fit.json" >"$T/b.json" && cmp -s "$T/a.json" "$T/b.json" &&
        cmp -s "$1/posterior.csv" "$2/posterior.csv"
}

# 5000 annotators: 5 runs of 1024, so np 2 and 3 split them unevenly; 700
# annotators: one run, so np 2 and 3 leave processes with nothing to do.
"$E" simulate --out "$T/d.csv" --annotators 5000 --decisions 4 --items 3 --seed 3 >/dev/null
"$E" simulate --out "$T/s.jsonl" --annotators 700 --decisions 3 --items 4 --seed 7 >/dev/null

expect_exit 0 "plain fit" "" "$E" fit --data "$T/d.csv" --k 3 --starts 2 --seed 5 --out "$T/p" --quiet --threads 1
for n in 1 2 3; do
    expect_exit 0 "np $n fit" "" $MPIRUN -np $n "$E" fit --data "$T/d.csv" --k 3 --starts 2 --seed 5 --out "$T/m$n" \
        --quiet --threads 1
    check "np $n fit.json and posterior.csv equal one process's" same_fit "$T/p" "$T/m$n"
done
check "standard errors in the fit" grep -q '"se_theta"' "$T/m3/fit.json"

# Random starts, two threads per process, JSONL, processes without annotators.
expect_exit 0 "plain fit, random" "" "$E" fit --data "$T/s.jsonl" --k 2 --starts 3 --seed 2 --init random \
    --out "$T/pr" --quiet --threads 2
expect_exit 0 "np 3 fit, random" "" $MPIRUN -np 3 "$E" fit --data "$T/s.jsonl" --k 2 --starts 3 --seed 2 \
    --init random --out "$T/mr" --quiet --threads 2
check "np 3 random-start fit equals one process's" same_fit "$T/pr" "$T/mr"

# Each process reads only its part of a CSV (byte ranges moved to the
# starts of whole runs of 1024 annotators): 2600 annotators (three runs)
# with 2 to 90 rows each (every 97th has 30 tasks, every 11th one task of
# two alternatives) and a blank line, so the byte splits of np 2 and 3 fall
# inside and beside annotators of every size; two annotators for three
# processes.
"$E" simulate --out "$T/v0.csv" --annotators 2600 --decisions 30 --items 3 --seed 4 >/dev/null
awk -F, 'NR == 1 { print; next }
    { n = substr($1, 2) + 0; keep = n % 97 == 0 ? 30 : n * 7 % 5 + 1
      if ($2 > keep || (n % 11 == 0 && ($2 > 1 || $3 == 3))) next; print }
    NR == 20000 { print "" }' "$T/v0.csv" >"$T/v.csv"
"$E" simulate --out "$T/two.csv" --annotators 2 --decisions 3 --items 3 --seed 1 >/dev/null
for f in v two; do
    expect_exit 0 "plain fit of $f.csv" "" "$E" fit --data "$T/$f.csv" --k 2 --seed 2 --out "$T/p$f" --quiet --threads 1
    for n in 1 2 3; do
        expect_exit 0 "np $n fit of $f.csv" "" $MPIRUN -np $n "$E" fit --data "$T/$f.csv" --k 2 --seed 2 \
            --out "$T/m$f$n" --quiet --threads 1
        check "np $n fit of $f.csv equals one process's" same_fit "$T/p$f" "$T/m$f$n"
    done
done
# A bad last row, read by rank 2 only: its true line number.
last=$(wc -l <"$T/v.csv")
sed "${last}s/,[^,]*\$/,x/" "$T/v.csv" >"$T/vbad.csv"
expect_exit 2 "bad row on rank 2" "vbad.csv:$last: column \"N\"" $MPIRUN -np 3 "$E" fit --data "$T/vbad.csv" --k 2 \
    --out "$T/vbad" --quiet
# An annotator's rows apart: a3's second task moved to the end (another
# process's part), and in a small file read by one process. One process
# takes both; under mpirun they are refused at the line where it comes back.
{ grep -v '^a3,2,' "$T/v.csv"; grep '^a3,2,' "$T/v.csv"; } >"$T/apart.csv"
back=$(($(wc -l <"$T/apart.csv") - 2)) began=$(grep -n '^a3,' "$T/v.csv" | head -1 | cut -d: -f1)
expect_exit 0 "plain fit of apart.csv" "" "$E" fit --data "$T/apart.csv" --k 2 --out "$T/apartp" --quiet
for n in 2 3; do
    expect_exit 2 "np $n: annotator apart" "apart.csv:$back: annotator \"a3\" appears again here after other \
annotators' rows (it began on line $began)" $MPIRUN -np $n "$E" fit --data "$T/apart.csv" --k 2 --out "$T/apart" --quiet
done
{ head -7 "$T/two.csv"; tail -n +11 "$T/two.csv"; sed -n 8,10p "$T/two.csv"; } >"$T/apart2.csv"
expect_exit 2 "np 2: annotator apart in one part" "apart2.csv:17: annotator \"a1\" appears again here" \
    $MPIRUN -np 2 "$E" fit --data "$T/apart2.csv" --k 2 --out "$T/apart2" --quiet

# JSONL the same way, one record per line: 2600 annotators of 1 to 30
# records, blank and white-space lines, an integer annotator (a777 as 777),
# a500's record without an annotator (read as "line<N>"), a CRLF line, a
# byte order mark; JSON arrays and gzip files are read whole by every
# process.
"$E" simulate --out "$T/vj0.jsonl" --annotators 2600 --decisions 30 --items 3 --seed 4 --no-text >/dev/null
awk 'NR == 1 { printf "\357\273\277" }
    { match($0, /"annotator":"a[0-9]+"/); n = substr($0, RSTART + 14, RLENGTH - 15) + 0
      keep = n % 97 == 0 ? 30 : n * 7 % 5 + 1; if (++c[n] > keep) next
      if (n == 777) sub(/"a777"/, "777"); if (n == 500) sub(/"annotator":"a500",/, "")
      if (n == 1500) sub(/$/, "\r"); print }
    NR == 20000 { print "" } NR == 30000 { print " \t " }' "$T/vj0.jsonl" >"$T/vj.jsonl"
{ echo '['; tr -d '\r' <"$T/vj.jsonl" | sed '1s/^\xef\xbb\xbf//' | grep -v '^[[:space:]]*$' | sed '$!s/$/,/'
    echo ']'; } >"$T/vja.json"
gzip -c "$T/vj.jsonl" >"$T/vjz.jsonl.gz"
for f in vj.jsonl vja.json vjz.jsonl.gz; do
    expect_exit 0 "plain fit of $f" "" "$E" fit --data "$T/$f" --k 2 --seed 2 --out "$T/p$f" --quiet --threads 1
    for n in 1 2 3; do
        expect_exit 0 "np $n fit of $f" "" $MPIRUN -np $n "$E" fit --data "$T/$f" --k 2 --seed 2 --out "$T/m$f$n" \
            --quiet --threads 1
        check "np $n fit of $f equals one process's" same_fit "$T/p$f" "$T/m$f$n"
    done
done
check "line-named annotator in the posterior" grep -q '^line[0-9]*,' "$T/pvj.jsonl/posterior.csv"
check "integer annotator in the posterior" grep -q '^777,' "$T/pvj.jsonl/posterior.csv"
# A bad last line, read by rank 2 only: its true line number.
lastj=$(wc -l <"$T/vj.jsonl")
sed "${lastj}s/}\$//" "$T/vj.jsonl" >"$T/vjbad.jsonl"
expect_exit 2 "JSONL: bad line on rank 2" "vjbad.jsonl:$lastj: line is not valid JSON" $MPIRUN -np 3 "$E" fit \
    --data "$T/vjbad.jsonl" --k 2 --out "$T/vjbad" --quiet
# Six features from a2049 on (rank 2's share at np 3): the message of one
# process, which cites the file's first record.
awk '/"annotator":"a(2049|20[5-9][0-9]|2[1-9][0-9][0-9])"/ { gsub(/"features":\[/, "\"features\":[0,") } { print }' \
    "$T/vj.jsonl" >"$T/vjp.jsonl"
"$E" fit --data "$T/vjp.jsonl" --k 2 --out "$T/vjp" --quiet 2>"$T/vjp.err"
check "one process names the first line with other features" grep -q "vjp.jsonl:[0-9]*: item 1 has 6 features, \
expected 5 (as on line 1)" "$T/vjp.err"
expect_exit 2 "JSONL: other features on rank 2" "$(cat "$T/vjp.err")" $MPIRUN -np 3 "$E" fit --data "$T/vjp.jsonl" \
    --k 2 --out "$T/vjp" --quiet
# An annotator's records apart, across parts and within one.
awk '/"a3"/ && ++k == 2 { held = $0; next } { print } END { print held }' "$T/vj.jsonl" >"$T/apartj.jsonl"
backj=$(wc -l <"$T/apartj.jsonl") beganj=$(grep -n '"a3"' "$T/vj.jsonl" | head -1 | cut -d: -f1)
expect_exit 0 "plain fit of apartj.jsonl" "" "$E" fit --data "$T/apartj.jsonl" --k 2 --out "$T/apartjp" --quiet
for n in 2 3; do
    expect_exit 2 "JSONL np $n: annotator apart" "apartj.jsonl:$backj: annotator \"a3\" appears again here after \
other annotators' rows (it began on line $beganj)" $MPIRUN -np $n "$E" fit --data "$T/apartj.jsonl" --k 2 \
        --out "$T/apartj" --quiet
done
"$E" simulate --out "$T/twoj.jsonl" --annotators 2 --decisions 3 --items 3 --seed 1 >/dev/null
{ sed -n 1p "$T/twoj.jsonl"; sed -n 4,6p "$T/twoj.jsonl"; sed -n 2,3p "$T/twoj.jsonl"; } >"$T/apartj2.jsonl"
expect_exit 2 "JSONL np 2: annotator apart in one part" "apartj2.jsonl:5: annotator \"a1\" appears again here" \
    $MPIRUN -np 2 "$E" fit --data "$T/apartj2.jsonl" --k 2 --out "$T/apartj2" --quiet

# select on shares: each process reads its part, the split's two sides are
# re-shared in runs of 1024 (annotators cross between processes: 5000
# annotators leave 4000 training and 1000 held out, all of them on rank 0
# under np 2 and 3), every K is fitted on the training shares and the
# held-out log-likelihood added over the processes; the table and
# select.json are one process's. JSONL carries prompts, texts and groups
# across; its 3000 annotators at holdout 0.3 leave 2100 training ones.
expect_exit 0 "plain select" "" sh -c "'$E' select --data '$T/d.csv' --k 1..3 --seed 2 --out '$T/ps' --quiet \
    --threads 1 >'$T/ps.txt'"
"$E" simulate --out "$T/j.jsonl" --annotators 3000 --decisions 3 --items 3 --seed 5 >/dev/null
expect_exit 0 "plain select, JSONL" "" "$E" select --data "$T/j.jsonl" --k 1..2 --holdout 0.3 --seed 4 \
    --out "$T/psj" --quiet --threads 1
for n in 1 2 3; do
    expect_exit 0 "np $n select" "" sh -c "$MPIRUN -np $n '$E' select --data '$T/d.csv' --k 1..3 --seed 2 \
        --out '$T/ms$n' --quiet --threads 1 >'$T/ms$n.txt'"
    check "np $n select.json equals one process's" cmp -s "$T/ps/select.json" "$T/ms$n/select.json"
    check "np $n select prints one process's table" cmp -s "$T/ps.txt" "$T/ms$n.txt"
    expect_exit 0 "np $n select, JSONL" "" $MPIRUN -np $n "$E" select --data "$T/j.jsonl" --k 1..2 --holdout 0.3 \
        --seed 4 --out "$T/msj$n" --quiet --threads 1
    check "np $n JSONL select.json equals one process's" cmp -s "$T/psj/select.json" "$T/msj$n/select.json"
done
check "select reports the split" grep -q '"n_train": 4000' "$T/ms3/select.json"
# A bad row read by rank 2 alone ends select too, before any output.
expect_exit 2 "select: bad row on rank 2" "vbad.csv:$last: column \"N\"" $MPIRUN -np 3 "$E" select \
    --data "$T/vbad.csv" --k 1..2 --out "$T/sbad" --quiet
check "no select.json after a failed select" test ! -e "$T/sbad/select.json"

# Bad input on one process: rank 0 reads good data and waits in the first
# reduction, rank 1 fails on its file; the job ends with exit 2 and rank
# 1's message, and writes nothing.
printf 'annotator,decision\n1,2\n' >"$T/bad.csv"
expect_exit 2 "bad input on rank 1" "missing column" $MPIRUN -np 1 "$E" fit --data "$T/d.csv" --k 3 --out "$T/bad" \
    --quiet : -np 1 "$E" fit --data "$T/bad.csv" --k 3 --out "$T/bad" --quiet
check "no fit.json after a failed job" test ! -e "$T/bad/fit.json"
expect_exit 2 "bad input on every process" "missing column" $MPIRUN -np 2 "$E" fit --data "$T/bad.csv" --k 3 \
    --out "$T/bad2" --quiet
expect_exit 2 "commands that do not run distributed" "run 'score' as one process" $MPIRUN -np 2 "$E" score --help
expect_exit 2 "select --policy llama refused" "run 'select' as one process" $MPIRUN -np 2 "$E" select --policy llama \
    --help

echo "cli_mpi: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
