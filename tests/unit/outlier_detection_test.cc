// The built-in outlier_detection policy (gRFC A50), driven through lbkit's
// testing kit and its fake clock: config defaults and bounds, success-rate and
// failure-percentage ejection, maxEjectionPercent, un-ejection on schedule,
// the ejection multiplier, what the child sees, and no counting without an
// algorithm.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/policy_under_test.h"
#include "lbkit/lbkit.h"
#include "lbkit/testing/fake_helper.h"
#include "policies/outlier_detection.h"

namespace {

using lbkit::ConnectivityState;
using lbkit::internal::OutlierDetectionConfig;
using lbkit::testing::CallEnd;
using lbkit::testing::FakeHelper;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kRoundRobin[] = R"("childPolicy":[{"round_robin":{}}])";

grpc::Status Parse(const std::string& json,
                   std::shared_ptr<const OutlierDetectionConfig>* out = nullptr) {
  FakeHelper helper;
  std::unique_ptr<lbkit::Balancer> policy;
  std::shared_ptr<const lbkit::BalancerConfig> config;
  grpc::Status status =
      lbkit::testing::BuildBalancer("outlier_detection", json, &helper, &policy, &config);
  if (status.ok() && out != nullptr) {
    *out = std::dynamic_pointer_cast<const OutlierDetectionConfig>(config);
    EXPECT_NE(*out, nullptr);
  }
  return status;
}

TEST(OutlierDetectionConfig, DefaultsAreA50s) {
  std::shared_ptr<const OutlierDetectionConfig> config;
  ASSERT_TRUE(Parse(std::string("{") + kRoundRobin + "}", &config).ok());
  EXPECT_EQ(config->interval, seconds(10));
  EXPECT_EQ(config->base_ejection_time, seconds(30));
  EXPECT_EQ(config->max_ejection_time, seconds(300));
  EXPECT_EQ(config->max_ejection_percent, 10u);
  EXPECT_FALSE(config->success_rate_ejection.has_value());
  EXPECT_FALSE(config->failure_percentage_ejection.has_value());
  EXPECT_FALSE(config->counting());
  EXPECT_EQ(config->child_policy, "round_robin");

  ASSERT_TRUE(Parse(std::string(R"({"successRateEjection":{},"failurePercentageEjection":{},)") +
                        kRoundRobin + "}",
                    &config)
                  .ok());
  ASSERT_TRUE(config->counting());
  EXPECT_EQ(config->success_rate_ejection->stdev_factor, 1900u);
  EXPECT_EQ(config->success_rate_ejection->enforcement_percentage, 100u);
  EXPECT_EQ(config->success_rate_ejection->minimum_hosts, 5u);
  EXPECT_EQ(config->success_rate_ejection->request_volume, 100u);
  EXPECT_EQ(config->failure_percentage_ejection->threshold, 85u);
  EXPECT_EQ(config->failure_percentage_ejection->enforcement_percentage, 100u);
  EXPECT_EQ(config->failure_percentage_ejection->minimum_hosts, 5u);
  EXPECT_EQ(config->failure_percentage_ejection->request_volume, 50u);
}

TEST(OutlierDetectionConfig, ReadsEveryFieldAndProtobufDurations) {
  std::shared_ptr<const OutlierDetectionConfig> config;
  grpc::Status status = Parse(
      R"({"interval":"0.5s","baseEjectionTime":"1.000000001s","maxEjectionTime":"2s",
          "maxEjectionPercent":100,"unknownField":true,
          "successRateEjection":{"stdevFactor":1000,"enforcementPercentage":50,
                                 "minimumHosts":2,"requestVolume":7},
          "failurePercentageEjection":{"threshold":0,"enforcementPercentage":0,
                                       "minimumHosts":0,"requestVolume":0},
          "childPolicy":[{"no_such_policy":{}},{"pick_first":{}}]})",
      &config);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(config->interval, milliseconds(500));
  EXPECT_EQ(config->base_ejection_time, seconds(1) + std::chrono::nanoseconds(1));
  EXPECT_EQ(config->max_ejection_time, seconds(2));
  EXPECT_EQ(config->max_ejection_percent, 100u);
  EXPECT_EQ(config->success_rate_ejection->stdev_factor, 1000u);
  EXPECT_EQ(config->success_rate_ejection->enforcement_percentage, 50u);
  EXPECT_EQ(config->success_rate_ejection->minimum_hosts, 2u);
  EXPECT_EQ(config->success_rate_ejection->request_volume, 7u);
  EXPECT_EQ(config->failure_percentage_ejection->threshold, 0u);
  EXPECT_EQ(config->child_policy, "pick_first") << "the first registered entry wins";
}

