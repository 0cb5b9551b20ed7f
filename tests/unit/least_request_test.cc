// The built-in least_request policy (gRFC A48), driven through lbkit's testing
// kit: config, in-flight counts steering picks, counts kept across updates
// and returning to zero, weights, states before any endpoint is READY.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/policy_under_test.h"
#include "lbkit/lbkit.h"
#include "lbkit/testing/fake_helper.h"
#include "policies/least_request.h"

namespace {

using lbkit::ConnectivityState;
using lbkit::internal::LeastRequestConfig;
using lbkit::testing::FakeHelper;

grpc::Status Parse(const std::string& json, uint32_t* choice_count = nullptr) {
  FakeHelper helper;
  std::unique_ptr<lbkit::Balancer> policy;
  std::shared_ptr<const lbkit::BalancerConfig> config;
  grpc::Status status =
      lbkit::testing::BuildBalancer("least_request", json, &helper, &policy, &config);
  if (status.ok() && choice_count != nullptr) {
    auto parsed = std::dynamic_pointer_cast<const LeastRequestConfig>(config);
    EXPECT_NE(parsed, nullptr);
    if (parsed != nullptr) *choice_count = parsed->choice_count;
  }
  return status;
}

TEST(LeastRequestConfig, ChoiceCountDefaultsToTwoAndAcceptsTwoToTen) {
  uint32_t choice_count = 0;
  ASSERT_TRUE(Parse("{}", &choice_count).ok());
  EXPECT_EQ(choice_count, 2u);
  ASSERT_TRUE(Parse(R"({"unknownField":[1],"choiceCount":3})", &choice_count).ok())
      << "unknown fields are ignored";
  EXPECT_EQ(choice_count, 3u);
  ASSERT_TRUE(Parse(R"({"choiceCount":10})", &choice_count).ok());
  EXPECT_EQ(choice_count, 10u);
  ASSERT_TRUE(Parse(R"({"choiceCount":4.0})", &choice_count).ok());
  EXPECT_EQ(choice_count, 4u);
}

TEST(LeastRequestConfig, ChoiceCountAboveTenIsClampedToTen) {
  for (const char* json :
       {R"({"choiceCount":11})", R"({"choiceCount":4294967296})", R"({"choiceCount":1e30})"}) {
    uint32_t choice_count = 0;
    grpc::Status status = Parse(json, &choice_count);
    ASSERT_TRUE(status.ok()) << json << ": " << status.error_message();
    EXPECT_EQ(choice_count, 10u) << json;
  }
}

TEST(LeastRequestConfig, ChoiceCountBelowTwoOrNotAWholeNumberIsRejectedNamingTheField) {
  for (const char* value : {"1", "0", "-3", "2.5", "\"3\"", "true", "null", "[2]", "{}"}) {
    grpc::Status status = Parse(std::string(R"({"choiceCount":)") + value + "}");
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << value;
    EXPECT_NE(status.error_message().find("choiceCount"), std::string::npos)
        << status.error_message();
    EXPECT_NE(status.error_message().find(std::string("got ") + value), std::string::npos)
        << status.error_message();
  }
}

class LeastRequestTest : public ::testing::Test {
 protected:
  void Start(const lbkit_test::WeightedEndpoints& endpoints,
             const std::string& config_json = "{}") {
    least_request_.Start(endpoints, config_json);
  }
  void AllReady() { least_request_.AllReady(); }
  std::map<std::string, int> Spread(int n) { return least_request_.Spread(n); }
  lbkit::PickResult Pick() { return least_request_.picker()->Pick(call_.args()); }
  // Picks until `n` calls to `address` are in flight (their done-callbacks
  // held in held_); picks to other endpoints end at once.
  void HoldCalls(const std::string& address, int n) {
    int held = 0;
    for (int i = 0; held < n && i < 100000; ++i) {
      lbkit::PickResult result = Pick();
      ASSERT_EQ(result.kind(), lbkit::PickResult::Kind::kComplete);
      if (result.subchannel()->address() == address) {
        held_.push_back(std::move(result));
        ++held;
      } else {
        lbkit::testing::CallEnd().Finish(result);
      }
    }
    ASSERT_EQ(held, n);
  }
  void EndHeldCalls(const grpc::Status& status = grpc::Status::OK) {
    for (lbkit::PickResult& result : held_) lbkit::testing::CallEnd(status).Finish(result);
    held_.clear();
  }
  void TearDown() override { EndHeldCalls(); }

  // Picks `n` times and keeps every call open; returns how many each address got.
  std::map<std::string, int> OpenCalls(int n) {
    std::map<std::string, int> open;
    for (int i = 0; i < n; ++i) {
      lbkit::PickResult result = Pick();
      EXPECT_EQ(result.kind(), lbkit::PickResult::Kind::kComplete);
      if (result.kind() != lbkit::PickResult::Kind::kComplete) break;
      ++open[result.subchannel()->address()];
      held_.push_back(std::move(result));
    }
    return open;
  }

