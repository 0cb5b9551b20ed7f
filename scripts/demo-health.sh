#!/usr/bin/env bash
# Client-side health checking, shown: round_robin over the two echo servers
# with healthCheckConfig on. Partway through, the second server's health is
# flipped to NOT_SERVING (SIGUSR1 to lbkit-echo-server) and traffic moves to
# the first; flipped back, traffic returns. Ends with the --stats table.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh

build_examples
start_echo_server
# A demo, not a test: the flips are timed by the clock.
(
  sleep 1.2; kill -USR1 "$server"; echo "[demo] localhost:50051 -> NOT_SERVING"
  sleep 1.5; kill -USR1 "$server"; echo "[demo] localhost:50051 -> SERVING"
) &
flipper=$!
"$bin/lbkit-echo-client" --policy round_robin --health-service "" --count 40 --interval 100 --stats
wait "$flipper"
