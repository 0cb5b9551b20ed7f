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
// Time, for blackout and expiration, is the policy's own count of its timer
// periods: the Helper offers timers but no clock, and counting them keeps
// the policy testable with FakeHelper::AdvanceTime. A late timer makes both
// periods last longer, never shorter.
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

// A protobuf JSON Duration ("10s", "0.1s", "-1.5s": digits, up to nine
// fractional digits, then 's') in milliseconds, a fraction of a millisecond
// rounded up. nullopt if `text` is not one or is beyond protobuf's range.
std::optional<std::chrono::milliseconds> ParseJsonDuration(const std::string& text);

// The weight A58 derives from one load report: qps / (utilization +
// eps / qps * penalty), utilization being application_utilization when
// positive, else cpu_utilization. 0 (no weight) when qps or utilization is
// not positive, or the result is not a finite positive number.
double ReportedWeight(const LoadReport& report, double error_utilization_penalty);

// One endpoint's weight: written by done-callbacks on any thread (the last
// report's weight and a count of reports), read and timed on the serializer.
// Its lifetime is counted in `refs_`, calls in flight plus one for its
// holders, so that a done-callback stores a raw pointer (inline in
// std::function: no allocation) and may outlive the policy.
class EndpointWeight {
 public:
  static std::shared_ptr<EndpointWeight> Create();

  // Data plane: a pick holds it until its done-callback calls CallDone.
  void CallStarted() { refs_.fetch_add(1, std::memory_order_relaxed); }
  void CallDone(const LoadReport* report);

  // Serializer: what the scheduler should use at `now` (policy time), 0 for
  // none. Notes reports that arrived since the last call as received at
  // `now`.
  double WeightAt(std::chrono::milliseconds now, const WeightedRoundRobinConfig& config);
  // The endpoint (re)connected: a new blackout period starts with its next
  // report.
  void ResetBlackout() { non_empty_since_.reset(); }
  // The penalty done-callbacks apply; set from the config.
  void set_error_utilization_penalty(double penalty) {
    penalty_.store(penalty, std::memory_order_relaxed);
  }

  // Serializer: the policy's last picker build (or look at its children)
  // that found the endpoint READY, 0 for none; a gap means it reconnected.
  uint64_t ready_build = 0;

 private:
  EndpointWeight() = default;
  void Release() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  std::atomic<uint64_t> refs_{1};
  std::atomic<double> penalty_{1.0};
  std::atomic<double> reported_{0};        // the last usable report's weight
  std::atomic<uint64_t> report_count_{0};  // usable reports so far
  // Serializer only.
  uint64_t reports_seen_ = 0;
  double weight_ = 0;
  std::optional<std::chrono::milliseconds> non_empty_since_;
  std::optional<std::chrono::milliseconds> last_update_;
};

// A58's static stride scheduler over per-endpoint weights (0: none known).
// Returns the weights scaled to 1..65535 (the largest to 65535, a missing
// one to the mean of the known ones, none below 1% of the largest, which
// bounds a pick's loop), or an empty vector when the picker should be plain
// round robin: fewer than two known weights, or all alike.
std::vector<uint16_t> ScaleWeights(const std::vector<double>& weights);

// Picks among child pickers by the scaled weights (plain rotation when
// empty) and attaches to each completed pick a done-callback that feeds the
// endpoint's load report to its EndpointWeight. Lock-free; no allocation
// over pick_first children.
class WeightedRoundRobinPicker final : public Picker {
 public:
  struct Entry {
    std::shared_ptr<Picker> child;
    std::shared_ptr<EndpointWeight> weight;
  };
  // Requires: entries non-empty, every member non-null; scaled empty or of
  // entries.size().
  WeightedRoundRobinPicker(std::vector<Entry> entries, std::vector<uint16_t> scaled,
                           uint64_t start);
  PickResult Pick(const PickArgs& args) const override;

  // Whether `other` would pick the same way: same children, same weights.
  bool SameAs(const WeightedRoundRobinPicker& other) const;

 private:
  size_t Next() const;

  struct Candidate {
    Picker* child;
    EndpointWeight* weight;
  };
  const std::vector<Entry> owners_;
  std::vector<Candidate> candidates_;
  const std::vector<uint16_t> scaled_;
  alignas(64) mutable std::atomic<uint64_t> sequence_;
  char pad_[64 - sizeof(std::atomic<uint64_t>)] = {};  // the sequence's line to itself
};

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_POLICIES_WEIGHTED_ROUND_ROBIN_H_
