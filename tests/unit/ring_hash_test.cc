// ring_hash (gRFC A42, A76's requestHashHeader), driven through the public
// testing kit: config parsing, stickiness, lazy connections, failover,
// minimal disruption and weights.
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "lbkit/lbkit.h"
#include "lbkit/testing/fake_helper.h"
#include "policies/ring_hash.h"

namespace {

using lbkit::ConnectivityState;
using lbkit::internal::RingHashConfig;

constexpr char kHeaderConfig[] = R"({"requestHashHeader":"x-key"})";

grpc::Status Parse(const std::string& json, std::shared_ptr<const RingHashConfig>* out) {
  std::shared_ptr<const lbkit::BalancerConfig> config;
  grpc::Status status =
      lbkit::FindBalancer("ring_hash")->ParseConfig(nlohmann::json::parse(json), &config);
  if (status.ok()) *out = std::dynamic_pointer_cast<const RingHashConfig>(config);
  return status;
}

TEST(RingHashConfig, DefaultsAreA42s) {
  std::shared_ptr<const RingHashConfig> config;
  ASSERT_TRUE(Parse("{}", &config).ok());
  ASSERT_NE(config, nullptr);
  EXPECT_EQ(config->min_ring_size, 1024u);
  EXPECT_EQ(config->max_ring_size, 8388608u);
  EXPECT_EQ(config->request_hash_header, "");
}

TEST(RingHashConfig, ReadsFieldsAndIgnoresUnknownOnes) {
  std::shared_ptr<const RingHashConfig> config;
  ASSERT_TRUE(Parse(R"({"minRingSize":10,"maxRingSize":20.0,"requestHashHeader":"X-User",)"
                    R"("somethingNew":true})",
                    &config)
                  .ok());
  EXPECT_EQ(config->min_ring_size, 10u);
  EXPECT_EQ(config->max_ring_size, 20u);
  EXPECT_EQ(config->request_hash_header, "x-user");  // metadata keys are lowercase
}

TEST(RingHashConfig, CapsRingSizesAt8M) {
  std::shared_ptr<const RingHashConfig> config;
  ASSERT_TRUE(Parse(R"({"minRingSize":100000000,"maxRingSize":1e12})", &config).ok());
  EXPECT_EQ(config->min_ring_size, 8388608u);
  EXPECT_EQ(config->max_ring_size, 8388608u);
}

TEST(RingHashConfig, RejectsBadValuesNamingTheField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"minRingSize":0})", "minRingSize"},
      {R"({"minRingSize":-1})", "minRingSize"},
      {R"({"maxRingSize":1.5})", "maxRingSize"},
      {R"({"maxRingSize":"big"})", "maxRingSize"},
      {R"({"minRingSize":100,"maxRingSize":10})", "must not exceed maxRingSize"},
      {R"({"requestHashHeader":7})", "requestHashHeader"},
      {R"({"requestHashHeader":"x-key-bin"})", "-bin"},
  };
  for (const auto& [json, named] : cases) {
    std::shared_ptr<const RingHashConfig> config;
    grpc::Status status = Parse(json, &config);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << json;
    EXPECT_NE(status.error_message().find(named), std::string::npos)
        << json << ": " << status.error_message();
  }
}

