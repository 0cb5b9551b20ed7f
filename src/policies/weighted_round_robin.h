// weighted_round_robin (gRFC A58): one pick_first child per endpoint (through
// EndpointSharding); calls rotate over the READY endpoints in proportion to
// weights learnt from the backends' per-call load reports (CallDoneInfo::
// load_report()): weight = qps / (utilization + eps / qps * penalty). States
// as round_robin.
//
// Weights are recomputed on the serializer every weightUpdatePeriod (a Helper
// timer), which publishes a new picker when they changed. A weight counts
// only once its endpoint has reported for blackoutPeriod, and is forgotten
// when no report came for weightExpirationPeriod; endpoints without a usable
// weight get the mean of the others; with fewer than two usable weights the
// picker is plain round robin. The picker is A58's static stride scheduler:
// one shared atomic sequence, no lock.
//
// Time, for blackout and expiration, is Helper::Now(). A report is timed
// when the serializer first sees it, at the next weight update (or picker
// build) after it arrived, not when it arrived: the done-callback only
// stores the weight, lock-free, and reads no clock. So a blackout or an
// expiration runs up to one weightUpdatePeriod late, never early. (C-core
// times a report on arrival, under a lock on the call's path.)
//
// Out-of-band reports (OpenRcaService/StreamCoreMetrics) are not implemented:
// enableOobLoadReport: true is rejected.
#ifndef LBKIT_SRC_POLICIES_WEIGHTED_ROUND_ROBIN_H_
#define LBKIT_SRC_POLICIES_WEIGHTED_ROUND_ROBIN_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lbkit/balancer.h"
#include "lbkit/load_report.h"

namespace lbkit {
namespace internal {

std::shared_ptr<const BalancerBuilder> MakeWeightedRoundRobinBuilder();

class WeightedRoundRobinConfig final : public BalancerConfig {
 public:
  static constexpr std::chrono::milliseconds kMinWeightUpdatePeriod{100};
  std::chrono::milliseconds blackout_period{10'000};
  std::chrono::milliseconds weight_expiration_period{180'000};
  std::chrono::milliseconds weight_update_period{1'000};  // at least kMinWeightUpdatePeriod
  double error_utilization_penalty = 1.0;                 // >= 0
};

// The weight A58 derives from one load report: qps / (utilization +
// eps / qps * penalty), utilization being application_utilization when
// positive, else cpu_utilization. 0 (no weight) when qps or utilization is
// not positive, or the result is not a finite positive number.
double ReportedWeight(const LoadReport& report, double error_utilization_penalty);

// Where done-callbacks leave an endpoint's reported weight: a slot in a
// process-wide table that is never freed, only reused, each use with a new
// generation. A pick captures the slot and its generation (16 bytes, kept
// inline by std::function: no allocation, and no reference count touched per
// call); a report whose generation is stale (its endpoint was removed, the
// slot reused) is dropped. Costs 16 bytes per endpoint at the peak number of
// weighted_round_robin endpoints in the process, kept until it exits.
class WeightSlot {
 public:
  // Data plane, any thread: records `report`'s weight, unless the slot has
  // moved on from `generation` or the report gives no weight (A58: a report
  // with no qps or no utilization is ignored).
  void Report(uint32_t generation, const LoadReport& report);

 private:
  friend class EndpointWeight;
  friend class WeightSlots;
  // [generation: 31 bits][fresh: 1 bit][weight: float, 32 bits]. fresh: a
  // report arrived since the serializer last looked.
  std::atomic<uint64_t> word_{0};
  std::atomic<double> penalty_{1.0};  // errorUtilizationPenalty, from the config
};

// One endpoint's weight, on the serializer: owns a WeightSlot (returned to
// the table when destroyed) and times its reports by Helper::Now().
class EndpointWeight {
 public:
  EndpointWeight();
  ~EndpointWeight();
  EndpointWeight(const EndpointWeight&) = delete;
  EndpointWeight& operator=(const EndpointWeight&) = delete;

  WeightSlot* slot() const { return slot_; }
  uint32_t generation() const { return generation_; }
  // What the scheduler should use at `now`, 0 for none. Notes a report that
  // arrived since the last call as received at `now`.
  double WeightAt(std::chrono::steady_clock::time_point now,
                  const WeightedRoundRobinConfig& config);
  // The endpoint (re)connected: a new blackout period starts with its next
  // report.
  void ResetBlackout() { non_empty_since_.reset(); }
  // The penalty reports are weighed with.
  void set_error_utilization_penalty(double penalty) {
    slot_->penalty_.store(penalty, std::memory_order_relaxed);
  }

  // The policy's last picker build (or look at its children) that found the
  // endpoint READY, 0 for none; a gap means it reconnected.
  uint64_t ready_build = 0;

 private:
  explicit EndpointWeight(std::pair<WeightSlot*, uint32_t> slot);

  WeightSlot* const slot_;
  const uint32_t generation_;
  double weight_ = 0;
  std::optional<std::chrono::steady_clock::time_point> non_empty_since_;
  std::optional<std::chrono::steady_clock::time_point> last_update_;
};

// A58's static stride scheduler over per-endpoint weights (0: none known),
// scaled as gRPC C-core's StaticStrideScheduler does. Returns the weights
// scaled to 1..65535: a known weight above 10 times the mean of the known
// ones counts as 10 times the mean (which bounds a pick's loop at about 10
// steps on average), the largest (so capped) becomes 65535, a missing one
// the mean, none below 1% of the mean (nor below 1). Or an empty vector when
// the picker should be plain round robin: fewer than two known weights, or
// all alike.
std::vector<uint16_t> ScaleWeights(const std::vector<double>& weights);

// Picks among child pickers by the scaled weights (plain rotation when
// empty) and attaches to each completed pick a done-callback that feeds the
// endpoint's load report to its WeightSlot. Lock-free; no allocation
// over pick_first children.
class WeightedRoundRobinPicker final : public Picker {
 public:
  struct Entry {
    std::shared_ptr<Picker> child;
    WeightSlot* slot;  // the endpoint's, for its reports (never freed)
    uint32_t generation;
  };
  // Requires: entries non-empty, every member non-null; scaled empty or of
  // entries.size().
  WeightedRoundRobinPicker(std::vector<Entry> entries, std::vector<uint16_t> scaled,
                           uint64_t start);
  PickResult Pick(const PickArgs& args) const override;

  // Whether `other` would pick the same way: same children, same weights.
  bool SameAs(const WeightedRoundRobinPicker& other) const;
  // The endpoints picked among (for tests: which slot an endpoint's reports
  // go to).
  const std::vector<Entry>& entries() const { return entries_; }

 private:
  size_t Next() const;

  const std::vector<Entry> entries_;
  const std::vector<uint16_t> scaled_;
  alignas(64) mutable std::atomic<uint64_t> sequence_;
  char pad_[64 - sizeof(std::atomic<uint64_t>)] = {};  // the sequence's line to itself
};

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_POLICIES_WEIGHTED_ROUND_ROBIN_H_
