// The public testing kit (lbkit/testing/fake_helper.h) as a policy author
// uses it: public headers only, a built-in policy driven through every state.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "lbkit/lbkit.h"
#include "lbkit/testing/fake_helper.h"

namespace {

using lbkit::ConnectivityState;
using lbkit::testing::BuildBalancer;
using lbkit::testing::FakeHelper;
using lbkit::testing::PickAddresses;
using std::chrono::milliseconds;

lbkit::BalancerUpdate UpdateOf(std::vector<std::string> addresses,
                               std::shared_ptr<const lbkit::BalancerConfig> config) {
  lbkit::BalancerUpdate update;
  for (std::string& address : addresses) update.endpoints.push_back(lbkit::Endpoint{{address}});
  update.config = std::move(config);
  return update;
}

TEST(TestingKit, DrivesAPolicyThroughIdleConnectingReadyAndTransientFailure) {
  FakeHelper helper;
  std::unique_ptr<lbkit::Balancer> policy;
  std::shared_ptr<const lbkit::BalancerConfig> config;
  ASSERT_TRUE(BuildBalancer("round_robin", "{}", &helper, &policy, &config).ok());
  ASSERT_TRUE(policy->UpdateResolverState(UpdateOf({"a:1", "b:1"}, config)).ok());
  ASSERT_EQ(helper.subchannels().size(), 2u);
  auto a = helper.subchannel("a:1");
  auto b = helper.subchannel("b:1");
  EXPECT_EQ(a->state(), ConnectivityState::kIdle) << "a subchannel starts IDLE";
  EXPECT_EQ(a->connection_requests(), 1) << "round_robin connects every endpoint";
  EXPECT_EQ(helper.last_state().state, ConnectivityState::kConnecting);
  EXPECT_EQ(PickAddresses(*helper.last_state().picker, 1)[0], "queue");

  a->SetState(ConnectivityState::kConnecting);
  a->SetState(ConnectivityState::kReady);
  EXPECT_EQ(helper.last_state().state, ConnectivityState::kReady);
  EXPECT_EQ(PickAddresses(*helper.last_state().picker, 2),
            (std::vector<std::string>{"a:1", "a:1"}));

  b->SetState(ConnectivityState::kReady);
  std::vector<std::string> picks = PickAddresses(*helper.last_state().picker, 4);
  EXPECT_EQ(std::count(picks.begin(), picks.end(), "a:1"), 2);
  EXPECT_EQ(std::count(picks.begin(), picks.end(), "b:1"), 2);

  const grpc::Status refused(grpc::StatusCode::UNAVAILABLE, "connection refused");
  a->SetState(ConnectivityState::kTransientFailure, refused);
  b->SetState(ConnectivityState::kTransientFailure, refused);
  EXPECT_EQ(helper.last_state().state, ConnectivityState::kTransientFailure);
  EXPECT_NE(PickAddresses(*helper.last_state().picker, 1)[0].find("connection refused"),
            std::string::npos);
}

TEST(TestingKit, DrivesPickFirstFromReadyToIdleAndBackThroughAPostedWakeUp) {
  FakeHelper helper;
  std::unique_ptr<lbkit::Balancer> policy;
  std::shared_ptr<const lbkit::BalancerConfig> config;
  ASSERT_TRUE(BuildBalancer("pick_first", "{}", &helper, &policy, &config).ok());
  ASSERT_TRUE(policy->UpdateResolverState(UpdateOf({"a:1"}, config)).ok());
  auto a = helper.subchannel("a:1");
  a->SetState(ConnectivityState::kReady);
  ASSERT_EQ(helper.last_state().state, ConnectivityState::kReady);
  a->SetState(ConnectivityState::kIdle);  // the connection went away
  EXPECT_EQ(helper.last_state().state, ConnectivityState::kIdle);
  EXPECT_EQ(helper.reresolution_requests(), 1);
  EXPECT_EQ(PickAddresses(*helper.last_state().picker, 1)[0], "queue");
  ASSERT_EQ(helper.pending_posts(), 1u) << "a pick on IDLE posts a wake-up";
  helper.RunPosted();
  EXPECT_EQ(helper.last_state().state, ConnectivityState::kConnecting);
  EXPECT_EQ(a->connection_requests(), 2);
}

TEST(TestingKit, SubchannelDeliversOnlyChangesAndANewFailureReason) {
  FakeHelper helper;
  std::vector<std::string> seen;
  auto subchannel =
      helper.CreateSubchannel("a:1", [&seen](ConnectivityState state, const grpc::Status& status) {
        seen.push_back(std::string(lbkit::ToString(state)) + " " + status.error_message());
      });
  auto fake = helper.subchannel("a:1");
  fake->SetState(ConnectivityState::kConnecting);
  fake->SetState(ConnectivityState::kConnecting);
  fake->SetState(ConnectivityState::kTransientFailure,
                 grpc::Status(grpc::StatusCode::UNAVAILABLE, "x"));
  fake->SetState(ConnectivityState::kTransientFailure,
                 grpc::Status(grpc::StatusCode::UNAVAILABLE, "x"));
  fake->SetState(ConnectivityState::kTransientFailure,
                 grpc::Status(grpc::StatusCode::UNAVAILABLE, "y"));
  subchannel->Shutdown();
  fake->SetState(ConnectivityState::kReady);
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen.back(), std::string(lbkit::ToString(ConnectivityState::kTransientFailure)) + " y");
  EXPECT_TRUE(fake->is_shutdown());
  EXPECT_EQ(helper.subchannel("a:1"), nullptr) << "shut down subchannels are not found";
}