TEST(OutlierDetectionConfig, MaxEjectionTimeDefaultsToTheLargerOf300sAndTheBase) {
  std::shared_ptr<const OutlierDetectionConfig> config;
  ASSERT_TRUE(
      Parse(std::string(R"({"baseEjectionTime":"400s",)") + kRoundRobin + "}", &config).ok());
  EXPECT_EQ(config->max_ejection_time, seconds(400));
}

TEST(OutlierDetectionConfig, BadValuesAreRejectedNamingTheField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"("interval":"-1s")", "interval"},
      {R"("interval":"0s")", "interval must be at least 1ms"},
      {R"("interval":10)", "interval"},
      {R"("interval":"10ms")", "interval"},
      {R"("interval":"1.5")", "interval"},
      {R"("interval":"1.1234567891s")", "interval"},
      {R"("baseEjectionTime":"s")", "baseEjectionTime"},
      {R"("maxEjectionTime":"1e3s")", "maxEjectionTime"},
      {R"("maxEjectionPercent":101)", "maxEjectionPercent must be a whole number from 0 to 100"},
      {R"("maxEjectionPercent":-1)", "maxEjectionPercent"},
      {R"("maxEjectionPercent":"5")", "maxEjectionPercent"},
      {R"("successRateEjection":3)", "successRateEjection must be an object"},
      {R"("successRateEjection":{"enforcementPercentage":101})",
       "successRateEjection.enforcementPercentage"},
      {R"("successRateEjection":{"stdevFactor":4294967296})", "successRateEjection.stdevFactor"},
      {R"("failurePercentageEjection":{"threshold":101})", "failurePercentageEjection.threshold"},
      {R"("failurePercentageEjection":{"requestVolume":1.5})",
       "failurePercentageEjection.requestVolume"},
  };
  for (const auto& [field, expected] : cases) {
    grpc::Status status = Parse("{" + field + "," + kRoundRobin + "}");
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << field;
    EXPECT_NE(status.error_message().find(expected), std::string::npos)
        << field << ": " << status.error_message();
  }
}

TEST(OutlierDetectionConfig, ChildPolicyIsRequiredAndParsedThroughTheRegistry) {
  for (const char* json : {"{}", R"({"childPolicy":[]})", R"({"childPolicy":"round_robin"})"}) {
    grpc::Status status = Parse(json);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << json;
    EXPECT_NE(status.error_message().find("childPolicy"), std::string::npos)
        << status.error_message();
  }
  grpc::Status status = Parse(R"({"childPolicy":[{"no_such_policy":{}}]})");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("childPolicy: no registered policy"), std::string::npos)
      << status.error_message();
  status = Parse(R"({"childPolicy":[{"least_request":{"choiceCount":1}}]})");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("childPolicy: policy \"least_request\": choiceCount"),
            std::string::npos)
      << status.error_message();
}

// A child policy that records every state its subchannels report to it, one
// subchannel per address, and picks its READY subchannels in turn.
std::vector<std::string>& RecordedStates() {
  static std::vector<std::string> log;
  return log;
}
// When set, the recorder's ExitIdle shuts its subchannels down (and keeps
// them) instead of creating them afresh.
bool& ShutdownOnExitIdle() {
  static bool shutdown = false;
  return shutdown;
}

class RecorderPicker final : public lbkit::Picker {
 public:
  explicit RecorderPicker(std::vector<std::shared_ptr<lbkit::Subchannel>> ready)
      : ready_(std::move(ready)) {}
  lbkit::PickResult Pick(const lbkit::PickArgs&) const override {
    if (ready_.empty()) return lbkit::PickResult::Queue();
    return lbkit::PickResult::Complete(ready_[next_++ % ready_.size()].get());
  }

 private:
  std::vector<std::shared_ptr<lbkit::Subchannel>> ready_;
  mutable std::atomic<size_t> next_{0};
};

