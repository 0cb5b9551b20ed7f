// A policy's exceptions stop at its ChildBalancer: TRANSIENT_FAILURE with a
// status naming the policy, the policy silenced, rebuilt on the next update.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "common/test_backend.h"
#include "common/throwing_policy.h"
#include "lbkit/lbkit.h"
#include "lbkit/testing/fake_helper.h"

namespace {

using lbkit::ConnectivityState;
using lbkit::testing::FakeHelper;

lbkit::BalancerUpdate Update(const std::string& throw_in,
                             const std::string& address = "10.0.0.1:443") {
  auto config = std::make_shared<lbkit_test::ThrowingConfig>();
  config->throw_in = throw_in;
  lbkit::BalancerUpdate update;
  update.endpoints = {lbkit::Endpoint{{address}}};
  update.config = config;
  return update;
}

// A ChildBalancer of `policy` under a FakeHelper, recording what it reports.
struct Child {
  explicit Child(const std::string& policy = "throwing_policy") {
    lbkit_test::RegisterThrowingPolicies();
    child = lbkit::ChildBalancer::Create(
        &helper, policy, [this](const lbkit::BalancerState& state) { states.push_back(state); },
        &create_status);
  }
  // The message calls would fail with now, or "" when picks are not failed.
  std::string FailMessage() const {
    auto picks = lbkit::testing::PickAddresses(*child->state().picker, 1);
    return picks[0].rfind("fail: ", 0) == 0 ? picks[0].substr(6) : "";
  }

