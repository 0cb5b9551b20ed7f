# Sourced by the demo scripts: builds the example programs and starts the echo
# server, stopping it on exit.

# Installs what is missing and builds lbkit-echo-server and lbkit-echo-client.
build_examples() {
  bash scripts/install-deps.sh
  cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build -j2 --target lbkit-echo-server lbkit-echo-client >/dev/null
  bin=build/examples/customloadbalancing
}

# start_echo_server ARGS...: starts the server in the background (its log in
# $server_log, its pid in $server), waits until it serves on every address,
# and arranges for it to stop when the script exits.
start_echo_server() {
  server_log=$(mktemp)
  "$bin/lbkit-echo-server" "$@" >"$server_log" 2>&1 &
  server=$!
  trap 'kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -f "$server_log"' EXIT
  local want=2
  for _ in $(seq 1 500); do
    [ "$(grep -c '^serving on' "$server_log" || true)" -ge "$want" ] && return 0
    if ! kill -0 "$server" 2>/dev/null; then
      echo "demo: the echo server did not start:" >&2
      cat "$server_log" >&2
      exit 1
    fi
    sleep 0.02
  done
  echo "demo: the echo server did not come up in 10 s" >&2
  exit 1
}
