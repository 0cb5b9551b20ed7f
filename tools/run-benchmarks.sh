#!/usr/bin/env bash
# Reproduces docs/performance.md: builds Release in build-bench/, runs
# lbkit-pick-benchmark, lbkit-bench, and lbkit-bench's slow-backend,
# ring-hash-movement, discovery and cold-start scenarios (about 14 minutes
# in all on 2 cores; discovery starts its own etcd member on loopback,
# cold-start its backends as child processes), and
# writes text and JSON results to build-bench/results/.
#
#   bash tools/run-benchmarks.sh                      # everything, defaults
#   bash tools/run-benchmarks.sh --rounds 9           # extra flags go to lbkit-bench
#   PICK_ARGS="--benchmark_filter=BM_Pick" bash tools/run-benchmarks.sh
#   SLOW_ARGS="--rate 1000" bash tools/run-benchmarks.sh   # flags for slow-backend
#   ONLY=slow-backend bash tools/run-benchmarks.sh     # one part: pick, bench,
#                       # slow-backend, ring-hash-movement, discovery, cold-start
#   DISCOVERY_ARGS="--endpoints 2000" bash tools/run-benchmarks.sh  # flags for discovery
#   COLD_START_ARGS="--trials 100" bash tools/run-benchmarks.sh     # flags for cold-start
#
# The machine should be otherwise idle: the numbers compare lbkit with gRPC's
# own channel round by round, but a busy neighbour still widens the spread.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j2 --target lbkit-bench lbkit-pick-benchmark >/dev/null

out=build-bench/results
mkdir -p "$out"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(uname -srm), $(nproc) CPU(s): $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "lbkit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
} | tee "$out/environment.txt"

want() { [[ -z "${ONLY:-}" || "$ONLY" == "$1" ]]; }

if want pick; then
  echo "== lbkit-pick-benchmark -> $out/pick-benchmark.{txt,json}"
  # Three repetitions, medians shown (every repetition is in the JSON).
  # shellcheck disable=SC2086  # PICK_ARGS is a list of flags
  build-bench/tools/lbkit-pick-benchmark --benchmark_out="$out/pick-benchmark.json" \
    --benchmark_out_format=json --benchmark_repetitions=3 --benchmark_display_aggregates_only=true \
    ${PICK_ARGS:-} | tee "$out/pick-benchmark.txt" | grep -v -E '_(mean|stddev|cv) '
fi

if want bench; then
  echo "== lbkit-bench -> $out/lbkit-bench.{txt,json}"
  build-bench/tools/lbkit-bench --json "$out/lbkit-bench.json" "$@" | tee "$out/lbkit-bench.txt"
fi

if want slow-backend; then
  echo "== lbkit-bench --scenario slow-backend -> $out/slow-backend.{txt,json}"
  # shellcheck disable=SC2086  # SLOW_ARGS is a list of flags
  build-bench/tools/lbkit-bench --scenario slow-backend --no-progress \
    --json "$out/slow-backend.json" ${SLOW_ARGS:-} | tee "$out/slow-backend.txt"
fi

if want ring-hash-movement; then
  echo "== lbkit-bench --scenario ring-hash-movement -> $out/ring-hash-movement.{txt,json}"
  build-bench/tools/lbkit-bench --scenario ring-hash-movement \
    --json "$out/ring-hash-movement.json" | tee "$out/ring-hash-movement.txt"
fi
if want discovery; then
  echo "== lbkit-bench --scenario discovery -> $out/discovery.{txt,json}"
  # shellcheck disable=SC2086  # DISCOVERY_ARGS is a list of flags
  build-bench/tools/lbkit-bench --scenario discovery --json "$out/discovery.json" \
    ${DISCOVERY_ARGS:-} | tee "$out/discovery.txt"
fi
if want cold-start; then
  echo "== lbkit-bench --scenario cold-start -> $out/cold-start.{txt,json}"
  # shellcheck disable=SC2086  # COLD_START_ARGS is a list of flags
  build-bench/tools/lbkit-bench --scenario cold-start --no-progress \
    --json "$out/cold-start.json" ${COLD_START_ARGS:-} | tee "$out/cold-start.txt"
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/environment.txt"
