// EndpointSharding, policy API v2: endpoint identity (EndpointKey,
// EndpointMap), attribute changes reaching children without reconnecting,
// the default child config, and the states a ReadyPicker parent publishes.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "lbkit/endpoint_sharding.h"
#include "lbkit/registry.h"
#include "lbkit/testing/fake_helper.h"

namespace {

using lbkit::ConnectivityState;
using lbkit::Endpoint;
using lbkit::EndpointSharding;
using lbkit::testing::FakeHelper;
using lbkit::testing::PickAddresses;

Endpoint WithAttributes(const std::string& address, uint32_t weight, const std::string& zone) {
  Endpoint endpoint{{address}};
  endpoint.attributes.weight = weight;
  endpoint.attributes.values["zone"] = zone;
  return endpoint;
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A child policy that records what it is given and mirrors the state of a
// subchannel to its first address, with none of pick_first's own
// stickiness: what EndpointSharding itself does stays visible.
struct MirrorLog {
  std::vector<lbkit::BalancerUpdate> updates;
};
MirrorLog* mirror_log = nullptr;

class SubchannelPicker final : public lbkit::Picker {
 public:
  explicit SubchannelPicker(std::shared_ptr<lbkit::Subchannel> subchannel)
      : subchannel_(std::move(subchannel)) {}
  lbkit::PickResult Pick(const lbkit::PickArgs&) const override {
    return lbkit::PickResult::Complete(subchannel_.get());
  }

 private:
  std::shared_ptr<lbkit::Subchannel> subchannel_;
};

class MirrorChild final : public lbkit::Balancer {
 public:
  explicit MirrorChild(lbkit::Helper* helper) : helper_(helper) {}
  grpc::Status UpdateResolverState(lbkit::BalancerUpdate update) override {
    if (mirror_log != nullptr) mirror_log->updates.push_back(update);
    if (subchannel_ == nullptr) {
      subchannel_ =
          helper_->CreateSubchannel(update.endpoints[0].addresses[0],
                                    [this](ConnectivityState state, const grpc::Status& status) {
                                      std::shared_ptr<lbkit::Picker> picker;
                                      if (state == ConnectivityState::kReady) {
                                        picker = std::make_shared<SubchannelPicker>(subchannel_);
                                      } else if (state == ConnectivityState::kTransientFailure) {
                                        picker = std::make_shared<lbkit::FailPicker>(status);
                                      } else {
                                        picker = std::make_shared<lbkit::QueuePicker>();
                                      }
                                      helper_->UpdateState({state, picker, status});
                                    });
      subchannel_->RequestConnection();
    }
    return grpc::Status::OK;
  }
  void ResolverError(const grpc::Status&) override {}

 private:
  lbkit::Helper* helper_;
  std::shared_ptr<lbkit::Subchannel> subchannel_;
};

class MirrorConfig final : public lbkit::BalancerConfig {};

class MirrorBuilder final : public lbkit::BalancerBuilder {
 public:
  std::string name() const override { return "test_mirror_child"; }
  grpc::Status ParseConfig(const nlohmann::json&,
                           std::shared_ptr<const lbkit::BalancerConfig>* config) const override {
    *config = std::make_shared<MirrorConfig>();
    return grpc::Status::OK;
  }
  std::unique_ptr<lbkit::Balancer> Build(lbkit::Helper* helper) const override {
    return std::make_unique<MirrorChild>(helper);
  }
};

class MirrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(
        lbkit::RegisterBalancer(std::make_shared<MirrorBuilder>(), lbkit::OnDuplicate::kReplace)
            .ok());
    mirror_log = &log_;
  }
  void TearDown() override { mirror_log = nullptr; }

  MirrorLog log_;
};

// A ReadyPicker parent over mirror children that remembers which READY
// children its picker was built from.
struct ReadyParent {
  explicit ReadyParent(size_t min_ready, const std::string& child = "test_mirror_child")
      : sharding(&helper,
                 EndpointSharding::ReadyPicker{
                     "test_policy", min_ready,
                     [this](const std::vector<const EndpointSharding::Child*>& ready) {
                       built_from.clear();
                       for (const auto* c : ready) built_from.push_back(c->endpoint.addresses[0]);
                       return ready[0]->state.picker;
                     }},
                 child) {}

