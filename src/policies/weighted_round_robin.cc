#include "policies/weighted_round_robin.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <random>
#include <utility>

#include "lbkit/endpoint_sharding.h"

namespace lbkit {
namespace internal {

std::optional<std::chrono::milliseconds> ParseJsonDuration(const std::string& text) {
  // protobuf's Duration: at most 315,576,000,000 seconds either way.
  constexpr int64_t kMaxSeconds = 315'576'000'000;
  size_t i = 0;
  const bool negative = !text.empty() && text[0] == '-';
  if (negative) ++i;
  int64_t seconds = 0;
  size_t digits = 0;
  for (; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); ++i, ++digits) {
    seconds = seconds * 10 + (text[i] - '0');
    if (seconds > kMaxSeconds) return std::nullopt;
  }
  if (digits == 0) return std::nullopt;
  int64_t nanos = 0;
  if (i < text.size() && text[i] == '.') {
    ++i;
    size_t fraction = 0;
    for (; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); ++i, ++fraction) {
      nanos = nanos * 10 + (text[i] - '0');
    }
    if (fraction == 0 || fraction > 9) return std::nullopt;
    for (; fraction < 9; ++fraction) nanos *= 10;
  }
  if (i + 1 != text.size() || text[i] != 's') return std::nullopt;
  const int64_t millis = seconds * 1000 + (nanos + 999'999) / 1'000'000;
  return std::chrono::milliseconds(negative ? -millis : millis);
}

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

std::shared_ptr<EndpointWeight> EndpointWeight::Create() {
  // The shared_ptr's owners together hold the one reference `refs_` starts
  // with; calls in flight hold the others.
  return std::shared_ptr<EndpointWeight>(new EndpointWeight(),
                                         [](EndpointWeight* weight) { weight->Release(); });
}

void EndpointWeight::CallDone(const LoadReport* report) {
  if (report != nullptr) {
    const double weight = ReportedWeight(*report, penalty_.load(std::memory_order_relaxed));
    // A report without a usable weight is ignored (A58): it neither
    // refreshes the weight nor starts a blackout.
    if (weight > 0) {
      reported_.store(weight, std::memory_order_relaxed);
      report_count_.fetch_add(1, std::memory_order_release);
    }
  }
  Release();
}

double EndpointWeight::WeightAt(std::chrono::milliseconds now,
                                const WeightedRoundRobinConfig& config) {
  const uint64_t count = report_count_.load(std::memory_order_acquire);
  if (count != reports_seen_) {
    reports_seen_ = count;
    weight_ = reported_.load(std::memory_order_relaxed);
    if (!non_empty_since_) non_empty_since_ = now;
    last_update_ = now;
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
// No scaled weight below this fraction of the largest: a pick then loops at
// most about 1 / kMinRatio times on average.
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
  const double scale = kMaxScaled / max;
  const double mean = sum / static_cast<double>(known);
  const double floor = std::max(1.0, std::round(kMaxScaled * kMinRatio));
  std::vector<uint16_t> scaled;
  scaled.reserve(weights.size());
  bool alike = true;
  for (double weight : weights) {
    const double value = std::round((weight > 0 ? weight : mean) * scale);
    scaled.push_back(static_cast<uint16_t>(std::clamp(value, floor, double{kMaxScaled})));
    alike = alike && scaled.back() == scaled.front();
  }
  if (alike) return {};
  return scaled;
}

WeightedRoundRobinPicker::WeightedRoundRobinPicker(std::vector<Entry> entries,
                                                   std::vector<uint16_t> scaled, uint64_t start)
    : owners_(std::move(entries)), scaled_(std::move(scaled)), sequence_(start) {
  candidates_.reserve(owners_.size());
  for (const Entry& entry : owners_) {
    candidates_.push_back(Candidate{entry.child.get(), entry.weight.get()});
  }
}

size_t WeightedRoundRobinPicker::Next() const {
  const uint64_t n = candidates_.size();
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
  const Candidate& chosen = candidates_[Next()];
  PickResult result = chosen.child->Pick(args);
  if (result.kind() != PickResult::Kind::kComplete) return result;
  EndpointWeight* weight = chosen.weight;
  weight->CallStarted();
  if (result.on_done() == nullptr) {
    // A raw pointer: std::function keeps it inline, no allocation.
    result.on_done() = [weight](const CallDoneInfo& info) { weight->CallDone(info.load_report()); };
  } else {
    result.on_done() = [weight, inner = std::move(result.on_done())](const CallDoneInfo& info) {
      weight->CallDone(info.load_report());
      inner(info);
    };
  }
  return result;
}

bool WeightedRoundRobinPicker::SameAs(const WeightedRoundRobinPicker& other) const {
  if (scaled_ != other.scaled_ || candidates_.size() != other.candidates_.size()) return false;
  for (size_t i = 0; i < candidates_.size(); ++i) {
    if (candidates_[i].child != other.candidates_[i].child) return false;
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
    if (restart) StartTimer();  // what the cancelled timer had run of its period is not counted
    weights_.RetainOnly(update.endpoints);  // a removed endpoint's weight goes with it
    return sharding_.Update(update.endpoints);
  }
  void ResolverError(const grpc::Status& status) override { sharding_.ResolverError(status); }
  void ExitIdle() override { sharding_.ExitIdle(); }
  void ResetBackoff() override { sharding_.ResetBackoff(); }

 private:
  void StartTimer() {
    const std::chrono::milliseconds period = config_->weight_update_period;
    timer_ = helper_->StartTimer(period, [this, period] {
      now_ += period;
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
    std::vector<WeightedRoundRobinPicker::Entry> entries;
    std::vector<double> weights;
    entries.reserve(ready.size());
    weights.reserve(ready.size());
    for (const EndpointSharding::Child* child : ready) {
      std::shared_ptr<EndpointWeight>& weight = weights_[child->endpoint];
      if (weight == nullptr) weight = EndpointWeight::Create();
      // Back to READY after being out of the last picker: a new connection,
      // whose first reports wait out a blackout again (A58).
      if (weight->ready_build != 0 && weight->ready_build != build_ - 1) weight->ResetBlackout();
      weight->ready_build = build_;
      weight->set_error_utilization_penalty(config_->error_utilization_penalty);
      weights.push_back(weight->WeightAt(now_, *config_));
      entries.push_back({child->state.picker, weight});
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
  std::chrono::milliseconds now_{0};  // policy time: the timer periods run so far
  uint64_t build_ = 0;                // pickers built (or found nothing READY) so far
  std::mt19937_64 rng_{std::random_device{}()};
  EndpointMap<std::shared_ptr<EndpointWeight>> weights_;
  std::shared_ptr<WeightedRoundRobinPicker> last_;  // the last picker built
  EndpointSharding sharding_;
  std::unique_ptr<Timer> timer_;  // last: cancelled first
};

grpc::Status Invalid(const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
}

// A Duration field (a string such as "10s" or "0.1s", not negative), if present.
grpc::Status ParseDurationField(const nlohmann::json& json, const char* name,
                                std::chrono::milliseconds* out) {
  auto field = json.find(name);
  if (field == json.end()) return grpc::Status::OK;
  std::optional<std::chrono::milliseconds> value;
  if (field->is_string()) value = ParseJsonDuration(field->get<std::string>());
  if (!value || value->count() < 0) {
    return Invalid(std::string(name) +
                   " must be a non-negative duration in seconds, as a string such as \"10s\" or "
                   "\"0.1s\", got " +
                   field->dump());
  }
  *out = *value;
  return grpc::Status::OK;
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
      grpc::Status status = ParseDurationField(json, name, out);
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
