#!/usr/bin/env bash
# Where does an lbkit call spend instructions that a native gRPC call does
# not? Runs lbkit-bench's sync unary workload (one thread) under callgrind,
# once on the lbkit round_robin channel and once on gRPC's native round_robin
# channel, counting only the client thread below SyncWorker, and prints:
#   - instructions per call on the client thread, for both;
#   - the lbkit layer alone: LbChannel::CreateCall minus the grpc::Channel::CreateCall
#     it ends in;
#   - the functions whose self cost per call grew the most.
# Results (callgrind files, annotations) go to build-bench/results/profile/.
#
#   bash tools/profile-hot-path.sh [seconds]    # default 5 s per channel (~1 min in all)
#
# (perf would do, but hardware counters are often unavailable in VMs, and
# callgrind's counts are exact and repeatable on a noisy machine.)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
command -v valgrind >/dev/null || {
  echo "profile-hot-path: needs valgrind (apt-get install valgrind)" >&2
  exit 1
}
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j2 --target lbkit-bench >/dev/null
bin=build-bench/tools/lbkit-bench
out=build-bench/results/profile
mkdir -p "$out"

for ch in lbkit_round_robin native_round_robin; do
  echo "callgrind: $ch, ${secs}s ..." >&2
  valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.$ch.out" \
    --toggle-collect='*SyncWorker*' \
    "$bin" --channels "$ch" --workloads sync --threads 1 --duration "${secs}s" --warmup 0 \
    --rounds 1 --no-progress --json "$out/$ch.json" >"$out/$ch.log" 2>&1
  grep -o '"calls": [0-9]*' "$out/$ch.json" | head -1 | grep -o '[0-9]*$' >"$out/$ch.calls"
  callgrind_annotate --threshold=100 --inclusive=no "$out/callgrind.$ch.out" 2>/dev/null |
    sed 's/ \[\/.*//' >"$out/$ch.self"
  callgrind_annotate --threshold=100 --inclusive=yes "$out/callgrind.$ch.out" 2>/dev/null |
    sed 's/ \[\/.*//' >"$out/$ch.inclusive"
done

lb_calls=$(cat "$out/lbkit_round_robin.calls")
nat_calls=$(cat "$out/native_round_robin.calls")
# Ir of the first line of an annotation matching a pattern.
ir() { grep -m1 -E "$2" "$1" | awk '{gsub(",", "", $1); print $1}'; }
lb_total=$(ir "$out/lbkit_round_robin.self" 'PROGRAM TOTALS')
nat_total=$(ir "$out/native_round_robin.self" 'PROGRAM TOTALS')
lb_layer=$(ir "$out/lbkit_round_robin.inclusive" 'LbChannel::CreateCall\(')
lb_grpc=$(ir "$out/lbkit_round_robin.inclusive" ':grpc::Channel::CreateCall\(')
nat_grpc=$(ir "$out/native_round_robin.inclusive" ':grpc::Channel::CreateCall\(')

awk -v lc="$lb_calls" -v nc="$nat_calls" -v lt="$lb_total" -v nt="$nat_total" \
    -v ll="$lb_layer" -v lg="$lb_grpc" -v ng="$nat_grpc" 'BEGIN {
  printf "client-thread instructions per sync unary call (callgrind, %d and %d calls):\n", lc, nc
  printf "  lbkit round_robin   %8.0f\n  native round_robin  %8.0f\n  difference          %+8.0f (%+.2f%%)\n",
         lt / lc, nt / nc, lt / lc - nt / nc, 100 * (lt / lc - nt / nc) / (nt / nc)
  printf "channel CreateCall per call: native grpc::Channel::CreateCall %.0f; lbkit LbChannel::CreateCall %.0f,\n", ng / nc, ll / lc
  printf "  of which gRPC (subchannel grpc::Channel::CreateCall) %.0f and the lbkit layer %.0f\n", lg / lc, (ll - lg) / lc
}'

echo
echo "self instructions per call, largest increases (lbkit - native):"
awk -v LB="$lb_calls" -v NAT="$nat_calls" '
function parse(line) {
  if (!match(line, /^ *[0-9,]+ /)) return 0
  ir = substr(line, RSTART, RLENGTH); gsub(/[ ,]/, "", ir)
  name = line; sub(/^ *[0-9,]+ +\([ 0-9.]+%\) +/, "", name); sub(/^\?\?\?:/, "", name)
  return name != "PROGRAM TOTALS"
}
FNR == NR { if (parse($0)) lb[name] += ir; next }
{ if (parse($0)) nat[name] += ir }
END {
  for (k in lb) all[k] = 1
  for (k in nat) all[k] = 1
  for (k in all) printf "%8.1f %8.1f %+8.1f  %s\n", lb[k] / LB, nat[k] / NAT, lb[k] / LB - nat[k] / NAT, substr(k, 1, 110)
}' "$out/lbkit_round_robin.self" "$out/native_round_robin.self" |
  sort -k3 -g -r | head -20 | { echo "   lbkit   native    delta  function"; cat; }
