// Balancers driven through a FakeHelper with test subchannels: pick_first,
// round_robin, custom_round_robin and the EndpointSharding update diff.
#include <gtest/gtest.h>

#include "custom_round_robin.h"
#include "lbkit/endpoint_sharding.h"
#include "lbkit/registry.h"
#include "lbkit/service_config.h"
#include "lbkit/testing/fake_helper.h"
#include "policies/pick_first.h"

#include <set>

namespace {

using lbkit::ConnectivityState;
using lbkit::testing::FakeHelper;
using lbkit::testing::PickAddresses;

lbkit::BalancerUpdate Update(std::vector<std::vector<std::string>> endpoints,
                             const std::string& policy_json = "{}", const std::string& name = "") {
  lbkit::BalancerUpdate update;
  for (auto& addresses : endpoints) update.endpoints.push_back(lbkit::Endpoint{addresses});
  if (!name.empty()) {
    std::shared_ptr<const lbkit::BalancerConfig> config;
    EXPECT_TRUE(
        lbkit::FindBalancer(name)->ParseConfig(nlohmann::json::parse(policy_json), &config).ok());
    update.config = config;
  }
  return update;
}

std::unique_ptr<lbkit::Balancer> Build(const std::string& name, lbkit::Helper* helper) {
  EXPECT_TRUE(customlb::RegisterCustomRoundRobin().ok());
  return lbkit::FindBalancer(name)->Build(helper);
}

// ---- pick_first ----

TEST(PickFirst, ConnectsToTheFirstAddressAndReportsConnecting) {
  FakeHelper helper;
  auto pf = Build("pick_first", &helper);
  ASSERT_TRUE(pf->UpdateResolverState(Update({{"a:1", "b:1"}})).ok());
  EXPECT_EQ(helper.last_state().state, ConnectivityState::kConnecting);
  EXPECT_EQ(helper.subchannel("a:1")->connection_requests(), 1);
  EXPECT_EQ(helper.subchannel("b:1")->connection_requests(), 0);
  EXPECT_EQ(PickAddresses(*helper.last_state().picker, 1)[0], "queue");
}

TEST(PickFirst, FirstReadyWinsAndTheOthersAreShutDown) {
  FakeHelper helper;
  auto pf = Build("pick_first", &helper);
  pf->UpdateResolverState(Update({{"a:1", "b:1"}}));
  auto b = helper.subchannel("b:1");
  b->SetState(ConnectivityState::kReady);
  EXPECT_EQ(helper.last_state().state, ConnectivityState::kReady);
  EXPECT_EQ(PickAddresses(*helper.last_state().picker, 3), std::vector<std::string>(3, "b:1"));
  EXPECT_EQ(helper.subchannel("a:1"), nullptr) << "a:1 was shut down";
}

TEST(PickFirst, AFailedAttemptMovesToTheNextAddressAtOnce) {
  FakeHelper helper;
  auto pf = Build("pick_first", &helper);
  pf->UpdateResolverState(Update({{"a:1", "b:1", "c:1"}}));
  helper.subchannel("a:1")->SetState(ConnectivityState::kTransientFailure,
                                     grpc::Status(grpc::StatusCode::UNAVAILABLE, "refused"));
  EXPECT_EQ(helper.subchannel("b:1")->connection_requests(), 1);
  EXPECT_EQ(helper.subchannel("c:1")->connection_requests(), 0);
  EXPECT_EQ(helper.last_state().state, ConnectivityState::kConnecting)
      << "not every address failed yet";
}

TEST(PickFirst, AllAddressesFailedIsTransientFailureNamingTheLastError) {
  FakeHelper helper;
  auto pf = Build("pick_first", &helper);
  pf->UpdateResolverState(Update({{"a:1", "b:1"}}));
  helper.subchannel("a:1")->SetState(ConnectivityState::kTransientFailure,
                                     grpc::Status(grpc::StatusCode::UNAVAILABLE, "refused a"));
  helper.subchannel("b:1")->SetState(ConnectivityState::kTransientFailure,
                                     grpc::Status(grpc::StatusCode::UNAVAILABLE, "refused b"));
  EXPECT_EQ(helper.last_state().state, ConnectivityState::kTransientFailure);
  std::string pick = PickAddresses(*helper.last_state().picker, 1)[0];
  EXPECT_NE(pick.find("refused b"), std::string::npos) << pick;
  EXPECT_EQ(helper.reresolution_requests(), 1);
  // Sticky: a retry that goes CONNECTING does not leave TRANSIENT_FAILURE.
  size_t reports = helper.states().size();
  helper.subchannel("a:1")->SetState(ConnectivityState::kConnecting);
  EXPECT_EQ(helper.states().size(), reports);
  helper.subchannel("a:1")->SetState(ConnectivityState::kReady);
  EXPECT_EQ(helper.last_state().state, ConnectivityState::kReady);
}

TEST(PickFirst, TheAttemptDelayStartsTheNextAddressWhileTheFirstIsStillTrying) {
  FakeHelper helper;
  auto pf = Build("pick_first", &helper);
  pf->UpdateResolverState(Update({{"a:1", "b:1"}}));
  helper.subchannel("a:1")->SetState(ConnectivityState::kConnecting);
  ASSERT_EQ(helper.pending_timers(), 1u);
  helper.FireTimers();
  EXPECT_EQ(helper.subchannel("b:1")->connection_requests(), 1);
  EXPECT_NE(helper.subchannel("a:1"), nullptr) << "the first attempt keeps going";
  helper.subchannel("a:1")->SetState(ConnectivityState::kReady);
  EXPECT_EQ(PickAddresses(*helper.last_state().picker, 1)[0], "a:1");
  EXPECT_EQ(helper.subchannel("b:1"), nullptr);
}

TEST(PickFirst, ADroppedConnectionGoesIdleAndReconnectsOnTheNextPick) {
  FakeHelper helper;
  auto pf = Build("pick_first", &helper);
  pf->UpdateResolverState(Update({{"a:1"}}));
  auto a = helper.subchannel("a:1");
  a->SetState(ConnectivityState::kReady);
  a->SetState(ConnectivityState::kIdle);
  EXPECT_EQ(helper.last_state().state, ConnectivityState::kIdle);
  EXPECT_EQ(helper.reresolution_requests(), 1);
  EXPECT_EQ(PickAddresses(*helper.last_state().picker, 2),
            (std::vector<std::string>{"queue", "queue"}));
  ASSERT_EQ(helper.pending_posts(), 1u) << "one wake-up however many picks";
  helper.RunPosted();
  EXPECT_EQ(helper.last_state().state, ConnectivityState::kConnecting);
  EXPECT_EQ(a->connection_requests(), 2);
  a->SetState(ConnectivityState::kReady);
  EXPECT_EQ(helper.last_state().state, ConnectivityState::kReady);
}

TEST(PickFirst, AnUpdateKeepingTheSelectedAddressKeepsTheConnection) {
  FakeHelper helper;
  auto pf = Build("pick_first", &helper);
  pf->UpdateResolverState(Update({{"a:1", "b:1"}}));
  auto a = helper.subchannel("a:1");
  a->SetState(ConnectivityState::kReady);
  size_t created = helper.subchannels().size();
  pf->UpdateResolverState(Update({{"c:1", "a:1"}}));
  EXPECT_EQ(helper.last_state().state, ConnectivityState::kReady);
  EXPECT_FALSE(a->is_shutdown());
  EXPECT_EQ(helper.subchannels().size(), created);
}

TEST(PickFirst, NoAddressesIsTransientFailure) {
  FakeHelper helper;
  auto pf = Build("pick_first", &helper);
  EXPECT_FALSE(pf->UpdateResolverState(Update({})).ok());
  EXPECT_EQ(helper.last_state().state, ConnectivityState::kTransientFailure);
}

// ---- EndpointSharding ----

TEST(EndpointSharding, AnUpdateKeepsUnchangedEndpointsAndShutsDownRemovedOnes) {
  FakeHelper helper;
  int changes = 0;
  lbkit::EndpointSharding sharding(&helper, [&] { ++changes; });
  ASSERT_TRUE(sharding.Update({lbkit::Endpoint{{"a:1"}}, lbkit::Endpoint{{"b:1"}}}).ok());
  EXPECT_EQ(changes, 1) << "one notification per update";
  auto a = helper.subchannel("a:1");
  auto b = helper.subchannel("b:1");
  b->SetState(ConnectivityState::kReady);
  EXPECT_EQ(changes, 2);

  ASSERT_TRUE(sharding.Update({lbkit::Endpoint{{"b:1"}}, lbkit::Endpoint{{"c:1"}}}).ok());
  EXPECT_TRUE(a->is_shutdown()) << "removed endpoint's connection released";
  EXPECT_FALSE(b->is_shutdown());
  EXPECT_EQ(helper.subchannel("b:1"), b) << "kept endpoint keeps its subchannel";
  EXPECT_EQ(b->connection_requests(), 1) << "and is not reconnected";
  ASSERT_NE(helper.subchannel("c:1"), nullptr);
  ASSERT_EQ(sharding.children().size(), 2u);
  EXPECT_EQ(sharding.children()[0].endpoint.addresses[0], "b:1");
  EXPECT_EQ(sharding.children()[0].state.state, ConnectivityState::kReady) << "state carried over";
  EXPECT_EQ(sharding.children()[1].state.state, ConnectivityState::kConnecting);
  EXPECT_EQ(sharding.AggregateState(), ConnectivityState::kReady);

  // A callback from the removed endpoint's subchannel reaches nobody.
  size_t before = helper.states().size();
  a->SetState(ConnectivityState::kReady);
  EXPECT_EQ(helper.states().size(), before);
}

TEST(EndpointSharding, AggregatesChildStatesAsGrpcDoes) {
  FakeHelper helper;
  lbkit::EndpointSharding sharding(&helper, [] {});
  EXPECT_EQ(sharding.AggregateState(), ConnectivityState::kTransientFailure) << "no children";
  sharding.Update({lbkit::Endpoint{{"a:1"}}, lbkit::Endpoint{{"b:1"}}});
  EXPECT_EQ(sharding.AggregateState(), ConnectivityState::kConnecting);
  helper.subchannel("a:1")->SetState(ConnectivityState::kTransientFailure,
                                     grpc::Status(grpc::StatusCode::UNAVAILABLE, "a down"));
  EXPECT_EQ(sharding.AggregateState(), ConnectivityState::kConnecting);
  helper.subchannel("b:1")->SetState(ConnectivityState::kTransientFailure,
                                     grpc::Status(grpc::StatusCode::UNAVAILABLE, "b down"));
  grpc::Status error;
  EXPECT_EQ(sharding.AggregateState(&error), ConnectivityState::kTransientFailure);
  EXPECT_NE(error.error_message().find("down"), std::string::npos);
}

TEST(EndpointSharding, ReorderedAddressesReachTheSameChild) {
  FakeHelper helper;
  lbkit::EndpointSharding sharding(&helper, [] {});
  sharding.Update({lbkit::Endpoint{{"a:1", "a:2"}}});
  auto first = helper.subchannel("a:1");
  sharding.Update({lbkit::Endpoint{{"a:2", "a:1"}}});
  EXPECT_FALSE(first->is_shutdown());
  EXPECT_EQ(sharding.children().size(), 1u);
  EXPECT_EQ(sharding.children()[0].endpoint.addresses[0], "a:2");
}

// ---- round_robin ----

TEST(RoundRobin, RotatesOverReadyEndpointsOnly) {
  FakeHelper helper;
  auto rr = Build("round_robin", &helper);
  ASSERT_TRUE(rr->UpdateResolverState(Update({{"a:1"}, {"b:1"}, {"c:1"}})).ok());
  EXPECT_EQ(helper.last_state().state, ConnectivityState::kConnecting);
  helper.subchannel("a:1")->SetState(ConnectivityState::kReady);
  helper.subchannel("c:1")->SetState(ConnectivityState::kReady);
  ASSERT_EQ(helper.last_state().state, ConnectivityState::kReady);
  std::vector<std::string> picks = PickAddresses(*helper.last_state().picker, 6);
  // Starts at a random index, then strictly alternates a, c.
  for (size_t i = 1; i < picks.size(); ++i) EXPECT_NE(picks[i], picks[i - 1]);
  EXPECT_EQ(std::count(picks.begin(), picks.end(), "a:1"), 3);
  EXPECT_EQ(std::count(picks.begin(), picks.end(), "c:1"), 3);
}

TEST(RoundRobin, AllEndpointsFailedIsStickyTransientFailure) {
  FakeHelper helper;
  auto rr = Build("round_robin", &helper);
  rr->UpdateResolverState(Update({{"a:1"}, {"b:1"}}));
  for (const char* address : {"a:1", "b:1"}) {
    helper.subchannel(address)->SetState(
        ConnectivityState::kTransientFailure,
        grpc::Status(grpc::StatusCode::UNAVAILABLE, std::string("no ") + address));
  }
  EXPECT_EQ(helper.last_state().state, ConnectivityState::kTransientFailure);
  EXPECT_NE(PickAddresses(*helper.last_state().picker, 1)[0].find("round_robin: no ready endpoint"),
            std::string::npos);
  helper.subchannel("b:1")->SetState(ConnectivityState::kReady);
  EXPECT_EQ(helper.last_state().state, ConnectivityState::kReady);
  EXPECT_EQ(PickAddresses(*helper.last_state().picker, 2),
            (std::vector<std::string>{"b:1", "b:1"}));
}

TEST(RoundRobin, NoEndpointsIsAnError) {
  FakeHelper helper;
  auto rr = Build("round_robin", &helper);
  EXPECT_FALSE(rr->UpdateResolverState(Update({})).ok());
  EXPECT_EQ(helper.last_state().state, ConnectivityState::kTransientFailure);
}

// ---- custom_round_robin ----

TEST(CustomRoundRobin, IsReadyOnlyOnceTwoChildrenAreReady) {
  FakeHelper helper;
  auto crr = Build("custom_round_robin", &helper);
  ASSERT_TRUE(crr->UpdateResolverState(
                     Update({{"a:1"}, {"b:1"}}, R"({"chooseSecond":3})", "custom_round_robin"))
                  .ok());
  EXPECT_EQ(helper.last_state().state, ConnectivityState::kConnecting);
  helper.subchannel("a:1")->SetState(ConnectivityState::kReady);
  EXPECT_EQ(helper.last_state().state, ConnectivityState::kConnecting)
      << "one READY child is not enough";
  EXPECT_EQ(PickAddresses(*helper.last_state().picker, 1)[0], "queue");
  helper.subchannel("b:1")->SetState(ConnectivityState::kReady);
  ASSERT_EQ(helper.last_state().state, ConnectivityState::kReady);
  EXPECT_EQ(PickAddresses(*helper.last_state().picker, 6),
            (std::vector<std::string>{"a:1", "a:1", "b:1", "a:1", "a:1", "b:1"}));
}

TEST(CustomRoundRobin, FewerThanTwoEndpointsIsRejectedClearly) {
  FakeHelper helper;
  auto crr = Build("custom_round_robin", &helper);
  grpc::Status status = crr->UpdateResolverState(Update({{"a:1"}}, "{}", "custom_round_robin"));
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.error_message().find("needs at least 2 endpoints, got 1"), std::string::npos);
  EXPECT_EQ(helper.last_state().state, ConnectivityState::kTransientFailure);
}

