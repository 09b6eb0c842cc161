#!/usr/bin/python3
"""nsl against PyTorch on one CUDA GPU: the layer/* and cnn9/* workloads of nsl_bench.

usage: python3 bench/compare_pytorch_cuda.py --nsl-bench-cuda PATH [--filter REGEX] [--quick]
                                             [--json-out FILE]

The PyTorch side is compare_pytorch.py's (the same formulations, parameters and inputs, built on
the CPU with the same seed and moved to the GPU); for each case every candidate formulation and
memory format is timed briefly and the fastest is timed for the table, as on the CPU. Times are
medians over repetitions of the mean time per iteration after warm-up, each repetition ended by
torch.cuda.synchronize(); nsl_bench_cuda times its side the same way (cudaDeviceSynchronize).
cuDNN runs with benchmark mode on (its autotuner picks the fastest convolution algorithm) and
TF32 off, so both sides compute in float32. Ratio = PyTorch time / nsl time (above 1: nsl faster).

That the PyTorch formulations compute what nsl computes is checked on the CPU by compare_pytorch.py;
that nsl's CUDA operations compute what its CPU ones do is checked by nsl_cuda_tests.
"""
import argparse
import json
import math
import pathlib
import re
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import compare_pytorch as cp  # noqa: E402


def cuda_timed(fn, repetitions, min_time, warmup):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    once = time.perf_counter() - t0
    n = max(1, math.ceil(min_time / max(once, 1e-6)))
    samples = []
    for _ in range(repetitions):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
        samples.append((time.perf_counter() - t0) / n)
    return statistics.median(samples)


def torch_case(case, args):
    """(seconds, 'impl/format') of the fastest PyTorch candidate for `case`."""
    timings = []
    for impl, fmt in cp.candidates_for(case):
        fn = cp.make_workload(case, impl, fmt, device="cuda")
        timings.append((cuda_timed(fn, 1, args.select_time, args.warmup), impl, fmt))
        del fn
        torch.cuda.empty_cache()
    _, impl, fmt = min(timings)
    fn = cp.make_workload(case, impl, fmt, device="cuda")
    seconds = cuda_timed(fn, args.repetitions, args.min_time, args.warmup)
    del fn
    torch.cuda.empty_cache()
    return seconds, f"{impl}/{fmt}"


def nsl_cases(args):
    """{case: seconds} from one run of nsl_bench_cuda."""
    cmd = [str(args.nsl_bench_cuda), "--filter", args.filter, "--warmup", str(args.warmup),
           "--repetitions", str(args.repetitions), "--min-time", str(args.min_time)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=args.timeout)
    sys.stderr.write(out.stderr)
    return {row["case"]: row["seconds"] for row in map(json.loads, out.stdout.splitlines()) if row}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nsl-bench-cuda", type=pathlib.Path, required=True, help="the nsl_bench_cuda executable")
    parser.add_argument("--filter", default="^(layer|cnn9)/", help="regular expression selecting cases")
    parser.add_argument("--quick", action="store_true", help="few iterations (smoke test)")
    parser.add_argument("--json-out", type=pathlib.Path, help="also write the results as JSON")
    parser.add_argument("--timeout", type=float, default=600, help="seconds for nsl_bench_cuda")
    args = parser.parse_args()
    args.repetitions = 1 if args.quick else 5
    args.min_time = 0.05 if args.quick else 0.3
    args.select_time = 0.02 if args.quick else 0.1
    args.warmup = 2 if args.quick else 10
    if not torch.cuda.is_available():
        sys.exit("compare_pytorch_cuda: PyTorch sees no CUDA device")
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    cases = [c for c in cp.all_cases() if re.search(args.filter, c) and not c.startswith("gemm/")]
    nsl = nsl_cases(args)
    rows = []
    for case in cases:
        peer, impl = torch_case(case, args)
        ours = nsl.get(case)
        rows.append({"case": case, "nsl_s": ours, "torch_s": peer, "torch_impl": impl,
                     "ratio": peer / ours if ours else None})
        print(f"{case:45s} nsl {1e3 * ours:9.3f} ms  PyTorch {1e3 * peer:9.3f} ms ({impl})  ratio "
              f"{peer / ours:6.2f}" if ours else f"{case:45s} nsl -  PyTorch {1e3 * peer:9.3f} ms", flush=True)
    print()
    print(f"GPU: {torch.cuda.get_device_name()}, PyTorch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}")
    print("| case | nsl (ms) | PyTorch CUDA (ms) | PyTorch formulation | ratio |")
    print("|---|---:|---:|---|---:|")
    for r in rows:
        nsl_ms = f"{1e3 * r['nsl_s']:.3f}" if r["nsl_s"] else "-"
        ratio = f"{r['ratio']:.2f}" if r["ratio"] else "-"
        print(f"| {r['case']} | {nsl_ms} | {1e3 * r['torch_s']:.3f} | {r['torch_impl']} | {ratio} |")
    if args.json_out:
        args.json_out.write_text(json.dumps({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                                             "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
