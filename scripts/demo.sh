#!/usr/bin/env bash
# The seed example, end to end: installs what is missing, builds, starts the
# two echo servers on localhost:50050 and localhost:50051, runs the client
# (custom_round_robin, chooseSecond 3, nine calls), prints its output and
# stops the servers. Extra arguments go to the client, e.g.
#   bash scripts/demo.sh --choose-second 2 --count 10
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j2 --target lbkit-echo-server lbkit-echo-client >/dev/null

bin=build/examples/customloadbalancing
log=$(mktemp)
"$bin/lbkit-echo-server" >"$log" 2>&1 &
server=$!
cleanup() {
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -f "$log"
}
trap cleanup EXIT

for _ in $(seq 1 500); do
  [ "$(grep -c '^serving on' "$log" || true)" -ge 2 ] && break
  if ! kill -0 "$server" 2>/dev/null; then
    echo "demo: the echo server did not start:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.02
done
sed 's/^/[server] /' "$log"
echo "[client] lbkit-echo-client $*"
"$bin/lbkit-echo-client" "$@"
