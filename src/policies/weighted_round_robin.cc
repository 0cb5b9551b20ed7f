#include "policies/weighted_round_robin.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <mutex>
#include <random>
#include <utility>

#include "lbkit/endpoint_sharding.h"
#include "policies/duration.h"

namespace lbkit {
namespace internal {

double ReportedWeight(const LoadReport& report, double error_utilization_penalty) {
  const double utilization =
      report.application_utilization > 0 ? report.application_utilization : report.cpu_utilization;
  // Written to be false for NaN as well.
  if (!(report.qps > 0) || !(utilization > 0)) return 0;
  double penalty = 0;
  if (report.eps > 0 && error_utilization_penalty > 0) {
    penalty = report.eps / report.qps * error_utilization_penalty;
  }
  const double weight = report.qps / (utilization + penalty);
  return std::isfinite(weight) && weight > 0 ? weight : 0;
}

namespace {

constexpr uint64_t kFresh = uint64_t{1} << 32;
constexpr uint64_t kWeightBits = kFresh - 1;
constexpr uint32_t kGenerationMask = 0x7fffffff;  // 31 bits

uint32_t GenerationOf(uint64_t word) { return static_cast<uint32_t>(word >> 33); }

float WeightOf(uint64_t word) {
  const uint32_t bits = static_cast<uint32_t>(word & kWeightBits);
  float weight;
  std::memcpy(&weight, &bits, sizeof(weight));
  return weight;
}

uint64_t Word(uint32_t generation, bool fresh, float weight) {
  uint32_t bits;
  std::memcpy(&bits, &weight, sizeof(bits));
  return (uint64_t{generation & kGenerationMask} << 33) | (fresh ? kFresh : 0) | bits;
}

}  // namespace

// The process-wide table of WeightSlots: chunks allocated as needed and never
// freed, a free list, one mutex (taken on the serializers only, when
// endpoints come and go; never on a pick or a call's end).
class WeightSlots {
 public:
  static WeightSlots& Get() {
    static WeightSlots* slots = new WeightSlots();  // never destroyed: calls may outlive main
    return *slots;
  }
  // A free slot and its current generation.
  std::pair<WeightSlot*, uint32_t> Acquire() {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.empty()) {
      constexpr size_t kChunk = 256;
      chunks_.push_back(std::make_unique<WeightSlot[]>(kChunk));
      for (size_t i = kChunk; i > 0; --i) free_.push_back(&chunks_.back()[i - 1]);
    }
    WeightSlot* slot = free_.back();
    free_.pop_back();
    return {slot, GenerationOf(slot->word_.load(std::memory_order_relaxed))};
  }
  // Late reports for the slot's last endpoint find a new generation and are
  // dropped.
  void Release(WeightSlot* slot) {
    const uint32_t next = GenerationOf(slot->word_.load(std::memory_order_relaxed)) + 1;
    slot->word_.store(Word(next, false, 0), std::memory_order_release);
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(slot);
  }