TEST(TestingKit, TimersFireInDeadlineOrderWhenTheClockAdvances) {
  FakeHelper helper;
  std::vector<int> fired;
  auto late = helper.StartTimer(milliseconds(300), [&] { fired.push_back(300); });
  auto early = helper.StartTimer(milliseconds(100), [&] { fired.push_back(100); });
  std::unique_ptr<lbkit::Timer> chained;
  auto middle = helper.StartTimer(milliseconds(200), [&] {
    fired.push_back(200);
    chained = helper.StartTimer(milliseconds(50), [&] { fired.push_back(250); });
  });
  helper.AdvanceTime(milliseconds(99));
  EXPECT_TRUE(fired.empty());
  helper.AdvanceTime(milliseconds(200));  // now 299
  EXPECT_EQ(fired, (std::vector<int>{100, 200, 250}));
  EXPECT_EQ(helper.now(), milliseconds(299));
  late.reset();  // cancelled before it was due
  helper.AdvanceTime(milliseconds(1000));
  EXPECT_EQ(fired, (std::vector<int>{100, 200, 250}));
  EXPECT_EQ(helper.pending_timers(), 0u);
}

TEST(TestingKit, NowIsTheFakeClock) {
  FakeHelper helper;
  const auto start = helper.Now();
  helper.AdvanceTime(milliseconds(1500));
  EXPECT_EQ(helper.Now() - start, milliseconds(1500));
  const lbkit::Helper& as_helper = helper;
  EXPECT_EQ(as_helper.Now(), helper.Now()) << "what a policy reads through Helper";
}

// A picker that hands out one subchannel, for the wrapper test below.
class OnePicker final : public lbkit::Picker {
 public:
  explicit OnePicker(std::shared_ptr<lbkit::Subchannel> subchannel)
      : subchannel_(std::move(subchannel)) {}
  lbkit::PickResult Pick(const lbkit::PickArgs&) const override {
    return lbkit::PickResult::Complete(subchannel_.get());
  }

 private:
  std::shared_ptr<lbkit::Subchannel> subchannel_;
};

TEST(TestingKit, AForwardingSubchannelOverAFakeOneForwardsAndPicksByAddress) {
  FakeHelper helper;
  std::vector<ConnectivityState> heard;
  auto wrapper = std::make_shared<lbkit::ForwardingSubchannel>(helper.CreateSubchannel(
      "a:1", [&](ConnectivityState state, const grpc::Status&) { heard.push_back(state); }));
  auto fake = helper.subchannel("a:1");
  ASSERT_NE(fake, nullptr);
  EXPECT_EQ(wrapper->wrapped(), fake);
  EXPECT_EQ(wrapper->address(), "a:1");
  wrapper->RequestConnection();
  EXPECT_EQ(fake->connection_requests(), 1);
  wrapper->ResetBackoff();
  EXPECT_EQ(fake->backoff_resets(), 1);
  fake->SetState(ConnectivityState::kReady);
  EXPECT_EQ(wrapper->state(), ConnectivityState::kReady);
  EXPECT_EQ(heard, std::vector<ConnectivityState>{ConnectivityState::kReady});
  EXPECT_EQ(PickAddresses(OnePicker(wrapper), 2), (std::vector<std::string>{"a:1", "a:1"}));
  wrapper->Shutdown();
  EXPECT_TRUE(fake->is_shutdown());
  EXPECT_THROW(lbkit::ForwardingSubchannel(nullptr), std::invalid_argument);
}

