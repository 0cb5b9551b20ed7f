#!/usr/bin/env bash
# Installs lbkit from the build tree into a temporary prefix, then builds the
# customloadbalancing example on its own against that install: the example's
# policy compiles with lbkit's installed public headers only.
set -euo pipefail
build_dir=$1
source_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
test -f "$work/prefix/include/lbkit/lbkit.h"
test -f "$work/prefix/lib/cmake/lbkit/lbkitConfig.cmake"
test -x "$work/prefix/bin/lbkit-echo-client"
if [ -d "$work/prefix/include/lbkit" ] && ls "$work/prefix/include/lbkit" | grep -qv -e '\.h$' -e '^testing$'; then
  echo "unexpected files in the installed include/lbkit"; exit 1
fi
cmake -S "$source_dir/examples/customloadbalancing" -B "$work/example" \
  -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/example" -j2 --target lbkit-echo-client
echo "built the example against the installed lbkit: OK"