 private:
  std::mutex mu_;
  std::vector<std::unique_ptr<WeightSlot[]>> chunks_;
  std::vector<WeightSlot*> free_;
};

void WeightSlot::Report(uint32_t generation, const LoadReport& report) {
  const double weight = ReportedWeight(report, penalty_.load(std::memory_order_relaxed));
  const float stored = static_cast<float>(std::min<double>(weight, FLT_MAX));
  if (!(stored > 0)) return;  // no weight, or too small for a float
  uint64_t word = word_.load(std::memory_order_relaxed);
  do {
    if (GenerationOf(word) != (generation & kGenerationMask)) return;
  } while (!word_.compare_exchange_weak(word, Word(generation, true, stored),
                                        std::memory_order_release, std::memory_order_relaxed));
}

EndpointWeight::EndpointWeight() : EndpointWeight(WeightSlots::Get().Acquire()) {}

EndpointWeight::EndpointWeight(std::pair<WeightSlot*, uint32_t> slot)
    : slot_(slot.first), generation_(slot.second) {}

EndpointWeight::~EndpointWeight() { WeightSlots::Get().Release(slot_); }

double EndpointWeight::WeightAt(std::chrono::steady_clock::time_point now,
                                const WeightedRoundRobinConfig& config) {
  // Take the latest report, if one came since the last look.
  uint64_t word = slot_->word_.load(std::memory_order_acquire);
  while ((word & kFresh) != 0) {
    if (slot_->word_.compare_exchange_weak(word, word & ~kFresh, std::memory_order_acquire)) {
      weight_ = WeightOf(word);
      if (!non_empty_since_) non_empty_since_ = now;
      last_update_ = now;
      break;
    }
  }
  if (!last_update_ || now - *last_update_ >= config.weight_expiration_period) {
    non_empty_since_.reset();  // the next report starts a new blackout
    return 0;
  }
  if (config.blackout_period.count() > 0 &&
      (!non_empty_since_ || now - *non_empty_since_ < config.blackout_period)) {
    return 0;
  }
  return weight_;
}

namespace {
constexpr uint32_t kMaxScaled = 65535;
// Each endpoint's turn comes when its running total wraps; starting endpoint
// i at i * half a cycle keeps them from all wrapping in the same round.
constexpr uint32_t kPhaseStep = kMaxScaled / 2;
// As gRPC C-core's StaticStrideScheduler: a known weight above kMaxRatio
// times the mean of the known weights counts as kMaxRatio times the mean (a
// pick loops about max / mean times on average, so at most about kMaxRatio),
// and none is scaled below kMinRatio of the (scaled) mean, nor below 1.
constexpr double kMaxRatio = 10;
constexpr double kMinRatio = 0.01;
}  // namespace

std::vector<uint16_t> ScaleWeights(const std::vector<double>& weights) {
  size_t known = 0;
  double sum = 0;
  double max = 0;
  for (double weight : weights) {
    if (weight > 0) {
      ++known;
      sum += weight;
      max = std::max(max, weight);
    }
  }
  if (known < 2) return {};
  const double mean = sum / static_cast<double>(known);
  const double cap = std::min(max, kMaxRatio * mean);
  const double scale = kMaxScaled / cap;
  const double scaled_mean = std::round(mean * scale);
  const double floor = std::max(1.0, std::round(scaled_mean * kMinRatio));
  std::vector<uint16_t> scaled;
  scaled.reserve(weights.size());
  bool alike = true;
  for (double weight : weights) {
    const double value =
        weight > 0 ? std::max(std::round(std::min(weight, cap) * scale), floor) : scaled_mean;
    scaled.push_back(static_cast<uint16_t>(std::clamp(value, 1.0, double{kMaxScaled})));
    alike = alike && scaled.back() == scaled.front();
  }
  if (alike) return {};
  return scaled;
}

WeightedRoundRobinPicker::WeightedRoundRobinPicker(std::vector<Entry> entries,
                                                   std::vector<uint16_t> scaled, uint64_t start)
    : entries_(std::move(entries)), scaled_(std::move(scaled)), sequence_(start) {}

size_t WeightedRoundRobinPicker::Next() const {
  const uint64_t n = entries_.size();
  if (scaled_.empty()) return sequence_.fetch_add(1, std::memory_order_relaxed) % n;
  // Static stride (A58): the sequence visits endpoints in turn; in round r
  // endpoint i adds its scaled weight w to a running total (mod kMaxScaled)
  // and is taken when that wraps, so w times in every kMaxScaled rounds,
  // evenly spread. A skipped turn costs another step of the shared sequence.
  for (;;) {
    const uint64_t sequence = sequence_.fetch_add(1, std::memory_order_relaxed);
    const uint64_t index = sequence % n;
    const uint64_t round = (sequence / n) % kMaxScaled;
    const uint64_t weight = scaled_[index];
    const uint64_t total = (weight * round + (index % kMaxScaled) * kPhaseStep) % kMaxScaled;
    if (total >= kMaxScaled - weight) return index;
  }
}

PickResult WeightedRoundRobinPicker::Pick(const PickArgs& args) const {
  const Entry& chosen = entries_[Next()];
  PickResult result = chosen.child->Pick(args);
  if (result.kind() != PickResult::Kind::kComplete) return result;
  WeightSlot* slot = chosen.slot;
  const uint32_t generation = chosen.generation;
  auto report = [slot, generation](const CallDoneInfo& info) {
    if (const LoadReport* load = info.load_report()) slot->Report(generation, *load);
  };
  if (result.on_done() == nullptr) {
    // 16 trivially copyable bytes: std::function keeps them inline, no allocation.
    result.on_done() = report;
  } else {
    result.on_done() = [report, inner = std::move(result.on_done())](const CallDoneInfo& info) {
      report(info);
      inner(info);
    };
  }
  return result;
}

bool WeightedRoundRobinPicker::SameAs(const WeightedRoundRobinPicker& other) const {
  if (scaled_ != other.scaled_ || entries_.size() != other.entries_.size()) return false;
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (entries_[i].child != other.entries_[i].child ||
        entries_[i].slot != other.entries_[i].slot) {
      return false;
    }
  }
  return true;
}