class Recorder final : public lbkit::Balancer {
 public:
  explicit Recorder(lbkit::Helper* helper) : helper_(helper) {}
  grpc::Status UpdateResolverState(lbkit::BalancerUpdate update) override {
    for (const lbkit::Endpoint& endpoint : update.endpoints) {
      for (const std::string& address : endpoint.addresses) {
        if (subchannels_.count(address) != 0) continue;
        subchannels_[address] = helper_->CreateSubchannel(
            address, [this, address](ConnectivityState state, const grpc::Status&) {
              RecordedStates().push_back(address + " " + lbkit::ToString(state));
              Publish();
            });
      }
    }
    Publish();
    return grpc::Status::OK;
  }
  void ResolverError(const grpc::Status&) override {}
  // A test hook: drops every subchannel and creates them afresh.
  void ExitIdle() override {
    if (ShutdownOnExitIdle()) {
      for (const auto& [address, subchannel] : subchannels_) subchannel->Shutdown();
      return;
    }
    std::vector<std::string> addresses;
    for (const auto& [address, subchannel] : subchannels_) addresses.push_back(address);
    subchannels_.clear();
    lbkit::BalancerUpdate update;
    for (const std::string& address : addresses) update.endpoints.push_back({{address}});
    UpdateResolverState(update);
  }

 private:
  void Publish() {
    std::vector<std::shared_ptr<lbkit::Subchannel>> ready;
    for (const auto& [address, subchannel] : subchannels_) {
      if (subchannel->state() == ConnectivityState::kReady) ready.push_back(subchannel);
    }
    helper_->UpdateState(
        {ready.empty() ? ConnectivityState::kConnecting : ConnectivityState::kReady,
         std::make_shared<RecorderPicker>(std::move(ready)), grpc::Status::OK});
  }
  lbkit::Helper* helper_;
  std::map<std::string, std::shared_ptr<lbkit::Subchannel>> subchannels_;
};

class RecorderBuilder final : public lbkit::BalancerBuilder {
 public:
  std::string name() const override { return "od_test_recorder"; }
  grpc::Status ParseConfig(const nlohmann::json&,
                           std::shared_ptr<const lbkit::BalancerConfig>* config) const override {
    *config = std::make_shared<lbkit::BalancerConfig>();
    return grpc::Status::OK;
  }
  std::unique_ptr<lbkit::Balancer> Build(lbkit::Helper* helper) const override {
    return std::make_unique<Recorder>(helper);
  }
};

class OutlierDetectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RecordedStates().clear();
    ShutdownOnExitIdle() = false;
  }

  // Builds outlier_detection with `fields` (JSON object members, childPolicy
  // round_robin unless they name one) over one-address endpoints.
  void Start(const std::vector<std::string>& addresses, const std::string& fields) {
    std::string json = "{" + fields;
    if (fields.find("childPolicy") == std::string::npos) {
      json += std::string(fields.empty() ? "" : ",") + kRoundRobin;
    }
    json += "}";
    lbkit_test::WeightedEndpoints endpoints;
    for (const std::string& address : addresses) endpoints.emplace_back(address, 1);
    od_->Start(endpoints, json);
    od_->AllReady();
    ASSERT_EQ(od_->helper().last_state().state, ConnectivityState::kReady);
  }

  // Picks until every address in `plan` has ended its calls: `.first`
  // successes then `.second` failures. Picks of addresses with nothing left
  // to do end as picks lbkit did not use, which are not counted.
  void Calls(std::map<std::string, std::pair<int, int>> plan) {
    const lbkit::testing::TestCall call;
    for (int i = 0; i < 100000; ++i) {
      bool left = false;
      for (const auto& [address, todo] : plan) left |= todo.first > 0 || todo.second > 0;
      if (!left) return;
      lbkit::PickResult result = od_->picker()->Pick(call.args());
      ASSERT_EQ(result.kind(), lbkit::PickResult::Kind::kComplete);
      auto it = plan.find(result.subchannel()->address());
      if (it == plan.end() || (it->second.first == 0 && it->second.second == 0)) {
        CallEnd(grpc::Status(grpc::StatusCode::CANCELLED, "lbkit: pick not used: test"))
            .Finish(result);
      } else if (it->second.first > 0) {
        --it->second.first;
        CallEnd().Finish(result);
      } else {
        --it->second.second;
        CallEnd(grpc::Status(grpc::StatusCode::UNAVAILABLE, "backend failed")).Finish(result);
      }
    }
    FAIL() << "some address in the plan was never picked";
  }

  // The addresses the current picker sends calls to (none of them counted).
  std::set<std::string> Reached() {
    std::set<std::string> reached;
    const lbkit::testing::TestCall call;
    for (int i = 0; i < 200; ++i) {
      lbkit::PickResult result = od_->picker()->Pick(call.args());
      if (result.kind() != lbkit::PickResult::Kind::kComplete) continue;
      reached.insert(result.subchannel()->address());
      CallEnd(grpc::Status(grpc::StatusCode::CANCELLED, "lbkit: pick not used: test"))
          .Finish(result);
    }
    return reached;
  }
  bool Ejected(const std::string& address) { return Reached().count(address) == 0; }

  // A fresh policy and helper, for a second scenario in one test.
  void Restart() {
    od_.reset();
    od_ = std::make_unique<lbkit_test::PolicyUnderTest>("outlier_detection");
  }

  std::unique_ptr<lbkit_test::PolicyUnderTest> od_ =
      std::make_unique<lbkit_test::PolicyUnderTest>("outlier_detection");
};

