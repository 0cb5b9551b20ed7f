#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds with -Wall -Wextra
# -Werror and runs every test through ctest; then does the same in a second
# build under AddressSanitizer + UndefinedBehaviorSanitizer; then fuzzes each
# parser of outside input for 20 s (scripts/fuzz.sh, a third, clang build).
# The first build is BUILD_SHARED_LIBS=ON, so that liblbkit.so's exported
# symbols, programs built against it once installed, and the .deb are tested
# (the tests themselves link a static archive of the same objects).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

echo "== build (RelWithDebInfo)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLBKIT_WERROR=ON -DBUILD_SHARED_LIBS=ON \
  >/dev/null
cmake --build build -j2
echo "== tests"
(cd build && ctest --output-on-failure -j2)

echo "== build (AddressSanitizer + UndefinedBehaviorSanitizer)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DLBKIT_SANITIZE=ON -DLBKIT_WERROR=ON \
  -DLBKIT_BUILD_TOOLS=OFF >/dev/null
cmake --build build-asan -j2
echo "== tests under sanitizers"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
(cd build-asan && ctest --output-on-failure -j2)

echo "== fuzzing"
bash scripts/fuzz.sh "${LBKIT_FUZZ_SECONDS:-20}"