namespace {

constexpr char kName[] = "weighted_round_robin";

// EndpointSharding publishes every state but READY and builds the READY
// picker through MakePicker when children change; a timer rebuilds it every
// weightUpdatePeriod from the same children, publishing only a change.
class WeightedRoundRobin final : public Balancer {
 public:
  explicit WeightedRoundRobin(Helper* helper)
      : helper_(helper),
        sharding_(helper, EndpointSharding::ReadyPicker{
                              kName, 1, [this](const auto& ready) { return MakePicker(ready); }}) {}

  grpc::Status UpdateResolverState(BalancerUpdate update) override {
    auto config = std::dynamic_pointer_cast<const WeightedRoundRobinConfig>(update.config);
    if (config == nullptr) config = std::make_shared<WeightedRoundRobinConfig>();
    const bool restart =
        timer_ == nullptr || config->weight_update_period != config_->weight_update_period;
    config_ = std::move(config);
    if (restart) StartTimer();
    weights_.RetainOnly(update.endpoints);  // a removed endpoint's weight goes with it
    return sharding_.Update(update.endpoints);
  }
  void ResolverError(const grpc::Status& status) override { sharding_.ResolverError(status); }
  void ExitIdle() override { sharding_.ExitIdle(); }
  void ResetBackoff() override { sharding_.ResetBackoff(); }

 private:
  void StartTimer() {
    timer_ = helper_->StartTimer(config_->weight_update_period, [this] {
      StartTimer();
      Refresh();
    });
  }

  // The periodic rebuild: the READY children, as EndpointSharding would pass
  // them (with min_ready 1 it is READY exactly when one of them is).
  void Refresh() {
    std::vector<const EndpointSharding::Child*> ready;
    for (const EndpointSharding::Child& child : sharding_.children()) {
      if (child.state.state == ConnectivityState::kReady && child.state.picker != nullptr) {
        ready.push_back(&child);
      }
    }
    if (ready.empty()) {
      ++build_;  // they are all down: each restarts its blackout when back
      return;
    }
    std::shared_ptr<WeightedRoundRobinPicker> previous = last_;
    std::shared_ptr<Picker> picker = MakePicker(ready);
    if (previous != nullptr && previous->SameAs(*last_)) {
      last_ = std::move(previous);  // nothing changed: keep the published one
      return;
    }
    helper_->UpdateState(BalancerState{ConnectivityState::kReady, std::move(picker), {}});
  }

  std::shared_ptr<Picker> MakePicker(const std::vector<const EndpointSharding::Child*>& ready) {
    ++build_;
    const std::chrono::steady_clock::time_point now = helper_->Now();
    std::vector<WeightedRoundRobinPicker::Entry> entries;
    std::vector<double> weights;
    entries.reserve(ready.size());
    weights.reserve(ready.size());
    for (const EndpointSharding::Child* child : ready) {
      std::unique_ptr<EndpointWeight>& weight = weights_[child->endpoint];
      if (weight == nullptr) weight = std::make_unique<EndpointWeight>();
      // Back to READY after being out of the last picker: a new connection,
      // whose first reports wait out a blackout again (A58).
      if (weight->ready_build != 0 && weight->ready_build != build_ - 1) weight->ResetBlackout();
      weight->ready_build = build_;
      weight->set_error_utilization_penalty(config_->error_utilization_penalty);
      weights.push_back(weight->WeightAt(now, *config_));
      entries.push_back({child->state.picker, weight->slot(), weight->generation()});
    }
    const uint64_t start = std::uniform_int_distribution<uint64_t>(0, entries.size() - 1)(rng_);
    last_ = std::make_shared<WeightedRoundRobinPicker>(std::move(entries), ScaleWeights(weights),
                                                       start);
    return last_;
  }