  FakeHelper helper;
  std::vector<lbkit::BalancerState> states;
  grpc::Status create_status;
  std::unique_ptr<lbkit::ChildBalancer> child;
};

void ExpectFailedWith(const Child& c, const std::string& message) {
  EXPECT_EQ(c.child->state().state, ConnectivityState::kTransientFailure);
  EXPECT_EQ(c.child->state().status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(c.child->state().status.error_message(), message);
  EXPECT_EQ(c.FailMessage(), message);
  ASSERT_FALSE(c.states.empty());
  EXPECT_EQ(c.states.back().state, ConnectivityState::kTransientFailure) << "reported upward";
}

TEST(ChildBalancerExceptions, AThrowingBuildGivesAFailedChildThatReportsOnItsFirstUpdate) {
  lbkit_test::TraceRecorder log;
  Child c("throwing_build");
  ASSERT_NE(c.child, nullptr);
  const std::string message = "policy \"throwing_build\" threw: boom in build (in Build)";
  EXPECT_EQ(c.create_status.error_message(), message);
  EXPECT_TRUE(c.states.empty()) << "nothing reported before Create returned";
  EXPECT_EQ(c.child->state().state, ConnectivityState::kTransientFailure);
  grpc::Status status = c.child->UpdateResolverState(Update("none"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(status.error_message(), message);
  ExpectFailedWith(c, message);
  EXPECT_EQ(log.Count({"fake:///", message}), 1);
}

TEST(ChildBalancerExceptions, AThrowingUpdateResolverStateIsTransientFailure) {
  lbkit_test::TraceRecorder log;
  Child c;
  grpc::Status status = c.child->UpdateResolverState(Update("update"));
  const std::string message =
      "policy \"throwing_policy\" threw: boom in update (in UpdateResolverState)";
  EXPECT_EQ(status.error_message(), message);
  ExpectFailedWith(c, message);
  EXPECT_EQ(log.Count({message, "until the next resolver update"}), 1);
}

TEST(ChildBalancerExceptions, AThrowingListenerIsTransientFailureAndReleasesTheSubchannels) {
  Child c;
  ASSERT_TRUE(c.child->UpdateResolverState(Update("listener")).ok());
  auto subchannel = c.helper.subchannel("10.0.0.1:443");
  ASSERT_NE(subchannel, nullptr);
  subchannel->SetState(ConnectivityState::kConnecting);
  ExpectFailedWith(
      c, "policy \"throwing_policy\" threw: boom in listener (in a subchannel state listener)");
  EXPECT_TRUE(subchannel->is_shutdown());
}

TEST(ChildBalancerExceptions, AThrowingTimerIsTransientFailure) {
  Child c;
  ASSERT_TRUE(c.child->UpdateResolverState(Update("timer")).ok());
  c.helper.FireTimers();
  ExpectFailedWith(c, "policy \"throwing_policy\" threw: boom in timer (in a timer callback)");
}

TEST(ChildBalancerExceptions, APostThatThrowsANonStdExceptionIsTransientFailure) {
  Child c;
  ASSERT_TRUE(c.child->UpdateResolverState(Update("post")).ok());
  c.helper.RunPosted();
  ExpectFailedWith(c,
                   "policy \"throwing_policy\" threw: an exception not derived from "
                   "std::exception (in a Helper::Post callback)");
}

TEST(ChildBalancerExceptions, AThrowingExitIdleIsTransientFailure) {
  Child c;
  ASSERT_TRUE(c.child->UpdateResolverState(Update("exit_idle")).ok());
  EXPECT_EQ(c.child->state().state, ConnectivityState::kIdle);
  c.child->ExitIdle();
  ExpectFailedWith(c, "policy \"throwing_policy\" threw: boom in exit_idle (in ExitIdle)");
}

TEST(ChildBalancerExceptions, AFailedPolicyIsSilencedAndRebuiltOnTheNextUpdate) {
  Child c;
  ASSERT_TRUE(c.child->UpdateResolverState(Update("listener")).ok());
  auto old_subchannel = c.helper.subchannel("10.0.0.1:443");
  old_subchannel->SetState(ConnectivityState::kConnecting);
  ASSERT_EQ(c.child->state().state, ConnectivityState::kTransientFailure);
  const size_t reported = c.states.size();
  c.child->ExitIdle();  // a broken policy is not called
  c.child->ResolverError(grpc::Status(grpc::StatusCode::UNAVAILABLE, "dns down"));
  EXPECT_EQ(c.states.size(), reported);

  ASSERT_TRUE(c.child->UpdateResolverState(Update("none", "10.0.0.2:443")).ok());
  auto subchannel = c.helper.subchannel("10.0.0.2:443");
  ASSERT_NE(subchannel, nullptr) << "a fresh policy created its subchannel";
  subchannel->SetState(ConnectivityState::kReady);
  EXPECT_EQ(c.child->state().state, ConnectivityState::kReady);
  EXPECT_EQ(lbkit::testing::PickAddresses(*c.child->state().picker, 1),
            std::vector<std::string>{"10.0.0.2:443"});
}

// A policy that publishes from inside UpdateResolverState and keeps using
// its own members afterwards; its parent, hearing IDLE, calls ExitIdle,
// which throws. The policy must outlive its own UpdateResolverState (the
// sanitizer build catches a use after free).
class PublishThenTouch final : public lbkit::Balancer {
 public:
  explicit PublishThenTouch(lbkit::Helper* helper) : helper_(helper) {}
  grpc::Status UpdateResolverState(lbkit::BalancerUpdate) override {
    lbkit::BalancerState state;
    state.state = ConnectivityState::kIdle;
    state.picker = std::make_shared<lbkit::QueuePicker>();
    helper_->UpdateState(state);      // the parent calls ExitIdle from in here
    touched_ = std::string(64, 'x');  // this object must still be alive
    return grpc::Status::OK;
  }
  void ResolverError(const grpc::Status&) override {}
  void ExitIdle() override { throw std::runtime_error("boom in nested exit_idle"); }

 private:
  lbkit::Helper* helper_;
  std::string touched_;
};

class PublishThenTouchBuilder final : public lbkit::BalancerBuilder {
 public:
  std::string name() const override { return "publish_then_touch"; }
  grpc::Status ParseConfig(const nlohmann::json&,
                           std::shared_ptr<const lbkit::BalancerConfig>* config) const override {
    *config = std::make_shared<lbkit::BalancerConfig>();
    return grpc::Status::OK;
  }
  std::unique_ptr<lbkit::Balancer> Build(lbkit::Helper* helper) const override {
    return std::make_unique<PublishThenTouch>(helper);
  }
};

TEST(ChildBalancerExceptions, AThrowNestedInsideThePolicysOwnCallDoesNotDestroyItUnderItsFeet) {
  ASSERT_TRUE(lbkit::RegisterBalancer(std::make_shared<PublishThenTouchBuilder>(),
                                      lbkit::OnDuplicate::kReplace)
                  .ok());
  FakeHelper helper;
  std::unique_ptr<lbkit::ChildBalancer> child;
  grpc::Status status;
  child = lbkit::ChildBalancer::Create(
      &helper, "publish_then_touch",
      [&child](const lbkit::BalancerState& state) {
        if (state.state == ConnectivityState::kIdle) child->ExitIdle();
      },
      &status);
  ASSERT_TRUE(status.ok());
  lbkit::BalancerUpdate update;
  update.config = std::make_shared<lbkit::BalancerConfig>();
  grpc::Status updated = child->UpdateResolverState(update);
  const std::string message =
      "policy \"publish_then_touch\" threw: boom in nested exit_idle (in ExitIdle)";
  EXPECT_EQ(updated.error_message(), message) << "the update reports the failure";
  EXPECT_EQ(child->state().state, ConnectivityState::kTransientFailure);
  EXPECT_EQ(child->state().status.error_message(), message);
}

}  // namespace
