// The channel's contract: targets, service configs, connectivity state.
#include <grpcpp/client_context.h>
#include <grpcpp/completion_queue.h>
#include <gtest/gtest.h>

#include "common/test_backend.h"
#include "custom_round_robin.h"
#include "lbkit/lbkit.h"

namespace {

using grpc::examples::echo::Echo;
using lbkit_test::Echo;
using lbkit_test::ManualChannel;
using lbkit_test::TestBackend;

TEST(Targets, UnknownSchemeIsAClearErrorNotACrash) {
  grpc::Status status;
  auto channel =
      lbkit::CreateChannel("localhost:50050", grpc::InsecureChannelCredentials(), {}, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("unknown scheme \"localhost\""), std::string::npos)
      << status.error_message();
  EXPECT_NE(status.error_message().find("static:///"), std::string::npos) << "suggests the fix";
  ASSERT_NE(channel, nullptr);
  ASSERT_TRUE(lbkit_test::WaitForChannelState(*channel, GRPC_CHANNEL_TRANSIENT_FAILURE));
  auto stub = Echo::NewStub(channel);
  EXPECT_EQ(Echo(*stub, "m"), "error: 14: " + status.error_message());
}

TEST(Targets, MalformedTargetsAndAddressesAreClearErrors) {
  for (const char* target : {"", "no-scheme", "static:///", "static:///host-without-port",
                             "static:///a:1,,b:2", "manual:///"}) {
    grpc::Status status;
    auto channel = lbkit::CreateChannel(target, grpc::InsecureChannelCredentials(), {}, &status);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << target;
    EXPECT_FALSE(status.error_message().empty());
    ASSERT_NE(channel, nullptr);
    auto stub = Echo::NewStub(channel);
    EXPECT_EQ(Echo(*stub, "m").rfind("error: 14: ", 0), 0u) << target;
  }
}

TEST(Targets, NullCredentialsAreAnError) {
  grpc::Status status;
  auto channel = lbkit::CreateChannel("static:///127.0.0.1:1", nullptr, {}, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ASSERT_NE(channel, nullptr);
}

TEST(ServiceConfig, NoConfigMeansPickFirst) {
  TestBackend a, b;
  auto channel = lbkit_test::StaticChannel({a.address(), b.address()}, "");
  auto stub = Echo::NewStub(channel);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Echo(*stub, "m"), "m (from " + a.address() + ")");
  EXPECT_EQ(channel->Snapshot().policy, "pick_first");
}

TEST(ServiceConfig, ABadFirstConfigFailsCallsWithItsMessage) {
  EXPECT_TRUE(customlb::RegisterCustomRoundRobin().ok());
  TestBackend a, b;
  auto resolver = lbkit::ManualResolver::Create();
  resolver->SetInitialState(
      {{lbkit::Endpoint{{a.address()}}, lbkit::Endpoint{{b.address()}}},
       R"({"loadBalancingConfig":[{"custom_round_robin":{"chooseSecond":-2}}]})"});
  auto channel = ManualChannel(resolver);
  ASSERT_TRUE(lbkit_test::WaitForChannelState(*channel, GRPC_CHANNEL_TRANSIENT_FAILURE));
  auto stub = Echo::NewStub(channel);
  std::string reply = Echo(*stub, "m");
  EXPECT_EQ(reply.rfind("error: 14: invalid service config: policy \"custom_round_robin\": "
                        "chooseSecond must be a whole number",
                        0),
            0u)
      << reply;
  EXPECT_NE(channel->Snapshot().last_error.find("chooseSecond"), std::string::npos);

  // A good config later brings the channel up.
  resolver->UpdateState({{lbkit::Endpoint{{a.address()}}, lbkit::Endpoint{{b.address()}}},
                         R"({"loadBalancingConfig":[{"custom_round_robin":{"chooseSecond":1}}]})"});
  EXPECT_TRUE(
      lbkit_test::WaitFor([&] { return Echo(*stub, "m") == "m (from " + b.address() + ")"; }));
}

TEST(ServiceConfig, ABadLaterUpdateKeepsTheLastGoodConfig) {
  TestBackend a, b, c;
  auto resolver = lbkit::ManualResolver::Create();
  resolver->SetInitialState({{lbkit::Endpoint{{a.address()}}, lbkit::Endpoint{{b.address()}}},
                             R"({"loadBalancingConfig":[{"round_robin":{}}]})"});
  auto channel = ManualChannel(resolver);
  auto stub = Echo::NewStub(channel);
  ASSERT_TRUE(lbkit_test::WaitForReadySubchannels(*channel, 2));
  // New endpoints with an invalid config: the endpoints apply, round_robin stays.
  resolver->UpdateState({{lbkit::Endpoint{{b.address()}}, lbkit::Endpoint{{c.address()}}},
                         R"({"loadBalancingConfig":[{"round_robin":{}})"});
  ASSERT_TRUE(lbkit_test::WaitFor([&] {
    auto snapshot = channel->Snapshot();
    size_t ready = 0;
    for (const auto& sc : snapshot.subchannels) {
      if (sc.address != a.address() && sc.state == lbkit::ConnectivityState::kReady) ++ready;
    }
    return ready == 2 && snapshot.subchannels.size() == 2;
  }));
  EXPECT_EQ(channel->Snapshot().policy, "round_robin");
  EXPECT_EQ(channel->GetState(false), GRPC_CHANNEL_READY);
  std::set<std::string> served;
  for (int i = 0; i < 4; ++i) served.insert(Echo(*stub, "m"));
  EXPECT_EQ(served, (std::set<std::string>{"m (from " + b.address() + ")",
                                           "m (from " + c.address() + ")"}));
}

TEST(ServiceConfig, AnUpdateCanSwitchThePolicy) {
  TestBackend a, b;
  auto resolver = lbkit::ManualResolver::Create();
  std::vector<lbkit::Endpoint> endpoints = {lbkit::Endpoint{{a.address()}},
                                            lbkit::Endpoint{{b.address()}}};
  resolver->SetInitialState({endpoints, ""});
  auto channel = ManualChannel(resolver);
  auto stub = Echo::NewStub(channel);
  EXPECT_EQ(Echo(*stub, "m"), "m (from " + a.address() + ")");
  resolver->UpdateState({endpoints, R"({"loadBalancingConfig":[{"round_robin":{}}]})"});
  EXPECT_TRUE(
      lbkit_test::WaitFor([&] { return Echo(*stub, "m") == "m (from " + b.address() + ")"; }));
  EXPECT_EQ(channel->Snapshot().policy, "round_robin");
}

TEST(ServiceConfig, AResolverErrorBeforeAnyStateIsTransientFailure) {
  auto resolver = lbkit::ManualResolver::Create();
  auto channel = ManualChannel(resolver);
  // Start is asynchronous: an error reported before it is dropped, so report
  // until the channel has taken one.
  ASSERT_TRUE(lbkit_test::WaitFor([&] {
    resolver->ReportError(grpc::Status(grpc::StatusCode::UNAVAILABLE, "no such service"));
    return channel->GetState(false) == GRPC_CHANNEL_TRANSIENT_FAILURE;
  }));
  auto stub = Echo::NewStub(channel);
  std::string reply = Echo(*stub, "m");
  EXPECT_NE(reply.find("no such service"), std::string::npos) << reply;
}

TEST(ConnectivityState, IsTheTopPolicysAggregate) {
  TestBackend a;
  auto channel = lbkit_test::StaticChannel({a.address()}, "");
  EXPECT_TRUE(
      channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10)));
  EXPECT_EQ(channel->Snapshot().state, lbkit::ConnectivityState::kReady);
  a.Stop();
  // pick_first goes IDLE when its connection drops; WaitForStateChange sees it.
  EXPECT_TRUE(channel->WaitForStateChange(
      GRPC_CHANNEL_READY, std::chrono::system_clock::now() + std::chrono::seconds(10)));
  EXPECT_EQ(channel->GetState(false), GRPC_CHANNEL_IDLE);
  // GetState(true) wakes it up: it tries to connect again.
  channel->GetState(true);
  EXPECT_TRUE(channel->WaitForStateChange(
      GRPC_CHANNEL_IDLE, std::chrono::system_clock::now() + std::chrono::seconds(10)));
  EXPECT_NE(channel->GetState(false), GRPC_CHANNEL_IDLE);
}

