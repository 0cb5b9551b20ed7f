// round_robin: one pick_first child per endpoint (through EndpointSharding);
// calls rotate over the READY children. Reports READY while any child is
// READY; otherwise CONNECTING, or TRANSIENT_FAILURE once every child failed,
// and stays in TRANSIENT_FAILURE until a child is READY again.
#ifndef LBKIT_SRC_POLICIES_ROUND_ROBIN_H_
#define LBKIT_SRC_POLICIES_ROUND_ROBIN_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "lbkit/balancer.h"

namespace lbkit {
namespace internal {

std::shared_ptr<const BalancerBuilder> MakeRoundRobinBuilder();

// Rotates over child pickers. One atomic counter, on its own cache line.
class RoundRobinPicker final : public Picker {
 public:
  RoundRobinPicker(std::vector<std::shared_ptr<Picker>> children, uint64_t start)
      : children_(std::move(children)), next_(start) {}
  PickResult Pick(const PickArgs& args) const override {
    uint64_t n = next_.fetch_add(1, std::memory_order_relaxed);
    return children_[n % children_.size()]->Pick(args);
  }

 private:
  const std::vector<std::shared_ptr<Picker>> children_;
  alignas(64) mutable std::atomic<uint64_t> next_;
  char pad_[64 - sizeof(std::atomic<uint64_t>)] = {};  // keep the counter's line to itself
};

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_POLICIES_ROUND_ROBIN_H_
