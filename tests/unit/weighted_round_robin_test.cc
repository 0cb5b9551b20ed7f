// The built-in weighted_round_robin policy (gRFC A58), driven through lbkit's
// testing kit: config, weights from per-call load reports, the blackout and
// expiration periods (on the fake clock), the mean weight for endpoints that
// have not reported, the error penalty, and the stride scheduler.
//
// Blackout and expiration are measured on Helper::Now() (the fake clock),
// from when the policy first sees a report: at the first weight update after
// it arrives. With the default 1s period and 10s blackout, a report sent at
// t=0 is seen at t=1s and used from t=11s.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/policy_under_test.h"
#include "lbkit/lbkit.h"
#include "lbkit/testing/fake_helper.h"
#include "policies/weighted_round_robin.h"

namespace {

using lbkit::ConnectivityState;
using lbkit::internal::WeightedRoundRobinConfig;
using lbkit::testing::FakeHelper;
using std::chrono::milliseconds;

grpc::Status Parse(const std::string& json, WeightedRoundRobinConfig* out = nullptr) {
  return lbkit_test::ParseConfigAs("weighted_round_robin", json, out);
}

TEST(WeightedRoundRobinConfig, DefaultsAreA58s) {
  WeightedRoundRobinConfig config;
  ASSERT_TRUE(Parse(R"({"unknownField":{}})", &config).ok()) << "unknown fields are ignored";
  EXPECT_EQ(config.blackout_period, milliseconds(10'000));
  EXPECT_EQ(config.weight_expiration_period, milliseconds(180'000));
  EXPECT_EQ(config.weight_update_period, milliseconds(1'000));
  EXPECT_EQ(config.error_utilization_penalty, 1.0);
}

TEST(WeightedRoundRobinConfig, ParsesDurationsAndPenalty) {
  WeightedRoundRobinConfig config;
  grpc::Status status = Parse(R"({"blackoutPeriod":"0s","weightExpirationPeriod":"2.5s",
      "weightUpdatePeriod":"0.25s","errorUtilizationPenalty":0,"enableOobLoadReport":false,
      "oobReportingPeriod":"30s"})",
                              &config);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(config.blackout_period, milliseconds(0));
  EXPECT_EQ(config.weight_expiration_period, milliseconds(2'500));
  EXPECT_EQ(config.weight_update_period, milliseconds(250));
  EXPECT_EQ(config.error_utilization_penalty, 0.0);
  ASSERT_TRUE(
      Parse(R"({"errorUtilizationPenalty":2.5,"blackoutPeriod":"1.000000001s"})", &config).ok());
  EXPECT_EQ(config.error_utilization_penalty, 2.5);
  EXPECT_EQ(config.blackout_period, milliseconds(1'001)) << "a part of a millisecond rounds up";
}

TEST(WeightedRoundRobinConfig, WeightUpdatePeriodBelow100msIsRaisedTo100ms) {
  for (const char* value : {"0s", "0.05s", "0.099s"}) {
    WeightedRoundRobinConfig config;
    ASSERT_TRUE(Parse(std::string(R"({"weightUpdatePeriod":")") + value + "\"}", &config).ok());
    EXPECT_EQ(config.weight_update_period, milliseconds(100)) << value;
  }
}

TEST(WeightedRoundRobinConfig, BadDurationsAreRejectedNamingTheField) {
  for (const char* field :
       {"blackoutPeriod", "weightExpirationPeriod", "weightUpdatePeriod", "oobReportingPeriod"}) {
    for (const char* value : {"10", "\"10\"", "\"-1s\"", "\"1.s\"", "\"s\"", "\"1.0000000001s\"",
                              "\"1m\"", "\"999999999999s\"", "null", "true", "{}"}) {
      grpc::Status status = Parse(std::string("{\"") + field + "\":" + value + "}");
      EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << field << value;
      EXPECT_NE(status.error_message().find(field), std::string::npos) << status.error_message();
      EXPECT_NE(status.error_message().find(std::string("got ") + value), std::string::npos)
          << status.error_message();
    }
  }
}

// protobuf accepts up to 315,576,000,000 s; beyond 100 years a duration is
// clamped (policies/duration.h), so that timer and clock arithmetic on it
// cannot overflow.
TEST(WeightedRoundRobinConfig, DurationsBeyondAHundredYearsAreClamped) {
  constexpr milliseconds kHundredYears = std::chrono::hours(24 * 365 * 100);
  WeightedRoundRobinConfig config;
  grpc::Status status = Parse(R"({"blackoutPeriod":"315576000000s",
      "weightExpirationPeriod":"10000000000s","weightUpdatePeriod":"10000000000.5s"})",
                              &config);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(config.blackout_period, kHundredYears);
  EXPECT_EQ(config.weight_expiration_period, kHundredYears);
  EXPECT_EQ(config.weight_update_period, kHundredYears);
}

TEST(WeightedRoundRobinConfig, NegativeOrNonNumericPenaltyIsRejected) {
  for (const char* value : {"-0.5", "-1", "\"1\"", "true", "null", "[1]"}) {
    grpc::Status status = Parse(std::string(R"({"errorUtilizationPenalty":)") + value + "}");
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << value;
    EXPECT_NE(status.error_message().find("errorUtilizationPenalty must be a number of at least 0"),
              std::string::npos)
        << status.error_message();
  }
}

TEST(WeightedRoundRobinConfig, OutOfBandReportingIsRejectedAsNotSupported) {
  grpc::Status status = Parse(R"({"enableOobLoadReport":true})");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("enableOobLoadReport"), std::string::npos);
  EXPECT_NE(status.error_message().find("not supported"), std::string::npos)
      << status.error_message();
  status = Parse(R"({"enableOobLoadReport":"yes"})");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("must be true or false"), std::string::npos);
  EXPECT_TRUE(Parse(R"({"enableOobLoadReport":false})").ok());
}

TEST(WeightedRoundRobinWeight, IsQpsOverUtilizationPlusErrorPenalty) {
  using lbkit::internal::ReportedWeight;
  lbkit::LoadReport report;
  report.qps = 100;
  report.cpu_utilization = 0.5;
  EXPECT_DOUBLE_EQ(ReportedWeight(report, 1.0), 200);
  report.application_utilization = 0.25;  // preferred when positive
  EXPECT_DOUBLE_EQ(ReportedWeight(report, 1.0), 400);
  report.eps = 25;  // 25 / 100 * 2 = 0.5 more utilization
  EXPECT_DOUBLE_EQ(ReportedWeight(report, 2.0), 100 / 0.75);
  EXPECT_DOUBLE_EQ(ReportedWeight(report, 0.0), 400);
  report.qps = 0;
  EXPECT_EQ(ReportedWeight(report, 1.0), 0) << "no qps: no weight";
  report.qps = 100;
  report.application_utilization = 0;
  report.cpu_utilization = 0;
  EXPECT_EQ(ReportedWeight(report, 1.0), 0) << "no utilization: no weight";
}

TEST(WeightedRoundRobinScheduler, ScalesAsCCoreCappedAtTenTimesTheMeanAndFillsInTheMean) {
  using lbkit::internal::ScaleWeights;
  EXPECT_TRUE(ScaleWeights({}).empty());
  EXPECT_TRUE(ScaleWeights({5, 0, 0}).empty()) << "one known weight: round robin";
  EXPECT_TRUE(ScaleWeights({3, 3, 0}).empty()) << "all alike once the mean fills in";
  EXPECT_EQ(ScaleWeights({4, 1, 0}), (std::vector<uint16_t>{65535, 16384, 40959}));
  // As gRPC C-core's StaticStrideScheduler: the mean (500.5) scales to 32800,
  // and no weight goes below 1% of that.
  EXPECT_EQ(ScaleWeights({1000, 1}), (std::vector<uint16_t>{65535, 328}))
      << "no weight below 1% of the mean";
  // Mean 50.95: 1000 counts as 509.5 (10 times the mean), so the ones get
  // 65535 / 509.5, not 65535 / 1000 (66).
  std::vector<double> one_big(20, 1.0);
  one_big[0] = 1000;
  std::vector<uint16_t> expected(20, 129);
  expected[0] = 65535;
  EXPECT_EQ(ScaleWeights(one_big), expected) << "no weight above 10 times the mean";
}

class WeightedRoundRobinTest : public ::testing::Test {
 protected:
  void Start(const lbkit_test::WeightedEndpoints& endpoints,
             const std::string& config_json = "{}") {
    wrr_.Start(endpoints, config_json);
  }
  std::map<std::string, int> Spread(int n) { return wrr_.Spread(n); }

  // Ends one call picked for `address` with a report of `qps` at CPU
  // `utilization` (and `eps` errors a second); other picks end without one.
  void Report(const std::string& address, double qps, double utilization, double eps = 0) {
    ReportTo(wrr_, address, qps, utilization, eps);
  }
  void ReportTo(lbkit_test::PolicyUnderTest& policy, const std::string& address, double qps,
                double utilization, double eps = 0) {
    lbkit::LoadReport report;
    report.qps = qps;
    report.cpu_utilization = utilization;
    report.eps = eps;
    for (int i = 0; i < 1000; ++i) {
      lbkit::PickResult result = policy.picker()->Pick(call_.args());
      ASSERT_EQ(result.kind(), lbkit::PickResult::Kind::kComplete);
      if (result.subchannel()->address() == address) {
        lbkit::testing::CallEnd().WithLoadReport(report).Finish(result);
        return;
      }
      lbkit::testing::CallEnd().Finish(result);
    }
    FAIL() << "no pick reached " << address;
  }

  void Advance(int ms) { helper_.AdvanceTime(milliseconds(ms)); }

  // The slot the current picker sends `address`'s reports to, or null.
  lbkit::internal::WeightSlot* SlotOf(const std::string& address) {
    auto picker =
        std::dynamic_pointer_cast<lbkit::internal::WeightedRoundRobinPicker>(wrr_.picker());
    if (picker == nullptr) return nullptr;
    for (const auto& entry : picker->entries()) {
      lbkit::PickResult result = entry.child->Pick(call_.args());
      if (result.kind() == lbkit::PickResult::Kind::kComplete &&
          result.subchannel()->address() == address) {
        return entry.slot;
      }
    }
    return nullptr;
  }

  // a reports three times b's weight (qps 300 and 100 at CPU 0.5), seen at
  // the next update, `ms` from now.
  void ReportThreeToOne(int ms = 1'000) {
    Report("a:1", 300, 0.5);
    Report("b:1", 100, 0.5);
    Advance(ms);
  }

  lbkit::testing::TestCall call_;
  lbkit_test::PolicyUnderTest wrr_{"weighted_round_robin"};
  FakeHelper& helper_ = wrr_.helper();
};

TEST_F(WeightedRoundRobinTest, AHugeWeightUpdatePeriodNeverFiresItsTimer) {
  Start({{"a:1", 1}, {"b:1", 1}}, R"({"weightUpdatePeriod":"10000000000s"})");
  wrr_.AllReady();
  const size_t published = helper_.states().size();
  ASSERT_EQ(helper_.pending_timers(), 1u);
  Advance(24 * 3600 * 1000);  // a day
  EXPECT_EQ(helper_.states().size(), published) << "the weight update timer fired";
  EXPECT_EQ(helper_.pending_timers(), 1u);
  EXPECT_EQ(Spread(400), (std::map<std::string, int>{{"a:1", 200}, {"b:1", 200}}));
}

TEST_F(WeightedRoundRobinTest, QueuesWhileConnectingAndFailsOnceEveryEndpointFailed) {
  Start({{"a:1", 1}, {"b:1", 1}});
  wrr_.ExpectQueuesThenFailsOnceBothFail();
}

TEST_F(WeightedRoundRobinTest, WithoutReportsItIsRoundRobin) {
  Start({{"a:1", 1}, {"b:1", 1}, {"c:1", 1}});
  wrr_.AllReady();
  Advance(20'000);
  EXPECT_EQ(Spread(300), (std::map<std::string, int>{{"a:1", 100}, {"b:1", 100}, {"c:1", 100}}));
}

// Weights 1000, 500 and 250 (qps 100 at CPU 0.1, 0.2, 0.4): 4:2:1. The
// stride scheduler is deterministic up to where it starts: over 7,000 picks
// each endpoint is within 1% of its share (tolerance ±70).
TEST_F(WeightedRoundRobinTest, PicksFollowReportedWeightsOnceTheBlackoutIsOver) {
  Start({{"a:1", 1}, {"b:1", 1}, {"c:1", 1}});
  wrr_.AllReady();
  Report("a:1", 100, 0.1);
  Report("b:1", 100, 0.2);
  Report("c:1", 100, 0.4);
  Advance(10'000);  // seen at 1s, so 9s of blackout so far
  EXPECT_EQ(Spread(300), (std::map<std::string, int>{{"a:1", 100}, {"b:1", 100}, {"c:1", 100}}))
      << "weights wait out the 10s blackout";
  Advance(1'000);
  std::map<std::string, int> count = Spread(7000);
  EXPECT_NEAR(count["a:1"], 4000, 70);
  EXPECT_NEAR(count["b:1"], 2000, 70);
  EXPECT_NEAR(count["c:1"], 1000, 70);
}

TEST_F(WeightedRoundRobinTest, ABlackoutPeriodOfZeroUsesWeightsAtTheNextUpdate) {
  Start({{"a:1", 1}, {"b:1", 1}}, R"({"blackoutPeriod":"0s","weightUpdatePeriod":"0.5s"})");
  wrr_.AllReady();
  Report("a:1", 300, 0.5);
  Report("b:1", 100, 0.5);
  EXPECT_EQ(Spread(400), (std::map<std::string, int>{{"a:1", 200}, {"b:1", 200}}))
      << "reports count from the next update, not at once";
  Advance(500);
  std::map<std::string, int> count = Spread(4000);
  EXPECT_NEAR(count["a:1"], 3000, 40);
  EXPECT_NEAR(count["b:1"], 1000, 40);
}

// a 1000, b 250, c no report: c gets the mean, 625. Shares 8:2:5 of 7,500.
TEST_F(WeightedRoundRobinTest, EndpointsWithoutAReportGetTheMeanWeight) {
  Start({{"a:1", 1}, {"b:1", 1}, {"c:1", 1}}, R"({"blackoutPeriod":"0s"})");
  wrr_.AllReady();
  Report("a:1", 100, 0.1);
  Report("b:1", 100, 0.4);
  Advance(1'000);
  std::map<std::string, int> count = Spread(7500);
  EXPECT_NEAR(count["a:1"], 4000, 75);
  EXPECT_NEAR(count["b:1"], 1000, 75);
  EXPECT_NEAR(count["c:1"], 2500, 75);
}

TEST_F(WeightedRoundRobinTest, OneWeightAloneIsRoundRobin) {
  Start({{"a:1", 1}, {"b:1", 1}}, R"({"blackoutPeriod":"0s"})");
  wrr_.AllReady();
  Report("a:1", 100, 0.01);
  Advance(1'000);
  EXPECT_EQ(Spread(400), (std::map<std::string, int>{{"a:1", 200}, {"b:1", 200}}));
}

TEST_F(WeightedRoundRobinTest, WeightsNotRefreshedWithinTheExpirationPeriodAreForgotten) {
  Start({{"a:1", 1}, {"b:1", 1}}, R"({"blackoutPeriod":"0s","weightExpirationPeriod":"5s"})");
  wrr_.AllReady();
  ReportThreeToOne();
  EXPECT_NEAR(Spread(4000)["a:1"], 3000, 40);
  Advance(4'000);  // last report seen at 1s; now 5s: still fresh
  EXPECT_NEAR(Spread(4000)["a:1"], 3000, 40);
  Advance(1'000);  // 6s: 5s without a report
  EXPECT_EQ(Spread(400), (std::map<std::string, int>{{"a:1", 200}, {"b:1", 200}}));
  // A fresh report counts again.
  ReportThreeToOne();
  EXPECT_NEAR(Spread(4000)["a:1"], 3000, 40);
}

// Blackout is measured on the helper's clock, not by counting timer periods:
// a weightUpdatePeriod changed half-way through a period loses no time.
// (Counted in periods, the 0.5s before the change was lost, and at 3s the
// blackout seemed to have run 1.5s only.)
TEST_F(WeightedRoundRobinTest, TheBlackoutIsMeasuredOnTheHelpersClock) {
  Start({{"a:1", 1}, {"b:1", 1}}, R"({"blackoutPeriod":"2s"})");
  wrr_.AllReady();
  ReportThreeToOne();  // seen at 1s
  Advance(500);
  auto slower = std::make_shared<WeightedRoundRobinConfig>();
  ASSERT_TRUE(Parse(R"({"blackoutPeriod":"2s","weightUpdatePeriod":"1.5s"})", slower.get()).ok());
  lbkit::BalancerUpdate update = wrr_.Update({{"a:1", 1}, {"b:1", 1}});
  update.config = slower;
  ASSERT_TRUE(wrr_.policy()->UpdateResolverState(update).ok());
  Advance(1'499);
  EXPECT_EQ(Spread(400), (std::map<std::string, int>{{"a:1", 200}, {"b:1", 200}}));
  Advance(1);  // 3s: the next update, 2s after the reports were seen
  EXPECT_NEAR(Spread(4000)["a:1"], 3000, 40);
}

TEST_F(WeightedRoundRobinTest, AReportWithoutQpsOrUtilizationIsIgnored) {
  Start({{"a:1", 1}, {"b:1", 1}}, R"({"blackoutPeriod":"0s"})");
  wrr_.AllReady();
  ReportThreeToOne();
  Report("a:1", 0, 0.5);  // neither replaces a's weight
  Report("a:1", 300, 0);
  Advance(1'000);
  EXPECT_NEAR(Spread(4000)["a:1"], 3000, 40);
}

// Both serve 100 qps at CPU 0.5; b also fails 50 a second. Penalty 1: b's
// utilization counts as 0.5 + 0.5, so a gets two thirds. Penalty 0: even.
TEST_F(WeightedRoundRobinTest, ErrorsLowerAWeightByTheErrorUtilizationPenalty) {
  Start({{"a:1", 1}, {"b:1", 1}}, R"({"blackoutPeriod":"0s"})");
  wrr_.AllReady();
  Report("a:1", 100, 0.5);
  Report("b:1", 100, 0.5, /*eps=*/50);
  Advance(1'000);
  EXPECT_NEAR(Spread(3000)["a:1"], 2000, 30);

  lbkit_test::PolicyUnderTest lenient("weighted_round_robin");
  lenient.Start({{"a:1", 1}, {"b:1", 1}}, R"({"blackoutPeriod":"0s","errorUtilizationPenalty":0})");
  lenient.AllReady();
  ReportTo(lenient, "a:1", 100, 0.5);
  ReportTo(lenient, "b:1", 100, 0.5, /*eps=*/50);
  lenient.helper().AdvanceTime(milliseconds(1'000));
  EXPECT_EQ(lenient.Spread(400), (std::map<std::string, int>{{"a:1", 200}, {"b:1", 200}}));
}

TEST_F(WeightedRoundRobinTest, AReconnectedEndpointWaitsOutANewBlackout) {
  Start({{"a:1", 1}, {"b:1", 1}, {"c:1", 1}}, R"({"blackoutPeriod":"3s"})");
  wrr_.AllReady();
  Report("a:1", 400, 0.5);
  Report("b:1", 100, 0.5);
  Report("c:1", 100, 0.5);
  Advance(4'000);
  EXPECT_NEAR(Spread(6000)["a:1"], 4000, 60);
  helper_.subchannel("a:1")->SetState(ConnectivityState::kIdle);
  helper_.subchannel("a:1")->SetState(ConnectivityState::kReady);
  Report("a:1", 400, 0.5);
  Report("b:1", 100, 0.5);
  Report("c:1", 100, 0.5);
  Advance(1'000);
  EXPECT_EQ(Spread(300), (std::map<std::string, int>{{"a:1", 100}, {"b:1", 100}, {"c:1", 100}}))
      << "b and c alike, a waiting: its turn is the mean's";
  Advance(3'000);
  EXPECT_NEAR(Spread(6000)["a:1"], 4000, 60);
}

TEST_F(WeightedRoundRobinTest, WeightsSurviveUpdatesAndGoWithRemovedEndpoints) {
  Start({{"a:1", 1}, {"b:1", 1}, {"c:1", 1}}, R"({"blackoutPeriod":"0s"})");
  wrr_.AllReady();
  Report("a:1", 300, 0.5);
  Report("b:1", 100, 0.5);
  Report("c:1", 100, 0.5);
  Advance(1'000);
  ASSERT_TRUE(wrr_.policy()->UpdateResolverState(wrr_.Update({{"b:1", 1}, {"a:1", 1}})).ok());
  Advance(1'000);
  EXPECT_NEAR(Spread(4000)["a:1"], 3000, 40) << "a kept its weight";
  ASSERT_TRUE(
      wrr_.policy()->UpdateResolverState(wrr_.Update({{"a:1", 1}, {"b:1", 1}, {"c:1", 1}})).ok());
  helper_.subchannel("c:1")->SetState(ConnectivityState::kReady);
  Advance(1'000);
  // c is new again: no weight, the mean of a's and b's (200) instead.
  std::map<std::string, int> count = Spread(6000);
  EXPECT_NEAR(count["a:1"], 3000, 60);
  EXPECT_NEAR(count["c:1"], 2000, 60);
}

// The generation check, on the slot table itself: a slot released by a
// removed endpoint and acquired by another keeps taking reports, but only
// those of its new generation. Found by asking for slots until the released
// one comes back, so the test does not depend on the free list's order.
TEST(WeightedRoundRobinSlots, AReleasedSlotTakesOnlyItsNewGenerationsReports) {
  using lbkit::internal::EndpointWeight;
  WeightedRoundRobinConfig config;
  config.blackout_period = milliseconds(0);
  auto removed = std::make_unique<EndpointWeight>();
  lbkit::internal::WeightSlot* const slot = removed->slot();
  const uint32_t old_generation = removed->generation();
  removed.reset();
  std::vector<std::unique_ptr<EndpointWeight>> others;
  std::unique_ptr<EndpointWeight> reused;
  while (reused == nullptr && others.size() < 100'000) {
    auto weight = std::make_unique<EndpointWeight>();
    if (weight->slot() == slot) {
      reused = std::move(weight);
    } else {
      others.push_back(std::move(weight));
    }
  }
  ASSERT_NE(reused, nullptr) << "the released slot was never handed out again";
  EXPECT_NE(reused->generation(), old_generation);

  lbkit::LoadReport late;  // for the removed endpoint
  late.qps = 1e6;
  late.cpu_utilization = 0.01;
  slot->Report(old_generation, late);
  const auto now = std::chrono::steady_clock::time_point() + std::chrono::hours(1);
  EXPECT_EQ(reused->WeightAt(now, config), 0) << "a report of the old generation was taken";
  lbkit::LoadReport own;
  own.qps = 100;
  own.cpu_utilization = 0.5;
  slot->Report(reused->generation(), own);
  EXPECT_EQ(reused->WeightAt(now, config), 200);
  slot->Report(old_generation, late);
  EXPECT_EQ(reused->WeightAt(now, config), 200) << "a late report replaced the new one";
}

// The same through the policy. a's weight lives in a slot of a process-wide
// table; d reuses it once a is removed (asserted through the internal API:
// the free list's order alone would make this a test of nothing). The report
// of a call picked for a that ends afterwards must not reach d. b 600, c 200,
// d the mean 400: shares 3:1:2 of 6,000.
TEST_F(WeightedRoundRobinTest, AReportForARemovedEndpointIsDropped) {
  Start({{"a:1", 1}, {"b:1", 1}, {"c:1", 1}}, R"({"blackoutPeriod":"0s"})");
  wrr_.AllReady();
  lbkit::PickResult held = lbkit::PickResult::Queue();
  for (int i = 0; i < 3; ++i) {
    lbkit::PickResult result = wrr_.picker()->Pick(call_.args());
    if (result.subchannel()->address() == "a:1") {
      held = std::move(result);
    } else {
      lbkit::testing::CallEnd().Finish(result);
    }
  }
  ASSERT_NE(held.subchannel(), nullptr);
  lbkit::internal::WeightSlot* const a_slot = SlotOf("a:1");
  ASSERT_NE(a_slot, nullptr);
  ASSERT_TRUE(
      wrr_.policy()->UpdateResolverState(wrr_.Update({{"b:1", 1}, {"c:1", 1}, {"d:1", 1}})).ok());
  helper_.subchannel("d:1")->SetState(ConnectivityState::kReady);
  ASSERT_EQ(SlotOf("d:1"), a_slot) << "d did not reuse a's slot: nothing to check";
  lbkit::LoadReport huge;
  huge.qps = 1e6;
  huge.cpu_utilization = 0.01;
  lbkit::testing::CallEnd().WithLoadReport(huge).Finish(held);
  Report("b:1", 300, 0.5);
  Report("c:1", 100, 0.5);
  Advance(1'000);
  std::map<std::string, int> count = Spread(6000);
  EXPECT_NEAR(count["b:1"], 3000, 60);
  EXPECT_NEAR(count["c:1"], 1000, 60);
  EXPECT_NEAR(count["d:1"], 2000, 60);
}

// The done-callback runs once per completed pick, also for a pick lbkit did
// not use; none of them may leak or crash after the policy is gone.
TEST_F(WeightedRoundRobinTest, CallsOutliveThePolicy) {
  Start({{"a:1", 1}, {"b:1", 1}});
  wrr_.AllReady();
  std::vector<lbkit::PickResult> open;
  for (int i = 0; i < 4; ++i) open.push_back(wrr_.picker()->Pick(call_.args()));
  std::shared_ptr<lbkit::Picker> picker = wrr_.picker();
  wrr_.policy().reset();
  picker.reset();
  lbkit::LoadReport report;
  report.qps = 10;
  report.cpu_utilization = 0.5;
  for (lbkit::PickResult& result : open) {
    lbkit::testing::CallEnd().WithLoadReport(report).Finish(result);
  }
}

// Picks and reports from two threads while the serializer (this thread)
// runs weight updates: the pick path is atomics only, so this must neither
// crash nor lose the weights (and is what a ThreadSanitizer build checks).
// The workers take the newest picker for every pick, and report a's qps
// changing (200, 300, 400 in turn), so weighted pickers (the stride loop) are
// picked from while new ones are built. Nothing depends on speed: each worker
// makes at least kPicks picks and goes on until the serializer has run
// kUpdates weight updates; the serializer goes on until both are done.
TEST_F(WeightedRoundRobinTest, PicksAndReportsFromManyThreadsDuringWeightUpdates) {
  constexpr int kPicks = 20'000;
  constexpr int kUpdates = 200;
  Start({{"a:1", 1}, {"b:1", 1}}, R"({"blackoutPeriod":"0s"})");
  wrr_.AllReady();
  std::mutex mu;  // guards current: FakeHelper itself is this thread's only
  std::shared_ptr<lbkit::Picker> current = wrr_.picker();
  auto latest = [&mu, &current] {
    std::lock_guard<std::mutex> lock(mu);
    return current;
  };
  std::atomic<int> updates{0};
  std::atomic<int> done{0};
  auto work = [&] {
    lbkit::testing::TestCall call;
    for (int i = 0; i < kPicks || updates.load() < kUpdates; ++i) {
      lbkit::PickResult result = latest()->Pick(call.args());
      if (result.kind() != lbkit::PickResult::Kind::kComplete) {
        ADD_FAILURE() << "a pick did not complete";
        break;
      }
      lbkit::LoadReport report;
      report.qps = result.subchannel()->address() == "a:1" ? 200 + 100 * ((i / 500) % 3) : 100;
      report.cpu_utilization = 0.5;
      lbkit::testing::CallEnd().WithLoadReport(report).Finish(result);
    }
    done.fetch_add(1);
  };
  const size_t published_before = helper_.states().size();
  std::thread first(work), second(work);
  while (done.load() < 2) {
    Advance(1'000);
    std::lock_guard<std::mutex> lock(mu);
    current = wrr_.picker();
    updates.fetch_add(1);
  }
  first.join();
  second.join();
  EXPECT_GT(helper_.states().size(), published_before + 1) << "the weights never changed";
  // The weights still follow the reports.
  ReportThreeToOne();
  EXPECT_NEAR(Spread(4000)["a:1"], 3000, 40);
}

}  // namespace