  Helper* const helper_;
  // Before sharding_: its picker builder uses them.
  std::shared_ptr<const WeightedRoundRobinConfig> config_ =
      std::make_shared<WeightedRoundRobinConfig>();
  uint64_t build_ = 0;  // pickers built (or found nothing READY) so far
  std::mt19937_64 rng_{std::random_device{}()};
  EndpointMap<std::unique_ptr<EndpointWeight>> weights_;
  std::shared_ptr<WeightedRoundRobinPicker> last_;  // the last picker built
  EndpointSharding sharding_;
  std::unique_ptr<Timer> timer_;  // last: cancelled first
};

grpc::Status Invalid(const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
}

// A Duration field, if present (policies/duration.h: protobuf's JSON form,
// not negative, at most 100 years in effect), in milliseconds, a fraction of
// a millisecond rounded up.
grpc::Status ParseMillisecondsField(const nlohmann::json& json, const char* name,
                                    std::chrono::milliseconds* out) {
  std::chrono::nanoseconds value = *out;
  grpc::Status status = ParseDurationField(json, name, &value);
  if (status.ok()) *out = std::chrono::ceil<std::chrono::milliseconds>(value);
  return status;
}

class WeightedRoundRobinBuilder final : public BalancerBuilder {
 public:
  std::string name() const override { return kName; }
  // Every field optional; unknown ones are ignored. weightUpdatePeriod below
  // 100ms is raised to 100ms (A58). oobReportingPeriod is checked and ignored:
  // it only matters to out-of-band reporting, which is not implemented.
  grpc::Status ParseConfig(const nlohmann::json& json,
                           std::shared_ptr<const BalancerConfig>* config) const override {
    auto parsed = std::make_shared<WeightedRoundRobinConfig>();
    std::chrono::milliseconds oob_period{0};
    for (auto [name, out] : {std::pair{"blackoutPeriod", &parsed->blackout_period},
                             std::pair{"weightExpirationPeriod", &parsed->weight_expiration_period},
                             std::pair{"weightUpdatePeriod", &parsed->weight_update_period},
                             std::pair{"oobReportingPeriod", &oob_period}}) {
      grpc::Status status = ParseMillisecondsField(json, name, out);
      if (!status.ok()) return status;
    }
    parsed->weight_update_period =
        std::max(parsed->weight_update_period, WeightedRoundRobinConfig::kMinWeightUpdatePeriod);
    auto penalty = json.find("errorUtilizationPenalty");
    if (penalty != json.end()) {
      if (!penalty->is_number() || !(penalty->get<double>() >= 0) ||
          !std::isfinite(penalty->get<double>())) {
        return Invalid("errorUtilizationPenalty must be a number of at least 0, got " +
                       penalty->dump());
      }
      parsed->error_utilization_penalty = penalty->get<double>();
    }
    auto oob = json.find("enableOobLoadReport");
    if (oob != json.end()) {
      if (!oob->is_boolean()) {
        return Invalid("enableOobLoadReport must be true or false, got " + oob->dump());
      }
      if (oob->get<bool>()) {
        return Invalid(
            "enableOobLoadReport: out-of-band load reports (OpenRcaService/StreamCoreMetrics) "
            "are not supported by lbkit; weighted_round_robin learns weights from per-call "
            "load reports only (set it false or leave it out)");
      }
    }
    *config = std::move(parsed);
    return grpc::Status::OK;
  }
  std::unique_ptr<Balancer> Build(Helper* helper) const override {
    return std::make_unique<WeightedRoundRobin>(helper);
  }
};

}  // namespace

std::shared_ptr<const BalancerBuilder> MakeWeightedRoundRobinBuilder() {
  return std::make_shared<WeightedRoundRobinBuilder>();
}

}  // namespace internal
}  // namespace lbkit