  void Fail(const std::string& address, const std::string& why) {
    helper.subchannel(address)->SetState(ConnectivityState::kTransientFailure,
                                         grpc::Status(grpc::StatusCode::UNAVAILABLE, why));
  }

  FakeHelper helper;
  std::vector<std::string> built_from;
  EndpointSharding sharding;
};

// A child policy that publishes CONNECTING from its constructor, before
// EndpointSharding has installed the layout it is part of.
class EagerChild final : public lbkit::Balancer {
 public:
  explicit EagerChild(lbkit::Helper* helper) {
    helper->UpdateState(
        {ConnectivityState::kConnecting, std::make_shared<lbkit::QueuePicker>(), grpc::Status::OK});
  }
  grpc::Status UpdateResolverState(lbkit::BalancerUpdate) override { return grpc::Status::OK; }
  void ResolverError(const grpc::Status&) override {}
};

class EagerBuilder final : public lbkit::BalancerBuilder {
 public:
  std::string name() const override { return "test_eager_child"; }
  grpc::Status ParseConfig(const nlohmann::json&,
                           std::shared_ptr<const lbkit::BalancerConfig>* config) const override {
    *config = std::make_shared<MirrorConfig>();
    return grpc::Status::OK;
  }
  std::unique_ptr<lbkit::Balancer> Build(lbkit::Helper* helper) const override {
    return std::make_unique<EagerChild>(helper);
  }
};

// ---- identity ----

TEST(EndpointKey, IsTheAddressSetIgnoringOrderAndAttributes) {
  EXPECT_EQ(lbkit::EndpointKey(Endpoint{{"a:1", "b:1"}}),
            lbkit::EndpointKey(Endpoint{{"b:1", "a:1"}}));
  EXPECT_EQ(lbkit::EndpointKey(Endpoint{{"a:1"}}),
            lbkit::EndpointKey(WithAttributes("a:1", 9, "eu")));
  EXPECT_NE(lbkit::EndpointKey(Endpoint{{"a:1"}}), lbkit::EndpointKey(Endpoint{{"a:1", "b:1"}}));
  EXPECT_NE(lbkit::EndpointKey(Endpoint{{"a:1b:1"}}), lbkit::EndpointKey(Endpoint{{"a:1", "b:1"}}))
      << "no two address lists share a key";
}

TEST(EndpointMap, KeepsStatePerAddressSetAcrossAttributeChangesAndDropsRemovedEndpoints) {
  lbkit::EndpointMap<int> counters;
  counters[Endpoint{{"a:1", "a:2"}}] = 3;
  counters[Endpoint{{"b:1"}}] = 4;
  Endpoint weighted{{"a:1", "a:2"}};
  weighted.attributes.weight = 5;
  ASSERT_NE(counters.Find(weighted), nullptr) << "attributes are not part of the key";
  const int* reordered = counters.Find(Endpoint{{"a:2", "a:1"}});
  ASSERT_NE(reordered, nullptr);
  EXPECT_EQ(*reordered, 3);
  EXPECT_EQ(counters.Find(Endpoint{{"a:1"}}), nullptr);
  counters.RetainOnly({Endpoint{{"b:1"}}, Endpoint{{"c:1"}}});
  EXPECT_EQ(counters.size(), 1u);
  EXPECT_EQ(*counters.Find(Endpoint{{"b:1"}}), 4);
  EXPECT_TRUE(counters.Erase(Endpoint{{"b:1"}}));
  EXPECT_TRUE(counters.empty());
}

TEST(Endpoint, EqualityComparesAddressesAndAttributes) {
  EXPECT_EQ(Endpoint{{"a:1"}}, Endpoint{{"a:1"}});
  EXPECT_NE(Endpoint{{"a:1"}}, WithAttributes("a:1", 1, "eu"));
  EXPECT_NE(WithAttributes("a:1", 2, "eu"), WithAttributes("a:1", 1, "eu"));
  Endpoint hashed{{"a:1"}};
  hashed.attributes.hash_key = "h";
  EXPECT_NE(Endpoint{{"a:1"}}, hashed);
  EXPECT_EQ(Endpoint{{"a:1"}}.attributes.weight, 1u) << "weight defaults to 1";
}

// ---- attribute changes ----

