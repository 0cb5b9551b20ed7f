#!/usr/bin/env bash
# The seed example, end to end: installs what is missing, builds, starts the
# two echo servers on localhost:50050 and localhost:50051, runs the client
# (custom_round_robin, chooseSecond 3, nine calls), prints its output and
# stops the servers. Extra arguments go to the client, e.g.
#   bash scripts/demo.sh --choose-second 2 --count 10
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh

build_examples
start_echo_server
sed 's/^/[server] /' "$server_log"
echo "[client] lbkit-echo-client $*"
"$bin/lbkit-echo-client" "$@"