const std::vector<std::string> kFive = {"a:1", "b:1", "c:1", "d:1", "e:1"};

TEST_F(OutlierDetectionTest, SuccessRateEjectsTheOutlierAtTheInterval) {
  Start(kFive, R"("interval":"10s","successRateEjection":{"requestVolume":10})");
  Calls({{"a:1", {10, 0}}, {"b:1", {10, 0}}, {"c:1", {10, 0}}, {"d:1", {9, 1}}, {"e:1", {0, 10}}});
  od_->helper().AdvanceTime(seconds(9));
  EXPECT_FALSE(Ejected("e:1")) << "nothing happens before the interval";
  od_->helper().AdvanceTime(seconds(1));
  EXPECT_TRUE(Ejected("e:1"));
  EXPECT_EQ(Reached(), (std::set<std::string>{"a:1", "b:1", "c:1", "d:1"}))
      << "d:1 (90%) is within 1.9 standard deviations of the mean";
}

TEST_F(OutlierDetectionTest, SuccessRateNeedsMinimumHostsWithEnoughVolume) {
  Start(kFive, R"("interval":"10s","successRateEjection":{"requestVolume":10})");
  // Only four endpoints reach the volume: fewer than minimumHosts (5).
  Calls({{"a:1", {10, 0}}, {"b:1", {10, 0}}, {"c:1", {10, 0}}, {"d:1", {5, 0}}, {"e:1", {0, 10}}});
  od_->helper().AdvanceTime(seconds(10));
  EXPECT_FALSE(Ejected("e:1"));
}

TEST_F(OutlierDetectionTest, FailurePercentageEjectsAboveTheThresholdOnly) {
  Start({"a:1", "b:1", "c:1"},
        R"("interval":"1s","maxEjectionPercent":100,
           "failurePercentageEjection":{"threshold":50,"minimumHosts":3,"requestVolume":10})");
  Calls({{"a:1", {10, 0}}, {"b:1", {5, 5}}, {"c:1", {4, 6}}});
  od_->helper().AdvanceTime(seconds(1));
  EXPECT_EQ(Reached(), (std::set<std::string>{"a:1", "b:1"}))
      << "c:1 failed 60% > 50%; b:1 failed exactly 50%, not above";
}

TEST_F(OutlierDetectionTest, FailurePercentageIgnoresLowVolumeAndTooFewHosts) {
  Start({"a:1", "b:1", "c:1"},
        R"("interval":"1s","failurePercentageEjection":{"threshold":50,"requestVolume":10})");
  Calls({{"a:1", {10, 0}}, {"b:1", {0, 10}}, {"c:1", {0, 10}}});
  od_->helper().AdvanceTime(seconds(1));
  EXPECT_FALSE(Ejected("b:1")) << "3 endpoints, fewer than minimumHosts (5)";
  Restart();
  Start({"a:1", "b:1", "c:1"},
        R"("interval":"1s","failurePercentageEjection":{"threshold":50,"minimumHosts":3,
           "requestVolume":10})");
  Calls({{"a:1", {10, 0}}, {"b:1", {0, 9}}});
  od_->helper().AdvanceTime(seconds(1));
  EXPECT_FALSE(Ejected("b:1")) << "9 calls, under requestVolume (10)";
}

TEST_F(OutlierDetectionTest, MaxEjectionPercentCapsEjectionsButAllowsOne) {
  std::vector<std::string> ten;
  for (int i = 0; i < 10; ++i) ten.push_back("h" + std::to_string(i) + ":1");
  Start(ten, R"("interval":"1s","maxEjectionPercent":20,
                "failurePercentageEjection":{"threshold":50,"requestVolume":5})");
  std::map<std::string, std::pair<int, int>> plan;
  for (int i = 0; i < 10; ++i) plan[ten[i]] = i < 5 ? std::make_pair(0, 5) : std::make_pair(5, 0);
  Calls(plan);
  od_->helper().AdvanceTime(seconds(1));
  EXPECT_EQ(Reached().size(), 8u) << "20% of 10 endpoints: two ejected, though five fail";

  Restart();
  Start(ten, R"("interval":"1s","maxEjectionPercent":0,
                "failurePercentageEjection":{"threshold":50,"requestVolume":5})");
  Calls(plan);
  od_->helper().AdvanceTime(seconds(1));
  EXPECT_EQ(Reached().size(), 9u)
      << "as gRPC C-core: at least one is ejected whatever the percentage";
}

