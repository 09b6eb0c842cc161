#!/usr/bin/env bash
# Data-parallel scaling of a CNN-9 training step (docs/distributed.md):
# on this machine, one process with all its threads against `mpirun -np 2`
# with half the threads each, in one run; then a model of the step on N
# such machines over a 10 and a 100 Gbit/s network from the measured
# compute time and bytes (ring allreduce).
# usage: bash bench/mpi_scaling.sh [BUILD_DIR] [VARIANT]   (default build/release, dynamic_dns)
# Needs BUILD_DIR/bench/nsl_mpi_bench (configure with -DNSL_BUILD_BENCHMARKS=ON and MPI present).
set -euo pipefail
build="${1:-build/release}"
variant="${2:-dynamic_dns}"
bench="$build/bench/nsl_mpi_bench"
[[ -x $bench ]] || { echo "mpi_scaling: $bench missing (build with -DNSL_BUILD_BENCHMARKS=ON, MPI present)" >&2; exit 1; }
cores=$(nproc)
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cpu_field() { grep -m1 "^$1" /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'; }
echo "machine: $(cpu_field 'model name') (family $(cpu_field 'cpu family') model $(cpu_field 'model')), $cores cores"
# Each configuration twice, alternating, so that both see the same machine.
for round in 1 2; do
  "$bench" --variant "$variant" --threads "$cores" | tee -a "$tmp/one.txt" | grep -v '^{'
  mpirun -np 2 --bind-to none "$bench" --variant "$variant" --threads $((cores / 2 > 0 ? cores / 2 : 1)) |
    tee -a "$tmp/two.txt" | grep -v '^{'
done

python3 - "$tmp/one.txt" "$tmp/two.txt" <<'EOF'
import json, math, sys
def best(path):  # the faster of the two rounds
    rows = [json.loads(l) for l in open(path) if l.startswith("{")]
    return min(rows, key=lambda r: r["step_seconds"])
one, two = best(sys.argv[1]), best(sys.argv[2])
print(f"\n2 ranks x {two['threads']} thread(s) against 1 process x {one['threads']} thread(s): "
      f"{two['images_per_second'] / one['images_per_second']:.3f} of the single-process throughput "
      f"({two['images_per_second']:.1f} against {one['images_per_second']:.1f} images/s); "
      f"each step waited {1e3 * two['wait_seconds']:.2f} ms for the gradient sums, "
      f"{two['bytes_per_step'] / 1e6:.2f} MB per rank per step")

# The model: N machines like this one, each one rank with the batch of
# 128 (weak scaling: the global batch is 128 N), or the global batch of 128
# split over them (strong scaling: each machine's compute shrinks to 1/N,
# taken as linear, which small per-machine batches do not quite reach).
# Ring allreduce of S bytes: 2 (N-1)/N S / bandwidth + 2 (N-1) latency;
# synchronised BatchNorm adds 3 small allreduces per BatchNorm a step
# (28 for the dynamic DNS network, 10 for the others), latency-bound:
# log2(N) latencies each. No overlap of the sums with backward is assumed
# (the dynamic network's gradients fit in one 25 MB bucket, sent when
# backward ends): a lower bound on the efficiency.
compute = one["step_seconds"]
size = two["bytes_per_step"]
bns = 28 if one["variant"] in ("dynamic_dns", "dynamic_dns_sphere") else 10
networks = {"10 Gbit/s (TCP, 25 us)": (10e9 / 8, 25e-6), "100 Gbit/s (RDMA, 3 us)": (100e9 / 8, 3e-6)}
print(f"\nmodel: compute {compute:.3f} s per step of 128 images on one machine, {size / 1e6:.2f} MB of gradients")
print("| network | N | ring allreduce ms | BN sums ms | weak scaling efficiency | strong scaling efficiency |")
print("|---|---|---|---|---|---|")
for name, (bandwidth, latency) in networks.items():
    for n in (2, 8, 64):
        ring = 2 * (n - 1) / n * size / bandwidth + 2 * (n - 1) * latency
        bn = 3 * bns * math.log2(n) * latency
        weak = compute / (compute + ring + bn)
        strong = (compute / n) / (compute / n + ring + bn)
        print(f"| {name} | {n} | {1e3 * ring:.2f} | {1e3 * bn:.2f} | {100 * weak:.1f}% | {100 * strong:.1f}% |")
EOF