  lbkit::testing::TestCall call_;
  lbkit_test::PolicyUnderTest least_request_{"least_request"};
  FakeHelper& helper_ = least_request_.helper();
  std::vector<lbkit::PickResult> held_;  // destroyed first; TearDown ends them
};

TEST_F(LeastRequestTest, QueuesWhileConnectingAndFailsOnceEveryEndpointFailed) {
  Start({{"a:1", 1}, {"b:1", 1}});
  least_request_.ExpectQueuesThenFailsOnceBothFail();
}

TEST_F(LeastRequestTest, PicksOnlyReadyEndpoints) {
  Start({{"a:1", 1}, {"b:1", 1}});
  helper_.subchannel("b:1")->SetState(ConnectivityState::kReady);
  EXPECT_EQ(helper_.last_state().state, ConnectivityState::kReady);
  EXPECT_EQ(Spread(100), (std::map<std::string, int>{{"b:1", 100}}));
}

// With choiceCount 10, a pick goes to a (3 calls in flight) only when all 10
// samples are a: probability 2^-10, about 1 of 1,000 picks; at most 10 allowed
// (Poisson, mean 1: P(more) < 1e-7).
TEST_F(LeastRequestTest, CallsInFlightSteerPicksToTheOtherEndpoint) {
  Start({{"a:1", 1}, {"b:1", 1}}, R"({"choiceCount":10})");
  AllReady();
  HoldCalls("a:1", 3);
  std::map<std::string, int> count = Spread(1000);
  EXPECT_LE(count["a:1"], 10);
  EXPECT_GE(count["b:1"], 990);
}

// A48 samples with replacement: with choiceCount 2 over two endpoints, both
// samples are the busy one a quarter of the time. 4,000 picks: 1,000 expected
// on a (sd 27); tolerance ±250.
TEST_F(LeastRequestTest, TwoChoicesSampleWithReplacement) {
  Start({{"a:1", 1}, {"b:1", 1}});
  AllReady();
  HoldCalls("a:1", 1);
  EXPECT_NEAR(Spread(4000)["a:1"], 1000, 250);
}

// Once the held calls end (with OK or not, a pick lbkit did not use
// included), both endpoints are at zero again: ties go to the first sample,
// so the split is even. 4,000 picks: 2,000 each expected (sd 32); ±300.
TEST_F(LeastRequestTest, CountsReturnToZeroWhenCallsEnd) {
  Start({{"a:1", 1}, {"b:1", 1}}, R"({"choiceCount":10})");
  AllReady();
  HoldCalls("a:1", 2);
  EndHeldCalls(grpc::Status(grpc::StatusCode::CANCELLED, "lbkit: pick not used"));
  HoldCalls("a:1", 3);
  EndHeldCalls(grpc::Status(grpc::StatusCode::UNAVAILABLE, "backend gone"));
  EXPECT_NEAR(Spread(4000)["a:1"], 2000, 300);
}

// Concurrent calls that stay open spread evenly: each pick goes to the
// endpoint with fewer in flight (choiceCount 10: both are sampled but with
// probability 2^-9), so after 400 open calls neither has more than 210.
TEST_F(LeastRequestTest, OpenCallsBalanceAcrossEndpoints) {
  Start({{"a:1", 1}, {"b:1", 1}}, R"({"choiceCount":10})");
  AllReady();
  std::map<std::string, int> open = OpenCalls(400);
  EXPECT_LE(open["a:1"], 210);
  EXPECT_LE(open["b:1"], 210);
}

// in_flight / weight: with weights 3 and 1, open calls settle at 3 to 1.
// 400 open calls: 300 and 100 expected; the greedy choice keeps them within a
// few calls of that (tolerance ±20).
TEST_F(LeastRequestTest, WeightsScaleTheInFlightComparison) {
  Start({{"a:1", 3}, {"b:1", 1}}, R"({"choiceCount":10})");
  AllReady();
  std::map<std::string, int> open = OpenCalls(400);
  EXPECT_NEAR(open["a:1"], 300, 20);
  EXPECT_NEAR(open["b:1"], 100, 20);
}

// An update that keeps a (reordered, a new weight) keeps its count: the new
// picker still avoids it while its calls are open, and sees it drop when the
// calls picked by the old picker end.
TEST_F(LeastRequestTest, CountsSurviveResolverUpdates) {
  Start({{"a:1", 1}, {"b:1", 1}}, R"({"choiceCount":10})");
  AllReady();
  HoldCalls("a:1", 3);
  ASSERT_TRUE(least_request_.policy()
                  ->UpdateResolverState(least_request_.Update({{"b:1", 1}, {"a:1", 2}}))
                  .ok());
  ASSERT_EQ(helper_.last_state().state, ConnectivityState::kReady);
  // a: 3 / 2 in flight per weight against b's 0. Same bound as above.
  EXPECT_LE(Spread(1000)["a:1"], 10);
  EndHeldCalls();
  // Both at zero again; 4,000 picks, 2,000 expected on a (sd 32); ±300.
  EXPECT_NEAR(Spread(4000)["a:1"], 2000, 300);
}

// A call's end may come after its endpoint was removed and after the policy
// is gone (the counter lives until the last call ends; the sanitizer builds
// check there is no use after free and no leak).
TEST_F(LeastRequestTest, ACallMayEndAfterItsEndpointAndThePolicyAreGone) {
  Start({{"a:1", 1}, {"b:1", 1}}, R"({"choiceCount":10})");
  AllReady();
  HoldCalls("a:1", 2);
  ASSERT_TRUE(
      least_request_.policy()->UpdateResolverState(least_request_.Update({{"b:1", 1}})).ok());
  EXPECT_EQ(Spread(10), (std::map<std::string, int>{{"b:1", 10}}));
  least_request_.policy().reset();
  EndHeldCalls();
}

}  // namespace