// interval 1s, base 3s: an ejection at t=1s lasts until the sweep at t=4s.
constexpr char kFast[] = R"("interval":"1s","baseEjectionTime":"3s","maxEjectionTime":"100s",
    "maxEjectionPercent":50,"failurePercentageEjection":{"threshold":50,"minimumHosts":2,
    "requestVolume":4})";

TEST_F(OutlierDetectionTest, UnejectsAfterBaseEjectionTime) {
  Start({"a:1", "b:1"}, kFast);
  Calls({{"a:1", {4, 0}}, {"b:1", {0, 4}}});
  od_->helper().AdvanceTime(seconds(1));
  ASSERT_TRUE(Ejected("b:1"));
  od_->helper().AdvanceTime(seconds(2));  // t=3s
  EXPECT_TRUE(Ejected("b:1"));
  od_->helper().AdvanceTime(milliseconds(999));
  EXPECT_TRUE(Ejected("b:1"));
  od_->helper().AdvanceTime(milliseconds(1));  // t=4s: the sweep sees 3s have passed
  EXPECT_FALSE(Ejected("b:1"));
}

TEST_F(OutlierDetectionTest, TheMultiplierGrowsWithRepeatedEjectionsAndDecays) {
  Start({"a:1", "b:1"}, kFast);
  // Counts how many sweeps b:1 stays ejected for, failing it once it is back.
  auto eject_and_time = [this] {
    Calls({{"a:1", {4, 0}}, {"b:1", {0, 4}}});
    od_->helper().AdvanceTime(seconds(1));
    EXPECT_TRUE(Ejected("b:1"));
    int sweeps = 0;
    while (Ejected("b:1") && sweeps < 100) {
      Calls({{"a:1", {4, 0}}});
      od_->helper().AdvanceTime(seconds(1));
      ++sweeps;
    }
    return sweeps;
  };
  EXPECT_EQ(eject_and_time(), 3) << "multiplier 1: 3s";
  EXPECT_EQ(eject_and_time(), 6) << "multiplier 2: 6s";
  EXPECT_EQ(eject_and_time(), 9) << "multiplier 3: 9s";
  // Three healthy sweeps bring the multiplier from 3 back to 0.
  for (int i = 0; i < 3; ++i) {
    Calls({{"a:1", {4, 0}}, {"b:1", {4, 0}}});
    od_->helper().AdvanceTime(seconds(1));
  }
  EXPECT_EQ(eject_and_time(), 3) << "decayed: multiplier 1 again";
}

TEST_F(OutlierDetectionTest, MaxEjectionTimeCapsTheEjection) {
  Start({"a:1", "b:1"}, R"("interval":"1s","baseEjectionTime":"3s","maxEjectionTime":"4s",
      "maxEjectionPercent":50,"failurePercentageEjection":{"threshold":50,"minimumHosts":2,
      "requestVolume":4})");
  for (int round = 0; round < 3; ++round) {
    Calls({{"a:1", {4, 0}}, {"b:1", {0, 4}}});
    od_->helper().AdvanceTime(seconds(1));
    int sweeps = 0;
    while (Ejected("b:1") && sweeps < 100) {
      od_->helper().AdvanceTime(seconds(1));
      ++sweeps;
    }
    EXPECT_EQ(sweeps, round == 0 ? 3 : 4) << "min(3s * multiplier, 4s), round " << round;
  }
}

TEST_F(OutlierDetectionTest, AConfigUpdateKeepsTheIntervalSchedule) {
  Start({"a:1", "b:1"}, kFast);
  od_->helper().AdvanceTime(milliseconds(600));
  Calls({{"a:1", {4, 0}}, {"b:1", {0, 4}}});
  ASSERT_TRUE(od_->policy()->UpdateResolverState(od_->Update({{"a:1", 1}, {"b:1", 1}})).ok());
  od_->helper().AdvanceTime(milliseconds(400));  // t=1s: the first sweep, not t=1.6s
  EXPECT_TRUE(Ejected("b:1"));
}

