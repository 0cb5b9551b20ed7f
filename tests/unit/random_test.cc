// The built-in random policy, driven through lbkit's testing kit: config,
// uniform and weighted spread, states before any endpoint is READY.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/policy_under_test.h"
#include "lbkit/lbkit.h"
#include "lbkit/testing/fake_helper.h"

namespace {

using lbkit::ConnectivityState;
using lbkit::testing::FakeHelper;

class RandomTest : public ::testing::Test {
 protected:
  void Start(const lbkit_test::WeightedEndpoints& endpoints) { random_.Start(endpoints); }
  std::map<std::string, int> Spread(int n) { return random_.Spread(n); }

  lbkit_test::PolicyUnderTest random_{"random"};
  FakeHelper& helper_ = random_.helper();
};

TEST_F(RandomTest, IsRegisteredAndAcceptsAnyObjectIgnoringUnknownFields) {
  for (const char* json : {"{}", R"({"someFutureField":3,"choiceCount":"x"})"}) {
    FakeHelper helper;
    std::unique_ptr<lbkit::Balancer> policy;
    std::shared_ptr<const lbkit::BalancerConfig> config;
    grpc::Status status = lbkit::testing::BuildBalancer("random", json, &helper, &policy, &config);
    EXPECT_TRUE(status.ok()) << json << ": " << status.error_message();
    EXPECT_NE(config, nullptr);
  }
}

TEST_F(RandomTest, QueuesWhileConnectingAndFailsOnceEveryEndpointFailed) {
  Start({{"a:1", 1}, {"b:1", 1}});
  random_.ExpectQueuesThenFailsOnceBothFail();
}

TEST_F(RandomTest, PicksOnlyReadyEndpoints) {
  Start({{"a:1", 1}, {"b:1", 5}, {"c:1", 1}});
  helper_.subchannel("a:1")->SetState(ConnectivityState::kReady);
  EXPECT_EQ(helper_.last_state().state, ConnectivityState::kReady);
  EXPECT_EQ(Spread(200), (std::map<std::string, int>{{"a:1", 200}}));
  helper_.subchannel("c:1")->SetState(ConnectivityState::kReady);
  std::map<std::string, int> count = Spread(200);
  EXPECT_EQ(count.count("b:1"), 0u) << "b:1 is still connecting";
  EXPECT_EQ(count["a:1"] + count["c:1"], 200);
}

// 40,000 picks over 4 equal endpoints: 10,000 each expected, standard
// deviation sqrt(40000 * 0.25 * 0.75) = 87; tolerance ±600 (about 7 sd).
TEST_F(RandomTest, EqualWeightsSpreadUniformly) {
  Start({{"a:1", 1}, {"b:1", 1}, {"c:1", 1}, {"d:1", 1}});
  random_.AllReady();
  std::map<std::string, int> count = Spread(40000);
  ASSERT_EQ(count.size(), 4u);
  for (const auto& [address, n] : count) EXPECT_NEAR(n, 10000, 600) << address;
}

// Weights 1:3:6 over 100,000 picks: 10,000, 30,000 and 60,000 expected,
// standard deviations 95, 145 and 155; tolerance ±1,200 (over 7 sd).
TEST_F(RandomTest, WeightsSetEachEndpointsShare) {
  Start({{"a:1", 1}, {"b:1", 3}, {"c:1", 6}});
  random_.AllReady();
  std::map<std::string, int> count = Spread(100000);
  EXPECT_NEAR(count["a:1"], 10000, 1200);
  EXPECT_NEAR(count["b:1"], 30000, 1200);
  EXPECT_NEAR(count["c:1"], 60000, 1200);
}

// One endpoint of weight 99 among 99 of weight 1 takes half of 100,000 picks
// (sd 158; tolerance ±1,500), and no light endpoint is left out of the
// alias table's slots (each expects 505, sd 22; at least 300).
TEST_F(RandomTest, OneHeavyEndpointAmongManyLightOnes) {
  std::vector<std::pair<std::string, uint32_t>> endpoints;
  for (int i = 0; i < 99; ++i) endpoints.emplace_back("light" + std::to_string(i) + ":1", 1);
  endpoints.emplace_back("heavy:1", 99);
  Start(endpoints);
  random_.AllReady();
  std::map<std::string, int> count = Spread(100000);
  EXPECT_NEAR(count["heavy:1"], 50000, 1500);
  ASSERT_EQ(count.size(), 100u);
  for (const auto& [address, n] : count) {
    if (address != "heavy:1") {
      EXPECT_GT(n, 300) << address;
    }
  }
}

// A weight change in an update takes effect at once, on the same connections.
TEST_F(RandomTest, ANewWeightTakesEffectWithTheSameConnection) {
  Start({{"a:1", 1}, {"b:1", 1}});
  random_.AllReady();
  auto a = helper_.subchannel("a:1");
  ASSERT_TRUE(random_.policy()->UpdateResolverState(random_.Update({{"a:1", 9}, {"b:1", 1}})).ok());
  EXPECT_EQ(helper_.subchannel("a:1"), a) << "same subchannel";
  // 20,000 picks, 18,000 expected on a (sd 42); tolerance ±500.
  EXPECT_NEAR(Spread(20000)["a:1"], 18000, 500);
}

}  // namespace
