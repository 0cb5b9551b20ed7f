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

// Rotates over child pickers. One counter per thread stripe, each on its own
// cache line, so that threads picking at once do not fight over one line;
// each thread still walks the children in order.
class RoundRobinPicker final : public Picker {
 public:
  RoundRobinPicker(std::vector<std::shared_ptr<Picker>> children, uint64_t start)
      : children_(std::move(children)) {
    for (unsigned i = 0; i < kStripes; ++i)
      stripes_[i].next.store(start + i, std::memory_order_relaxed);
  }
  PickResult Pick(const PickArgs& args) const override {
    uint64_t n = stripes_[Stripe()].next.fetch_add(1, std::memory_order_relaxed);
    return children_[n % children_.size()]->Pick(args);
  }

 private:
  static constexpr unsigned kStripes = 16;
  static unsigned Stripe() {
    static std::atomic<unsigned> next{0};
    thread_local unsigned index = next.fetch_add(1, std::memory_order_relaxed) % kStripes;
    return index;
  }
  struct alignas(64) Counter {
    mutable std::atomic<uint64_t> next{0};
  };
  const std::vector<std::shared_ptr<Picker>> children_;
  Counter stripes_[kStripes];
};

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_POLICIES_ROUND_ROBIN_H_