class RingHashTest : public ::testing::Test {
 protected:
  void Start(std::vector<lbkit::Endpoint> endpoints, const std::string& config = kHeaderConfig) {
    ASSERT_TRUE(
        lbkit::testing::BuildBalancer("ring_hash", config, &helper_, &policy_, &config_).ok());
    Update(std::move(endpoints));
  }
  void Update(std::vector<lbkit::Endpoint> endpoints) {
    lbkit::BalancerUpdate update;
    update.endpoints = std::move(endpoints);
    update.config = config_;
    ASSERT_TRUE(policy_->UpdateResolverState(std::move(update)).ok());
  }
  static std::vector<lbkit::Endpoint> Endpoints(int n, const std::string& prefix = "e") {
    std::vector<lbkit::Endpoint> endpoints;
    for (int i = 0; i < n; ++i) endpoints.push_back(lbkit::Endpoint{{prefix + std::to_string(i)}});
    return endpoints;
  }
  // One pick for a call whose x-key header is `key`.
  std::string PickFor(const std::string& key) {
    lbkit::testing::TestCall call;
    call.metadata.emplace("x-key", key);
    return lbkit::testing::Describe(helper_.last_state().picker->Pick(call.args()));
  }
  // Picks for `key`, connecting what it asks for, until it completes.
  std::string ConnectAndPick(const std::string& key) {
    for (int round = 0; round < 4; ++round) {
      std::string picked = PickFor(key);
      if (picked != "queue") return picked;
      helper_.RunPosted();
      for (const auto& subchannel : helper_.subchannels()) {
        if (subchannel->state() != ConnectivityState::kReady && !subchannel->is_shutdown() &&
            subchannel->connection_requests() > 0) {
          subchannel->SetState(ConnectivityState::kReady);
        }
      }
    }
    return "never completed";
  }
  // Makes every endpoint READY (each connected on demand, as calls would).
  void ConnectAll(int n, const std::string& prefix = "e") {
    for (int i = 0; i < n; ++i) {
      // Connecting through the policy: a policy-level ExitIdle reaches only
      // one endpoint, so ask each through a pick that lands on it.
      for (int k = 0; k < 100000; ++k) {
        std::string key = "warm" + std::to_string(k);
        std::string picked = PickFor(key);
        if (picked == "queue") {
          helper_.RunPosted();
          for (const auto& subchannel : helper_.subchannels()) {
            if (subchannel->state() == ConnectivityState::kIdle && !subchannel->is_shutdown())
              subchannel->SetState(ConnectivityState::kReady);
          }
        }
        if (helper_.subchannel(prefix + std::to_string(i)) != nullptr) break;
      }
    }
  }
  // Puts the READY endpoint `address` in TRANSIENT_FAILURE. Its pick_first
  // child first goes IDLE when its connection drops (as in gRPC); a call that
  // lands on it asks it to reconnect (or, with no endpoint READY, the policy
  // does by itself), and that attempt fails.
  void Fail(const std::string& address) {
    std::string key;
    for (int k = 0; k < 100000 && key.empty(); ++k) {
      if (PickFor("find" + std::to_string(k)) == address) key = "find" + std::to_string(k);
    }
    ASSERT_FALSE(key.empty()) << "no key lands on " << address;
    helper_.subchannel(address)->SetState(ConnectivityState::kTransientFailure,
                                          grpc::Status(grpc::StatusCode::UNAVAILABLE, "down"));
    PickFor(key);  // queues and asks for the reconnection, unless the policy already did
    helper_.RunPosted();
  }
  // Which endpoint each of `keys` keys goes to (all endpoints READY).
  std::map<std::string, std::string> Assignment(int keys) {
    std::map<std::string, std::string> owner;
    for (int k = 0; k < keys; ++k) {
      std::string key = "key-" + std::to_string(k);
      owner[key] = PickFor(key);
    }
    return owner;
  }

  lbkit::testing::FakeHelper helper_;
  std::unique_ptr<lbkit::Balancer> policy_;
  std::shared_ptr<const lbkit::BalancerConfig> config_;
};

TEST_F(RingHashTest, TheSameHeaderValueAlwaysPicksTheSameEndpoint) {
  Start(Endpoints(5));
  ConnectAll(5);
  ASSERT_EQ(helper_.last_state().state, ConnectivityState::kReady);
  std::set<std::string> owners;
  for (int k = 0; k < 50; ++k) {
    std::string key = "user-" + std::to_string(k);
    std::string first = PickFor(key);
    ASSERT_EQ(first.rfind("e", 0), 0u) << first;
    for (int again = 0; again < 20; ++again) EXPECT_EQ(PickFor(key), first) << key;
    owners.insert(first);
  }
  EXPECT_GT(owners.size(), 1u) << "50 keys over 5 endpoints all went to one";
}

TEST_F(RingHashTest, OnlyThePickedEndpointIsAskedToConnect) {
  Start(Endpoints(10));
  EXPECT_TRUE(helper_.subchannels().empty()) << "nothing connects before a call";
  EXPECT_EQ(helper_.last_state().state, ConnectivityState::kIdle);
  EXPECT_EQ(PickFor("alice"), "queue");
  helper_.RunPosted();
  ASSERT_EQ(helper_.subchannels().size(), 1u);
  const std::string address = helper_.subchannels().front()->address();
  EXPECT_EQ(helper_.subchannels().front()->connection_requests(), 1);
  EXPECT_EQ(helper_.last_state().state, ConnectivityState::kConnecting);
  helper_.subchannels().front()->SetState(ConnectivityState::kReady);
  EXPECT_EQ(PickFor("alice"), address);
  EXPECT_EQ(helper_.subchannels().size(), 1u) << "no other endpoint connected";
}

