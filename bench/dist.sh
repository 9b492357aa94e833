#!/bin/sh
# The sharded log-linear fit (K = 3, p = 5; annotators x 8 decisions x 3
# items simulated in memory, each process only its share) on this machine's
# cores (docs/BENCHMARKS.md, "Processes"):
#   sh bench/dist.sh strong [N=1000000] [ROUNDS=3]
#       N annotators as one process with 2 threads and as mpirun -np 2 with
#       1 thread each, alternating, ROUNDS rounds;
#   sh bench/dist.sh weak [PER=2000000] [ROUNDS=3]
#       PER annotators per process, 1 thread each: np 1 with PER against
#       np 2 with 2 PER, alternating;
#   sh bench/dist.sh check [N=100000]
#       np 1, 2 and 3 (oversubscribed): the log-likelihood bits must agree.
# Each run prints the load average before it and bench_em's RESULT lines
# (rank 0 prints every process's figures). Needs Open MPI (mpicc, mpirun);
# builds build-mpi/libemdpo.a.
set -eu
MODE=${1:-strong}
make -s MPI=1 build-mpi/libemdpo.a
mkdir -p build-mpi/bench
BIN=build-mpi/bench/bench_em
mpicc -std=c11 -DEMDPO_MPI -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc -O3 -march=native -fopenmp -Wall -Wextra \
    bench/bench_em.c build-mpi/libemdpo.a -lopenblas -lpcre2-8 -lutf8proc -lz -lm -o "$BIN"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "machine: $(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1), $(nproc) cores," \
    "$(free -g | awk '/^Mem:/ {print $2 " GB, " $7 " GB available"}')"
# run NP THREADS N: one fit
run() {
    echo "run $(date -u +%H:%M:%SZ) np=$1 threads=$2 n=$3 load $(cut -d' ' -f1-3 /proc/loadavg)"
    OMP_NUM_THREADS=$2 mpirun -np "$1" --oversubscribe --bind-to none "$BIN" dist "$3"
}
case $MODE in
strong)
    N=${2:-1000000} ROUNDS=${3:-3} r=0
    while [ $r -lt "$ROUNDS" ]; do
        run 1 2 "$N"
        run 2 1 "$N"
        r=$((r + 1))
    done ;;
weak)
    PER=${2:-2000000} ROUNDS=${3:-3} r=0
    while [ $r -lt "$ROUNDS" ]; do
        run 1 1 "$PER"
        run 2 1 $((2 * PER))
        r=$((r + 1))
    done ;;
check)
    N=${2:-100000}
    for np in 1 2 3; do run "$np" 1 "$N"; done ;;
*)
    echo "usage: sh bench/dist.sh strong [N] [ROUNDS] | weak [PER] [ROUNDS] | check [N]" >&2
    exit 2 ;;
esac
