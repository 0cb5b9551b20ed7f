#!/usr/bin/env bash
# One door to gRPC internals (design.md, rule 4): fails if non-public gRPC
# C++ API is named anywhere in lbkit's sources outside the stub adapter,
# src/core/stub_adapter/ (whose stub_adapter.h lists what it relies on).
#
#   internal_api_confined.sh [source_dir]
#
# Searched: src/ include/ tools/ examples/ fuzz/ (C++ sources and headers).
# tests/ is searched too, but only reported: see ALLOWED_IN_TESTS below.
set -euo pipefail
source_dir=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$source_dir"

# Each pattern, an extended regular expression, names one kind of non-public
# API. Add to it when the adapter starts relying on something new.
patterns=(
  'grpc::internal\b'                     # gRPC's internal namespace
  '\binternal::(Call|RpcMethod|CallOpSetInterface|CallHook|Mutex|MutexLock)\b'
  'grpc_core\b'                          # gRPC core's C++ namespace
  '#include *[<"](src/core/|grpcpp/impl/(call|call_hook|call_op_set|call_op_set_interface|rpc_method|codegen/[a-z_]+)\.h)'
  '^\s*namespace grpc\b'                 # reopening gRPC's namespace (friend specializations)
  'ClientReader<[^>]*Tag'                # the friend hook
  'CreateChannelInternal'
  'grpc_lame_client_channel_create'
  'PerformOps'                           # Call::PerformOps, ChannelInterface::PerformOpsOnCall
  'channel_tag\('                        # RpcMethod's registered-method tag
  'CallbackCQ|CallbackAlternativeCQ'     # private virtual; 1.51's shared callback queue
  'NotifyOnStateChangeImpl|WaitForStateChangeImpl|CreateCallInternal'
  'initial_metadata_flags|send_initial_metadata_|GRPC_INITIAL_METADATA_'  # ClientContext privates
)
regex=$(IFS='|'; echo "${patterns[*]}")

search() {
  local dirs=()
  for dir in "$@"; do [ -d "$dir" ] && dirs+=("$dir"); done
  [ ${#dirs[@]} -gt 0 ] || return 0
  grep -rnP --include='*.h' --include='*.cc' --include='*.hpp' --include='*.cpp' \
    "$regex" "${dirs[@]}" | grep -v '^src/core/stub_adapter/' || true
}

found=$(search src include tools examples fuzz)
if [ -n "$found" ]; then
  echo "non-public gRPC API outside src/core/stub_adapter/ (move it into the adapter,"
  echo "and list it in src/core/stub_adapter/stub_adapter.h):"
  echo "$found"
  exit 1
fi

# Tests may reach internals only where no public way exists; none does today.
# A test that must should be named here, with why.
ALLOWED_IN_TESTS=()
in_tests=$(search tests)
for allowed in "${ALLOWED_IN_TESTS[@]+"${ALLOWED_IN_TESTS[@]}"}"; do
  in_tests=$(echo "$in_tests" | grep -v "^$allowed:" || true)
done
if [ -n "$in_tests" ]; then
  echo "non-public gRPC API in tests/ (not allowed in ALLOWED_IN_TESTS):"
  echo "$in_tests"
  exit 1
fi

# The search itself must work: the adapter is full of what it looks for.
if ! grep -rqP --include='*.h' --include='*.cc' "$regex" src/core/stub_adapter/; then
  echo "the patterns find nothing even in src/core/stub_adapter/: this check is broken"
  exit 1
fi
echo "gRPC internals appear only in src/core/stub_adapter/"