TEST_F(OutlierDetectionTest, NoAlgorithmMeansNoTimerAndNoEjection) {
  Start({"a:1", "b:1"}, R"("interval":"1s","maxEjectionPercent":100)");
  EXPECT_EQ(od_->helper().pending_timers(), 0u);
  Calls({{"a:1", {100, 0}}, {"b:1", {0, 100}}});
  od_->helper().AdvanceTime(seconds(10));
  EXPECT_FALSE(Ejected("b:1"));
}

TEST_F(OutlierDetectionTest, TheChildSeesTransientFailureWhileEjectedAndTheRealStateAfter) {
  ASSERT_TRUE(
      lbkit::RegisterBalancer(std::make_shared<RecorderBuilder>(), lbkit::OnDuplicate::kReplace)
          .ok());
  // b is one endpoint with two addresses: both are ejected together.
  lbkit::testing::FakeHelper& helper = od_->helper();
  std::unique_ptr<lbkit::Balancer>& policy = od_->policy();
  std::shared_ptr<const lbkit::BalancerConfig> config;
  ASSERT_TRUE(lbkit::testing::BuildBalancer(
                  "outlier_detection",
                  std::string("{") + kFast + R"(,"childPolicy":[{"od_test_recorder":{}}]})",
                  &helper, &policy, &config)
                  .ok());
  lbkit::BalancerUpdate update;
  update.endpoints = {lbkit::Endpoint{{"a:1"}}, lbkit::Endpoint{{"b:1", "b:2"}}};
  update.config = config;
  ASSERT_TRUE(policy->UpdateResolverState(update).ok());
  helper.subchannel("a:1")->SetState(ConnectivityState::kReady);
  helper.subchannel("b:1")->SetState(ConnectivityState::kReady);
  helper.subchannel("b:2")->SetState(ConnectivityState::kConnecting);
  RecordedStates().clear();

  Calls({{"a:1", {4, 0}}, {"b:1", {0, 4}}});
  helper.AdvanceTime(seconds(1));
  EXPECT_EQ(RecordedStates(),
            (std::vector<std::string>{"b:1 TRANSIENT_FAILURE", "b:2 TRANSIENT_FAILURE"}));
  EXPECT_EQ(Reached(), std::set<std::string>{"a:1"});

  // While ejected, the connections' own changes are held back...
  RecordedStates().clear();
  helper.subchannel("b:2")->SetState(ConnectivityState::kReady);
  helper.subchannel("b:1")->SetState(ConnectivityState::kIdle);
  EXPECT_TRUE(RecordedStates().empty());
  // ...and the latest is what the child hears on un-ejection.
  helper.AdvanceTime(seconds(3));
  EXPECT_EQ(RecordedStates(), (std::vector<std::string>{"b:1 IDLE", "b:2 READY"}));
  EXPECT_EQ(Reached(), (std::set<std::string>{"a:1", "b:2"}));
}

TEST_F(OutlierDetectionTest, ASubchannelCreatedForAnEjectedEndpointStartsEjected) {
  ASSERT_TRUE(
      lbkit::RegisterBalancer(std::make_shared<RecorderBuilder>(), lbkit::OnDuplicate::kReplace)
          .ok());
  Start({"a:1", "b:1"}, std::string(kFast) + R"(,"childPolicy":[{"od_test_recorder":{}}])");
  Calls({{"a:1", {4, 0}}, {"b:1", {0, 4}}});
  od_->helper().AdvanceTime(seconds(1));
  ASSERT_TRUE(Ejected("b:1"));
  od_->policy()->ExitIdle();  // the recorder creates both subchannels again
  RecordedStates().clear();
  od_->helper().RunPosted();
  EXPECT_EQ(RecordedStates(), std::vector<std::string>{"b:1 TRANSIENT_FAILURE"});
  od_->helper().subchannel("b:1")->SetState(ConnectivityState::kReady);
  od_->helper().subchannel("a:1")->SetState(ConnectivityState::kReady);
  EXPECT_EQ(Reached(), std::set<std::string>{"a:1"});
  od_->helper().AdvanceTime(seconds(3));
  EXPECT_EQ(Reached(), (std::set<std::string>{"a:1", "b:1"})) << "and is un-ejected on time";
}

