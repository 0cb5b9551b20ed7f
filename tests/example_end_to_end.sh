#!/usr/bin/env bash
# Runs the example programs as a user would: the server on two ephemeral
# loopback ports, the client against them, and checks the client's output.
set -euo pipefail
server_bin=$1
client_bin=$2
work=$(mktemp -d)
trap 'kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; rm -rf "$work"' EXIT

"$server_bin" --addrs 127.0.0.1:0,127.0.0.1:0 >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 500); do
  [ "$(grep -c '^serving on' "$work/server.log" || true)" -ge 2 ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 0.02
done
mapfile -t addrs < <(sed -n 's/^serving on //p' "$work/server.log")
[ "${#addrs[@]}" -eq 2 ] || { echo "server did not start:"; cat "$work/server.log"; exit 1; }
a=${addrs[0]}
b=${addrs[1]}

fail() { echo "FAIL: $*"; exit 1; }

# The seed: 9 calls, every third to the second server.
"$client_bin" --addrs "$a,$b" >"$work/out3" || fail "client (chooseSecond=3) failed: $(cat "$work/out3")"
cat "$work/out3"
[ "$(grep -c "^this is examples/customloadbalancing (from $a)\$" "$work/out3")" -eq 6 ] || fail "expected 6 replies from $a"
[ "$(grep -c "^this is examples/customloadbalancing (from $b)\$" "$work/out3")" -eq 3 ] || fail "expected 3 replies from $b"
for n in 3 6 9; do
  sed -n "${n}p" "$work/out3" | grep -q "(from $b)" || fail "reply $n should come from $b"
done
grep -q "^summary: .* OK\$" "$work/out3" || fail "no OK summary"

# chooseSecond=2 over 10 calls: 1:1.
"$client_bin" --addrs "$a,$b" --choose-second 2 --count 10 >"$work/out2" || fail "client (chooseSecond=2) failed"
grep -q "served 5, .* served 5 " "$work/out2" || fail "expected a 5:5 split: $(tail -1 "$work/out2")"

# --stats prints a table with a row per backend.
"$client_bin" --addrs "$a,$b" --stats >"$work/stats" || fail "client --stats failed"
grep -q "^channel manual:///: policy custom_round_robin, READY" "$work/stats" || fail "no stats header: $(cat "$work/stats")"
grep -Eq "^  $a +READY .* 6 #+\$" "$work/stats" || fail "no stats row for $a: $(cat "$work/stats")"

# LBKIT_TRACE shows resolver, policy, subchannel and pick lines, through
# gRPC's log (INFO lines: "I<date> <time> <thread> <file>:<line>]   lbkit pick: ...").
GRPC_VERBOSITY=INFO LBKIT_TRACE=all "$client_bin" --addrs "$a,$b" --count 3 >/dev/null 2>"$work/trace" || fail "traced client failed"
for kind in resolver policy subchannel pick; do
  grep -Eq "^I.*\] +lbkit $kind: " "$work/trace" || fail "no '$kind' trace lines"
done
GRPC_VERBOSITY=INFO LBKIT_TRACE=pick "$client_bin" --addrs "$a,$b" --count 3 >/dev/null 2>"$work/trace-pick"
if grep -Eq "\] +lbkit subchannel: " "$work/trace-pick"; then fail "LBKIT_TRACE=pick showed subchannel lines"; fi
[ "$(grep -Ec "\] +lbkit pick: /grpc.examples.echo.Echo/UnaryEcho -> " "$work/trace-pick")" -eq 3 ] || fail "expected 3 pick lines"
# GRPC_VERBOSITY filters them: at its default (ERROR) no trace line shows,
# one line says why; an unknown category is named once.
GRPC_VERBOSITY=ERROR LBKIT_TRACE=pick,bogus "$client_bin" --addrs "$a,$b" --count 3 >/dev/null 2>"$work/trace-quiet"
if grep -q "lbkit pick: " "$work/trace-quiet"; then fail "INFO trace lines shown at GRPC_VERBOSITY=ERROR"; fi
[ "$(grep -c "GRPC_VERBOSITY hides them" "$work/trace-quiet")" -eq 1 ] || fail "no hint about GRPC_VERBOSITY: $(cat "$work/trace-quiet")"
[ "$(grep -c 'LBKIT_TRACE names unknown category "bogus"' "$work/trace-quiet")" -eq 1 ] || fail "unknown category not warned once: $(cat "$work/trace-quiet")"

# A port already in use is a clear error and a non-zero exit.
if "$server_bin" --addrs "$a" >"$work/busy" 2>&1; then fail "second server on $a started"; fi
grep -q "cannot listen on $a" "$work/busy" || fail "unclear port-in-use error: $(cat "$work/busy")"