TEST_F(RingHashTest, ManyPicksOnAnIdleEndpointPostOneConnectionRequest) {
  Start(Endpoints(3));
  for (int i = 0; i < 100; ++i) EXPECT_EQ(PickFor("bob"), "queue");
  EXPECT_EQ(helper_.pending_posts(), 1u);
}

TEST_F(RingHashTest, AFailedEndpointsCallsGoToTheNextReadyOneOnTheRing) {
  Start(Endpoints(4));
  ConnectAll(4);
  const std::string owner = PickFor("carol");
  ASSERT_NE(helper_.subchannel(owner), nullptr) << owner;
  Fail(owner);
  EXPECT_EQ(helper_.last_state().state, ConnectivityState::kReady);
  const std::string fallback = PickFor("carol");
  EXPECT_NE(fallback, owner);
  EXPECT_NE(helper_.subchannel(fallback), nullptr) << fallback;
  EXPECT_EQ(PickFor("carol"), fallback) << "the failover target is stable too";
  // Back to its own endpoint once that recovers.
  helper_.subchannel(owner)->SetState(ConnectivityState::kReady);
  EXPECT_EQ(PickFor("carol"), owner);
}

TEST_F(RingHashTest, FailsOnlyWhenEveryEndpointHasFailed) {
  Start(Endpoints(3));
  ConnectAll(3);
  Fail("e0");
  Fail("e1");
  EXPECT_EQ(helper_.last_state().state, ConnectivityState::kReady);
  for (int k = 0; k < 20; ++k) EXPECT_EQ(PickFor("k" + std::to_string(k)), "e2");
  Fail("e2");
  EXPECT_EQ(helper_.last_state().state, ConnectivityState::kTransientFailure);
  const std::string picked = PickFor("dave");
  EXPECT_EQ(picked.rfind("fail: ", 0), 0u) << picked;
  EXPECT_NE(picked.find("3 of 3 endpoints in TRANSIENT_FAILURE"), std::string::npos) << picked;
}

TEST_F(RingHashTest, TwoFailedEndpointsMakeThePolicyFailAndConnectAnIdleOne) {
  Start(Endpoints(4));
  // Connect two endpoints through picks, and fail them.
  std::set<std::string> connected;
  for (int k = 0; connected.size() < 2 && k < 1000; ++k) {
    std::string key = "k" + std::to_string(k);
    if (PickFor(key) == "queue") helper_.RunPosted();
    for (const auto& subchannel : helper_.subchannels()) connected.insert(subchannel->address());
  }
  ASSERT_EQ(connected.size(), 2u);
  grpc::Status down(grpc::StatusCode::UNAVAILABLE, "down");
  for (const std::string& address : connected) {
    helper_.subchannel(address)->SetState(ConnectivityState::kTransientFailure, down);
  }
  // A42: two endpoints failing is TRANSIENT_FAILURE, and the policy starts one
  // IDLE endpoint connecting by itself.
  EXPECT_EQ(helper_.last_state().state, ConnectivityState::kTransientFailure);
  EXPECT_EQ(helper_.subchannels().size(), 3u);
  EXPECT_EQ(helper_.subchannels().back()->connection_requests(), 1);
}

// With A42's normalization each of N equal endpoints gets ceil(minRingSize / N)
// entries: 11 for both 100 and 99 endpoints, so the ring of those that stay
// is unchanged. (Where that count changes, e.g. from 10 endpoints to 9, the
// staying endpoints gain entries and a few keys move between them too:
// docs/policies.md (ring_hash).)
TEST_F(RingHashTest, RemovingAnEndpointMovesOnlyItsKeys) {
  constexpr int kEndpoints = 100;
  constexpr int kKeys = 10000;
  Start(Endpoints(kEndpoints));
  ConnectAll(kEndpoints);
  const std::map<std::string, std::string> before = Assignment(kKeys);
  std::vector<lbkit::Endpoint> fewer = Endpoints(kEndpoints);
  fewer.erase(fewer.begin() + 3);  // e3 goes
  Update(fewer);
  ASSERT_EQ(helper_.last_state().state, ConnectivityState::kReady);
  const std::map<std::string, std::string> after = Assignment(kKeys);
  int moved = 0;
  for (const auto& [key, owner] : before) {
    if (after.at(key) == owner) continue;
    ++moved;
    EXPECT_EQ(owner, "e3") << key << " moved from " << owner << ", which stays, to "
                           << after.at(key);
  }
  EXPECT_GT(moved, 0);
  EXPECT_LE(moved, kKeys / kEndpoints + kKeys * 2 / 100);
}

