// least_request (gRFC A48): one pick_first child per endpoint (through
// EndpointSharding); each call samples `choiceCount` READY endpoints at random
// (with replacement, as A48 and Envoy do) and goes to the one with the fewest
// calls in flight per unit of weight (in_flight / weight; the first sampled
// wins a tie). States as round_robin.
//
// In-flight counts are per endpoint, kept across resolver updates (an
// endpoint whose addresses or attributes change keeps its count), raised at
// pick and lowered by the pick's done-callback, which lbkit runs exactly once
// per completed pick (picker.h), a pick lbkit did not use included.
#ifndef LBKIT_SRC_POLICIES_LEAST_REQUEST_H_
#define LBKIT_SRC_POLICIES_LEAST_REQUEST_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "lbkit/balancer.h"

namespace lbkit {
namespace internal {

std::shared_ptr<const BalancerBuilder> MakeLeastRequestBuilder();

// The config: choiceCount from 2 to 10 (default 2; above 10 is clamped).
class LeastRequestConfig final : public BalancerConfig {
 public:
  static constexpr uint32_t kDefaultChoiceCount = 2;
  static constexpr uint32_t kMaxChoiceCount = 10;
  uint32_t choice_count = kDefaultChoiceCount;
};

// One endpoint's calls in flight: 8 bytes, not a cache line of its own. With
// 10,000 endpoints a pick's two random counters are the cache misses that
// dominate its cost, and 64-byte counters measured slower there (82 against
// 55 ns a pick and done, tools/pick_benchmark.cc) than the false sharing
// that small counters risk at a few endpoints costs (within noise).
//
// Its lifetime is counted in the same atomic: `refs_` is the calls in flight
// plus one while the policy or a picker holds it (through Hold()). A
// done-callback then needs only a raw pointer, which std::function stores
// without allocating, and the counter outlives both the policy and every
// call that was picked for its endpoint.
class InFlightCounter {
 public:
  // A new counter at zero, held by the returned pointer (and its copies).
  static std::shared_ptr<InFlightCounter> Create();
  // Calls picked for this endpoint whose done-callback has not run yet.
  // Only while held.
  uint64_t in_flight() const { return refs_.load(std::memory_order_relaxed) - 1; }
  // A pick: one call more; CallDone() must follow exactly once.
  void CallStarted() { refs_.fetch_add(1, std::memory_order_relaxed); }
  // A call's end (its done-callback). May destroy the counter.
  void CallDone() { Release(); }

 private:
  InFlightCounter() = default;
  void Release() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }
  std::atomic<uint64_t> refs_{1};
};

// Chooses among child pickers by fewest in-flight calls per unit of weight
// among `choice_count` random samples. Pick: no lock; no allocation (pick_first
// children attach no done-callback of their own; were one attached, chaining
// it costs one allocation).
class LeastRequestPicker final : public Picker {
 public:
  struct Entry {
    std::shared_ptr<Picker> child;
    std::shared_ptr<InFlightCounter> counter;
    uint32_t weight = 1;
  };
  // Requires: entries non-empty, every child and counter non-null, weight >= 1,
  // choice_count >= 1.
  LeastRequestPicker(std::vector<Entry> entries, uint32_t choice_count);
  PickResult Pick(const PickArgs& args) const override;

 private:
  // What a pick reads: raw pointers, kept alive by owners_.
  struct Candidate {
    Picker* child;
    InFlightCounter* counter;
    uint64_t weight;
  };
  const std::vector<Entry> owners_;
  std::vector<Candidate> candidates_;
  const uint32_t choice_count_;
};

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_POLICIES_LEAST_REQUEST_H_