TEST(CustomRoundRobin, AFailedChildMakesItTransientFailure) {
  FakeHelper helper;
  auto crr = Build("custom_round_robin", &helper);
  crr->UpdateResolverState(Update({{"a:1"}, {"b:1"}}, "{}", "custom_round_robin"));
  helper.subchannel("a:1")->SetState(ConnectivityState::kReady);
  helper.subchannel("b:1")->SetState(ConnectivityState::kTransientFailure,
                                     grpc::Status(grpc::StatusCode::UNAVAILABLE, "b refused"));
  EXPECT_EQ(helper.last_state().state, ConnectivityState::kTransientFailure);
  EXPECT_NE(helper.last_state().status.error_message().find("b refused"), std::string::npos);
}

TEST(CustomRoundRobin, TwoIdenticalAddressesFailWithAReasonNotAnEmptyLastError) {
  FakeHelper helper;
  auto crr = Build("custom_round_robin", &helper);
  grpc::Status status =
      crr->UpdateResolverState(Update({{"a:1"}, {"a:1"}}, "{}", "custom_round_robin"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  helper.subchannel("a:1")->SetState(ConnectivityState::kTransientFailure,
                                     grpc::Status(grpc::StatusCode::UNAVAILABLE, ""));
  ASSERT_EQ(helper.last_state().state, ConnectivityState::kTransientFailure);
  const std::string message = helper.last_state().status.error_message();
  EXPECT_EQ(message,
            "custom_round_robin: needs at least 2 endpoints, got 1 distinct (2 given; endpoints "
            "with the same addresses are one)");
  EXPECT_NE(message.back(), ' ');
}

TEST(CustomRoundRobin, ANullConfigMeansTheDefaultSplit) {
  FakeHelper helper;
  auto crr = Build("custom_round_robin", &helper);
  ASSERT_TRUE(crr->UpdateResolverState(Update({{"a:1"}, {"b:1"}})).ok()) << "config left null";
  helper.subchannel("a:1")->SetState(ConnectivityState::kReady);
  helper.subchannel("b:1")->SetState(ConnectivityState::kReady);
  ASSERT_EQ(helper.last_state().state, ConnectivityState::kReady);
  EXPECT_EQ(PickAddresses(*helper.last_state().picker, 3),
            (std::vector<std::string>{"a:1", "a:1", "b:1"}))
      << "chooseSecond 3";
}

TEST(RoundRobin, AResolverErrorBeforeAnyEndpointIsTransientFailureNamingIt) {
  FakeHelper helper;
  auto rr = Build("round_robin", &helper);
  rr->ResolverError(grpc::Status(grpc::StatusCode::UNAVAILABLE, "no such host"));
  ASSERT_EQ(helper.last_state().state, ConnectivityState::kTransientFailure);
  EXPECT_EQ(helper.last_state().status.error_message(),
            "round_robin: resolver error: no such host");
}

}  // namespace

namespace {

// ---- Happy Eyeballs order, shuffleAddressList ----

TEST(PickFirst, InterleavesAddressFamiliesStartingWithTheFirstAddresss) {
  using lbkit::internal::InterleaveAddressFamilies;
  EXPECT_EQ(InterleaveAddressFamilies({"[::1]:1", "[::1]:2", "127.0.0.1:3", "127.0.0.1:4"}),
            (std::vector<std::string>{"[::1]:1", "127.0.0.1:3", "[::1]:2", "127.0.0.1:4"}));
  EXPECT_EQ(InterleaveAddressFamilies({"127.0.0.1:3", "127.0.0.2:4", "127.0.0.3:5", "[::1]:1"}),
            (std::vector<std::string>{"127.0.0.1:3", "[::1]:1", "127.0.0.2:4", "127.0.0.3:5"}));
  // One family only, or names: unchanged.
  std::vector<std::string> same = {"127.0.0.1:1", "127.0.0.2:1", "localhost:5"};
  EXPECT_EQ(InterleaveAddressFamilies(same), same);
}

TEST(PickFirst, ConnectsInInterleavedOrder) {
  FakeHelper helper;
  auto pf = Build("pick_first", &helper);
  pf->UpdateResolverState(Update({{"[::1]:1", "[::1]:2", "127.0.0.1:3"}}));
  EXPECT_EQ(helper.subchannel("[::1]:1")->connection_requests(), 1);
  helper.FireTimers();
  EXPECT_EQ(helper.subchannel("127.0.0.1:3")->connection_requests(), 1)
      << "IPv4 second, though listed last";
  EXPECT_EQ(helper.subchannel("[::1]:2")->connection_requests(), 0);
  helper.FireTimers();
  EXPECT_EQ(helper.subchannel("[::1]:2")->connection_requests(), 1);
}

TEST(PickFirst, ShuffleAddressListVariesTheFirstAttempt) {
  std::set<std::string> first_attempts;
  for (int round = 0; round < 40; ++round) {
    FakeHelper helper;
    auto pf = Build("pick_first", &helper);
    pf->UpdateResolverState(Update({{"a:1", "b:1", "c:1", "d:1", "e:1"}},
                                   R"({"shuffleAddressList":true})", "pick_first"));
    for (const auto& subchannel : helper.subchannels()) {
      if (subchannel->connection_requests() == 1) first_attempts.insert(subchannel->address());
    }
  }
  // 40 shuffles of 5 addresses all starting alike: about 1 in 10^27.
  EXPECT_GT(first_attempts.size(), 1u);
}

TEST(PickFirst, WithoutShuffleTheFirstAddressIsAlwaysTriedFirst) {
  for (int round = 0; round < 5; ++round) {
    FakeHelper helper;
    auto pf = Build("pick_first", &helper);
    pf->UpdateResolverState(Update({{"a:1", "b:1", "c:1"}}, "{}", "pick_first"));
    EXPECT_EQ(helper.subchannel("a:1")->connection_requests(), 1);
  }
}

}  // namespace

namespace {

TEST(PickFirst, AnUnhealthySelectedSubchannelLeadsToTransientFailureNotAnEndlessConnect) {
  // The selected subchannel reports TRANSIENT_FAILURE while its connection
  // stays up (health checking: NOT_SERVING). pick_first goes IDLE; woken, it
  // must see that its only address is failed and say so, not wait for an
  // event that will not come.
  FakeHelper helper;
  auto pf = Build("pick_first", &helper);
  pf->UpdateResolverState(Update({{"a:1"}}));
  auto a = helper.subchannel("a:1");
  a->SetState(ConnectivityState::kReady);
  a->SetState(ConnectivityState::kTransientFailure,
              grpc::Status(grpc::StatusCode::UNAVAILABLE, "a is NOT_SERVING"));
  EXPECT_EQ(helper.last_state().state, ConnectivityState::kIdle);
  pf->ExitIdle();
  EXPECT_EQ(helper.last_state().state, ConnectivityState::kTransientFailure);
  EXPECT_NE(PickAddresses(*helper.last_state().picker, 1)[0].find("a is NOT_SERVING"),
            std::string::npos);
  a->SetState(ConnectivityState::kReady);
  EXPECT_EQ(helper.last_state().state, ConnectivityState::kReady) << "and recovers";
}

TEST(PickFirst, TheIdlePickerIsHarmlessOnceThePolicyIsGone) {
  FakeHelper helper;
  auto pf = Build("pick_first", &helper);
  pf->UpdateResolverState(Update({{"a:1"}}));
  auto a = helper.subchannel("a:1");
  a->SetState(ConnectivityState::kReady);
  a->SetState(ConnectivityState::kIdle);
  std::shared_ptr<lbkit::Picker> idle_picker = helper.last_state().picker;
  pf.reset();
  EXPECT_EQ(PickAddresses(*idle_picker, 2), (std::vector<std::string>{"queue", "queue"}));
  EXPECT_TRUE((helper.pending_posts() == 0)) << "no wake-up posted for a destroyed policy";
}

}  // namespace
