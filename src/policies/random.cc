#include "policies/random.h"

#include <random>
#include <string>
#include <utility>

#include "lbkit/endpoint_sharding.h"

namespace lbkit {
namespace internal {

uint64_t ThreadRandom() {
  // Trivially initialised thread_local: no guard on the hot path, only a
  // zero check. A seed of 0 is redrawn (0 marks "not seeded yet").
  thread_local uint64_t state = 0;
  if (state == 0) {
    std::random_device device;
    while (state == 0) state = (static_cast<uint64_t>(device()) << 32) ^ device();
  }
  // splitmix64 (Steele, Lea, Flood 2014).
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

RandomPicker::RandomPicker(std::vector<std::shared_ptr<Picker>> children,
                           const std::vector<uint32_t>& weights)
    : children_(std::move(children)) {
  const size_t n = children_.size();
  bool equal = true;
  uint64_t total = 0;
  for (uint32_t weight : weights) {
    equal = equal && weight == weights.front();
    total += weight;
  }
  if (equal) return;
  // Vose's alias method: every slot holds probability mass 1 (scaled to
  // 2^32), split between its own child and at most one other.
  constexpr double kOne = 4294967296.0;  // 2^32
  std::vector<double> mass(n);
  std::vector<uint32_t> small, large;
  for (size_t i = 0; i < n; ++i) {
    mass[i] = static_cast<double>(weights[i]) * static_cast<double>(n) / static_cast<double>(total);
    (mass[i] < 1.0 ? small : large).push_back(static_cast<uint32_t>(i));
  }
  slots_.resize(n);
  while (!small.empty() && !large.empty()) {
    uint32_t s = small.back();
    small.pop_back();
    uint32_t l = large.back();
    slots_[s] = Slot{static_cast<uint64_t>(mass[s] * kOne), l};
    mass[l] -= 1.0 - mass[s];
    if (mass[l] < 1.0) {
      large.pop_back();
      small.push_back(l);
    }
  }
  // What is left has mass 1 up to rounding: always its own child.
  for (uint32_t i : large) slots_[i] = Slot{static_cast<uint64_t>(kOne), i};
  for (uint32_t i : small) slots_[i] = Slot{static_cast<uint64_t>(kOne), i};
}

PickResult RandomPicker::Pick(const PickArgs& args) const {
  const uint64_t bits = ThreadRandom();
  size_t i = RandomIndex(static_cast<uint32_t>(bits), children_.size());
  if (!slots_.empty() && (bits >> 32) >= slots_[i].threshold) i = slots_[i].alias;
  return children_[i]->Pick(args);
}

namespace {

class RandomConfig final : public BalancerConfig {};

// EndpointSharding publishes every state but READY; random only builds the
// READY picker.
class Random final : public Balancer {
 public:
  explicit Random(Helper* helper)
      : sharding_(helper, EndpointSharding::ReadyPicker{
                              "random", 1, [](const auto& ready) { return MakePicker(ready); }}) {}

  grpc::Status UpdateResolverState(BalancerUpdate update) override {
    return sharding_.Update(update.endpoints);
  }
  void ResolverError(const grpc::Status& status) override { sharding_.ResolverError(status); }
  void ExitIdle() override { sharding_.ExitIdle(); }
  void ResetBackoff() override { sharding_.ResetBackoff(); }

 private:
  static std::shared_ptr<Picker> MakePicker(
      const std::vector<const EndpointSharding::Child*>& ready) {
    std::vector<std::shared_ptr<Picker>> pickers;
    std::vector<uint32_t> weights;
    pickers.reserve(ready.size());
    weights.reserve(ready.size());
    for (const EndpointSharding::Child* child : ready) {
      pickers.push_back(child->state.picker);
      weights.push_back(child->endpoint.attributes.weight);
    }
    return std::make_shared<RandomPicker>(std::move(pickers), weights);
  }

  EndpointSharding sharding_;
};

class RandomBuilder final : public BalancerBuilder {
 public:
  std::string name() const override { return "random"; }
  // No fields; unknown ones are ignored, as gRPC does.
  grpc::Status ParseConfig(const nlohmann::json&,
                           std::shared_ptr<const BalancerConfig>* config) const override {
    *config = std::make_shared<RandomConfig>();
    return grpc::Status::OK;
  }
  std::unique_ptr<Balancer> Build(Helper* helper) const override {
    return std::make_unique<Random>(helper);
  }
};

}  // namespace

std::shared_ptr<const BalancerBuilder> MakeRandomBuilder() {
  return std::make_shared<RandomBuilder>();
}

}  // namespace internal
}  // namespace lbkit
