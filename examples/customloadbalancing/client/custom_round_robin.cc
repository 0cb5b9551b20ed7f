#include "custom_round_robin.h"

#include <cmath>
#include <limits>
#include <string>

namespace customlb {
namespace {

// EndpointSharding keeps one pick_first child per endpoint and publishes
// every state but READY: CONNECTING while two children may still become
// READY, TRANSIENT_FAILURE naming why once they cannot. This policy only
// says what READY means: the first two READY children, split by chooseSecond.
class CustomRoundRobin final : public lbkit::Balancer {
 public:
  explicit CustomRoundRobin(lbkit::Helper* helper)
      : children_(helper, lbkit::EndpointSharding::ReadyPicker{
                              "custom_round_robin", 2, [this](const auto& ready) {
                                return std::make_shared<CustomRoundRobinPicker>(
                                    ready[0]->state.picker, ready[1]->state.picker, choose_second_);
                              }}) {}

  grpc::Status UpdateResolverState(lbkit::BalancerUpdate update) override {
    // The channel always passes the parsed config; a parent that passes none
    // gets the default rather than a crash.
    auto config = std::dynamic_pointer_cast<const CustomRoundRobinConfig>(update.config);
    choose_second_ =
        config != nullptr ? config->choose_second : CustomRoundRobinConfig().choose_second;
    return children_.Update(update.endpoints);
  }
  void ResolverError(const grpc::Status& status) override { children_.ResolverError(status); }
  void ExitIdle() override { children_.ExitIdle(); }
  void ResetBackoff() override { children_.ResetBackoff(); }

 private:
  uint32_t choose_second_ = CustomRoundRobinConfig().choose_second;  // before children_
  lbkit::EndpointSharding children_;
};

}  // namespace

grpc::Status CustomRoundRobinBuilder::ParseConfig(
    const nlohmann::json& json, std::shared_ptr<const lbkit::BalancerConfig>* config) const {
  auto parsed = std::make_shared<CustomRoundRobinConfig>();
  auto field = json.find("chooseSecond");
  if (field != json.end()) {
    auto bad = [&field] {
      return grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          "chooseSecond must be a whole number from 0 to 4294967295, got " + field->dump());
    };
    if (field->is_number_unsigned()) {
      if (field->get<uint64_t>() > std::numeric_limits<uint32_t>::max()) return bad();
      parsed->choose_second = static_cast<uint32_t>(field->get<uint64_t>());
    } else if (field->is_number_float()) {
      double value = field->get<double>();
      if (!(value >= 0) || std::floor(value) != value ||
          value > std::numeric_limits<uint32_t>::max()) {
        return bad();
      }
      parsed->choose_second = static_cast<uint32_t>(value);
    } else {
      return bad();  // negative integers, strings, booleans, null, objects
    }
  }
  *config = std::move(parsed);
  return grpc::Status::OK;
}

std::unique_ptr<lbkit::Balancer> CustomRoundRobinBuilder::Build(lbkit::Helper* helper) const {
  return std::make_unique<CustomRoundRobin>(helper);
}

grpc::Status RegisterCustomRoundRobin() {
  // Once per process: later calls return the first one's answer.
  static const grpc::Status status =
      lbkit::RegisterBalancer(std::make_shared<CustomRoundRobinBuilder>());
  return status;
}

}  // namespace customlb