// An ejected endpoint's calls that end while it is ejected still count
// toward the success-rate statistics (A50, as gRPC C-core): here they lower
// the threshold enough that f (70%) stays; without e's 0% it would go.
TEST_F(OutlierDetectionTest, SuccessRateStatisticsIncludeEjectedEndpoints) {
  Start({"a:1", "b:1", "c:1", "d:1", "e:1", "f:1"},
        R"("interval":"1s","baseEjectionTime":"30s","maxEjectionPercent":100,
           "successRateEjection":{"requestVolume":10})");
  // 20 calls to e, 10 of them still open at the first sweep.
  const lbkit::testing::TestCall call;
  std::vector<lbkit::PickResult> open_on_e;
  for (int i = 0; i < 1000 && open_on_e.size() < 20; ++i) {
    lbkit::PickResult result = od_->picker()->Pick(call.args());
    ASSERT_EQ(result.kind(), lbkit::PickResult::Kind::kComplete);
    if (result.subchannel()->address() == "e:1") {
      open_on_e.push_back(std::move(result));
    } else {
      CallEnd(grpc::Status(grpc::StatusCode::CANCELLED, "lbkit: pick not used: test"))
          .Finish(result);
    }
  }
  ASSERT_EQ(open_on_e.size(), 20u);
  const grpc::Status failed(grpc::StatusCode::UNAVAILABLE, "backend failed");
  for (size_t i = 0; i < 10; ++i) CallEnd(failed).Finish(open_on_e[i]);
  Calls({{"a:1", {10, 0}}, {"b:1", {10, 0}}, {"c:1", {10, 0}}, {"d:1", {10, 0}}});
  od_->helper().AdvanceTime(seconds(1));
  ASSERT_TRUE(Ejected("e:1"));

  for (size_t i = 10; i < 20; ++i) CallEnd(failed).Finish(open_on_e[i]);
  Calls({{"a:1", {10, 0}}, {"b:1", {10, 0}}, {"c:1", {10, 0}}, {"d:1", {10, 0}}, {"f:1", {7, 3}}});
  od_->helper().AdvanceTime(seconds(1));
  EXPECT_EQ(Reached(), (std::set<std::string>{"a:1", "b:1", "c:1", "d:1", "f:1"}));
}

// The child creates a subchannel for an ejected endpoint, and before the
// notice of its ejection runs, an update with no algorithm un-ejects
// everything: the subchannel must not stay TRANSIENT_FAILURE.
TEST_F(OutlierDetectionTest, AnUnejectionBeforeTheCreationNoticeWins) {
  ASSERT_TRUE(
      lbkit::RegisterBalancer(std::make_shared<RecorderBuilder>(), lbkit::OnDuplicate::kReplace)
          .ok());
  const std::string recorder = R"("childPolicy":[{"od_test_recorder":{}}])";
  Start({"a:1", "b:1"}, std::string(kFast) + "," + recorder);
  Calls({{"a:1", {4, 0}}, {"b:1", {0, 4}}});
  od_->helper().AdvanceTime(seconds(1));
  ASSERT_TRUE(Ejected("b:1"));
  od_->policy()->ExitIdle();  // the recorder creates both subchannels again
  std::unique_ptr<lbkit::Balancer> unused;
  std::shared_ptr<const lbkit::BalancerConfig> no_algorithm;
  lbkit::testing::FakeHelper scratch;
  ASSERT_TRUE(lbkit::testing::BuildBalancer("outlier_detection", "{" + recorder + "}", &scratch,
                                            &unused, &no_algorithm)
                  .ok());
  lbkit::BalancerUpdate update = od_->Update({{"a:1", 1}, {"b:1", 1}});
  update.config = no_algorithm;
  ASSERT_TRUE(od_->policy()->UpdateResolverState(update).ok());
  od_->helper().RunPosted();
  od_->helper().subchannel("a:1")->SetState(ConnectivityState::kReady);
  od_->helper().subchannel("b:1")->SetState(ConnectivityState::kReady);
  EXPECT_EQ(Reached(), (std::set<std::string>{"a:1", "b:1"})) << "b:1 must not stay ejected";
}

// Helper::CreateSubchannel's contract: no state after the child shuts the
// subchannel down, an ejection's included.
TEST_F(OutlierDetectionTest, AShutDownSubchannelHearsNothingMore) {
  ASSERT_TRUE(
      lbkit::RegisterBalancer(std::make_shared<RecorderBuilder>(), lbkit::OnDuplicate::kReplace)
          .ok());
  Start({"a:1", "b:1"}, std::string(kFast) + R"(,"childPolicy":[{"od_test_recorder":{}}])");
  Calls({{"a:1", {4, 0}}, {"b:1", {0, 4}}});
  ShutdownOnExitIdle() = true;
  od_->policy()->ExitIdle();  // the recorder shuts both down, and keeps them
  RecordedStates().clear();
  od_->helper().AdvanceTime(seconds(1));  // the sweep ejects b
  od_->helper().AdvanceTime(seconds(3));  // and brings it back
  od_->helper().RunPosted();
  EXPECT_TRUE(RecordedStates().empty()) << RecordedStates().front();
}

