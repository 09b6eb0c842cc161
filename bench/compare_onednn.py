#!/usr/bin/python3
"""nsl's 3x3 convolutions against oneDNN's, called directly from C++, in one nsl_bench run.

usage: python3 bench/compare_onednn.py [--threads N] [--repetitions R] [--nsl-bench PATH]
                                       [--onednn-max-isa ISA] [--json-out FILE]

nsl_bench (built where CMake found oneDNN, Debian's libdnnl-dev: it then has the onednn/...
cases of bench/onednn_peer.cpp) runs once with the cases below, and this script prints one
table. Each workload is timed by nsl as CNN-9's layers run it (the algorithm nsl's rule picks
for this build, reported by nsl_bench's context; nsl's other algorithms in brackets) and by
oneDNN's direct and Winograd convolutions (Winograd only where oneDNN offers it: float32 with
AVX-512). oneDNN works in the layouts it prefers, laid out before timing (its best case); nsl
reads and writes NCHW. The machine's ceiling is peak/fma/f32 (independent FMA chains on every
thread), and each rate is also given as a fraction of it.

  conv3x3/<pass>/B64_C<c>_H<h>   64 images, c -> c, 3x3, 'same': fwd y; bwd dx and dw
  layer/plain/<pass>/B32_C64_H16 the plain layer case of nsl_bench: fwd; fwd_bwd = fwd, dx, dw

--onednn-max-isa sets ONEDNN_MAX_CPU_ISA for the run (e.g. AVX2, with an nsl_bench built for
-march=x86-64-v3, to measure both libraries' AVX2 paths on an AVX-512 machine).
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed from the environment.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parent.parent
SHAPES = [(32, 28), (64, 14), (128, 7)]
NSL_CONV_ALGOS = {"fwd": ["direct", "winograd2", "winograd4"], "bwd": ["gemm", "winograd2", "winograd4"]}
ONEDNN_ALGOS = ["direct", "winograd"]


def die(message):
    print(f"compare_onednn.py: error: {message}", file=sys.stderr)
    sys.exit(1)


def workloads():
    """(label, nsl cases by algorithm (None: the layer case, dispatched by nsl itself), oneDNN case stem)."""
    rows = []
    for p in ("fwd", "bwd"):
        for c, h in SHAPES:
            tail = f"{p}/B64_C{c}_H{h}"
            rows.append((f"conv3x3/{tail}", {a: f"conv3x3/{a}/{tail}" for a in NSL_CONV_ALGOS[p]}, f"conv3x3/{tail}"))
    for p in ("fwd", "fwd_bwd"):
        tail = f"layer/plain/{p}/B32_C64_H16"
        rows.append((tail, {None: tail}, tail))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="threads for both (default 2)")
    parser.add_argument("--repetitions", type=int, default=5, help="repetitions per case (default 5; medians)")
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds per repetition (default 0.5)")
    parser.add_argument("--nsl-bench", type=pathlib.Path, default=REPO / "build/release/bench/nsl_bench")
    parser.add_argument("--onednn-max-isa", default=None, help="ONEDNN_MAX_CPU_ISA for the run (e.g. AVX2)")
    parser.add_argument("--json-out", type=pathlib.Path, help="also write nsl_bench's JSON report here")
    args = parser.parse_args()
    if args.threads < 1 or args.repetitions < 1 or args.min_time <= 0:
        parser.error("--threads and --repetitions must be >= 1, --min-time > 0")
    if not args.nsl_bench.exists():
        die(f"{args.nsl_bench} not found: build nsl_bench (bench/README.md) or pass --nsl-bench PATH")

    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env["OMP_NUM_THREADS"] = str(args.threads)
    if args.onednn_max_isa:
        env["ONEDNN_MAX_CPU_ISA"] = args.onednn_max_isa
    listed = subprocess.run([str(args.nsl_bench), "--benchmark_list_tests"], env=env, capture_output=True, text=True)
    names = {n.split("/real_time")[0] for n in listed.stdout.split()}
    if listed.returncode != 0:
        die(f"{args.nsl_bench} --benchmark_list_tests failed:\n{listed.stderr}")
    if not any(n.startswith("onednn/") for n in names):
        die(f"{args.nsl_bench} has no onednn/ cases: install libdnnl-dev and reconfigure (bench/README.md)")

    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "out.json"
        cmd = [str(args.nsl_bench), "--benchmark_filter=^(peak|conv3x3|onednn|layer/plain)/",
               f"--benchmark_out={out}", "--benchmark_out_format=json",
               f"--benchmark_repetitions={args.repetitions}", "--benchmark_report_aggregates_only=true",
               f"--benchmark_min_time={args.min_time}", f"--nsl_threads={args.threads}"]
        print(f"running: {' '.join(cmd)}", file=sys.stderr, flush=True)
        ran = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if ran.returncode != 0 or not out.exists():
            die(f"nsl_bench failed (exit {ran.returncode}):\n{ran.stderr}")
        report = json.loads(out.read_text())
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=1))

    results, labels, errors = {}, {}, {}
    for b in report["benchmarks"]:
        name = b.get("run_name", b["name"]).split("/real_time")[0]
        if b.get("error_occurred"):
            errors[name] = b.get("error_message", "error")
        elif b.get("aggregate_name") == "median" or (b.get("run_type") == "iteration" and name not in results):
            # the median of the repetitions; a single repetition reports no aggregates
            scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b["time_unit"]]
            results[name] = (b["real_time"] * scale, b.get("GFLOP/s"))
            labels[name] = b.get("label", "")
    disagree = {n: e for n, e in errors.items() if "disagree" in e}
    if disagree:
        die("oneDNN's results differ from nsl's: " + "; ".join(f"{n}: {e}" for n, e in disagree.items()))
    context = report.get("context", {})
    peak = results.get("peak/fma/f32", (None, None))[1]

    def pct(rate):
        return f"{100 * rate / peak:.0f}%" if peak and rate else "—"

    def ms(name):
        return f"{results[name][0]:.2f}" if name in results else "—"

    print(f"# nsl against oneDNN (called directly), {args.threads} thread(s)\n")
    print(f"- CPU: {context.get('cpu_model', '?')}, {context.get('num_cpus', '?')} logical CPUs at "
          f"{context.get('mhz_per_cpu', '?')} MHz (as Google Benchmark reads it)")
    print(f"- nsl: {context.get('nsl_isa_path', '?')}")
    impls = sorted({labels[n] for n in labels if n.startswith("onednn/")})
    print(f"- oneDNN: implementations picked: {'; '.join(impls) or 'none'}"
          + (f"; ONEDNN_MAX_CPU_ISA={args.onednn_max_isa}" if args.onednn_max_isa else ""))
    print(f"- ceiling: peak/fma/f32 = {peak:.0f} GFLOP/s" if peak else "- ceiling: peak/fma/f32 not measured")
    print(f"- medians of {args.repetitions} repetitions of >= {args.min_time:g} s\n")
    print("| workload | nsl ms (algorithm) | nsl's other algorithms ms | oneDNN direct ms | oneDNN Winograd ms "
          "| ratio (best oneDNN / nsl) | nsl GFLOP/s (of peak) | best oneDNN GFLOP/s (of peak) |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    rows_out = []
    for label, nsl_cases, stem in workloads():
        if None in nsl_cases:
            nsl_algo, nsl_name = "as dispatched", nsl_cases[None]
        else:
            chosen = context.get("nsl_conv3x3_" + label.split("/")[1])
            nsl_algo, nsl_name = chosen, nsl_cases.get(chosen)
        others = ", ".join(f"{a} {ms(n)}" for a, n in nsl_cases.items() if a is not None and n != nsl_name)
        peers = {a: f"onednn/{a}/{stem}" for a in ONEDNN_ALGOS}
        timed = {a: results[n] for a, n in peers.items() if n in results}
        if nsl_name not in results or not timed:
            print(f"| {label} | — | {others} | — | — | — | — | — |")
            continue
        best = min(timed, key=lambda a: timed[a][0])
        nsl_ms, nsl_rate = results[nsl_name]
        ratio = timed[best][0] / nsl_ms
        winograd = ms(peers["winograd"]) if peers["winograd"] in results else "not offered"
        print(f"| {label} | {nsl_ms:.2f} ({nsl_algo}) | {others or '—'} | {ms(peers['direct'])} | {winograd} "
              f"| {ratio:.2f} | {nsl_rate:.0f} ({pct(nsl_rate)}) | {timed[best][1]:.0f} ({pct(timed[best][1])}) |")
        rows_out.append(ratio)
    print("\n- ratio > 1: nsl is faster. GFLOP/s counts 2 flops per multiply-add of the direct formula "
          "(a Winograd algorithm does fewer, so its rate can pass the ceiling); bwd = 2x fwd.")


if __name__ == "__main__":
    main()
