// lbkit-bench's scenarios other than the default channel comparison:
//
//   lbkit-bench --scenario slow-backend [flags]        tools/slow_backend.cc
//   lbkit-bench --scenario ring-hash-movement [flags]  tools/ring_hash_movement.cc
//   lbkit-bench --scenario discovery [flags]           tools/discovery_bench.cc
//   lbkit-bench --scenario cold-start [flags]          tools/cold_start.cc
//     (and its backend child, "--scenario cold-start-backend --ports N",
//     which cold-start starts itself)
//
// Each parses argv from argv[3] with its own CLI11 app (argv[1..2] name the
// scenario; "--scenario=X" is not accepted, so that the flags always start at
// argv[3]), so that scenarios can give a flag name their own default.
#ifndef LBKIT_TOOLS_SCENARIOS_H_
#define LBKIT_TOOLS_SCENARIOS_H_

namespace lbkit_bench {

// Runs the scenario argv[2] names; prints a usage error and returns 2 for a
// bad scenario or flag, 1 when the run fails, 0 otherwise.
int RunScenario(int argc, char** argv);

int RunSlowBackend(int argc, char** argv);
int RunRingHashMovement(int argc, char** argv);
int RunDiscovery(int argc, char** argv);
int RunColdStart(int argc, char** argv);
int RunColdStartBackend(int argc, char** argv);

}  // namespace lbkit_bench

#endif  // LBKIT_TOOLS_SCENARIOS_H_
