#include "policies/round_robin.h"

#include <random>
#include <string>
#include <utility>

#include "lbkit/endpoint_sharding.h"

namespace lbkit {
namespace internal {
namespace {

class RoundRobinConfig final : public BalancerConfig {};

// EndpointSharding publishes every state but READY (CONNECTING, sticky
// TRANSIENT_FAILURE naming the last child error, no endpoints, resolver
// errors); round_robin only builds the READY picker.
class RoundRobin final : public Balancer {
 public:
  explicit RoundRobin(Helper* helper)
      : sharding_(helper,
                  EndpointSharding::ReadyPicker{
                      "round_robin", 1, [this](const auto& ready) { return MakePicker(ready); }}) {}

  grpc::Status UpdateResolverState(BalancerUpdate update) override {
    return sharding_.Update(update.endpoints);
  }
  void ResolverError(const grpc::Status& status) override { sharding_.ResolverError(status); }
  void ExitIdle() override { sharding_.ExitIdle(); }
  void ResetBackoff() override { sharding_.ResetBackoff(); }

 private:
  std::shared_ptr<Picker> MakePicker(const std::vector<const EndpointSharding::Child*>& ready) {
    std::vector<std::shared_ptr<Picker>> pickers;
    pickers.reserve(ready.size());
    for (const EndpointSharding::Child* child : ready) pickers.push_back(child->state.picker);
    uint64_t start = std::uniform_int_distribution<uint64_t>(0, pickers.size() - 1)(rng_);
    return std::make_shared<RoundRobinPicker>(std::move(pickers), start);
  }

  std::mt19937_64 rng_{std::random_device{}()};  // before sharding_: its picker builder uses it
  EndpointSharding sharding_;
};

class RoundRobinBuilder final : public BalancerBuilder {
 public:
  std::string name() const override { return "round_robin"; }
  grpc::Status ParseConfig(const nlohmann::json&,
                           std::shared_ptr<const BalancerConfig>* config) const override {
    *config = std::make_shared<RoundRobinConfig>();
    return grpc::Status::OK;
  }
  std::unique_ptr<Balancer> Build(Helper* helper) const override {
    return std::make_unique<RoundRobin>(helper);
  }
};

}  // namespace

std::shared_ptr<const BalancerBuilder> MakeRoundRobinBuilder() {
  return std::make_shared<RoundRobinBuilder>();
}

}  // namespace internal
}  // namespace lbkit
