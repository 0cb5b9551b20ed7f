#!/usr/bin/env bash
# Fuzzing: builds lbkit's libFuzzer targets (fuzz/) with clang, AddressSanitizer
# and UndefinedBehaviorSanitizer in build-fuzz, and runs each for N seconds
# (default 30). Fails on any crash, sanitizer report, leak, slow input
# (-timeout=10 s) or hang (the run overstaying its time by 2 minutes); the
# input that did it is left in build-fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [seconds]
#
# Each target starts from its seed corpus, fuzz/corpus/<target>/ (kept small
# and valid; copied, so the fuzzer's finds stay out of the source tree), into
# build-fuzz/corpus/<target>/, which later runs reuse.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
case "$seconds" in
  '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [seconds]" >&2; exit 2 ;;
esac

# clang and its runtime libraries (libFuzzer, the sanitizers), Debian's
# default version, beside lbkit's usual dependencies.
bash scripts/install-deps.sh clang libclang-rt-dev

echo "== build (clang, libFuzzer + AddressSanitizer + UndefinedBehaviorSanitizer)"
# Only the library and the fuzzers: no tests, tools or examples. -O1, as
# libFuzzer recommends: fast enough to fuzz, quick to build.
cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" -DLBKIT_FUZZ=ON -DLBKIT_WERROR=ON \
  -DLBKIT_BUILD_TESTS=OFF -DLBKIT_BUILD_EXAMPLES=OFF -DLBKIT_BUILD_TOOLS=OFF >/dev/null
cmake --build build-fuzz -j2

targets=(service_config target endpoint_attributes etcd_value dns_txt)

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=()
for target in "${targets[@]}"; do
  binary=build-fuzz/fuzz/lbkit-fuzz-${target//_/-}
  corpus=build-fuzz/corpus/$target
  artifacts=build-fuzz/artifacts/$target/
  log=build-fuzz/fuzz-$target.log
  mkdir -p "$corpus" "$artifacts"
  echo "== fuzz $target for ${seconds}s"
  # -max_len well above libFuzzer's default (4096 or the largest seed), so
  # that deep nesting and long inputs are reached; -timeout fails an input
  # that takes 10 s; `timeout` fails a run that hangs outright.
  if timeout --kill-after=10 $((seconds + 120)) "$binary" "$corpus" "fuzz/corpus/$target" \
    -max_total_time="$seconds" -timeout=10 -max_len=200000 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "   ok: ${runs:-?} executions, corpus $(find "$corpus" -type f | wc -l) inputs"
  else
    echo "   FAILED (exit $?); the end of $log:" >&2
    tail -n 40 "$log" >&2
    failed+=("$target")
  fi
done
if [ "${#failed[@]}" -ne 0 ]; then
  echo "fuzz: failed: ${failed[*]} (inputs in build-fuzz/artifacts/)" >&2
  exit 1
fi
