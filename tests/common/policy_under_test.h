// Test support: a registered policy driven through lbkit's testing kit over
// weighted endpoints, for policies' unit tests.
#ifndef LBKIT_TESTS_COMMON_POLICY_UNDER_TEST_H_
#define LBKIT_TESTS_COMMON_POLICY_UNDER_TEST_H_

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "lbkit/lbkit.h"
#include "lbkit/testing/fake_helper.h"

namespace lbkit_test {

// Endpoints as ("address", weight): one address each.
using WeightedEndpoints = std::vector<std::pair<std::string, uint32_t>>;

// Parses `json` with the registered policy `name`'s builder; on success, when
// `out` is not null, copies the parsed config (of type Config) to it.
template <typename Config>
grpc::Status ParseConfigAs(const std::string& name, const std::string& json, Config* out) {
  lbkit::testing::FakeHelper helper;
  std::unique_ptr<lbkit::Balancer> policy;
  std::shared_ptr<const lbkit::BalancerConfig> config;
  grpc::Status status = lbkit::testing::BuildBalancer(name, json, &helper, &policy, &config);
  if (status.ok() && out != nullptr) {
    auto parsed = std::dynamic_pointer_cast<const Config>(config);
    EXPECT_NE(parsed, nullptr);
    if (parsed != nullptr) *out = *parsed;
  }
  return status;
}

class PolicyUnderTest {
 public:
  explicit PolicyUnderTest(std::string name) : name_(std::move(name)) {}

  // Builds the policy with `config_json` and sends it `endpoints`; the test
  // fails if either is refused.
  void Start(const WeightedEndpoints& endpoints, const std::string& config_json = "{}") {
    grpc::Status status =
        lbkit::testing::BuildBalancer(name_, config_json, &helper_, &policy_, &config_);
    ASSERT_TRUE(status.ok()) << status.error_message();
    status = policy_->UpdateResolverState(Update(endpoints));
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  // A resolver update with `endpoints` and the parsed config.
  lbkit::BalancerUpdate Update(const WeightedEndpoints& endpoints) const {
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
      subchannel->SetState(lbkit::ConnectivityState::kReady);
    }
  }
  // How many of `n` picks of the current picker each address got (or
  // "queue", "fail: ..."); each call ends at once, with OK.
  std::map<std::string, int> Spread(int n) const {
    std::map<std::string, int> count;
    for (const std::string& pick : lbkit::testing::PickAddresses(*picker(), n)) ++count[pick];
    return count;
  }
  // After Start over two endpoints "a:1" and "b:1", neither connected yet:
  // the policy is CONNECTING and queues calls; once both fail it is
  // TRANSIENT_FAILURE and fails calls with "<name>: ...".
  void ExpectQueuesThenFailsOnceBothFail() {
    EXPECT_EQ(helper_.last_state().state, lbkit::ConnectivityState::kConnecting);
    EXPECT_EQ(lbkit::testing::PickAddresses(*picker(), 1)[0], "queue");
    for (const char* address : {"a:1", "b:1"}) {
      helper_.subchannel(address)->SetState(
          lbkit::ConnectivityState::kTransientFailure,
          grpc::Status(grpc::StatusCode::UNAVAILABLE, std::string("refused ") + address));
    }
    EXPECT_EQ(helper_.last_state().state, lbkit::ConnectivityState::kTransientFailure);
    std::string pick = lbkit::testing::PickAddresses(*picker(), 1)[0];
    EXPECT_EQ(pick.rfind("fail: " + name_ + ": ", 0), 0u) << pick;
  }
  const std::shared_ptr<lbkit::Picker>& picker() const { return helper_.last_state().picker; }
  lbkit::testing::FakeHelper& helper() { return helper_; }
  std::unique_ptr<lbkit::Balancer>& policy() { return policy_; }

 private:
  std::string name_;
  lbkit::testing::FakeHelper helper_;
  std::unique_ptr<lbkit::Balancer> policy_;  // after helper_: destroyed first
  std::shared_ptr<const lbkit::BalancerConfig> config_;
};

}  // namespace lbkit_test

#endif  // LBKIT_TESTS_COMMON_POLICY_UNDER_TEST_H_
