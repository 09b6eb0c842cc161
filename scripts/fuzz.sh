#!/usr/bin/env bash
# Fuzzes nsl's file readers with libFuzzer (tests/fuzz/README.md). Builds
# each harness of tests/fuzz with clang++-16 -fsanitize=fuzzer,address,
# undefined into build/fuzz/ and runs it for a fixed time: first on the
# regression corpus and the seed corpus, then on inputs of its own.
# Usage: bash scripts/fuzz.sh [--seconds N] [--make-corpus] [HARNESS...]
#   HARNESS        npy idx cifar checkpoint glyphs (default: all five)
#   --seconds N    fuzzing time per harness (default 30, as in CI; a long
#                  campaign: 600 or more)
#   --make-corpus  remakes tests/fuzz/corpus and the made-* inputs of
#                  tests/fuzz/regressions with make_corpus (g++), and stops
# New inputs that reach new code go to build/fuzz/work/HARNESS (kept, so
# campaigns add up); problems (crash-*, leak-*, timeout-*, oom-*) to
# build/fuzz/findings/HARNESS; libFuzzer's log to build/fuzz/logs/HARNESS.log.
# Limits: 10 s per input, 64 MiB per allocation (every reader here keeps at
# most a small multiple of its input, at most 1 MiB inflated for IDX: a
# larger request is a finding), 2 GiB resident.
# Prints one line per harness (executions, executions per second, coverage,
# corpus size, findings). Exit status: 0 if no harness reported a problem,
# 1 if one did, 2 if clang++-16 with libFuzzer is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
seconds=30
make_corpus=0
harnesses=()
while (($#)); do
  case "$1" in
    --seconds) seconds="${2:?--seconds needs a number}"; shift 2 ;;
    --make-corpus) make_corpus=1; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    -*) echo "fuzz: unknown option $1" >&2; exit 2 ;;
    *) harnesses+=("$1"); shift ;;
  esac
done
[[ $seconds =~ ^[0-9]+$ && $seconds -ge 1 ]] || { echo "fuzz: --seconds must be a positive integer, got '$seconds'" >&2; exit 2; }
((${#harnesses[@]})) || harnesses=(npy idx cifar checkpoint glyphs)
for h in "${harnesses[@]}"; do
  [[ -f tests/fuzz/fuzz_$h.cpp ]] || { echo "fuzz: no harness '$h' (tests/fuzz/fuzz_$h.cpp)" >&2; exit 2; }
done

OUT=build/fuzz
mkdir -p "$OUT"
INCLUDES=(-Iinclude -Itests/fuzz -isystem /usr/include/eigen3)

if ((make_corpus)); then
  g++ -std=c++17 -O1 "${INCLUDES[@]}" tests/fuzz/make_corpus.cpp -lz -o "$OUT/make_corpus"
  rm -rf tests/fuzz/corpus tests/fuzz/regressions/*/made-*
  "$OUT/make_corpus" tests/fuzz/corpus tests/fuzz/regressions
  exit 0
fi

CXX=clang++-16
if ! command -v "$CXX" >/dev/null 2>&1 ||
   ! echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' |
     "$CXX" -x c++ -fsanitize=fuzzer - -o "$OUT/probe" 2>/dev/null; then
  echo "fuzz: clang++-16 with libFuzzer not found (Debian: clang-16 libfuzzer-16-dev libclang-rt-16-dev)" >&2
  exit 2
fi

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
status=0
total=0
printf '%-11s %12s %8s %7s %8s %7s  %s\n' harness executions exec/s cov features corpus findings
for h in "${harnesses[@]}"; do
  exe="$OUT/fuzz_$h"
  "$CXX" -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Wall -Wextra -Wpedantic "${INCLUDES[@]}" "tests/fuzz/fuzz_$h.cpp" -lz -o "$exe"
  mkdir -p "$OUT/work/$h" "$OUT/findings/$h" "$OUT/logs"
  seeds=(tests/fuzz/corpus/"$h")
  [[ -d tests/fuzz/regressions/$h ]] && seeds+=(tests/fuzz/regressions/"$h")
  log="$OUT/logs/$h.log"
  rc=0
  "$exe" -max_total_time="$seconds" -timeout=10 -malloc_limit_mb=64 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$OUT/findings/$h/" "$OUT/work/$h" "${seeds[@]}" >"$log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(find "$OUT/work/$h" -type f | wc -l)
  findings=$(find "$OUT/findings/$h" -type f | wc -l)
  verdict="$findings"
  if ((rc != 0 || findings > 0)); then
    status=1
    verdict="$findings (libFuzzer exit $rc; see $log and $OUT/findings/$h)"
  fi
  total=$((total + ${runs:-0}))
  printf '%-11s %12s %8s %7s %8s %7s  %s\n' "$h" "${runs:-?}" "${speed:-?}" "${cov:-?}" "${ft:-?}" "$corp" "$verdict"
done
echo "fuzz: $total executions in all, ${seconds} s per harness; $( ((status)) && echo "PROBLEMS FOUND" || echo "no problems found")"
exit "$status"
