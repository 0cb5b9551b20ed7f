// random: one pick_first child per endpoint (through EndpointSharding); each
// call goes to a READY endpoint chosen at random, uniformly when every weight
// is equal, else with probability weight / (sum of the READY weights).
// States as round_robin: READY while any child is READY; otherwise
// CONNECTING, or TRANSIENT_FAILURE (sticky) once every child failed.
#ifndef LBKIT_SRC_POLICIES_RANDOM_H_
#define LBKIT_SRC_POLICIES_RANDOM_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "lbkit/balancer.h"

namespace lbkit {
namespace internal {

std::shared_ptr<const BalancerBuilder> MakeRandomBuilder();

// 64 random bits from a per-thread generator (splitmix64, seeded once per
// thread from std::random_device): no lock, no allocation, a few ns. Not for
// cryptography; good enough to spread calls.
uint64_t ThreadRandom();

// An index in [0, n) from 32 random bits (Lemire's multiply-shift: no
// division). Its bias, at most n / 2^32, is under 3e-6 for 10,000 endpoints.
inline size_t RandomIndex(uint32_t bits, size_t n) {
  return static_cast<size_t>((static_cast<uint64_t>(bits) * n) >> 32);
}

// Chooses a child picker at random, by weight. Built on the serializer in
// O(n) (Vose's alias method); Pick is O(1): one random number, one table
// slot, no lock and no allocation.
class RandomPicker final : public Picker {
 public:
  // Requires: children non-empty and non-null, weights.size() ==
  // children.size(), every weight >= 1.
  RandomPicker(std::vector<std::shared_ptr<Picker>> children, const std::vector<uint32_t>& weights);
  PickResult Pick(const PickArgs& args) const override;

 private:
  // Slot i of the alias table: take child i when the high 32 random bits are
  // below `threshold` (scaled to 2^32), else child `alias`.
  struct Slot {
    uint64_t threshold;
    uint32_t alias;
  };
  const std::vector<std::shared_ptr<Picker>> children_;
  std::vector<Slot> slots_;  // empty when every weight is equal: uniform
};

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_POLICIES_RANDOM_H_