TEST(EndpointSharding, AnAttributeOnlyChangeKeepsTheChildAndItsConnection) {
  FakeHelper helper;
  int changes = 0;
  EndpointSharding sharding(&helper, [&] { ++changes; });
  ASSERT_TRUE(sharding.Update({WithAttributes("a:1", 1, "eu"), Endpoint{{"b:1"}}}).ok());
  auto a = helper.subchannel("a:1");
  a->SetState(ConnectivityState::kReady);
  const size_t created = helper.subchannels().size();
  const int requests = a->connection_requests();

  ASSERT_TRUE(sharding.Update({WithAttributes("a:1", 5, "us"), Endpoint{{"b:1"}}}).ok());
  EXPECT_EQ(helper.subchannels().size(), created) << "no new subchannel";
  EXPECT_EQ(helper.subchannel("a:1"), a) << "the same subchannel object";
  EXPECT_FALSE(a->is_shutdown());
  EXPECT_EQ(a->connection_requests(), requests) << "no new connection request";
  ASSERT_EQ(sharding.children().size(), 2u);
  EXPECT_EQ(sharding.children()[0].endpoint.attributes.weight, 5u) << "the parent sees it";
  EXPECT_EQ(sharding.children()[0].endpoint.attributes.values.at("zone"), "us");
  EXPECT_EQ(sharding.children()[0].state.state, ConnectivityState::kReady);
}

TEST_F(MirrorTest, AnAttributeOnlyChangeReachesTheChild) {
  FakeHelper helper;
  EndpointSharding sharding(
      &helper, [] {}, "test_mirror_child");
  ASSERT_TRUE(sharding.Update({WithAttributes("a:1", 1, "eu")}).ok());
  ASSERT_EQ(log_.updates.size(), 1u);
  ASSERT_TRUE(sharding.Update({WithAttributes("a:1", 1, "eu")}).ok());
  EXPECT_EQ(log_.updates.size(), 1u) << "nothing changed: the child is not bothered";
  ASSERT_TRUE(sharding.Update({WithAttributes("a:1", 7, "eu")}).ok());
  ASSERT_EQ(log_.updates.size(), 2u);
  EXPECT_EQ(log_.updates[1].endpoints, (std::vector<Endpoint>{WithAttributes("a:1", 7, "eu")}));
  EXPECT_EQ(helper.subchannels().size(), 1u) << "the same child: no second subchannel";
}

// ---- the default child config ----

TEST_F(MirrorTest, ANullChildConfigIsTheChildPolicysDefaultNeverNull) {
  FakeHelper helper;
  EndpointSharding sharding(
      &helper, [] {}, "test_mirror_child");
  ASSERT_TRUE(sharding.Update({Endpoint{{"a:1"}}, Endpoint{{"b:1"}}}).ok());
  ASSERT_EQ(log_.updates.size(), 2u);
  for (const auto& update : log_.updates) {
    ASSERT_NE(update.config, nullptr);
    EXPECT_NE(dynamic_cast<const MirrorConfig*>(update.config.get()), nullptr)
        << "parsed by the child policy's own builder from {}";
  }
  EXPECT_EQ(log_.updates[0].config, log_.updates[1].config) << "parsed once";
  ASSERT_TRUE(sharding.Update({Endpoint{{"a:1"}}, Endpoint{{"b:1"}}, Endpoint{{"c:1"}}}).ok());
  EXPECT_EQ(log_.updates.size(), 3u) << "a repeated null is not a config change";
  EXPECT_NE(log_.updates[2].config, nullptr);
}

TEST(EndpointSharding, PickFirstChildrenGetTheirDefaultConfigToo) {
  FakeHelper helper;
  EndpointSharding sharding(&helper, [] {});
  EXPECT_TRUE(sharding.Update({Endpoint{{"a:1"}}}).ok());
  EndpointSharding unknown(
      &helper, [] {}, "no_such_policy");
  grpc::Status status = unknown.Update({Endpoint{{"a:1"}}});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(Contains(status.error_message(), "no_such_policy")) << status.error_message();
}

// ---- ReadyPicker: what EndpointSharding publishes for its parent ----

