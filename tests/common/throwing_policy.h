// A policy that throws where its config says, for the tests of how lbkit
// contains a policy's exceptions (balancer.h, "Exceptions").
//
//   {"throwing_policy": {"throwIn": "<where>"}}   where is one of
//     "none"       a working policy: one subchannel to the first address
//     "update"     UpdateResolverState throws std::runtime_error("boom in update")
//     "listener"   the subchannel state listener throws "boom in listener"
//     "timer"      a timer callback throws "boom in timer"
//     "post"       a Helper::Post callback throws an int (not a std::exception)
//     "exit_idle"  publishes IDLE; ExitIdle throws "boom in exit_idle"
//     "pick"       the picker throws "boom in pick"
//     "pick_int"   the picker throws an int
//     "done"       the picks' done-callback throws "boom in done"
//   "throwing_build": the same policy, but its builder's Build throws
//     std::runtime_error("boom in build").
#ifndef LBKIT_TESTS_COMMON_THROWING_POLICY_H_
#define LBKIT_TESTS_COMMON_THROWING_POLICY_H_

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>

#include "lbkit/lbkit.h"

namespace lbkit_test {

class ThrowingConfig final : public lbkit::BalancerConfig {
 public:
  std::string throw_in = "none";
};

class ThrowingPicker final : public lbkit::Picker {
 public:
  ThrowingPicker(std::shared_ptr<lbkit::Subchannel> subchannel, std::string throw_in)
      : subchannel_(std::move(subchannel)), throw_in_(std::move(throw_in)) {}
  lbkit::PickResult Pick(const lbkit::PickArgs&) const override {
    if (throw_in_ == "pick") throw std::runtime_error("boom in pick");
    if (throw_in_ == "pick_int") throw 7;
    if (throw_in_ == "done") {
      return lbkit::PickResult::Complete(subchannel_.get(), [](const lbkit::CallDoneInfo&) {
        throw std::runtime_error("boom in done");
      });
    }
    return lbkit::PickResult::Complete(subchannel_.get());
  }

 private:
  std::shared_ptr<lbkit::Subchannel> subchannel_;
  std::string throw_in_;
};

class ThrowingBalancer final : public lbkit::Balancer {
 public:
  explicit ThrowingBalancer(lbkit::Helper* helper) : helper_(helper) {}

  grpc::Status UpdateResolverState(lbkit::BalancerUpdate update) override {
    throw_in_ = static_cast<const ThrowingConfig&>(*update.config).throw_in;
    if (throw_in_ == "update") throw std::runtime_error("boom in update");
    if (update.endpoints.empty() || update.endpoints[0].addresses.empty()) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "throwing_policy: no endpoints");
    }
    if (throw_in_ == "timer") {
      timer_ = helper_->StartTimer(std::chrono::milliseconds(0),
                                   [] { throw std::runtime_error("boom in timer"); });
    }
    if (throw_in_ == "post") helper_->Post([] { throw 42; });
    if (subchannel_ == nullptr) {
      subchannel_ = helper_->CreateSubchannel(
          update.endpoints[0].addresses[0],
          [this](lbkit::ConnectivityState state, const grpc::Status& status) {
            OnSubchannelState(state, status);
          });
    }
    if (throw_in_ == "exit_idle") {
      Publish(lbkit::ConnectivityState::kIdle, std::make_shared<lbkit::QueuePicker>());
    } else {
      subchannel_->RequestConnection();
    }
    return grpc::Status::OK;
  }
  void ResolverError(const grpc::Status&) override {}
  void ExitIdle() override {
    if (throw_in_ == "exit_idle") throw std::runtime_error("boom in exit_idle");
    if (subchannel_ != nullptr) subchannel_->RequestConnection();
  }

 private:
  void OnSubchannelState(lbkit::ConnectivityState state, const grpc::Status& status) {
    if (throw_in_ == "listener") throw std::runtime_error("boom in listener");
    if (state == lbkit::ConnectivityState::kReady) {
      Publish(state, std::make_shared<ThrowingPicker>(subchannel_, throw_in_));
    } else if (state == lbkit::ConnectivityState::kTransientFailure) {
      Publish(state, std::make_shared<lbkit::FailPicker>(status), status);
    } else if (state == lbkit::ConnectivityState::kIdle) {
      subchannel_->RequestConnection();
    }
  }
  void Publish(lbkit::ConnectivityState state, std::shared_ptr<lbkit::Picker> picker,
               grpc::Status status = grpc::Status::OK) {
    lbkit::BalancerState published;
    published.state = state;
    published.picker = std::move(picker);
    published.status = std::move(status);
    helper_->UpdateState(std::move(published));
  }

  lbkit::Helper* helper_;
  std::string throw_in_;
  std::shared_ptr<lbkit::Subchannel> subchannel_;
  std::unique_ptr<lbkit::Timer> timer_;
};

class ThrowingBuilder final : public lbkit::BalancerBuilder {
 public:
  explicit ThrowingBuilder(bool throw_in_build) : throw_in_build_(throw_in_build) {}
  std::string name() const override {
    return throw_in_build_ ? "throwing_build" : "throwing_policy";
  }
  grpc::Status ParseConfig(const nlohmann::json& json,
                           std::shared_ptr<const lbkit::BalancerConfig>* config) const override {
    auto parsed = std::make_shared<ThrowingConfig>();
    auto it = json.find("throwIn");
    if (it != json.end() && it->is_string()) parsed->throw_in = it->get<std::string>();
    *config = std::move(parsed);
    return grpc::Status::OK;
  }
  std::unique_ptr<lbkit::Balancer> Build(lbkit::Helper* helper) const override {
    if (throw_in_build_) throw std::runtime_error("boom in build");
    return std::make_unique<ThrowingBalancer>(helper);
  }

 private:
  bool throw_in_build_;
};

// Registers throwing_policy and throwing_build (replacing earlier ones, so
// that tests may call it any number of times).
inline void RegisterThrowingPolicies() {
  ASSERT_TRUE(lbkit::RegisterBalancer(std::make_shared<ThrowingBuilder>(false),
                                      lbkit::OnDuplicate::kReplace)
                  .ok());
  ASSERT_TRUE(
      lbkit::RegisterBalancer(std::make_shared<ThrowingBuilder>(true), lbkit::OnDuplicate::kReplace)
          .ok());
}

// {"loadBalancingConfig":[{"throwing_policy":{"throwIn":"<where>"}}]}
inline std::string ThrowingConfigJson(const std::string& where,
                                      const std::string& policy = "throwing_policy") {
  return R"({"loadBalancingConfig":[{")" + policy + R"(":{"throwIn":")" + where + R"("}}]})";
}

}  // namespace lbkit_test

#endif  // LBKIT_TESTS_COMMON_THROWING_POLICY_H_
