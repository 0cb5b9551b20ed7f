#include "custom_round_robin.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace customlb {
namespace {

class CustomRoundRobin final : public lbkit::Balancer {
 public:
  explicit CustomRoundRobin(lbkit::Helper* helper)
      : helper_(helper), children_(helper, [this] { UpdatePicker(); }) {}

  grpc::Status UpdateResolverState(lbkit::BalancerUpdate update) override {
    config_ = std::static_pointer_cast<const CustomRoundRobinConfig>(update.config);
    if (update.endpoints.size() < 2) {
      error_ = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                            "custom_round_robin needs at least 2 endpoints, got " +
                                std::to_string(update.endpoints.size()));
      children_.Update({});
      return error_;
    }
    error_ = grpc::Status::OK;
    return children_.Update(update.endpoints);
  }

  void ResolverError(const grpc::Status& status) override {
    if (!children_.children().empty()) return;  // keep using what we have
    error_ = grpc::Status(grpc::StatusCode::UNAVAILABLE, status.error_message());
    UpdatePicker();
  }

  void ExitIdle() override { children_.ExitIdle(); }
  void ResetBackoff() override { children_.ResetBackoff(); }

 private:
  void UpdatePicker() {
    if (!error_.ok()) {
      Publish(lbkit::ConnectivityState::kTransientFailure,
              std::make_shared<lbkit::FailPicker>(error_), error_);
      return;
    }
    std::vector<std::shared_ptr<lbkit::Picker>> ready;
    for (const auto& child : children_.children()) {
      if (child.state.state == lbkit::ConnectivityState::kReady)
        ready.push_back(child.state.picker);
    }
    if (ready.size() >= 2) {
      Publish(lbkit::ConnectivityState::kReady,
              std::make_shared<CustomRoundRobinPicker>(ready[0], ready[1], config_->choose_second),
              grpc::Status::OK);
      return;
    }
    // Two READY children are impossible while fewer than two could still
    // connect: report the failure instead of leaving calls waiting.
    size_t failed = 0;
    grpc::Status child_error;
    for (const auto& child : children_.children()) {
      if (child.state.state == lbkit::ConnectivityState::kTransientFailure) {
        ++failed;
        child_error = child.state.status;
      }
    }
    if (failed + 2 > children_.children().size()) {
      grpc::Status status(grpc::StatusCode::UNAVAILABLE,
                          "custom_round_robin: fewer than 2 endpoints can connect; last error: " +
                              child_error.error_message());
      Publish(lbkit::ConnectivityState::kTransientFailure,
              std::make_shared<lbkit::FailPicker>(status), status);
      return;
    }
    Publish(lbkit::ConnectivityState::kConnecting, std::make_shared<lbkit::QueuePicker>(),
            grpc::Status::OK);
  }

  void Publish(lbkit::ConnectivityState state, std::shared_ptr<lbkit::Picker> picker,
               grpc::Status status) {
    lbkit::BalancerState update;
    update.state = state;
    update.picker = std::move(picker);
    update.status = std::move(status);
    helper_->UpdateState(std::move(update));
  }

  lbkit::Helper* helper_;
  lbkit::EndpointSharding children_;
  std::shared_ptr<const CustomRoundRobinConfig> config_;
  grpc::Status error_;
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