# A bad flag is a usage error (status 2) naming the flag, not a crash.
status=0
"$client_bin" --choose-second -1 >"$work/bad" 2>&1 || status=$?
[ "$status" -eq 2 ] || fail "negative --choose-second: status $status, expected 2: $(cat "$work/bad")"
grep -q "^lbkit-echo-client: --choose-second: .*-1" "$work/bad" || fail "unclear error: $(cat "$work/bad")"
status=0
"$server_bin" --bogus >"$work/bad" 2>&1 || status=$?
[ "$status" -eq 2 ] || fail "unknown server flag: status $status, expected 2: $(cat "$work/bad")"
grep -q "^lbkit-echo-server: .*--bogus" "$work/bad" || fail "unclear error: $(cat "$work/bad")"

# --help prints the usage, naming every flag, and exits 0.
"$client_bin" --help >"$work/help-client" 2>&1 || fail "lbkit-echo-client --help failed: $(cat "$work/help-client")"
for flag in --addrs --target --choose-second --count --timeout --policy --health-service --interval --stats; do
  grep -q -- "$flag" "$work/help-client" || fail "lbkit-echo-client --help does not name $flag"
done
"$server_bin" --help >"$work/help-server" 2>&1 || fail "lbkit-echo-server --help failed: $(cat "$work/help-server")"
for flag in --addrs --not-serving --toggle --report-load --register --weight --ttl; do
  grep -q -- "$flag" "$work/help-server" || fail "lbkit-echo-server --help does not name $flag"
done

# The same address twice is one server: the client says so instead of
# leaving custom_round_robin one endpoint short.
status=0
"$client_bin" --addrs "$a,$a" >"$work/dup" 2>&1 || status=$?
[ "$status" -eq 2 ] || fail "duplicate --addrs: status $status, expected 2: $(cat "$work/dup")"
grep -q "names $a twice" "$work/dup" || fail "unclear duplicate-address error: $(cat "$work/dup")"

# Servers gone: the client fails fast with a clear message.
kill -TERM "$server_pid"
wait "$server_pid" || fail "server did not exit cleanly on SIGTERM"
grep -q "received SIGTERM, stopping" "$work/server.log" || fail "server did not log its stop"
start=$(date +%s)
if "$client_bin" --addrs "$a,$b" --timeout 5 >"$work/down" 2>&1; then fail "client succeeded with servers down"; fi
elapsed=$(( $(date +%s) - start ))
[ "$elapsed" -le 8 ] || fail "client took ${elapsed}s with --timeout 5"
grep -q "call 1 failed" "$work/down" || fail "unclear error: $(cat "$work/down")"
# Health: one server started NOT_SERVING gets no calls from a health-checking
# round_robin client; SIGUSR1 flips it back and the server says so.
wait_serving() {  # wait_serving LOG: prints the address the server logged
  for _ in $(seq 1 500); do
    grep -q '^serving on' "$1" && break
    sleep 0.02
  done
  sed -n 's/^serving on \([^ ]*\).*/\1/p' "$1" | head -1
}
"$server_bin" --addrs 127.0.0.1:0 >"$work/h1.log" 2>&1 &
healthy_pid=$!
"$server_bin" --addrs 127.0.0.1:0 --not-serving 127.0.0.1:0 >"$work/h2.log" 2>&1 &
sick_pid=$!
healthy=$(wait_serving "$work/h1.log")
sick=$(wait_serving "$work/h2.log")
trap 'kill "$healthy_pid" "$sick_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
grep -q "(health: NOT_SERVING)" "$work/h2.log" || fail "server did not start NOT_SERVING: $(cat "$work/h2.log")"
"$client_bin" --addrs "$healthy,$sick" --policy round_robin --health-service "" --count 6 --stats \
  >"$work/health" || fail "health client failed: $(cat "$work/health")"
grep -q "$healthy served 6, $sick served 0" "$work/health" || fail "unhealthy server got calls: $(cat "$work/health")"
grep -Eq "^  $sick +TRANSIENT_FAILURE +NOT_SERVING" "$work/health" || fail "stats do not show NOT_SERVING"
kill -USR1 "$sick_pid"
for _ in $(seq 1 500); do grep -q "^health of $sick: SERVING" "$work/h2.log" && break; sleep 0.02; done
grep -q "^health of $sick: SERVING" "$work/h2.log" || fail "SIGUSR1 did not flip health"
kill -TERM "$healthy_pid" "$sick_pid"
wait "$healthy_pid" "$sick_pid" || fail "servers did not stop cleanly"
echo "example end to end: OK"
