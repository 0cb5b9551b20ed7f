#include "policies/least_request.h"

#include <cmath>
#include <string>
#include <utility>

#include "lbkit/endpoint_sharding.h"
#include "policies/random.h"

namespace lbkit {
namespace internal {

std::shared_ptr<InFlightCounter> InFlightCounter::Create() {
  // The shared_ptr's owners together hold the one reference `refs_` starts
  // with; calls in flight hold the others.
  return std::shared_ptr<InFlightCounter>(new InFlightCounter(),
                                          [](InFlightCounter* counter) { counter->Release(); });
}

LeastRequestPicker::LeastRequestPicker(std::vector<Entry> entries, uint32_t choice_count)
    : owners_(std::move(entries)), choice_count_(choice_count) {
  candidates_.reserve(owners_.size());
  for (const Entry& entry : owners_) {
    candidates_.push_back(Candidate{entry.child.get(), entry.counter.get(), entry.weight});
  }
}

PickResult LeastRequestPicker::Pick(const PickArgs& args) const {
  const size_t n = candidates_.size();
  const Candidate* best = &candidates_[0];
  if (n > 1) {
    best = nullptr;
    uint64_t best_in_flight = 0;
    uint64_t bits = 0;
    for (uint32_t i = 0; i < choice_count_; ++i) {
      // Two samples from each 64 random bits.
      if (i % 2 == 0) bits = ThreadRandom();
      const Candidate* sampled = &candidates_[RandomIndex(static_cast<uint32_t>(bits), n)];
      bits >>= 32;
      const uint64_t in_flight = sampled->counter->in_flight();
      // in_flight / weight < best_in_flight / best->weight, without division.
      // Exact below 2^32 calls in flight per endpoint.
      if (best == nullptr || in_flight * best->weight < best_in_flight * sampled->weight) {
        best = sampled;
        best_in_flight = in_flight;
      }
    }
  }
  PickResult result = best->child->Pick(args);
  if (result.kind() != PickResult::Kind::kComplete) return result;
  InFlightCounter* counter = best->counter;
  counter->CallStarted();
  if (result.on_done() == nullptr) {
    // A raw pointer: std::function keeps it inline, no allocation.
    result.on_done() = [counter](const CallDoneInfo&) { counter->CallDone(); };
  } else {
    result.on_done() = [counter, inner = std::move(result.on_done())](const CallDoneInfo& info) {
      counter->CallDone();
      inner(info);
    };
  }
  return result;
}

namespace {

// EndpointSharding publishes every state but READY; least_request builds the
// READY picker and keeps the counters.
class LeastRequest final : public Balancer {
 public:
  explicit LeastRequest(Helper* helper)
      : sharding_(helper,
                  EndpointSharding::ReadyPicker{"least_request", 1, [this](const auto& ready) {
                                                  return MakePicker(ready);
                                                }}) {}

  grpc::Status UpdateResolverState(BalancerUpdate update) override {
    auto config = std::dynamic_pointer_cast<const LeastRequestConfig>(update.config);
    choice_count_ = config != nullptr ? config->choice_count : LeastRequestConfig().choice_count;
    counters_.RetainOnly(update.endpoints);  // a removed endpoint's count goes with it
    return sharding_.Update(update.endpoints);
  }
  void ResolverError(const grpc::Status& status) override { sharding_.ResolverError(status); }
  void ExitIdle() override { sharding_.ExitIdle(); }
  void ResetBackoff() override { sharding_.ResetBackoff(); }

 private:
  std::shared_ptr<Picker> MakePicker(const std::vector<const EndpointSharding::Child*>& ready) {
    std::vector<LeastRequestPicker::Entry> entries;
    entries.reserve(ready.size());
    for (const EndpointSharding::Child* child : ready) {
      std::shared_ptr<InFlightCounter>& counter = counters_[child->endpoint];
      if (counter == nullptr) counter = InFlightCounter::Create();
      entries.push_back({child->state.picker, counter, child->endpoint.attributes.weight});
    }
    return std::make_shared<LeastRequestPicker>(std::move(entries), choice_count_);
  }

  // Before sharding_: its picker builder uses them.
  uint32_t choice_count_ = LeastRequestConfig().choice_count;
  EndpointMap<std::shared_ptr<InFlightCounter>> counters_;
  EndpointSharding sharding_;
};

class LeastRequestBuilder final : public BalancerBuilder {
 public:
  std::string name() const override { return "least_request"; }
  // {"choiceCount": 2..10}; above 10 is clamped to 10 (A48, as Envoy); below
  // 2, or not a whole number, is INVALID_ARGUMENT. Unknown fields are ignored.
  grpc::Status ParseConfig(const nlohmann::json& json,
                           std::shared_ptr<const BalancerConfig>* config) const override {
    auto parsed = std::make_shared<LeastRequestConfig>();
    auto field = json.find("choiceCount");
    if (field != json.end()) {
      auto bad = [&field] {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "choiceCount must be a whole number of at least 2 (values above 10 "
                            "are clamped to 10), got " +
                                field->dump());
      };
      double value = 0;
      if (field->is_number_unsigned()) {
        uint64_t whole = field->get<uint64_t>();
        value = whole > LeastRequestConfig::kMaxChoiceCount ? LeastRequestConfig::kMaxChoiceCount
                                                            : static_cast<double>(whole);
      } else if (field->is_number_float()) {
        value = field->get<double>();
        // NaN and fractions are refused; a huge value (1e400 is inf) is clamped.
        if (std::isnan(value) || (std::isfinite(value) && std::floor(value) != value)) {
          return bad();
        }
      } else {
        return bad();  // negative integers, strings, booleans, null, objects, arrays
      }
      if (value < 2) return bad();
      parsed->choice_count = value > LeastRequestConfig::kMaxChoiceCount
                                 ? LeastRequestConfig::kMaxChoiceCount
                                 : static_cast<uint32_t>(value);
    }
    *config = std::move(parsed);
    return grpc::Status::OK;
  }
  std::unique_ptr<Balancer> Build(Helper* helper) const override {
    return std::make_unique<LeastRequest>(helper);
  }
};

}  // namespace

std::shared_ptr<const BalancerBuilder> MakeLeastRequestBuilder() {
  return std::make_shared<LeastRequestBuilder>();
}

}  // namespace internal
}  // namespace lbkit