TEST(EndpointSharding, AChildPublishingFromItsConstructorLandsInItsOwnSlot) {
  ASSERT_TRUE(
      lbkit::RegisterBalancer(std::make_shared<EagerBuilder>(), lbkit::OnDuplicate::kReplace).ok());
  ReadyParent parent(1, "test_eager_child");
  // New children are built before the new layout is installed: the first
  // update (no old children) and one that grows past the old size.
  parent.sharding.Update({Endpoint{{"a:1"}}, Endpoint{{"b:1"}}});
  parent.sharding.Update({Endpoint{{"c:1"}}, Endpoint{{"a:1"}}, Endpoint{{"d:1"}}});
  ASSERT_EQ(parent.sharding.children().size(), 3u);
  for (const EndpointSharding::Child& child : parent.sharding.children()) {
    EXPECT_EQ(child.state.state, ConnectivityState::kConnecting) << child.endpoint.addresses[0];
    EXPECT_NE(child.state.picker, nullptr);
  }
  EXPECT_EQ(parent.helper.last_state().state, ConnectivityState::kConnecting);
}

TEST_F(MirrorTest, WhatTheParentThrowsWhileAChildPublishesIsTheParentsNotTheChilds) {
  FakeHelper helper;
  EndpointSharding sharding(
      &helper,
      EndpointSharding::ReadyPicker{
          "test_policy", 1,
          [](const std::vector<const EndpointSharding::Child*>&) -> std::shared_ptr<lbkit::Picker> {
            throw std::runtime_error("parent build bug");
          }},
      "test_mirror_child");
  ASSERT_TRUE(sharding.Update({Endpoint{{"a:1"}}}).ok());
  auto a = helper.subchannel("a:1");
  // The child's own guard lets the parent's exception through to the
  // parent's caller (here the test; under a channel, the parent's guard).
  EXPECT_THROW(a->SetState(ConnectivityState::kReady), std::runtime_error);
  EXPECT_FALSE(a->is_shutdown()) << "the healthy child was blamed and torn down";
  EXPECT_EQ(sharding.children()[0].state.state, ConnectivityState::kReady);
}

TEST_F(MirrorTest, ReadyPickerIsConnectingWhileChildrenConnectThenReady) {
  ReadyParent parent(1);
  ASSERT_TRUE(parent.sharding.Update({Endpoint{{"a:1"}}, Endpoint{{"b:1"}}}).ok());
  ASSERT_FALSE(parent.helper.states().empty()) << "published at the end of the update";
  EXPECT_EQ(parent.helper.last_state().state, ConnectivityState::kConnecting);
  EXPECT_EQ(PickAddresses(*parent.helper.last_state().picker, 1)[0], "queue");
  parent.helper.subchannel("b:1")->SetState(ConnectivityState::kReady);
  ASSERT_EQ(parent.helper.last_state().state, ConnectivityState::kReady);
  EXPECT_EQ(parent.built_from, (std::vector<std::string>{"b:1"}));
  EXPECT_EQ(PickAddresses(*parent.helper.last_state().picker, 1)[0], "b:1");
}

TEST_F(MirrorTest, ReadyPickerWaitsForMinReadyChildren) {
  ReadyParent parent(2);
  parent.sharding.Update({Endpoint{{"a:1"}}, Endpoint{{"b:1"}}, Endpoint{{"c:1"}}});
  parent.helper.subchannel("a:1")->SetState(ConnectivityState::kReady);
  EXPECT_EQ(parent.helper.last_state().state, ConnectivityState::kConnecting) << "one is not two";
  parent.helper.subchannel("c:1")->SetState(ConnectivityState::kReady);
  ASSERT_EQ(parent.helper.last_state().state, ConnectivityState::kReady);
  EXPECT_EQ(parent.built_from, (std::vector<std::string>{"a:1", "c:1"})) << "in children order";
}