TEST(TestingKit, FireTimersRunsEveryPendingTimerButNotOneCancelledOnTheWay) {
  FakeHelper helper;
  int runs = 0;
  std::unique_ptr<lbkit::Timer> second;
  auto first = helper.StartTimer(milliseconds(10), [&] {
    ++runs;
    second.reset();  // cancels the other one
  });
  second = helper.StartTimer(milliseconds(20), [&] { runs += 100; });
  helper.FireTimers();
  EXPECT_EQ(runs, 1);
}

TEST(TestingKit, PostedWorkRunsWhenTheTestSaysSo) {
  FakeHelper helper;
  int runs = 0;
  helper.Post([&] {
    ++runs;
    helper.Post([&] { ++runs; });
  });
  EXPECT_EQ(runs, 0);
  EXPECT_EQ(helper.pending_posts(), 1u);
  helper.RunPosted();
  EXPECT_EQ(runs, 2);
}

TEST(TestingKit, BuildBalancerNamesWhatIsWrong) {
  FakeHelper helper;
  std::unique_ptr<lbkit::Balancer> policy;
  std::shared_ptr<const lbkit::BalancerConfig> config;
  grpc::Status status = BuildBalancer("no_such_policy", "{}", &helper, &policy, &config);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(status.error_message().find("no_such_policy"), std::string::npos);
  status = BuildBalancer("round_robin", "{not json", &helper, &policy, &config);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(policy, nullptr);
}

// A picker that completes on `subchannel`, attaching `key: value`, and
// records the end of the call it gets.
class RecordingPicker final : public lbkit::Picker {
 public:
  RecordingPicker(std::shared_ptr<lbkit::Subchannel> subchannel, std::string key)
      : subchannel_(std::move(subchannel)), key_(std::move(key)) {}
  lbkit::PickResult Pick(const lbkit::PickArgs& args) const override {
    seen_deadline = args.deadline;
    seen_wait_for_ready = args.wait_for_ready;
    return lbkit::PickResult::Complete(subchannel_.get(),
                                       [this](const lbkit::CallDoneInfo& info) {
                                         ended_with = info.status();
                                         const lbkit::LoadReport* report = info.load_report();
                                         cpu = report != nullptr ? report->cpu_utilization : -1;
                                       })
        .AddMetadata(key_, "v");
  }
  mutable std::chrono::system_clock::time_point seen_deadline;
  mutable bool seen_wait_for_ready = false;
  mutable grpc::Status ended_with;
  mutable double cpu = -2;

 private:
  std::shared_ptr<lbkit::Subchannel> subchannel_;
  std::string key_;
};

TEST(TestingKit, PickersSeeTheTestCallAndDescribeChecksAttachedMetadata) {
  FakeHelper helper;
  auto subchannel = helper.CreateSubchannel("a:1", nullptr);
  RecordingPicker good(subchannel, "x-ok");
  lbkit::testing::TestCall call;
  call.deadline = std::chrono::system_clock::now() + std::chrono::seconds(5);
  call.wait_for_ready = true;
  EXPECT_EQ(lbkit::testing::Describe(good.Pick(call.args())), "a:1");
  EXPECT_EQ(good.seen_deadline, call.deadline);
  EXPECT_TRUE(good.seen_wait_for_ready);
  EXPECT_TRUE(good.ended_with.ok());

  RecordingPicker bad(subchannel, "Bad Key");
  std::string described = lbkit::testing::Describe(bad.Pick(call.args()));
  EXPECT_EQ(described.rfind("fail: ", 0), 0u) << described;
  EXPECT_NE(described.find("Bad Key"), std::string::npos) << described;
  EXPECT_EQ(bad.ended_with.error_code(), grpc::StatusCode::INTERNAL)
      << "the done-callback hears what the call would";
}

TEST(TestingKit, CallEndDeliversStatusTrailersAndALoadReport) {
  FakeHelper helper;
  auto subchannel = helper.CreateSubchannel("a:1", nullptr);
  RecordingPicker picker(subchannel, "x-ok");
  lbkit::testing::TestCall call;
  lbkit::PickResult result = picker.Pick(call.args());
  lbkit::LoadReport report;
  report.cpu_utilization = 0.25;
  lbkit::testing::CallEnd(grpc::Status(grpc::StatusCode::UNAVAILABLE, "gone"))
      .WithLoadReport(report)
      .Finish(result);
  EXPECT_EQ(picker.ended_with.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_DOUBLE_EQ(picker.cpu, 0.25);
}

TEST(TestingKit, MisuseIsAFailedTestNotACrash) {
  FakeHelper helper;
  EXPECT_THROW(helper.last_state(), std::logic_error) << "nothing published yet";
  lbkit::BalancerState state;  // null picker
  EXPECT_THROW(helper.UpdateState(state), std::logic_error);
}

}  // namespace
