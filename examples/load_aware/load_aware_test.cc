// load_aware, unit-tested the way a policy author outside lbkit would: public
// headers and lbkit's testing kit only, no network.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include <lbkit/lbkit.h>
#include <lbkit/testing/fake_helper.h>

#include "load_aware.h"

namespace {

using lbkit::ConnectivityState;
using lbkit::testing::FakeHelper;

class LoadAwareTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::Status status = load_aware::RegisterLoadAware();
    ASSERT_TRUE(status.ok() || status.error_code() == grpc::StatusCode::ALREADY_EXISTS)
        << status.error_message();
  }

  // Builds load_aware with `config_json` over endpoints "address;weight".
  void Start(const std::vector<std::pair<std::string, uint32_t>>& endpoints,
             const std::string& config_json = "{}") {
    ASSERT_TRUE(
        lbkit::testing::BuildBalancer("load_aware", config_json, &helper_, &policy_, &config_)
            .ok());
    ASSERT_TRUE(policy_->UpdateResolverState(Update(endpoints)).ok());
  }

  lbkit::BalancerUpdate Update(const std::vector<std::pair<std::string, uint32_t>>& endpoints) {
    lbkit::BalancerUpdate update;
    for (const auto& [address, weight] : endpoints) {
      lbkit::Endpoint endpoint{{address}};
      endpoint.attributes.weight = weight;
      update.endpoints.push_back(endpoint);
    }
    update.config = config_;
    return update;
  }

  void AllReady() {
    for (const auto& subchannel : helper_.subchannels()) {
      subchannel->SetState(ConnectivityState::kReady);
    }
  }

  // How many of `n` picks each address got.
  std::map<std::string, int> Spread(int n) {
    std::map<std::string, int> count;
    for (const std::string& pick : lbkit::testing::PickAddresses(*helper_.last_state().picker, n))
      ++count[pick];
    return count;
  }

  // Ends one call on `address` whose backend reported `cpu`.
  void ReportCpu(const std::string& address, double cpu) {
    lbkit::LoadReport report;
    report.cpu_utilization = cpu;
    lbkit::testing::TestCall call;
    for (int attempt = 0; attempt < 1000; ++attempt) {
      lbkit::PickResult result = helper_.last_state().picker->Pick(call.args());
      ASSERT_EQ(result.kind(), lbkit::PickResult::Kind::kComplete);
      ASSERT_TRUE(result.on_done());
      if (result.subchannel()->address() == address) {
        lbkit::testing::CallEnd().WithLoadReport(report).Finish(result);
        return;
      }
      lbkit::testing::CallEnd().Finish(result);  // another backend; no report
    }
    FAIL() << "never picked " << address;
  }

  FakeHelper helper_;
  std::unique_ptr<lbkit::Balancer> policy_;
  std::shared_ptr<const lbkit::BalancerConfig> config_;
};

TEST_F(LoadAwareTest, SplitsByWeightWhileNoBackendReportedLoad) {
  Start({{"a:1", 3}, {"b:1", 1}});
  AllReady();
  ASSERT_EQ(helper_.last_state().state, ConnectivityState::kReady);
  std::map<std::string, int> count = Spread(4000);
  // Expected 3000 and 1000; the bounds are over 10 standard deviations away.
  EXPECT_GT(count["a:1"], 2700);
  EXPECT_LT(count["a:1"], 3300);
  EXPECT_EQ(count["a:1"] + count["b:1"], 4000);
}

TEST_F(LoadAwareTest, ABusyBackendGetsLessTraffic) {
  Start({{"a:1", 3}, {"b:1", 1}});
  AllReady();
  ReportCpu("a:1", 0.95);  // a: 3 * 0.05 = 0.15 against b's 1
  std::map<std::string, int> count = Spread(4000);
  EXPECT_LT(count["a:1"], 800) << "expected about 13% of 4000";
  ReportCpu("a:1", 0.0);  // recovered
  count = Spread(4000);
  EXPECT_GT(count["a:1"], 2700);
}

TEST_F(LoadAwareTest, AttachesTheWeightItUsedToTheCall) {
  Start({{"a:1", 7}});
  AllReady();
  lbkit::testing::TestCall call;
  lbkit::PickResult result = helper_.last_state().picker->Pick(call.args());
  ASSERT_EQ(result.kind(), lbkit::PickResult::Kind::kComplete);
  ASSERT_NE(result.metadata(), nullptr);
  ASSERT_EQ(result.metadata()->size(), 1u);
  EXPECT_EQ((*result.metadata())[0].first, "x-load-aware-weight");
  EXPECT_EQ((*result.metadata())[0].second, "7");
}

TEST_F(LoadAwareTest, AWeightChangeKeepsTheConnections) {
  Start({{"a:1", 1}, {"b:1", 1}});
  AllReady();
  const size_t created = helper_.subchannels().size();
  ASSERT_TRUE(policy_->UpdateResolverState(Update({{"a:1", 9}, {"b:1", 1}})).ok());
  EXPECT_EQ(helper_.subchannels().size(), created) << "no new connection for a new weight";
  EXPECT_EQ(helper_.last_state().state, ConnectivityState::kReady);
  EXPECT_GT(Spread(4000)["a:1"], 3400) << "expected about 90% of 4000";
}

TEST_F(LoadAwareTest, WaitsWhileConnectingAndFailsNamingTheReason) {
  Start({{"a:1", 1}, {"b:1", 1}});
  EXPECT_EQ(helper_.last_state().state, ConnectivityState::kConnecting);
  EXPECT_EQ(Spread(1)["queue"], 1);
  const grpc::Status refused(grpc::StatusCode::UNAVAILABLE, "connection refused");
  for (const auto& subchannel : helper_.subchannels()) {
    subchannel->SetState(ConnectivityState::kTransientFailure, refused);
  }
  EXPECT_EQ(helper_.last_state().state, ConnectivityState::kTransientFailure);
  const std::string why = helper_.last_state().status.error_message();
  EXPECT_NE(why.find("load_aware"), std::string::npos) << why;
  EXPECT_NE(why.find("connection refused"), std::string::npos) << why;
}

TEST_F(LoadAwareTest, ConfigRejectsABadMetricAndIgnoresUnknownFields) {
  load_aware::LoadAwareBuilder builder;
  std::shared_ptr<const lbkit::BalancerConfig> config;
  EXPECT_EQ(builder.ParseConfig(nlohmann::json::parse(R"({"metric": 5})"), &config).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(
      builder.ParseConfig(nlohmann::json::parse(R"({"metric": "named:"})"), &config).error_code(),
      grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(
      builder.ParseConfig(nlohmann::json::parse(R"({"metric": "named:queue", "x": 1})"), &config)
          .ok());
}

}  // namespace
