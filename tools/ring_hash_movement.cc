// lbkit-bench --scenario ring-hash-movement: how many request keys change
// backend when one of N backends is removed (GitHub issue 9;
// docs/performance.md).
//
// Consistent hashing promises that only the removed backend's keys move
// (about 1/N of them). It runs lbkit's ring_hash policy, the registered one,
// through the public testing kit (lbkit/testing/fake_helper.h): every backend
// READY, --keys header values each picked once before and once after the
// removal, each move classified as from the removed backend or between two
// backends that both stay.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <lbkit/lbkit.h>
#include <lbkit/testing/fake_helper.h>
#include <nlohmann/json.hpp>

#include "bench_util.h"
#include "cli.h"
#include "scenarios.h"

namespace lbkit_bench {
namespace {

struct Flags {
  std::vector<int> endpoints = {4, 10, 100, 1000};
  int keys = 100000;
  int min_ring_size = 1024;  // A42's default
  std::string json_path;
};

// Fills `flags` from argv[3..) (argv[1..2] name the scenario): -1 to go on,
// else the status to exit with (--help, a bad flag).
int ParseFlags(int argc, char** argv, Flags* flags) {
  CLI::App app(R"(For each N, builds lbkit's ring_hash over N READY backends (the public testing
kit, no network), picks --keys request keys, removes one backend, picks them
again and prints the share of keys that moved: from the removed backend, and
between backends that both stay.)",
               "lbkit-bench --scenario ring-hash-movement");
  lbkit_example::AddNumber(app, "--endpoints", &flags->endpoints, 2, 10000,
                           "comma list of backend counts, each 2..10000")
      ->delimiter(',');
  lbkit_example::AddNumber(app, "--keys", &flags->keys, 1, 10000000, "request keys");
  lbkit_example::AddNumber(app, "--min-ring-size", &flags->min_ring_size, 1, 8 << 20,
                           "ring_hash's minRingSize (A42's default)");
  AddJsonPath(app, &flags->json_path);
  return lbkit_example::ParseCommandLine(app, argc - 2, argv + 2);
}

// One ring_hash policy on a fake helper, its backends made READY as the
// policy asks for them.
class Ring {
 public:
  Ring(int n, int min_ring_size) {
    config_json_ =
        R"({"requestHashHeader":"x-key","minRingSize":)" + std::to_string(min_ring_size) + "}";
    grpc::Status status =
        lbkit::testing::BuildBalancer("ring_hash", config_json_, &helper_, &policy_, &config_);
    if (!status.ok()) throw std::runtime_error("ring_hash: " + status.error_message());
    for (int i = 0; i < n; ++i) endpoints_.push_back(lbkit::Endpoint{{Name(i)}});
    Update();
    ConnectAll();
  }

  static std::string Name(int i) { return "backend-" + std::to_string(i); }

  void Remove(int index) {
    endpoints_.erase(endpoints_.begin() + index);
    Update();
  }

  // The backend a call with header x-key: `key` goes to.
  std::string PickFor(const std::string& key) {
    call_.metadata.clear();
    call_.metadata.emplace("x-key", key);
    return lbkit::testing::Describe(helper_.last_state().picker->Pick(call_.args()));
  }

 private:
  void Update() {
    lbkit::BalancerUpdate update;
    update.endpoints = endpoints_;
    update.config = config_;
    grpc::Status status = policy_->UpdateResolverState(std::move(update));
    if (!status.ok()) throw std::runtime_error("ring_hash update: " + status.error_message());
  }

  // ring_hash connects lazily: pick keys until every backend has been asked
  // for and made READY.
  void ConnectAll() {
    size_t ready = 0;
    for (int k = 0; ready < endpoints_.size(); ++k) {
      if (k > 100 * static_cast<int>(endpoints_.size()) + 100000) {
        throw std::runtime_error("ring_hash did not connect every backend");
      }
      if (PickFor("connect-" + std::to_string(k)) != "queue") continue;
      helper_.RunPosted();
      ready = 0;
      for (const auto& subchannel : helper_.subchannels()) {
        if (subchannel->state() != lbkit::ConnectivityState::kReady &&
            subchannel->connection_requests() > 0) {
          subchannel->SetState(lbkit::ConnectivityState::kReady);
        }
        if (subchannel->state() == lbkit::ConnectivityState::kReady) ++ready;
      }
    }
  }

  std::string config_json_;
  lbkit::testing::FakeHelper helper_;
  std::unique_ptr<lbkit::Balancer> policy_;
  std::shared_ptr<const lbkit::BalancerConfig> config_;
  std::vector<lbkit::Endpoint> endpoints_;
  lbkit::testing::TestCall call_;
};

}  // namespace

int RunRingHashMovement(int argc, char** argv) {
  Flags flags;
  if (int status = ParseFlags(argc, argv, &flags); status >= 0) return status;
  std::printf("ring_hash: %d keys, minRingSize %d; one backend removed (the middle one)\n",
              flags.keys, flags.min_ring_size);
  std::printf("%6s %10s %10s %12s %12s %10s\n", "N", "moved", "1/N", "from removed", "between stay",
              "target");
  nlohmann::json rows = nlohmann::json::array();
  bool bad = false;
  for (int n : flags.endpoints) {
    Ring ring(n, flags.min_ring_size);
    std::vector<std::string> before(flags.keys);
    for (int k = 0; k < flags.keys; ++k) before[k] = ring.PickFor("key-" + std::to_string(k));
    const int removed = n / 2;
    ring.Remove(removed);
    int from_removed = 0;
    int between_staying = 0;
    for (int k = 0; k < flags.keys; ++k) {
      const std::string after = ring.PickFor("key-" + std::to_string(k));
      if (after.rfind("backend-", 0) != 0) {
        std::cerr << "lbkit-bench: key-" << k << " picked \"" << after << "\"\n";
        bad = true;
        continue;
      }
      if (after == before[k]) continue;
      (before[k] == Ring::Name(removed) ? from_removed : between_staying)++;
    }
    const double keys = flags.keys;
    const double moved = (from_removed + between_staying) / keys;
    const double target = 1.0 / n + 0.02;
    std::printf("%6d %9.2f%% %9.2f%% %11.2f%% %11.2f%% %9.2f%%\n", n, moved * 100, 100.0 / n,
                from_removed / keys * 100, between_staying / keys * 100, target * 100);
    rows.push_back({{"endpoints", n},
                    {"moved_share", moved},
                    {"from_removed_share", from_removed / keys},
                    {"between_staying_share", between_staying / keys},
                    {"target_share", target}});
  }
  if (!flags.json_path.empty()) {
    nlohmann::json out = {{"scenario", "ring-hash-movement"},
                          {"keys", flags.keys},
                          {"min_ring_size", flags.min_ring_size},
                          {"results", rows}};
    std::ofstream(flags.json_path) << out.dump(2) << "\n";
  }
  return bad ? 1 : 0;
}

}  // namespace lbkit_bench
