#include "scenarios.h"

#include <exception>
#include <iostream>
#include <string>

#include "bench_util.h"

namespace lbkit_bench {

int RunScenario(int argc, char** argv) {
  const std::string flag = argv[1];
  try {
    if (flag != "--scenario") {
      throw UsageError("write the scenario as \"--scenario NAME\", got \"" + flag + "\"");
    }
    if (argc < 3)
      throw UsageError(
          "--scenario: missing value (slow-backend, ring-hash-movement, discovery, cold-start)");
    const std::string name = argv[2];
    if (name == "slow-backend") return RunSlowBackend(argc, argv);
    if (name == "ring-hash-movement") return RunRingHashMovement(argc, argv);
    if (name == "discovery") return RunDiscovery(argc, argv);
    if (name == "cold-start") return RunColdStart(argc, argv);
    if (name == "cold-start-backend") return RunColdStartBackend(argc, argv);
    throw UsageError("--scenario: unknown scenario \"" + name +
                     "\" (choose from slow-backend, ring-hash-movement, discovery, cold-start)");
  } catch (const UsageError& e) {
    std::cerr << "lbkit-bench: " << e.what() << "\n(see lbkit-bench --help)\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "lbkit-bench: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace lbkit_bench