// A pick whose metadata lbkit refused never reached the backend: neither a
// success nor a failure of it.
TEST_F(OutlierDetectionTest, APickWithInvalidMetadataIsNotCounted) {
  Start({"a:1", "b:1"}, kFast);
  const lbkit::testing::TestCall call;
  int refused = 0;
  for (int i = 0; i < 100 && refused < 10; ++i) {
    lbkit::PickResult result = od_->picker()->Pick(call.args());
    ASSERT_EQ(result.kind(), lbkit::PickResult::Kind::kComplete);
    if (result.subchannel()->address() == "b:1") {
      ++refused;
      CallEnd(grpc::Status(grpc::StatusCode::INTERNAL,
                           "lbkit: picker attached invalid metadata: key \"A\": test"))
          .Finish(result);
    } else {
      CallEnd().Finish(result);
    }
  }
  ASSERT_EQ(refused, 10);
  od_->helper().AdvanceTime(seconds(1));
  EXPECT_FALSE(Ejected("b:1"));
}

// Calls picked before the policy goes end after it: their counting outlives it.
TEST_F(OutlierDetectionTest, CallsOutliveThePolicy) {
  Start({"a:1", "b:1"}, kFast);
  const lbkit::testing::TestCall call;
  std::vector<lbkit::PickResult> open;
  for (int i = 0; i < 10; ++i) open.push_back(od_->picker()->Pick(call.args()));
  Restart();  // policy, helper and picker gone
  for (lbkit::PickResult& result : open) {
    ASSERT_TRUE(result.on_done());
    CallEnd(grpc::Status(grpc::StatusCode::UNAVAILABLE, "after")).Finish(result);
  }
}

// An update changes b's endpoint from {b:1, b:2} to {b:1}: a child that
// keeps its subchannel for b:1 (the recorder does, as pick_first would) still
// has it counted and ejected, for the new endpoint.
TEST_F(OutlierDetectionTest, ASubchannelFollowsItsAddressToANewEndpoint) {
  ASSERT_TRUE(
      lbkit::RegisterBalancer(std::make_shared<RecorderBuilder>(), lbkit::OnDuplicate::kReplace)
          .ok());
  Start({"a:1"}, std::string(kFast) + R"(,"childPolicy":[{"od_test_recorder":{}}])");
  lbkit::BalancerUpdate update = od_->Update({});
  update.endpoints = {lbkit::Endpoint{{"a:1"}}, lbkit::Endpoint{{"b:1", "b:2"}}};
  ASSERT_TRUE(od_->policy()->UpdateResolverState(update).ok());
  od_->AllReady();
  update.endpoints = {lbkit::Endpoint{{"a:1"}}, lbkit::Endpoint{{"b:1"}}};
  ASSERT_TRUE(od_->policy()->UpdateResolverState(update).ok());
  Calls({{"a:1", {4, 0}}, {"b:1", {0, 4}}});
  od_->helper().AdvanceTime(seconds(1));
  EXPECT_TRUE(Ejected("b:1"));

  // And an ejected address moving to an endpoint that is not ejected is
  // un-ejected with the move.
  update.endpoints = {lbkit::Endpoint{{"a:1"}}, lbkit::Endpoint{{"b:1", "b:3"}}};
  ASSERT_TRUE(od_->policy()->UpdateResolverState(update).ok());
  EXPECT_FALSE(Ejected("b:1"));
}

TEST_F(OutlierDetectionTest, ARemovedEndpointForgetsItsEjection) {
  Start({"a:1", "b:1"}, kFast);
  Calls({{"a:1", {4, 0}}, {"b:1", {0, 4}}});
  od_->helper().AdvanceTime(seconds(1));
  ASSERT_TRUE(Ejected("b:1"));
  // round_robin drops b's pick_first child, then builds a new one.
  ASSERT_TRUE(od_->policy()->UpdateResolverState(od_->Update({{"a:1", 1}})).ok());
  ASSERT_TRUE(od_->policy()->UpdateResolverState(od_->Update({{"a:1", 1}, {"b:1", 1}})).ok());
  od_->helper().RunPosted();
  od_->helper().subchannel("b:1")->SetState(ConnectivityState::kReady);
  EXPECT_FALSE(Ejected("b:1")) << "A50: a removed address's entry goes, ejection included";
}

}  // namespace