TEST_F(RingHashTest, WeightsShiftTheShareOfKeys) {
  std::vector<lbkit::Endpoint> endpoints = Endpoints(2);
  endpoints[0].attributes.weight = 3;
  Start(endpoints);
  ConnectAll(2);
  std::map<std::string, int> share;
  for (const auto& entry : Assignment(10000)) ++share[entry.second];
  // 3:1, within a few percent (the ring is 1024 entries and more).
  EXPECT_GT(share["e0"], 7000);
  EXPECT_LT(share["e0"], 8000);
  EXPECT_EQ(share["e0"] + share["e1"], 10000);
}

TEST_F(RingHashTest, HashKeyAttributePlacesTheEndpointWhateverItsAddress) {
  std::vector<lbkit::Endpoint> endpoints = Endpoints(3);
  for (int i = 0; i < 3; ++i) endpoints[i].attributes.hash_key = "node-" + std::to_string(i);
  Start(endpoints);
  ConnectAll(3);
  const std::map<std::string, std::string> before = Assignment(1000);
  // New addresses, same hash keys: each key goes to the endpoint in the same
  // place on the ring.
  std::vector<lbkit::Endpoint> moved = Endpoints(3, "f");
  for (int i = 0; i < 3; ++i) moved[i].attributes.hash_key = "node-" + std::to_string(i);
  policy_.reset();
  Start(moved);
  ConnectAll(3, "f");
  const std::map<std::string, std::string> after = Assignment(1000);
  for (const auto& [key, owner] : before) {
    EXPECT_EQ("f" + owner.substr(1), after.at(key)) << key;
  }
}

TEST_F(RingHashTest, WithoutAHeaderCallsSpreadOverEndpoints) {
  Start(Endpoints(4), "{}");
  ConnectAll(4);
  std::set<std::string> seen;
  for (const std::string& picked : lbkit::testing::PickAddresses(*helper_.last_state().picker, 200))
    seen.insert(picked);
  EXPECT_EQ(seen.size(), 4u);
}

TEST_F(RingHashTest, AClosedConnectionReconnectsOnlyWhenACallLandsOnIt) {
  Start(Endpoints(3));
  ConnectAll(3);
  const std::string owner = PickFor("erin");
  auto subchannel = helper_.subchannel(owner);
  ASSERT_NE(subchannel, nullptr) << owner;
  const int requests = subchannel->connection_requests();
  subchannel->SetState(ConnectivityState::kIdle);  // the backend closed the connection
  helper_.RunPosted();
  EXPECT_EQ(helper_.last_state().state, ConnectivityState::kReady);
  EXPECT_EQ(subchannel->connection_requests(), requests) << "idle until a call needs it";
  EXPECT_EQ(PickFor("erin"), "queue");
  helper_.RunPosted();
  EXPECT_EQ(subchannel->connection_requests(), requests + 1);
  subchannel->SetState(ConnectivityState::kReady);
  EXPECT_EQ(PickFor("erin"), owner);
}

TEST_F(RingHashTest, AnUpdateKeepsTheConnectionsOfEndpointsThatStay) {
  Start(Endpoints(3));
  ConnectAll(3);
  const size_t subchannels = helper_.subchannels().size();
  std::vector<lbkit::Endpoint> endpoints = Endpoints(4);
  endpoints[0].attributes.weight = 2;  // a new weight reaches the same child
  Update(endpoints);
  EXPECT_EQ(helper_.last_state().state, ConnectivityState::kReady);
  EXPECT_EQ(helper_.subchannels().size(), subchannels) << "the new endpoint waits for a call";
  for (const auto& subchannel : helper_.subchannels()) EXPECT_FALSE(subchannel->is_shutdown());
}

TEST_F(RingHashTest, NoEndpointsIsTransientFailure) {
  ASSERT_TRUE(lbkit::testing::BuildBalancer("ring_hash", "{}", &helper_, &policy_, &config_).ok());
  lbkit::BalancerUpdate update;
  update.config = config_;
  EXPECT_FALSE(policy_->UpdateResolverState(update).ok());
  EXPECT_EQ(helper_.last_state().state, ConnectivityState::kTransientFailure);
}

}  // namespace