TEST(ConnectivityState, NotifyOnStateChangeDeliversOnTheCompletionQueue) {
  TestBackend a;
  auto backend_down = TestBackend::Reserved();
  auto channel = lbkit_test::StaticChannel({backend_down->address()}, "");
  grpc::CompletionQueue cq;
  ASSERT_TRUE(lbkit_test::WaitForChannelState(*channel, GRPC_CHANNEL_TRANSIENT_FAILURE));

  // No change before the deadline: the tag comes back with ok == false.
  channel->NotifyOnStateChange(GRPC_CHANNEL_TRANSIENT_FAILURE,
                               std::chrono::system_clock::now() + std::chrono::milliseconds(100),
                               &cq, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = true;
  ASSERT_TRUE(cq.Next(&tag, &ok));
  EXPECT_EQ(tag, reinterpret_cast<void*>(1));
  EXPECT_FALSE(ok);

  // A change: ok == true.
  channel->NotifyOnStateChange(GRPC_CHANNEL_TRANSIENT_FAILURE,
                               std::chrono::system_clock::now() + std::chrono::seconds(20), &cq,
                               reinterpret_cast<void*>(2));
  backend_down->Start();
  ASSERT_TRUE(cq.Next(&tag, &ok));
  EXPECT_EQ(tag, reinterpret_cast<void*>(2));
  EXPECT_TRUE(ok);
  EXPECT_NE(channel->GetState(false), GRPC_CHANNEL_TRANSIENT_FAILURE);

  // Already different from last_observed: completes at once.
  channel->NotifyOnStateChange(GRPC_CHANNEL_SHUTDOWN,
                               std::chrono::system_clock::now() + std::chrono::seconds(20), &cq,
                               reinterpret_cast<void*>(3));
  ASSERT_TRUE(cq.Next(&tag, &ok));
  EXPECT_EQ(tag, reinterpret_cast<void*>(3));
  EXPECT_TRUE(ok);
  lbkit_test::ShutdownAndDrain(cq);
}

}  // namespace