TEST_F(MirrorTest, ReadyPickerTransientFailureNamesTheLastChildError) {
  ReadyParent parent(1);
  parent.sharding.Update({Endpoint{{"a:1"}}, Endpoint{{"b:1"}}});
  parent.Fail("a:1", "a refused");
  EXPECT_EQ(parent.helper.last_state().state, ConnectivityState::kConnecting)
      << "b may still connect";
  parent.Fail("b:1", "b refused");
  const lbkit::BalancerState& state = parent.helper.last_state();
  ASSERT_EQ(state.state, ConnectivityState::kTransientFailure);
  EXPECT_EQ(state.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(state.status.error_message(), "test_policy: no ready endpoint; last error: b refused");
  EXPECT_EQ(PickAddresses(*state.picker, 1)[0], "fail: " + state.status.error_message());
}

TEST_F(MirrorTest, ReadyPickerTransientFailureIsStickyUntilEnoughChildrenAreReady) {
  ReadyParent parent(1);
  parent.sharding.Update({Endpoint{{"a:1"}}, Endpoint{{"b:1"}}});
  parent.Fail("a:1", "a refused");
  parent.Fail("b:1", "b refused");
  ASSERT_EQ(parent.helper.last_state().state, ConnectivityState::kTransientFailure);
  // The children reconnect: still TRANSIENT_FAILURE, still saying why.
  parent.helper.subchannel("a:1")->SetState(ConnectivityState::kConnecting);
  parent.helper.subchannel("b:1")->SetState(ConnectivityState::kIdle);
  EXPECT_EQ(parent.helper.last_state().state, ConnectivityState::kTransientFailure);
  EXPECT_TRUE(Contains(parent.helper.last_state().status.error_message(), "last error: b refused"));
  parent.helper.subchannel("a:1")->SetState(ConnectivityState::kReady);
  EXPECT_EQ(parent.helper.last_state().state, ConnectivityState::kReady);
  // a drops again: b is still failing (never READY since), so no CONNECTING.
  parent.helper.subchannel("a:1")->SetState(ConnectivityState::kConnecting);
  EXPECT_EQ(parent.helper.last_state().state, ConnectivityState::kConnecting)
      << "a was READY since its failure: it may connect again";
}

TEST_F(MirrorTest, ReadyPickerWithTooFewConnectableChildrenFailsClearly) {
  ReadyParent parent(2);
  parent.sharding.Update({Endpoint{{"a:1"}}, Endpoint{{"b:1"}}, Endpoint{{"c:1"}}});
  parent.Fail("a:1", "a refused");
  EXPECT_EQ(parent.helper.last_state().state, ConnectivityState::kConnecting)
      << "b and c may connect";
  parent.Fail("c:1", "c refused");
  ASSERT_EQ(parent.helper.last_state().state, ConnectivityState::kTransientFailure);
  EXPECT_EQ(parent.helper.last_state().status.error_message(),
            "test_policy: fewer than 2 endpoints can connect (2 of 3 failing); last error: "
            "c refused");
}

TEST_F(MirrorTest, ReadyPickerWithNoEndpointsIsTransientFailure) {
  ReadyParent parent(1);
  grpc::Status status = parent.sharding.Update({});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(status.error_message(), "test_policy: the resolver returned no endpoints");
  ASSERT_EQ(parent.helper.last_state().state, ConnectivityState::kTransientFailure);
  EXPECT_EQ(parent.helper.last_state().status.error_message(), status.error_message());
}

TEST_F(MirrorTest, ReadyPickerWithTooFewDistinctEndpointsSaysWhy) {
  ReadyParent parent(2);
  // The same address twice is one endpoint, one child: never two READY.
  grpc::Status status = parent.sharding.Update({Endpoint{{"a:1"}}, Endpoint{{"a:1"}}});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(status.error_message(),
            "test_policy: needs at least 2 endpoints, got 1 distinct (2 given; endpoints with "
            "the same addresses are one)");
  EXPECT_EQ(parent.helper.last_state().state, ConnectivityState::kTransientFailure);
  parent.helper.subchannel("a:1")->SetState(ConnectivityState::kReady);
  EXPECT_EQ(parent.helper.last_state().status.error_message(), status.error_message())
      << "the reason never goes empty";
}

TEST_F(MirrorTest, ReadyPickerResolverErrorWithoutChildrenIsTransientFailure) {
  ReadyParent parent(1);
  parent.sharding.ResolverError(grpc::Status(grpc::StatusCode::UNAVAILABLE, "dns down"));
  ASSERT_FALSE(parent.helper.states().empty());
  EXPECT_EQ(parent.helper.last_state().state, ConnectivityState::kTransientFailure);
  EXPECT_EQ(parent.helper.last_state().status.error_message(),
            "test_policy: resolver error: dns down");
  // With children, a resolver error changes nothing the parent publishes.
  parent.sharding.Update({Endpoint{{"a:1"}}});
  parent.helper.subchannel("a:1")->SetState(ConnectivityState::kReady);
  const size_t published = parent.helper.states().size();
  parent.sharding.ResolverError(grpc::Status(grpc::StatusCode::UNAVAILABLE, "dns down"));
  EXPECT_EQ(parent.helper.states().size(), published);
  EXPECT_EQ(parent.helper.last_state().state, ConnectivityState::kReady);
}

}  // namespace
