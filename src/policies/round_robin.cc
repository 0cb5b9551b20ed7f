#include "policies/round_robin.h"

#include <random>
#include <string>
#include <utility>

#include "lbkit/endpoint_sharding.h"

namespace lbkit {
namespace internal {
namespace {

class RoundRobinConfig final : public BalancerConfig {};

class RoundRobin final : public Balancer {
 public:
  explicit RoundRobin(Helper* helper)
      : helper_(helper), sharding_(helper, [this] { UpdatePicker(); }) {}

  grpc::Status UpdateResolverState(BalancerUpdate update) override {
    if (update.endpoints.empty()) {
      no_endpoints_ = true;
      sharding_.Update({});
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "round_robin: the resolver returned no endpoints");
    }
    no_endpoints_ = false;
    return sharding_.Update(update.endpoints);
  }

  void ResolverError(const grpc::Status& status) override {
    if (sharding_.children().empty()) {
      resolver_error_ = status;
      UpdatePicker();
    }
  }

  void ExitIdle() override { sharding_.ExitIdle(); }
  void ResetBackoff() override { sharding_.ResetBackoff(); }

 private:
  void UpdatePicker() {
    std::vector<std::shared_ptr<Picker>> ready;
    ready.reserve(sharding_.children().size());
    for (const EndpointSharding::Child& child : sharding_.children()) {
      if (child.state.state == ConnectivityState::kReady) ready.push_back(child.state.picker);
    }
    BalancerState update;
    if (!ready.empty()) {
      uint64_t start = std::uniform_int_distribution<uint64_t>(0, ready.size() - 1)(rng_);
      update.state = ConnectivityState::kReady;
      update.picker = std::make_shared<RoundRobinPicker>(std::move(ready), start);
    } else {
      grpc::Status child_error;
      ConnectivityState aggregate = sharding_.AggregateState(&child_error);
      if (aggregate == ConnectivityState::kTransientFailure ||
          state_ == ConnectivityState::kTransientFailure) {
        std::string why = no_endpoints_ ? "the resolver returned no endpoints"
                          : !resolver_error_.ok() && sharding_.children().empty()
                              ? "resolver error: " + resolver_error_.error_message()
                              : "no ready endpoint; last error: " + child_error.error_message();
        update.status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "round_robin: " + why);
        update.state = ConnectivityState::kTransientFailure;
        update.picker = std::make_shared<FailPicker>(update.status);
      } else {
        update.state = ConnectivityState::kConnecting;
        update.picker = std::make_shared<QueuePicker>();
      }
    }
    state_ = update.state;
    helper_->UpdateState(std::move(update));
  }

  Helper* helper_;
  EndpointSharding sharding_;
  ConnectivityState state_ = ConnectivityState::kIdle;
  bool no_endpoints_ = false;
  grpc::Status resolver_error_;
  std::mt19937_64 rng_{std::random_device{}()};
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
