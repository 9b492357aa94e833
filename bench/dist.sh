#!/bin/sh
# The log-linear fit on 10^6 simulated annotators x 8 decisions x 3 items
# (K = 3, p = 5) on the same 2 cores two ways: one process with 2 threads
# and mpirun -np 2 with 1 thread each (docs/BENCHMARKS.md, "Processes").
#   sh bench/dist.sh [N=1000000] [ROUNDS=2]
# Needs Open MPI (mpicc, mpirun); builds build-mpi/libemdpo.a.
set -eu
N=${1:-1000000}
ROUNDS=${2:-2}
make -s MPI=1 build-mpi/libemdpo.a
mkdir -p build-mpi/bench
BIN=build-mpi/bench/bench_em
mpicc -std=c11 -DEMDPO_MPI -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc -O3 -march=native -fopenmp -Wall -Wextra \
    bench/bench_em.c build-mpi/libemdpo.a -lopenblas -lpcre2-8 -lutf8proc -lz -lm -o "$BIN"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "machine: $(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1), $(nproc) cores;" \
    "$(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
r=0
while [ $r -lt "$ROUNDS" ]; do
    OMP_NUM_THREADS=2 mpirun -np 1 --bind-to none "$BIN" dist "$N"
    OMP_NUM_THREADS=1 mpirun -np 2 --bind-to none "$BIN" dist "$N"
    r=$((r + 1))
done
